"""SIGTERM to a real training process: uploads in flight finish, a final checkpoint is
written, the process exits, and the resumed run ends exactly where an uninterrupted run
ends."""

from __future__ import annotations

import signal
from pathlib import Path
from typing import Any

import pytest
import torch

from vastnb import CheckpointManager, load_latest
from vastnb_worker.checkpoint import list_checkpoints

from . import train as program
from .conftest import run_program, wait_for_line

STEPS = 20


@pytest.fixture
def one_thread() -> Any:
    """Train with one thread, as train.py does, for bit-identical arithmetic."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_sigterm_during_an_upload_then_resume_matches_an_uninterrupted_run(
    tmp_path: Path, moto_url: str, bucket: str, one_thread: None, capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"s3://{bucket}/runs/exp1"
    # Checkpoints every 5 steps, each with 32 MiB of extra state, so that the upload of
    # step 10 is under way when SIGTERM arrives; the program then waits in a "long step".
    first = run_program(
        "train.py", url, "--endpoint", moto_url, "--steps", STEPS, "--every", 5, "--big", 32, "--wait-at", 10
    )
    assert wait_for_line(first, "start") == "start 0"
    assert wait_for_line(first, "saved") == "saved 5"
    assert wait_for_line(first, "saved") == "saved 10"
    wait_for_line(first, "waiting")
    first.send_signal(signal.SIGTERM)
    # The loop reached save() at step 11: a final checkpoint there, every upload done, exit
    # (save() does not return: "saved 11" is never printed).
    assert first.wait(timeout=60) == 128 + signal.SIGTERM
    assert [c.step for c in list_checkpoints(url, endpoint_url=moto_url)] == [11, 10, 5]
    with CheckpointManager(url, endpoint_url=moto_url, cache=False) as ckpt:
        assert ckpt.load(10).step == 10  # the upload SIGTERM interrupted is complete and intact

    # The resumed run, in this process (a second torch process costs seconds to start).
    argv = [url, "--endpoint", moto_url, "--steps", str(STEPS), "--every", "5", "--out", str(tmp_path / "resumed.pt")]
    assert program.main(argv) == 0
    assert capsys.readouterr().out.startswith("start 12\n")

    model, optimizer, scheduler = program.build()
    for _ in range(STEPS):
        program.train_step(model, optimizer, scheduler)
    weights = torch.load(tmp_path / "resumed.pt", weights_only=True)
    assert weights.keys() == model.state_dict().keys()
    for name, value in model.state_dict().items():
        assert torch.equal(weights[name], value), name


def test_a_step_that_outlasts_the_grace_period_still_ends_the_process(tmp_path: Path) -> None:
    """The loop never gets back to save(): the checkpoint already in flight is completed,
    and the process exits when the grace period ends, as SIGTERM would have ended it."""
    url = str(tmp_path / "store")
    process = run_program("plain.py", url, "--steps", 10, "--every", 3, "--hang-at", 3, "--grace", 1, "--big", 16)
    wait_for_line(process, "hanging")
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=60) == 128 + signal.SIGTERM
    state = load_latest(url)
    assert state is not None and state.step == 3 and len(state.extras["big"]) == 16 << 20


def test_sigterm_is_left_alone_when_asked_and_restored_after_close(tmp_path: Path) -> None:
    before = signal.getsignal(signal.SIGTERM)
    with CheckpointManager(tmp_path / "a", handle_sigterm=False) as ckpt:
        assert signal.getsignal(signal.SIGTERM) == before and not ckpt.preemption.installed
    with CheckpointManager(tmp_path / "b") as ckpt:
        assert ckpt.preemption.installed and signal.getsignal(signal.SIGTERM) != before
    assert signal.getsignal(signal.SIGTERM) == before
