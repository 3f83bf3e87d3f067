"""``Job``: a submitted job, seen from any process (a notebook, a later kernel, a script).

Everything it answers comes from the state store and the job's files, so it works while
the job runs on a box somewhere, after the box is gone, and after the kernel that
submitted it restarted. Waiting makes sure a controller is running the job.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from vastnb.errors import ConfigError, JobError
from vastnb.jobs.artifacts import JobFiles
from vastnb.jobs.queue import JobQueue, JobRecord
from vastnb.jobs.states import JobState
from vastnb.offload.output import metric_frame
from vastnb.offload.results import raise_remote, safe, trusted
from vastnb_worker.metrics import MetricReader
from vastnb_worker.protocol import Frame, Kind

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["Job"]

EVENT_COLUMNS = ("time", "event", "detail", "instance", "dph_total")


class Job:
    """A job of the queue. ``ensure_controller`` starts one if none runs;
    ``end_boxes(job_id)`` destroys the job's boxes (a cancel does not wait for the
    controller to do it)."""

    def __init__(
        self,
        queue: JobQueue,
        files: JobFiles,
        job_id: int,
        *,
        ensure_controller: Callable[[], object],
        end_boxes: Callable[[int], object],
    ) -> None:
        self._queue, self._files, self.id = queue, files, job_id
        self._ensure_controller, self._end_boxes = ensure_controller, end_boxes

    @property
    def record(self) -> JobRecord:
        """The job as the queue keeps it now."""
        return self._queue.get(self.id)

    @property
    def name(self) -> str:
        return self.record.name

    @property
    def state(self) -> JobState:
        """queued, provisioning, running, recovering, succeeded, failed, cancelled or budget_exceeded."""
        return self.record.state

    def __repr__(self) -> str:
        job = self.record
        return f"<Job {job.name!r} {job.state.value}, profile {job.profile!r}, {job.attempts} attempt(s)>"

    # -- waiting and outcomes ----------------------------------------------------------------

    def wait(self, timeout: float | None = None) -> JobState:
        """Wait until the job is final (succeeded, failed, cancelled, budget_exceeded); its
        state. Raises ``TimeoutError`` after ``timeout`` seconds (the job goes on)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        checked = 0.0
        while not (state := self.state).final:
            if time.monotonic() - checked > 30:
                self._ensure_controller()  # a job never waits on a controller that died
                checked = time.monotonic()
            if deadline is not None and time.monotonic() > deadline:
                raise TimeoutError(f"job {self.name!r} is still {state.value} after {timeout} s; it goes on")
            time.sleep(0.2)
        return state

    def result(self, timeout: float | None = None) -> Any:
        """Wait, then the value the job's function returned (for a cell job, the
        ``CellResult``). Its own exception is raised as a :class:`~vastnb.errors.RemoteError`;
        a job that ended otherwise raises :class:`~vastnb.errors.JobError`."""
        state = self.wait(timeout)
        job = self.record
        policy = trusted if job.settings.get("trust") else safe
        if state is JobState.SUCCEEDED:
            stored = self._files.result()
            if stored is None:
                raise JobError(f"job {job.name!r} succeeded but its result file is missing from {self._files.folder}")
            return _cell_value(policy(*stored), job.kind)
        error = self._files.error()
        if state is JobState.FAILED and error is not None:
            meta, body = error
            where = f"job {job.name}, attempt {job.attempts} on instance {job.instance_id}"
            raise_remote(Frame(Kind.ERROR, job.task_id or 0, meta, body, []), policy, job.task_id, job=where)
        raise JobError(
            f"job {job.name!r} {state.value}: {job.error or 'see job.events()'}", job=job.name, state=state.value
        )

    # -- output -------------------------------------------------------------------------------

    def logs(self) -> str:
        """Everything the job printed, attempt by attempt (each after a marked line); what
        it reported with ``vastnb_worker.report`` is in :meth:`metrics`."""
        shown: str = MetricReader().feed(self._files.logs())[0]
        return shown

    def tail(self, lines: int = 40) -> str:
        """The last ``lines`` lines the job's latest attempt printed."""
        return self._files.tail(lines)

    def metrics(self) -> pd.DataFrame:
        """What the job reported with ``vastnb_worker.report(step, loss=...)``, as it runs:
        one row per report, ``attempt``, ``step`` and a column per metric (``rank`` too for a
        job in ranks)."""
        return metric_frame(({"attempt": attempt}, metric) for attempt, metric in self._files.metrics())

    def follow(self, *, poll: float = 0.5) -> JobState:
        """Print the job's output as it comes, from the start, until it is final (Ctrl-C
        stops following; the job goes on). Its final state."""
        shown: dict[int, int] = {}
        readers: dict[int, MetricReader] = {}  # each attempt's metrics lines are not printed
        try:
            while True:
                state = self.state
                for attempt in self._files.attempts():
                    text = self._files.log_path(attempt).read_text(encoding="utf-8", errors="replace")
                    if len(text) < shown.get(attempt, 0):
                        shown[attempt] = 0  # the attempt's log began again (a controller re-attached)
                        readers.pop(attempt, None)
                    sys.stdout.write(readers.setdefault(attempt, MetricReader()).feed(text[shown.get(attempt, 0) :])[0])
                    shown[attempt] = len(text)
                sys.stdout.flush()
                if state.final:
                    print(f"[vastnb] job {self.name} {state.value}")
                    return state
                time.sleep(poll)
        except KeyboardInterrupt:
            print(f"\n[vastnb] stopped following; job {self.name} goes on ({self.state.value})")
            return self.state

    def events(self) -> pd.DataFrame:
        """What happened to the job: time, event, detail, instance and its $/h."""
        import pandas as pd

        rows = [
            (pd.Timestamp(e.at, unit="s"), e.event, e.detail, e.instance_id, e.dph_total)
            for e in self._queue.events(self.id)
        ]
        return pd.DataFrame(rows, columns=list(EVENT_COLUMNS))

    # -- control ------------------------------------------------------------------------------

    def cancel(self) -> None:
        """Cancel the job: its task is stopped and its boxes destroyed. A finished job
        cannot be cancelled (:class:`~vastnb.errors.ConfigError` says how it ended)."""
        job = self.record
        if job.state.final:
            raise ConfigError(f"job {job.name!r} already {job.state.value}: there is nothing to cancel.")
        self._queue.transition(job.id, JobState.CANCELLED, "cancelled", "by its user")
        self._end_boxes(job.id)


def _cell_value(value: Any, kind: str) -> Any:
    """A cell job's result is the cell's pulled names and last value, as ``run_cell`` gives."""
    if kind != "cell" or not isinstance(value, dict):
        return value
    from vastnb.offload.cells import CellResult

    result = CellResult(value.get("pull") or {})
    result.value = value.get("value")
    return result
