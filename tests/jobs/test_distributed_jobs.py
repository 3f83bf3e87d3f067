"""A job in ranks: ``vast.submit(..., nproc=N)`` runs its call in every rank on the box; when
the box is preempted, the whole group starts again on the next one, from the checkpoint
rank 0 saved (every rank loads it), and ends where an uninterrupted run does."""

from __future__ import annotations

from pathlib import Path

import pytest

from vastnb import Client, JobState
from vastnb.errors import ConfigError

from . import work
from .conftest import billing, wait_for


def test_a_job_in_two_ranks_is_preempted_and_the_group_resumes_on_a_new_box(vast: Client, tmp_path: Path) -> None:
    ckpt = tmp_path / "runs" / "ranked"
    job = vast.submit(
        work.train, args=(50, 10, 0.05), profile="inference-batch", name="ranked", checkpoint=str(ckpt), nproc=2
    )
    wait_for(lambda: "[r1] step 25 " in job.logs(), message="both ranks at step 25")
    first = job.record.instance_id
    assert vast.sim is not None and first is not None
    vast.sim.market.preempt(first, resume_after=None)
    assert job.wait(timeout=180) is JobState.SUCCEEDED
    result = job.result()  # rank 0's
    assert result["w"] == work.reference(50)
    assert result["start"] > 0 and result["attempt"] == 2  # resumed, in the job's second attempt
    logs = job.logs()
    assert "[r0] attempt 2 starts at step" in logs and "[r1] attempt 2 starts at step" in logs
    steps = list(vast.checkpoints(str(ckpt)).step)
    assert steps and len(steps) == len(set(steps))  # one rank saved each: no step twice
    wait_for(lambda: not billing(vast), timeout=30, message="nothing billing")


def test_a_job_asks_for_ranks_it_can_have(vast: Client) -> None:
    with pytest.raises(ConfigError, match="nproc must be 'gpu'"):
        vast.submit(work.fail, args=("x",), profile="dev-test", nproc=0)


def test_a_sharded_job_checkpoints_through_dcp_and_resumes_on_a_new_box(vast: Client, tmp_path: Path) -> None:
    import json

    import torch

    ckpt = tmp_path / "runs" / "sharded"
    job = vast.submit(
        work.train_fsdp, args=(30, 5, 0.1), profile="inference-batch", name="sharded", checkpoint=str(ckpt), nproc=2
    )
    wait_for(lambda: "[r1] step 12 " in job.logs(), timeout=120, message="both ranks at step 12")
    first = job.record.instance_id
    assert vast.sim is not None and first is not None
    vast.sim.market.preempt(first, resume_after=None)
    assert job.wait(timeout=240) is JobState.SUCCEEDED
    result = job.result()
    assert result["start"] > 0  # the group resumed from a checkpoint, not from scratch
    assert "[r0] starts at step 0" in job.logs() and f"[r1] starts at step {result['start']}" in job.logs()
    expected = work.fsdp_reference(30)  # one process over the whole batch: the same within float error
    for name, value in expected.items():
        torch.testing.assert_close(result["w"][name], value, rtol=1e-4, atol=1e-5)
    # Each checkpoint holds both ranks' shards and DCP's metadata as JSON: no pickle in the store.
    manifests = sorted(ckpt.glob("ckpt-*.json"))
    assert manifests
    for manifest in manifests:
        parts = {part["name"]: part["codec"] for part in json.loads(manifest.read_text())["parts"]}
        assert parts == {"__0_0": "dcp", "__1_0": "dcp", "dcp_metadata": "dcp-metadata", "state": "pickle"}
    assert not list(ckpt.rglob(".metadata"))
    wait_for(lambda: not billing(vast), timeout=30, message="nothing billing")
