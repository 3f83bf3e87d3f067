"""Every way a job's box can fail it, and every way a job ends, through a real controller
process and real worker processes: what the user sees, and nothing left billing."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from vastnb import Client, JobState
from vastnb.errors import JobError, NoOffersError, RemoteError

from . import work
from .conftest import billing, wait_for

J = JobState
pytestmark = pytest.mark.filterwarnings("ignore::vastnb.errors.JobWarning")  # jobs without a checkpoint, on purpose


def _submit_train(vast: Client, tmp_path: Path, name: str, steps: int = 60, **kwargs: object):  # type: ignore[no-untyped-def]
    kwargs.setdefault("profile", "inference-batch")
    kwargs.setdefault("max_recoveries", 3)
    return vast.submit(
        work.train, args=(steps, 10, 0.05), name=name, checkpoint=str(tmp_path / "runs" / name), **kwargs
    )


def _at_step(job, step: int) -> None:  # type: ignore[no-untyped-def]
    wait_for(lambda: f"step {step} " in job.logs(), timeout=60, message=f"step {step} in the job's output")


def _events(job) -> list[str]:  # type: ignore[no-untyped-def]
    return list(job.events().event)


def _nothing_billing(vast: Client) -> None:
    wait_for(lambda: not billing(vast), timeout=30, message="no simulated instance left")


def test_a_killed_controller_is_replaced_and_adopts_the_running_job_without_running_it_twice(
    vast: Client, tmp_path: Path
) -> None:
    job = _submit_train(vast, tmp_path, "adopted")
    _at_step(job, 15)
    pid = vast.controller.status()["pid"]
    box = job.record.instance_id
    os.kill(pid, signal.SIGKILL)
    wait_for(lambda: not vast.controller.status()["running"], message="the controller gone")
    assert job.wait(timeout=120) is J.SUCCEEDED  # wait() starts a controller when none runs
    assert vast.controller.status()["pid"] != pid
    result = job.result()
    assert result["w"] == work.reference(60)
    record = job.record
    assert (record.attempts, record.recoveries, record.instance_id) == (1, 0, box)  # the same task, adopted
    assert result["start"] == 0
    assert _events(job).count("running") == 1 and _events(job).count("adopted") == 1
    _nothing_billing(vast)


def test_a_dead_worker_on_a_running_box_is_replaced(vast: Client, tmp_path: Path) -> None:
    job = _submit_train(vast, tmp_path, "deadworker", profile="dev-test")
    _at_step(job, 15)
    first = job.record.instance_id
    assert vast.sim is not None and first is not None
    vast.sim.kill_worker(first)
    assert job.wait(timeout=120) is J.SUCCEEDED
    assert job.result()["w"] == work.reference(60)
    events = _events(job)
    assert "worker died" in events and job.record.instance_id != first
    _nothing_billing(vast)


def test_a_host_gone_offline_is_recovered_from(vast: Client, tmp_path: Path) -> None:
    job = _submit_train(vast, tmp_path, "offline", profile="dev-test")
    _at_step(job, 15)
    first = job.record.instance_id
    assert vast.sim is not None and first is not None
    vast.sim.set_status(first, "offline")
    assert job.wait(timeout=120) is J.SUCCEEDED
    assert job.result()["w"] == work.reference(60)
    assert "offline" in _events(job)
    _nothing_billing(vast)


def test_outbid_by_another_renter_is_told_apart_from_a_plain_preemption(vast: Client, tmp_path: Path) -> None:
    job = _submit_train(vast, tmp_path, "outbid")
    _at_step(job, 15)
    assert vast.sim is not None
    vast.sim.outbid(job.record.instance_id)  # type: ignore[arg-type]
    assert job.wait(timeout=120) is J.SUCCEEDED
    events = job.events()
    row = events[events.event == "outbid"].iloc[0]
    assert "another renter" in row.detail and row.dph_total > 0
    assert job.result()["w"] == work.reference(60)
    _nothing_billing(vast)


def test_the_users_exception_fails_the_job_at_once_and_is_raised_by_result(vast: Client) -> None:
    job = vast.submit(work.fail, args=("bad input",), profile="dev-test", name="broken", max_recoveries=3)
    assert job.wait(timeout=60) is J.FAILED
    with pytest.raises(RemoteError, match="bad input") as caught:
        job.result()
    assert caught.value.remote_type == "ValueError" and "work.py" in caught.value.remote_traceback
    assert job.record.attempts == 1 and "preempted" not in _events(job)
    assert "ValueError: bad input" in (job.record.error or "")
    _nothing_billing(vast)


def test_retry_on_error_runs_the_code_again_on_the_same_box(vast: Client) -> None:
    job = vast.submit(work.fail, args=("flaky",), profile="dev-test", name="flaky", retry_on_error=2)
    assert job.wait(timeout=60) is J.FAILED
    record = job.record
    assert (record.attempts, record.error_retries, record.recoveries) == (3, 2, 0)
    assert _events(job).count("error, retrying") == 2
    _nothing_billing(vast)


def test_cancelling_a_running_job_stops_it_and_destroys_its_box(vast: Client, tmp_path: Path) -> None:
    job = _submit_train(vast, tmp_path, "cancelme", steps=400, profile="dev-test")
    _at_step(job, 5)
    job.cancel()
    assert job.state is J.CANCELLED
    _nothing_billing(vast)  # the cancel destroyed it, without waiting for the controller
    with pytest.raises(JobError, match="cancelled"):
        job.result()
    time.sleep(1.0)  # the controller saw it too, and ran nothing more
    assert job.state is J.CANCELLED and not billing(vast)


def test_a_job_that_loses_more_boxes_than_allowed_fails_saying_so(vast: Client, tmp_path: Path) -> None:
    job = _submit_train(vast, tmp_path, "fragile", max_recoveries=0)
    _at_step(job, 12)
    assert vast.sim is not None
    vast.sim.preempt(job.record.instance_id, resume_after=None)  # type: ignore[arg-type]
    assert job.wait(timeout=60) is J.FAILED
    with pytest.raises(JobError, match="gave up after 0 recoveries"):
        job.result()
    _nothing_billing(vast)


def test_a_box_stopped_by_its_user_is_not_taken_for_a_preemption(vast: Client, tmp_path: Path) -> None:
    job = _submit_train(vast, tmp_path, "userstop", steps=400, profile="dev-test")
    _at_step(job, 5)
    vast.api.stop_instance(job.record.instance_id)  # at the console, not through vastnb
    assert job.wait(timeout=60) is J.FAILED
    assert "stopped outside vastnb" in (job.record.error or "")
    assert job.record.recoveries == 0
    _nothing_billing(vast)


def test_a_profile_no_offer_fits_is_refused_at_submit_and_nothing_is_queued(vast: Client, tmp_path: Path) -> None:
    import dataclasses

    impossible = dataclasses.replace(vast.profile("training-standard"), name="too-cheap", max_price_per_hour=0.001)
    with pytest.raises(NoOffersError, match="No offer matches profile 'too-cheap'"):
        vast.submit(work.sleep_then, args=(0, 1), profile=impossible, name="nooffers", checkpoint=str(tmp_path))
    assert vast.jobs().empty and not vast.controller.status()["running"] and not billing(vast)


def test_a_box_stuck_loading_is_given_up_and_another_offer_taken(jobs_client, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from vastnb.lifecycle.launch import LaunchPolicy

    vast = jobs_client(launch_policy=LaunchPolicy(poll=0.05, load_deadline=2.0, connect_deadline=30.0))
    assert vast.sim is not None
    vast.sim.stall_loading(1)
    job = vast.submit(work.sleep_then, args=(0, 42), profile="dev-test", name="stuck", checkpoint=str(tmp_path))
    assert job.result(timeout=120) == 42
    assert "launch retry" in _events(job)
    _nothing_billing(vast)


def test_the_job_outlives_the_kernel_that_submitted_it(jobs_client, home: Path, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    kernel = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time; sys.path.insert(0, sys.argv[1]);"
            "from tests.jobs import work; from tests.jobs.conftest import FAST_SIM, FAST_POLICY, FAST_CONTROLLER;"
            "import vastnb;"
            "vast = vastnb.Client(backend='sim', sim_config=FAST_SIM, launch_policy=FAST_POLICY, controller=FAST_CONTROLLER);"
            "vast.submit(work.train, args=(40, 10, 0.05), profile='dev-test', name='orphaned', checkpoint=sys.argv[2]);"
            "print('submitted', flush=True); time.sleep(600)",
            str(Path(__file__).parents[2]),
            str(tmp_path / "runs"),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert kernel.stdout is not None and kernel.stdout.readline().strip() == "submitted"
    vast = jobs_client()
    job = vast.job("orphaned")
    _at_step(job, 5)
    kernel.kill()  # SIGKILL: no atexit, nothing of the kernel's runs any more
    kernel.wait()
    assert job.wait(timeout=120) is J.SUCCEEDED
    assert job.result()["w"] == work.reference(40)
    _nothing_billing(vast)


def test_a_jobs_box_is_owned_by_the_job_and_listed_so(vast: Client, tmp_path: Path) -> None:
    job = _submit_train(vast, tmp_path, "owned", steps=400, profile="dev-test")
    _at_step(job, 3)
    frame = vast.instances()
    assert list(frame.owner) == [f"job {job.id}"]
    assert vast.orphans().empty
    listed = vast.jobs()
    assert listed.loc[job.id, "state"] == "running" and listed.loc[job.id, "instance"] == job.record.instance_id
    job.cancel()
    _nothing_billing(vast)


def test_a_frozen_worker_counts_as_lost_once_silent_past_the_threshold(vast: Client, tmp_path: Path) -> None:
    from vastnb_worker.relay import PID_NAME

    job = _submit_train(vast, tmp_path, "frozen", profile="dev-test")
    _at_step(job, 12)
    first = job.record.instance_id
    assert vast.sim is not None and vast.sim.market.boxes is not None and first is not None
    pid = int((vast.sim.market.boxes.home(first) / PID_NAME).read_text().split()[0])
    os.killpg(os.getpgid(pid), signal.SIGSTOP)  # alive to the market, silent to the controller
    try:
        assert job.wait(timeout=120) is J.SUCCEEDED
    finally:
        try:
            os.killpg(os.getpgid(pid), signal.SIGCONT)
        except ProcessLookupError:
            pass  # destroyed with its box
    events = job.events()
    assert "unreachable" in set(events.event)
    assert "silent" in events[events.event == "unreachable"].detail.iloc[0]
    assert job.result()["w"] == work.reference(60)
    _nothing_billing(vast)


def test_a_preempted_box_that_comes_back_in_time_is_used_again(jobs_client, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    import dataclasses

    from .conftest import FAST_CONTROLLER

    patient = dataclasses.replace(
        FAST_CONTROLLER, timing=dataclasses.replace(FAST_CONTROLLER.timing, resume_wait_s=30.0)
    )
    vast = jobs_client(controller=patient)
    job = _submit_train(vast, tmp_path, "patient")
    _at_step(job, 15)
    first = job.record.instance_id
    assert vast.sim is not None and first is not None
    vast.sim.preempt(first, resume_after=1.0)  # the bid wins again a second later
    assert job.wait(timeout=120) is J.SUCCEEDED
    assert job.result()["w"] == work.reference(60)
    record = job.record
    assert (record.instance_id, record.recoveries, record.attempts) == (first, 1, 2)
    assert any("came back" in (d or "") for d in job.events().detail)
    _nothing_billing(vast)


def test_a_new_controller_ends_what_a_killed_one_rented_but_never_recorded(vast: Client) -> None:
    import socket

    from vastnb.jobs.queue import JobQueue

    store = vast.fleet.store
    with store.transaction() as db:  # a controller's session whose process is gone
        db.execute("INSERT INTO sessions VALUES ('deadc0de', ?, 999999, 'gone', 0, NULL)", (socket.gethostname(),))
    queue = JobQueue(store, vast.fleet.url)
    job = queue.submit("lostbox", "dev-test", b"work")
    queue.claim("deadc0de")
    queue.transition(job.id, J.CANCELLED, "cancelled")
    # It was killed after the create answered and before the row was written: only the label says whose it is.
    offer = vast.select("dev-test")[0].offer
    made = vast.api.create_instance(offer.id, image="ubuntu", disk_gb=10, label="vastnb:lostbox-a1:deadc0de")
    other = vast.select("dev-test")[1].offer
    mine = vast.api.create_instance(other.id, image="ubuntu", disk_gb=10, label="my own rental")  # not vastnb's
    assert {made.id, mine.id} <= set(billing(vast))
    vast.controller.ensure()
    wait_for(lambda: made.id not in billing(vast), timeout=30, message="the unrecorded instance destroyed")
    assert mine.id in billing(vast)  # a user's own rentals are never touched


def test_attaching_to_a_jobs_box_uses_it_without_taking_it_over(jobs_client, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    vast = jobs_client()
    job = _submit_train(vast, tmp_path, "shared", steps=400, profile="dev-test")
    _at_step(job, 3)
    other = jobs_client()  # another kernel
    box = other.attach(job.record.instance_id)
    assert box.status == "running" and box.health()  # looked at from the notebook (a run would queue behind the job's)
    other.close()  # its exit ends its own boxes, not the job's
    assert job.record.instance_id in billing(vast) and job.state is J.RUNNING
    assert list(vast.instances().owner) == [f"job {job.id}"]
    job.cancel()
    _nothing_billing(vast)


def test_a_replacement_that_cannot_be_rented_yet_is_tried_again_after_a_backoff(jobs_client, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from vastnb.lifecycle.launch import LaunchPolicy

    vast = jobs_client(launch_policy=LaunchPolicy(poll=0.05, load_deadline=1.0, connect_deadline=30.0, attempts=2))
    job = _submit_train(vast, tmp_path, "patient-market", max_recoveries=4)
    _at_step(job, 12)
    assert vast.sim is not None
    vast.sim.stall_loading(2)  # the next two boxes never come up: the first replacement launch fails
    vast.sim.preempt(job.record.instance_id, resume_after=None)  # type: ignore[arg-type]
    assert job.wait(timeout=120) is J.SUCCEEDED
    assert job.result()["w"] == work.reference(60)
    events = _events(job)
    assert events.count("launch failed") == 1 and job.record.recoveries == 2
    _nothing_billing(vast)
