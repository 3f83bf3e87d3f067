"""Sharded state (FSDP) checkpointed through torch.distributed.checkpoint by vastnb's
stores: every rank writes its own shards, DCP's metadata is stored as checked JSON (never a
pickle), and a resume on another number of ranks reshards. Real processes under torch's
own launcher (gloo on the CPU), a real folder and moto's S3 server."""

from __future__ import annotations

import io
import json
import os
import pickle
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from vastnb_worker.checkpoint import CheckpointManager, CheckpointWarning
from vastnb_worker.checkpoint.dcpmeta import from_json, to_json
from vastnb_worker.checkpoint.manifest import file_sha256

from .conftest import HERE

torch = pytest.importorskip("torch")


def launch(nproc: int, url: str, endpoint: str, steps: int, every: int, out: Path) -> str:
    """Run ``sharded.py`` in ``nproc`` ranks under torch.distributed.run; its output."""
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={nproc}"]
    command += [str(HERE / "sharded.py"), url, endpoint, str(steps), str(every), str(out)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=240, env=dict(os.environ))
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


@pytest.fixture(params=["local", "s3"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[str, str]:
    """(url, endpoint) the training program checkpoints to."""
    if request.param == "local":
        return str(tmp_path / "store"), "-"
    return f"s3://{request.getfixturevalue('bucket')}/runs/fsdp", request.getfixturevalue("moto_url")


def test_every_rank_saves_its_shards_and_a_resume_on_fewer_ranks_ends_as_one_process_would(
    store: tuple[str, str], tmp_path: Path
) -> None:
    url, endpoint = store
    first = launch(2, url, endpoint, steps=6, every=2, out=tmp_path / "first.pt")
    assert first.count("start 0") == 2
    manager = CheckpointManager(url, **({} if endpoint == "-" else {"endpoint_url": endpoint}))
    infos = manager.checkpoints()
    assert [info.step for info in infos] == [4, 2]
    for info in infos:  # both ranks' shards, DCP's metadata as JSON, the plain state
        assert {(p.name, p.codec) for p in info.parts} == {
            ("__0_0", "dcp"),
            ("__1_0", "dcp"),
            ("dcp_metadata", "dcp-metadata"),
            ("state", "pickle"),
        }
    manager.close()
    # One rank now: DCP reshards the two ranks' shards into one.
    second = launch(1, url, endpoint, steps=10, every=2, out=tmp_path / "second.pt")
    assert "start 5" in second
    whole = torch.load(tmp_path / "second.pt")
    sys.path.insert(0, str(HERE))
    try:
        import sharded
    finally:
        sys.path.remove(str(HERE))
    for name, value in sharded.reference(10).items():  # float error apart: ranks sum in another order
        torch.testing.assert_close(whole[name], value, rtol=1e-4, atol=1e-5)


def test_a_notebook_loads_a_sharded_checkpoint_into_a_plain_model_and_skips_a_forged_one(tmp_path: Path) -> None:
    url = str(tmp_path / "store")
    launch(2, url, "-", steps=5, every=2, out=tmp_path / "out.pt")
    newest = sorted(Path(url).glob("ckpt-*.json"))[-1]
    # Someone with write access to the bucket points the metadata at a file outside the
    # checkpoint, and fixes the manifest's checksums to match.
    metadata = newest.with_suffix("") / "dcp_metadata.json"
    body = json.loads(metadata.read_text())
    body["storage"][0][3] = "../../__0_0.distcp"
    metadata.write_text(json.dumps(body))
    manifest = json.loads(newest.read_text())
    for part in manifest["parts"]:
        if part["name"] == "dcp_metadata":
            part["size"], part["sha256"] = file_sha256(str(metadata))
    manifest["size"] = sum(part["size"] for part in manifest["parts"])
    newest.write_text(json.dumps(manifest))

    model = torch.nn.Sequential(torch.nn.Linear(4, 16), torch.nn.Tanh(), torch.nn.Linear(16, 1))
    with CheckpointManager(url) as manager, pytest.warns(CheckpointWarning, match="step 4.*not a shard file"):
        state = manager.load_latest(model=model, restore_rng=False)
    assert state is not None and state.step == 2


@pytest.mark.filterwarnings("ignore:torch.distributed is disabled")
def test_dcp_metadata_round_trips_as_json_and_anything_else_is_refused(tmp_path: Path) -> None:
    import torch.distributed.checkpoint as dcp

    state = {"model": {"w": torch.arange(12.0).reshape(3, 4), "b": torch.zeros(2, dtype=torch.int64)}, "lr": 0.1}
    dcp.save(state, storage_writer=dcp.FileSystemWriter(str(tmp_path)))
    pickled = (tmp_path / ".metadata").read_bytes()
    original = pickle.loads(pickled)
    data = to_json(pickled)
    rebuilt = from_json(data, {"__0_0.distcp"})
    assert rebuilt.state_dict_metadata == original.state_dict_metadata
    assert rebuilt.storage_data == original.storage_data
    assert rebuilt.planner_data == original.planner_data

    def forged(change: Any) -> bytes:
        body = json.loads(data)
        change(body)
        return json.dumps(body).encode()

    refused = {
        "a file the manifest does not list": forged(lambda b: b["storage"][0].__setitem__(3, "__9_0.distcp")),
        "a path out of the folder": forged(lambda b: b["storage"][0].__setitem__(3, "../__0_0.distcp")),
        "a dtype that is not torch's": forged(lambda b: b["entries"]["model.w"].__setitem__("dtype", "__class__")),
        "a chunk outside its tensor": forged(lambda b: b["entries"]["model.w"]["chunks"][0].__setitem__(1, [9, 4])),
        "a negative length": forged(lambda b: b["storage"][0].__setitem__(5, -1)),
        "storage of nothing": forged(lambda b: b["storage"][0].__setitem__(0, "model.nothing")),
        "not vastnb's": forged(lambda b: b.__setitem__("format", "pickle")),
    }
    for what, forgery in refused.items():
        with pytest.raises(ValueError):
            from_json(forgery, {"__0_0.distcp"})
            pytest.fail(f"{what} was accepted")


def test_objects_in_shards_are_read_without_running_code() -> None:
    from vastnb_worker.checkpoint.sharded import _planner

    class Payload:
        def __reduce__(self) -> Any:
            return (os.system, ("echo owned",))

    forged = io.BytesIO()
    torch.save(Payload(), forged)
    forged.seek(0)
    with pytest.raises(pickle.UnpicklingError):
        _planner().load_bytes(None, forged)
