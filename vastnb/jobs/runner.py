"""One job's life under a controller: rent a box, send the work, watch it, recover.

A :class:`JobRunner` is a thread of the controller. It drives its job through the states
of :mod:`~vastnb.jobs.states`, recording each step as an event, and it can pick a job up
in any state a killed controller left it in:

- *provisioning* or *recovering*: a box the job already owns and that is ready is used
  (the task's tag tells whether the work was already sent: it never runs twice); any
  other box of the job is destroyed before a new one is rented.
- *running*: the job's task is found on its box and watched again from its first line.

Watching reads the task's output as it comes (into the job's files), asks the market for
the instance every ``poll_s`` (:func:`~vastnb.jobs.monitor.judge`) and pings the worker;
a worker silent for ``lost_after_s`` is lost. A lost box is destroyed (or, if the market
only stopped an interruptible one, waited for up to ``resume_wait_s``), a replacement is
rented on another machine after a backoff, and the work is sent again: the job's
``CheckpointManager()`` resumes from its latest checkpoint. The user's own exception
fails the job (run again only ``retry_on_error`` times).
"""

from __future__ import annotations

import secrets
import threading
import time
import traceback
from collections.abc import Callable
from typing import Any

from vastnb.errors import LifecycleError, TransportError, VastError
from vastnb.jobs.artifacts import JobFiles, unpack
from vastnb.jobs.monitor import GONE, LOST, Verdict, judge
from vastnb.jobs.queue import JobQueue, JobRecord
from vastnb.jobs.states import JobState
from vastnb.jobs.watch import Timing, Watcher
from vastnb.lifecycle.box import Box
from vastnb.lifecycle.fleet import Fleet
from vastnb.lifecycle.launch import LaunchEvent
from vastnb.offload.sourcemap import FIELD, TEXT, clean
from vastnb.profiles.profile import Profile
from vastnb_worker.protocol import Kind

__all__ = ["JobRunner"]

J = JobState


class _Ended(Exception):
    """The job became final elsewhere (cancelled by its user): stop working on it."""


class JobRunner(Watcher, threading.Thread):
    """Works on job ``job_id`` until it is final, or until ``stopping`` is set."""

    def __init__(
        self,
        queue: JobQueue,
        fleet: Fleet,
        files: JobFiles,
        job_id: int,
        *,
        controller: str,
        timing: Timing,
        stopping: threading.Event,
        log: Callable[[str], None] = print,
    ) -> None:
        super().__init__(name=f"vastnb-job-{job_id}", daemon=True)
        self.queue, self.fleet, self.files, self.job_id = queue, fleet, files, job_id
        self.controller, self.timing, self.stopping, self.log = controller, timing, stopping, log
        self.avoid: set[int] = set()  # machines that failed this job

    # -- the job's life -----------------------------------------------------------------

    def run(self) -> None:
        try:
            self._run()
        except _Ended:
            pass
        except Exception as exc:  # noqa: BLE001 - a controller's fault must end the job clearly, never silently
            self.log(f"job {self.job_id}: {traceback.format_exc()}")
            self._finish(J.FAILED, "failed", f"the controller failed: {type(exc).__name__}: {exc}")
        finally:
            if not self.stopping.is_set():
                self._clean_up()

    def _run(self) -> None:
        job = self.queue.get(self.job_id)
        if job.controller != self.controller:  # a controller that was stopped or killed had it
            self.queue.place(job.id, instance_id=job.instance_id, task_id=job.task_id, controller=self.controller)
            self.queue.note(job.id, "adopted", f"by controller {self.controller} (from {job.controller or 'none'})")
        box, task = self._adopt(job)
        while not self.stopping.is_set():
            job = self._job()
            if box is None:
                box = self._provision(job)
                if box is None:
                    return
                job = self._job()
            if task is None:
                try:
                    task = self._send(box, job)
                except TransportError as exc:  # the box went as the work was sent: a lost box
                    box = self._recover(box, job, Verdict(LOST, f"sending the work failed: {exc}"[:300], True))
                    continue
                job = self._job()
            outcome = self.watch(box, job, task)
            if outcome.how == "detached":
                return
            task = None
            if outcome.how == "done":
                self.files.save_result(outcome.body, outcome.buffers or [])
                self._finish(J.SUCCEEDED, "succeeded", f"after {job.attempts} attempt(s)", box=box)
                return
            if outcome.how == "cancelled":
                self._destroy(box, "its job was cancelled")
                return
            if outcome.how == "budget":  # stopped, its last output read: the budget is not spent waiting
                self._destroy(box, "its job's budget was reached")
                return
            if outcome.how == "error":
                meta = outcome.meta or {}
                error = (
                    f"{clean(meta.get('type'), FIELD, oneline=True) or 'Exception'}: {clean(meta.get('message'), TEXT)}"
                )
                if job.error_retries < int(job.settings.get("retry_on_error", 0)):
                    self._move(J.RUNNING, "error, retrying", error[:500], error_retry=True)
                    continue  # the same box: nothing was wrong with it
                self.files.save_error(meta, outcome.body)
                self._finish(J.FAILED, "failed", error[:500], error=error, box=box)
                return
            assert outcome.verdict is not None
            box = self._recover(box, job, outcome.verdict)

    def _job(self) -> JobRecord:
        job = self.queue.get(self.job_id)
        if job.state.final:
            raise _Ended
        return job

    def _move(self, state: JobState, event: str, detail: str | None = None, **kwargs: Any) -> JobRecord:
        """Change the job's state, unless its user ended it meanwhile (then stop)."""
        try:
            return self.queue.transition(self.job_id, state, event, detail, **kwargs)
        except LifecycleError:
            if self.queue.get(self.job_id).state.final:
                raise _Ended from None
            raise

    def _finish(
        self, state: JobState, event: str, detail: str, *, error: str | None = None, box: Box | None = None
    ) -> None:
        if box is not None:
            self._destroy(box, f"its job {event}")
        self._publish()
        try:
            self.queue.transition(
                self.job_id, state, event, detail, error=error or (detail if state is J.FAILED else None)
            )
        except LifecycleError:
            pass  # already final (cancelled meanwhile): that stands

    def _publish(self) -> None:
        """The job's output and outcome beside its checkpoints too (best effort: the copy
        under VASTNB_HOME is the one ``job.result()`` reads)."""
        url = self.queue.get(self.job_id).checkpoint
        if not url:
            return
        try:
            self.files.publish(url)
        except Exception as exc:  # noqa: BLE001 - no credentials here, a bucket away: the job's outcome stands
            self.queue.note(self.job_id, "artifacts not copied", f"to {url}: {type(exc).__name__}: {exc}"[:300])

    # -- adopting what a previous controller left ------------------------------------------

    def _adopt(self, job: JobRecord) -> tuple[Box | None, int | None]:
        """The box (and task) the job already has and can go on with; other boxes of the
        job are destroyed."""
        keep: Box | None = None
        task: int | None = None
        for rental in self.fleet.store.instances(self.fleet.url):
            if rental.job != job.id:
                continue
            usable = rental.keep and keep is None and (job.instance_id in (None, rental.id))
            if usable:
                box = Box(self.fleet, rental)
                found = self._find_task(box, job)
                if found is not None:
                    keep, task = box, found or None
                    continue
            self._destroy(Box(self.fleet, rental), "not usable by its job when a controller took it over")
        if keep is not None and job.state is J.RUNNING and task is None:
            self._move(J.RECOVERING, LOST, "its task is no longer on the box", recovery=True)
            self._destroy(keep, "its task was gone")
            return None, None
        if keep is None and job.state is J.RUNNING:
            self._move(J.RECOVERING, GONE, "its box is gone", recovery=True)
        return keep, task

    def _find_task(self, box: Box, job: JobRecord) -> int | None:
        """The job's current task on ``box``: its id, 0 if the box answers without it, None
        if the box cannot be used (not running, not answering)."""
        try:
            if judge(self.fleet.api.show_instance(box.id)) is not None:
                return None
            box.session.connect(timeout=self.timing.lost_after_s)
            for info in box.session.tasks():
                running = job.state is J.RUNNING and info.get("task") == job.task_id
                if running or (job.state is not J.RUNNING and info.get("tag") == _tag(job)):
                    return int(info["task"])  # finished meanwhile or not, attaching tells its outcome
            return 0
        except (VastError, OSError):
            return None

    # -- a box, and the work on it -----------------------------------------------------------

    def _provision(self, job: JobRecord) -> Box | None:
        """A ready box for the job; None once it ended. A replacement that cannot be rented
        now (no offer, every try failed) is tried again after a backoff, each failure
        counted as a recovery; a first launch that fails fails the job."""
        profile = _profile(job.settings["profile"])
        while True:
            if job.state is J.RECOVERING:
                job = self._move(J.PROVISIONING, "provisioning", "a replacement box")
            name = f"{job.name[:48]}-{secrets.token_hex(2)}"
            try:
                box = self.fleet.launch(
                    profile, name=name, keep=True, progress=self._progress, avoid=frozenset(self.avoid), job=job.id
                )
            except VastError as exc:
                failure = f"no box for profile {profile.name!r}: {exc}"
                if job.attempts == 0 or job.recoveries >= job.max_recoveries:
                    self._finish(J.FAILED, "failed", failure)
                    return None
                job = self._move(J.RECOVERING, "launch failed", failure[:300], recovery=True)
                if self.stopping.wait(self._backoff(job)):
                    return None
                continue
            self.queue.place(job.id, instance_id=box.id, task_id=None)
            return box

    def _backoff(self, job: JobRecord) -> float:
        """The pause before a replacement: doubled with each recovery, bounded."""
        return float(min(self.timing.backoff_s * 2 ** max(0, job.recoveries - 1), self.timing.backoff_max_s))

    def _progress(self, event: LaunchEvent) -> None:
        if event.stage == "offer" and event.candidate is not None:
            offer = event.candidate.offer
            self.queue.note(
                self.job_id,
                "offer chosen",
                f"offer {offer.id}: {offer.num_gpus}x {offer.gpu_name} on machine {offer.machine_id}",
                dph_total=event.candidate.price,
            )
        elif event.stage == "created" and event.instance_id is not None:
            self.queue.note(
                self.job_id, "instance created", f"instance {event.instance_id}", instance_id=event.instance_id
            )
        elif event.stage in ("retry", "cleanup"):
            self.queue.note(self.job_id, f"launch {event.stage}", event.message[:300], instance_id=event.instance_id)

    def _send(self, box: Box, job: JobRecord) -> int:
        """Send the job's work to ``box`` as its next attempt; the task's id there."""
        attempt = job.attempts + 1
        body, buffers = unpack(job.payload)
        meta = {"job": {"name": job.name, "attempt": attempt, "checkpoint": job.checkpoint}}
        kind = Kind.CELL if job.kind == "cell" else Kind.CALL
        task = box.session.send_encoded(kind, body, buffers, tag=_tag(job), meta=meta)
        self.queue.place(job.id, instance_id=box.id, task_id=task)
        rental = box.rental
        self._move(
            J.RUNNING,
            "running",
            f"attempt {attempt} on instance {box.id} ({rental.num_gpus}x {rental.gpu_name})",
            instance_id=box.id,
            dph_total=rental.dph_total,
            attempt=True,
        )
        return task

    # -- losing a box --------------------------------------------------------------------------

    def _recover(self, box: Box, job: JobRecord, verdict: Verdict) -> Box | None:
        """Record the loss, end the attempt, and return a box to go on with (the same one
        if it came back, else None: a replacement is rented)."""
        rental = box.rental
        if not verdict.recover:
            self._finish(J.FAILED, verdict.event, verdict.detail, box=box)
            raise _Ended
        job = self._move(
            J.RECOVERING, verdict.event, verdict.detail, instance_id=box.id, dph_total=rental.dph_total, recovery=True
        )
        if job.recoveries > job.max_recoveries:
            self._finish(J.FAILED, "failed", f"gave up after {job.max_recoveries} recoveries (max_recoveries)", box=box)
            raise _Ended
        box.session.close()  # whatever comes next talks to a fresh worker
        if verdict.event in ("preempted", "outbid") and self.timing.resume_wait_s > 0 and self._comes_back(box):
            self._move(J.PROVISIONING, "recovering", f"instance {box.id} came back: the work is sent again there")
            return box
        if rental.machine_id is not None:
            self.avoid.add(rental.machine_id)
        self._destroy(box, f"lost ({verdict.event}): replaced")
        pause = self._backoff(job)
        self.queue.note(
            job.id, "recovering", f"a replacement in {pause:.0f} s, avoiding machine(s) {sorted(self.avoid)}"
        )
        if self.stopping.wait(pause):
            return None
        return None

    def _comes_back(self, box: Box) -> bool:
        """Whether a stopped interruptible box runs again within ``resume_wait_s``."""
        deadline = time.monotonic() + self.timing.resume_wait_s
        while time.monotonic() < deadline and not self.stopping.is_set():
            try:
                instance = self.fleet.api.show_instance(box.id)
                if instance is None:
                    return False
                if judge(instance) is None and self.fleet.backend.reachable(instance):
                    box.session.connect(timeout=self.timing.lost_after_s)
                    return True
            except (VastError, OSError):
                pass
            self.stopping.wait(min(self.timing.poll_s, 5.0))
        return False

    def _destroy(self, box: Box, note: str) -> None:
        box.session.close()
        for wait in (0.0, 1.0, 5.0):
            time.sleep(wait)
            try:
                self.fleet.destroy(box.id, note)
                return
            except VastError as exc:
                self.log(f"job {self.job_id}: destroying instance {box.id} failed: {exc}")
        # Left to the next controller start (it ends every box of a finished job), and to
        # the box's own watchdog, which ends it once no orchestrator speaks to it.

    def _clean_up(self) -> None:
        """Once the job is final, none of its boxes may be left billing."""
        if not self.queue.get(self.job_id).state.final:
            return
        for rental in self.fleet.store.instances(self.fleet.url):
            if rental.job == self.job_id:
                self._destroy(Box(self.fleet, rental), "its job ended")


def _tag(job: JobRecord) -> str:
    """The tag of the job's next attempt's task: how a restarted controller finds it."""
    return f"job-{job.id}-attempt-{job.attempts + 1}"


def _profile(data: dict[str, Any]) -> Profile:
    """The profile as submitted (JSON keeps tuples as lists)."""
    values: dict[str, Any] = {k: tuple(v) if isinstance(v, list) else v for k, v in data.items()}
    return Profile(**values)
