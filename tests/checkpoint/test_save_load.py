"""Saving and loading what a training run needs, on a local folder and on S3 (moto)."""

from __future__ import annotations

import pickle
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from vastnb import CheckpointManager, load_latest
from vastnb.errors import CheckpointError
from vastnb_worker.checkpoint import CheckpointWarning, list_checkpoints, open_store
from vastnb_worker.checkpoint.manifest import CheckpointInfo, Part, file_sha256


def tiny() -> tuple[torch.nn.Module, torch.optim.Optimizer, Any]:
    model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Tanh(), torch.nn.Linear(8, 2))
    optimizer = torch.optim.AdamW(model.parameters(), lr=0.1)
    return model, optimizer, torch.optim.lr_scheduler.StepLR(optimizer, step_size=2)


def step(model: torch.nn.Module, optimizer: torch.optim.Optimizer, scheduler: Any) -> float:
    loss = model(torch.randn(5, 4)).pow(2).mean()
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    scheduler.step()
    return loss.item()


def test_resume_restores_model_optimizer_scheduler_extras_and_rng(where: tuple[str, dict[str, Any]]) -> None:
    url, options = where
    model, optimizer, scheduler = tiny()
    with CheckpointManager(url, every_steps=2, **options) as ckpt:
        assert ckpt.load_latest(model, optimizer, scheduler) is None  # a fresh run
        for n in range(1, 6):
            loss = step(model, optimizer, scheduler)
            ckpt.save(
                n,
                model=model,
                optimizer=optimizer,
                scheduler=scheduler,
                metrics={"loss": loss},
                extras={"epoch": n // 2, "seen": [n, "batches"], "mean": np.full(3, n / 2)},
            )
        expected_draw = torch.rand(3)  # what torch's RNG gives right after the last save (step 4)

    again, again_optimizer, again_scheduler = tiny()
    with CheckpointManager(url, **options) as ckpt:
        state = ckpt.load_latest(again, again_optimizer, again_scheduler)
    assert state is not None and state.step == 4
    assert state.extras["epoch"] == 2 and state.extras["seen"] == [4, "batches"]
    np.testing.assert_array_equal(state.extras["mean"], np.full(3, 2.0))
    assert again_scheduler.state_dict()["last_epoch"] == 4
    assert again_optimizer.state_dict()["state"][0]["step"].item() == 4
    assert "loss" in state.metrics and state.states == {}
    # Step 5 trained after the checkpoint; the restored RNG replays step 5's draws.
    step(again, again_optimizer, again_scheduler)
    assert torch.equal(torch.rand(3), expected_draw)
    for mine, theirs in zip(model.parameters(), again.parameters(), strict=True):
        assert torch.equal(mine, theirs)


def test_save_returns_at_once_with_a_future_and_skips_steps_not_due(tmp_path: Path) -> None:
    model, _optimizer, _scheduler = tiny()
    with CheckpointManager(tmp_path / "store", every_steps=3) as ckpt:
        futures = {n: ckpt.save(n, model=model) for n in range(7)}
        assert [n for n, f in futures.items() if f is not None] == [3, 6]
        info = futures[6].result(timeout=30)
    assert info.step == 6 and info.size > 0 and [p.name for p in info.parts] == ["model", "state"]
    assert [c.step for c in CheckpointManager(tmp_path / "store").checkpoints()] == [6, 3]


def test_load_latest_in_the_notebook_leaves_rng_alone_and_returns_unused_states(tmp_path: Path) -> None:
    model, optimizer, _scheduler = tiny()
    with CheckpointManager(tmp_path / "store") as ckpt:
        ckpt.save(7, model=model, optimizer=optimizer)
    fresh, _, _ = tiny()
    torch.manual_seed(123)
    before = torch.get_rng_state()
    state = load_latest(str(tmp_path / "store"), model=fresh)
    assert state is not None and state.step == 7
    assert torch.equal(torch.get_rng_state(), before)
    assert set(state.states) == {"optimizer"}  # not loaded into anything: handed back
    assert torch.equal(fresh[0].weight, model[0].weight)


def test_plain_python_state_needs_no_torch(tmp_path: Path) -> None:
    """A program that cannot import torch saves and resumes plain data and arrays."""
    code = textwrap.dedent(
        f"""
        import sys
        sys.modules["torch"] = None  # importing torch now fails
        import numpy as np
        from vastnb_worker.checkpoint import CheckpointManager
        with CheckpointManager({str(tmp_path / "store")!r}) as ckpt:
            assert ckpt.load_latest() is None
            ckpt.save(10, extras={{"weights": np.arange(4.0), "best": {{"loss": 0.5}}, "tags": ("a", "b")}})
        with CheckpointManager({str(tmp_path / "store")!r}) as ckpt:
            state = ckpt.load_latest()
        print(state.step, state.extras["weights"].tolist(), state.extras["best"], state.extras["tags"])
        print([p.codec for p in state.info.parts])
        """
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == ["10 [0.0, 1.0, 2.0, 3.0] {'loss': 0.5} ('a', 'b')", "['pickle']"]


def test_objects_that_are_not_plain_data_are_refused_at_save(tmp_path: Path) -> None:
    class Config:
        lr = 0.1

    with CheckpointManager(tmp_path / "store") as ckpt:
        with pytest.raises(CheckpointError, match=r"extras\['config'\].*Config.*plain data"):
            ckpt.save(1, extras={"config": Config()})
        with pytest.raises(TypeError, match="state_dict"):
            ckpt.save(2, model={"not": "a module"})
    assert CheckpointManager(tmp_path / "store").checkpoints() == []


class Exploit:
    def __reduce__(self) -> tuple[Any, ...]:
        return (exec, ("open('PWNED', 'w').write('ran')",))


@pytest.mark.parametrize("codec", ["pickle", "torch"])
def test_a_checkpoint_that_would_run_code_is_never_loaded(tmp_path: Path, codec: str) -> None:
    """Someone with write access to the bucket plants a checkpoint with a valid manifest
    whose object runs code when unpickled: it is skipped with a warning, nothing runs."""
    store_dir = tmp_path / "store"
    model, _optimizer, _scheduler = tiny()
    with CheckpointManager(store_dir) as ckpt:
        ckpt.save(1, model=model)
    evil = tmp_path / "evil"
    if codec == "torch":
        torch.save({"weight": Exploit()}, evil)
    else:
        evil.write_bytes(pickle.dumps({"step": 2, "extras": Exploit()}))
    size, digest = file_sha256(str(evil))
    name = "model" if codec == "torch" else "state"
    key = f"ckpt-000000000002-0000beef/{name}.{'pt' if codec == 'torch' else 'pkl'}"
    store = open_store(str(store_dir))
    store.put_file(key, str(evil))
    info = CheckpointInfo(
        id="ckpt-000000000002-0000beef", step=2, time=0.0, parts=(Part(name, key, size, digest, codec),)
    )
    store.put_bytes(info.manifest_key, info.to_json())

    with pytest.warns(CheckpointWarning, match="step 2.*(not plain data|more than tensors)"):
        state = load_latest(str(store_dir), model=tiny()[0])
    assert state is not None and state.step == 1
    assert not (tmp_path / "PWNED").exists()


def test_extras_mixing_tensors_arrays_and_torch_types_round_trip(tmp_path: Path) -> None:
    extras = {
        "t": torch.ones(2),
        "a": np.arange(3),
        "s": np.float32(2.5),
        "dtype": torch.float16,
        "shape": torch.Size([2, 3]),
        "nested": {"x": (1, [torch.zeros(1)])},
    }
    with CheckpointManager(tmp_path / "store") as ckpt:
        ckpt.save(1, extras=extras)
    state = load_latest(str(tmp_path / "store"))
    assert state is not None and [p.codec for p in state.info.parts] == ["torch"]
    got = state.extras
    assert torch.equal(got["t"], extras["t"]) and got["a"].tolist() == [0, 1, 2] and got["s"] == np.float32(2.5)
    assert got["dtype"] is torch.float16 and got["shape"] == torch.Size([2, 3])
    assert torch.equal(got["nested"]["x"][1][0], torch.zeros(1))


def test_every_seconds_and_force(tmp_path: Path) -> None:
    with CheckpointManager(tmp_path / "a", every_seconds=3600) as ckpt:
        assert ckpt.save(1, extras={}) is None  # an hour has not passed
        assert ckpt.save(2, extras={}, force=True) is not None
    with CheckpointManager(tmp_path / "b", every_seconds=0, keep_last=None) as ckpt:
        assert all(ckpt.save(n, extras={}) is not None for n in range(3))
        assert ckpt.save(2, extras={}) is None  # the same step twice is saved once
    assert [c.step for c in list_checkpoints(str(tmp_path / "b"))] == [2, 1, 0]
