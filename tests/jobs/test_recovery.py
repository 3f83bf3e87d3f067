"""A job survives the loss of its box: preempted, its box is replaced and training resumes
from the latest checkpoint, ending bit-identical to an uninterrupted run."""

from __future__ import annotations

from pathlib import Path

import pytest

from vastnb import Client, JobState

from . import work
from .conftest import billing, wait_for


def _step_seen(job, step: int) -> bool:  # type: ignore[no-untyped-def]
    return f"step {step} " in job.logs()


def test_a_preempted_job_resumes_on_a_new_box_and_ends_as_if_never_interrupted(vast: Client, tmp_path: Path) -> None:
    ckpt = tmp_path / "runs" / "exp1"
    job = vast.submit(
        work.train, args=(60, 10, 0.05), profile="inference-batch", name="exp1", checkpoint=str(ckpt), max_recoveries=3
    )
    wait_for(lambda: _step_seen(job, 25), message="step 25")
    first = job.record.instance_id
    assert vast.sim is not None and first is not None
    vast.sim.market.preempt(first, resume_after=None)
    assert job.wait(timeout=120) is JobState.SUCCEEDED
    result = job.result()
    assert result["w"] == work.reference(60)
    assert result["start"] > 0 and result["attempt"] == 2
    events = job.events()
    assert list(events.event).count("preempted") == 1
    assert "resumed" in set(events.event)
    assert job.record.instance_id != first
    assert "=== attempt 1" in job.logs() and "=== attempt 2" in job.logs()
    assert (ckpt / "job" / "logs.txt").read_text() == job.logs()  # beside the checkpoints too
    assert (ckpt / "job" / "result.bin").exists()
    wait_for(lambda: not billing(vast), timeout=30, message="nothing billing")


def test_follow_streams_every_attempt_live_until_the_job_ends(
    vast: Client, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    job = vast.submit(work.train, args=(30, 10, 0.05), profile="dev-test", name="followed", checkpoint=str(tmp_path))
    assert job.follow(poll=0.1) is JobState.SUCCEEDED  # from submit to the end, as it happens
    out = capsys.readouterr().out
    assert out.index("=== attempt 1") < out.index("step 0 ") < out.index("step 29 ") < out.index("followed succeeded")
    assert out.count("step 29 ") == 1  # each line once, however often it was polled
