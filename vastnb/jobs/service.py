"""The jobs of one market, as a client offers them: submit, list, find, cancel, and the
controller that runs them (started on demand, detached from the caller)."""

from __future__ import annotations

import re
import secrets
import time
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from vastnb.errors import ConfigError, VastError
from vastnb.jobs import submit as work
from vastnb.jobs.artifacts import JobFiles
from vastnb.jobs.controller import ControllerProcess
from vastnb.jobs.job import Job
from vastnb.jobs.queue import JobQueue
from vastnb.lifecycle.fleet import Fleet
from vastnb.profiles.profile import Profile

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["Jobs", "JOB_COLUMNS"]

JOB_COLUMNS = (
    "name",
    "state",
    "profile",
    "attempts",
    "recoveries",
    "instance",
    "runtime_s",
    "cost",
    "team",
    "project",
    "submitted",
)
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,47}\Z")


class Jobs:
    """``fleet``'s market's jobs under ``home``. ``controller_settings`` is what a
    controller started from here runs with (backend, simulator, timing: see the CLI's
    ``controller run --settings``); ``env`` goes to its environment (the API key)."""

    def __init__(
        self,
        fleet: Fleet,
        home: Path,
        *,
        controller_settings: Callable[[], Mapping[str, Any]],
        env: Callable[[], Mapping[str, str]] = dict,
    ) -> None:
        self.fleet, self.home = fleet, Path(home)
        self.queue = JobQueue(fleet.store, fleet.url)
        self.controller = ControllerProcess(self.home, fleet.url, controller_settings, env)

    def submit(
        self,
        payload: bytes,
        profile: Profile,
        *,
        kind: str,
        name: str | None,
        checkpoint: str | None,
        max_recoveries: int,
        priority: int,
        retry_on_error: int,
        trust: bool,
    ) -> Job:
        """Queue work encoded by :mod:`~vastnb.jobs.submit` and see that a controller runs."""
        if name is not None and not _NAME.match(str(name)):
            raise ConfigError(
                f"job name {name!r} is not usable: 1-48 letters, digits, '.', '_' or '-', starting with a letter or digit."
            )
        for what, value in (("max_recoveries", max_recoveries), ("priority", priority)):
            if not isinstance(value, int) or isinstance(value, bool) or (what == "max_recoveries" and value < 0):
                raise ConfigError(
                    f"{what} must be a whole number{' from 0' if what == 'max_recoveries' else ''}, not {value!r}"
                )
        settings = work.settings_of(profile, retry_on_error=retry_on_error, trust=trust)
        work.check_checkpoint(checkpoint)
        record = self.queue.submit(
            name or f"job-{secrets.token_hex(3)}",
            profile.name,
            payload,
            priority=priority,
            checkpoint=checkpoint,
            max_recoveries=max_recoveries,
            kind=kind,
            settings=settings,
        )
        self.controller.ensure()
        return self.job(record.id)

    def job(self, ref: str | int) -> Job:
        """The job called ``ref`` (the latest of that name), or of id ``ref``."""
        record = self.queue.get(int(ref)) if isinstance(ref, int) else self.queue.find(str(ref))
        return Job(
            self.queue,
            JobFiles(self.home, record.id),
            record.id,
            ensure_controller=self.controller.ensure,
            end_boxes=self.end_boxes,
        )

    def end_boxes(self, job_id: int) -> list[int]:
        """Destroy every live box of job ``job_id``; the ids destroyed."""
        boxes = [r.id for r in self.fleet.store.instances(self.fleet.url) if r.job == job_id]
        return self.fleet.destroy_every(boxes, "its job was cancelled") if boxes else []

    def cancel_active(self) -> list[str]:
        """Cancel every queued or active job (``down --all``); their names."""
        cancelled = []
        for record in self.queue.jobs():
            if not record.state.final:
                self.job(record.id).cancel()
                cancelled.append(record.name)
        return cancelled

    def owner_of(self, instance_ids: Iterable[int]) -> dict[int, str]:
        """instance id -> the name of the active job that owns it, for those that have one."""
        active = {j.id: j.name for j in self.queue.jobs() if not j.state.final}
        owners = {}
        for rental in self.fleet.store.instances(self.fleet.url):
            if rental.id in set(instance_ids) and rental.job in active:
                owners[rental.id] = active[rental.job]
        return owners

    def frame(self) -> pd.DataFrame:
        """One row per job: name, state, profile, attempts, recoveries, its box now,
        runtime and cost so far (from the market's charges)."""
        import pandas as pd

        records = self.queue.jobs()
        rentals = {r.id: r for r in self.fleet.store.instances(self.fleet.url, live=False) if r.job is not None}
        costs: dict[int, float] = {}
        if rentals:
            try:
                per_instance = self.fleet.api.charged_by_instance(min(r.created_at for r in rentals.values()) - 3600)
            except VastError:
                per_instance = {}
            for rental in rentals.values():
                assert rental.job is not None
                costs[rental.job] = costs.get(rental.job, 0.0) + per_instance.get(rental.id, 0.0)
        now = time.time()
        rows = [
            {
                "id": j.id,
                "name": j.name,
                "state": j.state.value,
                "profile": j.profile,
                "attempts": j.attempts,
                "recoveries": j.recoveries,
                "instance": j.instance_id if not j.state.final else None,
                "runtime_s": round(((j.finished_at or now) - j.claimed_at), 1) if j.claimed_at else None,
                "cost": round(costs.get(j.id, 0.0), 4),
                "team": j.settings.get("profile", {}).get("team"),
                "project": j.settings.get("profile", {}).get("project"),
                "submitted": pd.Timestamp(j.submitted_at, unit="s"),
            }
            for j in records
        ]
        return pd.DataFrame(rows, columns=["id", *JOB_COLUMNS]).set_index("id")
