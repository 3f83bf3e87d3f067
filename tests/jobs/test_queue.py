"""The job queue in the state store: priorities then first come, limits on active jobs,
claims that are atomic across processes, and job states that move only as allowed."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from vastnb.errors import ConfigError, LifecycleError
from vastnb.jobs.queue import JobQueue, Limits
from vastnb.jobs.states import JobState
from vastnb.lifecycle.migrations import SCHEMA_VERSION
from vastnb.lifecycle.store import StateStore

URL = "http://sim.vastnb.invalid"
J = JobState


@pytest.fixture
def queue(tmp_path: Path) -> JobQueue:
    return JobQueue(StateStore(tmp_path / "state.db"), URL)


def test_higher_priority_first_then_first_come(queue: JobQueue) -> None:
    for name, priority in [("a", 0), ("b", 5), ("c", 0), ("d", 5), ("e", -1)]:
        queue.submit(name, "dev-test", b"work", priority=priority)
    claimed = [queue.claim("ctl") for _ in range(6)]
    assert [c.name if c else None for c in claimed] == ["b", "d", "a", "c", "e", None]
    assert all(c.state is J.PROVISIONING and c.controller == "ctl" for c in claimed if c)


def test_limits_hold_jobs_back_in_all_and_per_profile(queue: JobQueue) -> None:
    queue.submit("big1", "training-distributed", b"w")
    queue.submit("big2", "training-distributed", b"w")
    queue.submit("small", "dev-test", b"w")
    limits = Limits(total=2, per_profile={"training-distributed": 1})
    first, second = queue.claim("ctl", limits), queue.claim("ctl", limits)
    assert (first and first.name, second and second.name) == ("big1", "small")  # big2 waits: its profile is full
    assert queue.claim("ctl", limits) is None  # two active in all
    assert first is not None
    queue.transition(first.id, J.RUNNING, "running", instance_id=7, dph_total=2.5, attempt=True)
    queue.transition(first.id, J.SUCCEEDED, "succeeded")
    third = queue.claim("ctl", limits)
    assert third is not None and third.name == "big2"


def test_a_job_moves_only_as_its_states_allow_and_says_what_happened(queue: JobQueue) -> None:
    job = queue.submit("exp1", "dev-test", b"w", checkpoint="s3://bucket/runs/exp1", max_recoveries=3)
    assert (job.state, job.checkpoint, job.max_recoveries, job.attempts) == (J.QUEUED, "s3://bucket/runs/exp1", 3, 0)
    with pytest.raises(LifecycleError, match="cannot go from queued to running"):
        queue.transition(job.id, J.RUNNING, "running")  # a controller claims it first
    claimed = queue.claim("ctl")
    assert claimed is not None and claimed.id == job.id
    queue.transition(job.id, J.RUNNING, "running", "instance 7", instance_id=7, dph_total=0.2, attempt=True)
    queue.transition(job.id, J.RECOVERING, "preempted", "outbid", instance_id=7)
    queue.transition(job.id, J.PROVISIONING, "recovering")
    queue.transition(job.id, J.RUNNING, "resumed", "at step 500", instance_id=8, dph_total=0.21, attempt=True)
    done = queue.transition(job.id, J.SUCCEEDED, "succeeded")
    assert done.state.final and done.finished_at is not None and done.attempts == 2
    with pytest.raises(LifecycleError, match="final"):
        queue.transition(job.id, J.CANCELLED, "cancelled")
    events = [(e.event, e.detail, e.instance_id) for e in queue.events(job.id)]
    assert events == [
        ("queued", "priority 0", None),
        ("claimed", "by controller ctl", None),
        ("running", "instance 7", 7),
        ("preempted", "outbid", 7),
        ("recovering", None, None),
        ("resumed", "at step 500", 8),
        ("succeeded", None, None),
    ]


def test_a_job_put_back_by_a_dead_controller_is_claimed_again(queue: JobQueue) -> None:
    job = queue.submit("exp1", "dev-test", b"w")
    assert queue.claim("dead") is not None
    back = queue.transition(job.id, J.QUEUED, "released", "its controller died before renting a box")
    assert back.state is J.QUEUED and back.controller is None
    again = queue.claim("alive")
    assert again is not None and again.id == job.id and again.controller == "alive"


def test_a_name_is_refused_while_its_job_is_live_and_found_afterwards(queue: JobQueue) -> None:
    job = queue.submit("exp1", "dev-test", b"one")
    with pytest.raises(ConfigError, match="already queued"):
        queue.submit("exp1", "dev-test", b"two")
    queue.transition(job.id, J.CANCELLED, "cancelled")
    again = queue.submit("exp1", "dev-test", b"two")  # a finished name can be used again
    assert queue.find("exp1").id == again.id and again.payload == b"two"
    with pytest.raises(ConfigError, match="no job called 'nosuch'"):
        queue.find("nosuch")
    with pytest.raises(ConfigError, match="no job 999"):
        queue.get(999)
    assert [j.name for j in queue.jobs()] == ["exp1", "exp1"]
    assert JobQueue(queue.store, "https://console.vast.ai").jobs() == []  # jobs belong to one market


def test_a_0_1_0_state_db_gains_an_empty_queue(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    path.write_bytes((Path(__file__).parents[1] / "lifecycle" / "fixtures" / "state-0.1.0.db").read_bytes())
    store = StateStore(path)
    assert store.version == SCHEMA_VERSION >= 3
    assert JobQueue(store, URL).jobs() == []


CLAIMER = """
    import json, sys, time
    from pathlib import Path
    from vastnb.jobs.queue import JobQueue
    from vastnb.lifecycle.store import StateStore
    path, name, start = Path(sys.argv[1]), sys.argv[2], float(sys.argv[3])
    queue = JobQueue(StateStore(path), "http://sim.vastnb.invalid")
    while time.time() < start:  # all together
        time.sleep(0.001)
    got = []
    while (job := queue.claim(name)) is not None:
        got.append(job.id)
    print(json.dumps(got))
"""


def test_controllers_in_several_processes_never_claim_a_job_twice(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    queue = JobQueue(StateStore(path), URL)
    ids = [queue.submit(f"job{n}", "dev-test", b"w", priority=n % 3).id for n in range(60)]
    start = time.time() + 2.0  # after every interpreter has started
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", textwrap.dedent(CLAIMER), str(path), f"ctl{n}", str(start)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for n in range(4)
    ]
    outcomes = [p.communicate(timeout=300) for p in procs]
    assert all(p.returncode == 0 for p in procs), [err for _, err in outcomes]
    claimed = [job for out, _ in outcomes for job in json.loads(out)]
    assert sorted(claimed) == sorted(ids)  # every job once, none twice
    owners = {j.id: j.controller for j in queue.jobs()}
    for n, (out, _) in enumerate(outcomes):
        assert all(owners[job] == f"ctl{n}" for job in json.loads(out))
