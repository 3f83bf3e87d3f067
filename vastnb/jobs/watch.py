"""Watching a job's task on its box: its output into the job's files, the market asked
about the box every ``poll_s``, the worker pinged; until the task ends, the box is lost,
the job is cancelled, or the controller stops."""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from vastnb.errors import ConnectionLostError, TransportError, VastError
from vastnb.jobs.artifacts import JobFiles
from vastnb.jobs.monitor import LOST, Verdict, judge
from vastnb.jobs.queue import JobQueue, JobRecord
from vastnb.jobs.states import JobState
from vastnb.lifecycle.box import Box
from vastnb.lifecycle.fleet import Fleet
from vastnb_worker.job import RESUMED_MARK
from vastnb_worker.protocol import Kind

__all__ = ["Timing", "Outcome", "Watcher"]

_RESUMED = re.compile(re.escape(RESUMED_MARK) + r"(\d{1,12})\b")


@dataclass(frozen=True)
class Timing:
    """How a controller watches and recovers. Seconds."""

    poll_s: float = 15.0  # the market is asked about each box this often (and its worker pinged)
    lost_after_s: float = 90.0  # a worker silent this long (no output, no pong) counts as lost
    resume_wait_s: float = 0.0  # a preempted interruptible box: wait this long for it to come back
    backoff_s: float = 5.0  # the pause before a replacement, doubled for each recovery
    backoff_max_s: float = 300.0
    stop_grace_s: float = 10.0  # a box ended for its budget: from its stop (SIGTERM) to its destroy


@dataclass(frozen=True)
class Outcome:
    """How an attempt ended: ``done`` (value), ``error`` (the user's exception), ``lost``
    (the box: see ``verdict``), ``cancelled``, ``budget`` (its budget was reached), or
    ``detached`` (the controller stops)."""

    how: str
    verdict: Verdict | None = None
    meta: dict[str, Any] | None = None
    body: bytes = b""
    buffers: list[Any] | None = None


class Watcher:
    """What a :class:`~vastnb.jobs.runner.JobRunner` watches with."""

    queue: JobQueue
    fleet: Fleet
    files: JobFiles
    timing: Timing
    stopping: threading.Event
    log: Callable[[str], None]

    def watch(self, box: Box, job: JobRecord, task: int) -> Outcome:
        """Follow ``task`` on ``box`` until it ends, the box is lost or the job is cancelled."""
        rental = box.rental
        attempt = job.attempts
        price = f"${rental.dph_total:.3f}/h" if rental.dph_total is not None else "price unknown"
        header = f"=== attempt {attempt} · instance {box.id} · {rental.num_gpus}x {rental.gpu_name} · {price} ===\n"
        connection = None
        heard = time.monotonic()
        next_poll = 0.0
        capped: float | None = None  # when the box was stopped for its budget
        while not self.stopping.is_set():
            now = time.monotonic()
            if capped is not None and (connection is None or now - capped > self.timing.stop_grace_s):
                return Outcome("budget")
            if connection is None and now >= next_poll:
                try:
                    connection = self._attach(box, task, attempt, header)
                except _TaskGone:
                    return Outcome("lost", Verdict("worker died", "the box answers, but the job's task is gone", True))
                if connection is not None:
                    heard = now
            if now >= next_poll:
                next_poll = now + self.timing.poll_s
                state = self.queue.get(job.id).state
                if state is JobState.BUDGET_EXCEEDED and capped is None:
                    capped = self._stop_for_budget(box)  # SIGTERM: its last output and checkpoint come
                    continue
                if state.final and capped is None:  # cancelled by its user
                    self._interrupt(box, task)
                    return Outcome("cancelled")
                if capped is not None:
                    continue  # the box is stopping on purpose
                try:
                    verdict = judge(self.fleet.api.show_instance(box.id))
                except VastError as exc:
                    self.log(f"job {job.id}: asking the market about instance {box.id} failed: {exc}")
                    verdict = None
                if verdict is not None:
                    return Outcome("lost", verdict)
                if connection is not None:
                    try:
                        connection.send(Kind.PING)
                    except ConnectionLostError:
                        connection = None
            if now - heard > self.timing.lost_after_s:
                return Outcome("lost", Verdict(LOST, f"the worker was silent for {now - heard:.0f} s", True))
            if connection is None:
                self.stopping.wait(min(0.5, max(0.0, next_poll - now)))
                continue
            try:
                frame = connection.next(timeout=0.5)
            except ConnectionLostError:
                died = connection.worker_died()
                box.session.close()
                connection = None
                if capped is not None:
                    return Outcome("budget")  # stopped on purpose: its worker ended with it
                if died:
                    return Outcome("lost", Verdict("worker died", "the worker process on the box ended", True))
                continue
            if frame is None:
                continue
            heard = time.monotonic()
            if frame.task != task:
                continue
            if frame.kind == Kind.OUTPUT:
                text = str(frame.meta.get("text", ""))
                self.files.append(attempt, text)
                if match := _RESUMED.search(text):
                    detail = f"attempt {attempt} from the checkpoint of step {match.group(1)}"
                    # Once: a controller that attaches again reads the attempt's output again.
                    if not any(e.event == "resumed" and e.detail == detail for e in self.queue.events(job.id)):
                        self.queue.note(job.id, "resumed", detail, instance_id=box.id)
            elif frame.kind == Kind.RESULT:
                return Outcome("done", body=frame.body, buffers=frame.buffers)
            elif capped is not None:  # its end on SIGTERM, with the final checkpoint written
                return Outcome("budget")
            elif frame.kind == Kind.ERROR:
                if frame.meta.get("type") == "KeyboardInterrupt":
                    return Outcome("cancelled")
                # A box being stopped ends its task (SIGTERM: the checkpoint manager saves and
                # exits with 143) before the market says so: that is a lost box, not the code's
                # error, even when the market shows it back already (a bid that won again).
                sigterm = frame.meta.get("type") == "SystemExit" and str(frame.meta.get("message")).strip() == "143"
                verdict = self._stopping_box(box, sigterm=sigterm)
                if verdict is None and sigterm:
                    verdict = Verdict("preempted", "its task ended on SIGTERM: the box was stopped", True)
                if verdict is not None:
                    return Outcome("lost", verdict)
                return Outcome("error", meta=dict(frame.meta), body=frame.body)
        box.session.close()
        return Outcome("detached")

    def _attach(self, box: Box, task: int, attempt: int, header: str) -> Any:
        """A connection streaming ``task`` from its first line (the attempt's log begins
        again with it); None if the box cannot be reached now."""
        try:
            connection = box.session.connect(timeout=min(30.0, self.timing.lost_after_s))
            known = {int(t["task"]) for t in box.session.tasks()}
            if task not in known:
                raise _TaskGone
            self.files.start_log(attempt, header)
            connection.send(Kind.ATTACH, task)
            return connection
        except _TaskGone:
            raise
        except (TransportError, OSError):
            box.session.close()
            return None

    def _stop_for_budget(self, box: Box) -> float:
        """Stop the box (SIGTERM, as on preemption: the job's checkpoint manager writes its
        final checkpoint); when, to bound the wait for the task's end."""
        try:
            self.fleet.api.stop_instance(box.id)
        except VastError as exc:
            self.log(f"stopping instance {box.id} for its budget failed ({exc}); it is destroyed now")
            return time.monotonic() - self.timing.stop_grace_s
        return time.monotonic()

    def _stopping_box(self, box: Box, *, sigterm: bool) -> Verdict | None:
        """What the market says of a box whose task just failed: a verdict if it is being
        lost. After a SIGTERM, the market is asked for a while longer (two polls, at least 5 s)."""
        wait = min(self.timing.lost_after_s, max(2 * self.timing.poll_s, 5.0)) if sigterm else 0.0
        deadline = time.monotonic() + wait
        while True:
            try:
                verdict = judge(self.fleet.api.show_instance(box.id))
            except VastError:
                verdict = None
            if verdict is not None or time.monotonic() >= deadline or self.stopping.is_set():
                return verdict
            self.stopping.wait(min(self.timing.poll_s, 2.0))

    def _interrupt(self, box: Box, task: int) -> None:
        try:
            box.session.interrupt(task)
        except (VastError, OSError):
            pass


class _TaskGone(TransportError):
    """The box answers, but the job's task is not there (its worker was replaced)."""
