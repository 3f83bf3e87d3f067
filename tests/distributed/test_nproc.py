"""A call in every rank of a box under torch.distributed's elastic launcher: real processes,
gloo on the CPU, a c10d rendezvous on the box's loopback (a simulated box with 4 GPUs)."""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from vastnb import Client
from vastnb.errors import ConfigError, RemoteError
from vastnb.lifecycle.box import Box

PROFILE = """\
quad:
  gpu: RTX_4090
  num_gpus: 4
  max_price_per_hour: 3.0
  min_reliability: 0.90
  max_duration_hours: 2
"""


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Client]:
    folder = tmp_path_factory.mktemp("distributed")
    (folder / "gpu_profiles.yaml").write_text(PROFILE)
    client = Client(backend="sim", home=folder / "vastnb", profiles=folder / "gpu_profiles.yaml")
    try:
        yield client
    finally:
        client.close()


@pytest.fixture(scope="module")
def box(client: Client) -> Box:
    return client.launch("quad")


def all_reduce(offset: float) -> tuple[int, int, int, float]:
    import torch
    import torch.distributed as td

    from vastnb_worker import distributed as dist, report

    backend = dist.setup()
    value = torch.tensor([float(dist.rank()) + offset])
    td.all_reduce(value)
    print(f"rank {dist.rank()} of {dist.world_size()} on {backend}", flush=True)
    report(int(offset * 10), total=value.item())  # rank 0's only
    return dist.rank(), dist.local_rank(), dist.world_size(), float(value.item())


def test_every_rank_runs_the_call_and_rank_0_answers(box: Box, capsys: pytest.CaptureFixture[str]) -> None:
    assert box.options(nproc="gpu").run(all_reduce, 0.5) == (0, 0, 4, 0 + 1 + 2 + 3 + 4 * 0.5)
    printed = capsys.readouterr().out
    for rank in range(4):  # each line streamed with its rank in front
        assert f"[r{rank}] rank {rank} of 4 on gloo" in printed
    every = box.options(nproc=2, ranks="all").run(all_reduce, 1.0)
    assert every == [(0, 0, 2, 3.0), (1, 1, 2, 3.0)]  # in rank order
    reported = box.metrics()  # rank 0's reports, out of the output
    assert reported[["step", "rank", "total"]].values.tolist() == [[5, 0, 8.0], [10, 0, 3.0]]
    assert "vastnb-metrics" not in printed + capsys.readouterr().out


def test_the_simulated_box_reports_the_gpus_it_was_rented_with(box: Box) -> None:
    gpus = box.health()["gpus"]  # from the box's nvidia-smi, as on a rented machine
    assert [(g["index"], g["name"]) for g in gpus] == [(i, "RTX 4090") for i in range(4)]
    assert box.health()["cuda_driver"] is not None


def ddp_train(steps: int, world: int) -> list[float]:
    """A linear model trained by DDP, each rank on its slice of the same global batch; or,
    with world 1 outside any launcher, the same training in one process."""
    import torch

    from vastnb_worker import distributed as dist

    torch.manual_seed(0)
    data, target = torch.randn(64, 8), torch.randn(64, 1)
    model = torch.nn.Linear(8, 1)
    if world > 1:
        dist.setup()
        model = torch.nn.parallel.DistributedDataParallel(model)
    part = slice(dist.rank() * 64 // world, (dist.rank() + 1) * 64 // world)
    optimiser = torch.optim.SGD(model.parameters(), lr=0.1)
    for _ in range(steps):
        optimiser.zero_grad()
        torch.nn.functional.mse_loss(model(data[part]), target[part]).backward()
        optimiser.step()
    return [float(p) for p in torch.cat([p.detach().flatten() for p in model.parameters()])]


def test_ddp_over_four_ranks_ends_where_one_process_over_the_whole_batch_does(box: Box) -> None:
    alone = box.run(ddp_train, 20, 1)
    together = box.options(nproc=4).run(ddp_train, 20, 4)
    # DDP averages the ranks' gradients: the mean of 4 slice means is the whole batch's mean.
    assert together == pytest.approx(alone, rel=1e-5, abs=1e-6)


def fails_in(bad_rank: int, how: str) -> None:
    import os
    import signal
    import time

    if int(os.environ["RANK"]) == bad_rank:
        if how == "raise":
            raise ValueError(f"rank {bad_rank} cannot go on")
        os.kill(os.getpid(), signal.SIGKILL)
    time.sleep(60)  # the others wait: the launcher must end them


def test_a_rank_that_raises_ends_the_group_and_is_named(box: Box) -> None:
    with pytest.raises(RemoteError, match=r"rank 2 of 4 failed(.|\n)*ValueError: rank 2 cannot go on"):
        box.options(nproc=4).run(fails_in, 2, "raise")
    assert box.run(sum, [1, 2]) == 3  # the worker goes on


def test_a_rank_that_is_killed_ends_the_group_and_is_named(box: Box) -> None:
    with pytest.raises(RemoteError, match=r"rank 1 of 2 failed \(exit code -9\)"):
        box.options(nproc=2).run(fails_in, 1, "kill")


@pytest.mark.parametrize("nproc", [0, -1, "cpu", 2.5, True])
def test_a_bad_number_of_ranks_is_refused_before_anything_runs(box: Box, nproc: Any) -> None:
    with pytest.raises(ConfigError, match="nproc must be 'gpu'"):
        box.options(nproc=nproc)


def test_ranks_must_be_0_or_all(box: Box) -> None:
    with pytest.raises(ConfigError, match="ranks must be '0'"):
        box.options(nproc=2, ranks="1")


def sleepy() -> None:
    import time

    print("waiting", flush=True)
    time.sleep(120)


def ranks_running() -> int:
    """Rank processes alive on this box (the launcher starts them with rank_main). The
    simulated boxes share this machine's process table: a box's own have its HOME."""
    import os

    mine = f"HOME={os.environ['HOME']}".encode()
    count = 0
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                ranked = b"rank_main" in f.read()
            with open(f"/proc/{pid}/environ", "rb") as f:
                count += ranked and mine in f.read().split(b"\0")
        except OSError:
            continue
    return count


def test_ctrl_c_stops_every_rank_and_the_next_ctrl_c_still_works(box: Box) -> None:
    assert box.options(nproc=2).run(ranks_running) == 2  # while ranks run, they are seen
    for run in (box.options(nproc=3).run, box.run):  # after ranks, a plain call's Ctrl-C too
        timer = threading.Timer(4.0, os.kill, (os.getpid(), signal.SIGINT))
        timer.start()
        try:
            with pytest.raises(KeyboardInterrupt):
                run(sleepy)
        finally:
            timer.cancel()
        assert box.run(ranks_running) == 0


CELL = """
from vastnb_worker import distributed as dist
dist.setup()
import torch, torch.distributed as td
total = torch.tensor([float(dist.rank() + base)])
td.all_reduce(total)
mine = dist.rank()
print("rank", mine, "has", total.item())
total.item() * 2
"""


def test_a_cell_runs_in_every_rank_and_rank_0_s_names_come_back(box: Box) -> None:
    result = box.options(nproc=2).run_cell(CELL, push={"base": 5}, pull=["mine"])
    assert dict(result) == {"mine": 0} and result.value == (5 + 6) * 2


def test_vast_run_nproc_in_a_notebook(client: Client, box: Box, capsys: pytest.CaptureFixture[str]) -> None:
    from IPython.core.interactiveshell import InteractiveShell

    from vastnb.front.magics import VastMagics

    shell = InteractiveShell.instance()
    shell.register_magics(VastMagics(shell, client=client))
    shell.user_ns["base"] = 1
    shell.run_cell_magic("vast", f"run --on {box.name} --nproc gpu --pull mine", CELL)
    assert shell.user_ns["mine"] == 0
    out = capsys.readouterr().out
    assert all(f"[r{r}] rank {r} has {4 + 6:.1f}" in out for r in range(4))  # 1 + 2 + 3 + 4
