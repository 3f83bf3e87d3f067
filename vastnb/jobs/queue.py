"""The job queue: jobs in the state store, claimed one at a time by controllers.

Every operation is one transaction of the store (``BEGIN IMMEDIATE``), so claiming is
atomic: several controllers, in several processes, may share a queue and no job is
claimed twice. The next job is the highest ``priority``, then the first submitted, within
the limits on active jobs (in all, and per profile). Each change of a job's state is
checked against :mod:`~vastnb.jobs.states` and written to its events in the same
transaction.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any

from vastnb.errors import ConfigError
from vastnb.jobs.states import JobState, check_transition
from vastnb.lifecycle.store import StateStore

__all__ = ["JobQueue", "JobRecord", "JobEvent", "Limits"]

_ACTIVE = tuple(s.value for s in JobState if s.active)


@dataclass(frozen=True)
class JobRecord:
    """One job, as the queue keeps it. ``payload`` is the work (the function and its
    arguments, pickled by the submitter); the queue never unpickles it."""

    id: int
    url: str  # the market it runs on
    name: str
    profile: str
    state: JobState
    priority: int
    submitted_at: float
    payload: bytes
    checkpoint: str | None
    max_recoveries: int
    attempts: int
    controller: str | None  # the controller that claimed it
    claimed_at: float | None
    finished_at: float | None
    error: str | None
    kind: str  # "call" or "cell": how the payload runs on the box
    settings: dict[str, Any]  # the profile as submitted, retry_on_error, trust (JSON in the store)
    instance_id: int | None  # the box it runs on now (or last ran on)
    task_id: int | None  # its task on that box
    recoveries: int  # boxes lost and replaced
    error_retries: int  # failures of the user's code run again

    def __repr__(self) -> str:
        return f"JobRecord(id={self.id}, name={self.name!r}, state={self.state.value!r}, profile={self.profile!r})"


@dataclass(frozen=True)
class JobEvent:
    """Something that happened to a job: ``queued``, ``claimed``, ``preempted``, ..."""

    at: float
    event: str
    detail: str | None
    instance_id: int | None
    dph_total: float | None


@dataclass(frozen=True)
class Limits:
    """How many jobs may be active at once: in all, and per profile (None: no limit)."""

    total: int | None = None
    per_profile: Mapping[str, int] | None = None


_COLUMNS = [f.name for f in fields(JobRecord)]


def _record(row: tuple[Any, ...]) -> JobRecord:
    values = dict(zip(_COLUMNS, row, strict=True))
    values["state"] = JobState(values["state"])
    values["payload"] = bytes(values["payload"])
    values["settings"] = json.loads(values["settings"])
    return JobRecord(**values)


class JobQueue:
    """The jobs of the market at ``url``, kept in ``store``'s file."""

    def __init__(self, store: StateStore, url: str) -> None:
        self.store, self.url = store, url

    def submit(
        self,
        name: str,
        profile: str,
        payload: bytes,
        *,
        priority: int = 0,
        checkpoint: str | None = None,
        max_recoveries: int = 0,
        kind: str = "call",
        settings: Mapping[str, Any] | None = None,
    ) -> JobRecord:
        """Queue a job. Refused if a job of that name is still queued or active."""
        now = time.time()
        with self.store.transaction() as db:
            live = (*_ACTIVE, JobState.QUEUED.value)
            taken = db.execute(
                f"SELECT id, state FROM jobs WHERE url = ? AND name = ? AND state IN ({', '.join('?' * len(live))})",
                (self.url, name, *live),
            ).fetchone()
            if taken:
                raise ConfigError(
                    f"a job called {name!r} is already {taken[1]} (job {taken[0]}): pick another name, "
                    "or cancel that one first."
                )
            cursor = db.execute(
                "INSERT INTO jobs (url, name, profile, state, priority, submitted_at, payload, checkpoint,"
                " max_recoveries, kind, settings) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    self.url,
                    name,
                    profile,
                    JobState.QUEUED.value,
                    priority,
                    now,
                    payload,
                    checkpoint,
                    max_recoveries,
                    kind,
                    json.dumps(dict(settings or {})),
                ),
            )
            job_id = int(cursor.lastrowid or 0)
            self._event(db, job_id, "queued", f"priority {priority}")
            return self._get(db, job_id)

    def claim(self, controller: str, limits: Limits = Limits()) -> JobRecord | None:
        """Take the next job for ``controller`` (now ``provisioning``), or None if none is
        queued or every queued one is held back by a limit. Atomic across processes."""
        with self.store.transaction() as db:
            active = dict(
                db.execute(
                    f"SELECT profile, count(*) FROM jobs WHERE url = ? AND state IN ({', '.join('?' * len(_ACTIVE))})"
                    " GROUP BY profile",
                    (self.url, *_ACTIVE),
                ).fetchall()
            )
            if limits.total is not None and sum(active.values()) >= limits.total:
                return None
            per_profile = limits.per_profile or {}
            full = [p for p, limit in per_profile.items() if active.get(p, 0) >= limit]
            row = db.execute(
                f"SELECT id FROM jobs WHERE url = ? AND state = ? AND profile NOT IN ({', '.join('?' * len(full))})"
                " ORDER BY priority DESC, submitted_at, id LIMIT 1",
                (self.url, JobState.QUEUED.value, *full),
            ).fetchone()
            if row is None:
                return None
            job_id = int(row[0])
            db.execute(
                "UPDATE jobs SET state = ?, controller = ?, claimed_at = ? WHERE id = ?",
                (JobState.PROVISIONING.value, controller, time.time(), job_id),
            )
            self._event(db, job_id, "claimed", f"by controller {controller}")
            return self._get(db, job_id)

    def transition(
        self,
        job_id: int,
        state: JobState,
        event: str,
        detail: str | None = None,
        *,
        instance_id: int | None = None,
        dph_total: float | None = None,
        error: str | None = None,
        attempt: bool = False,
        recovery: bool = False,
        error_retry: bool = False,
    ) -> JobRecord:
        """Move a job to ``state`` (checked), recording ``event``; ``attempt`` counts a new
        attempt (its code sent to a box), ``recovery`` a box lost, ``error_retry`` a failure
        of its code run again. A final state stamps ``finished_at``."""
        with self.store.transaction() as db:
            current = self._get(db, job_id)
            check_transition(job_id, current.state, state)
            db.execute(
                "UPDATE jobs SET state = ?, attempts = attempts + ?, recoveries = recoveries + ?,"
                " error_retries = error_retries + ?, error = coalesce(?, error),"
                " finished_at = CASE WHEN ? THEN ? ELSE finished_at END,"
                " controller = CASE WHEN ? THEN NULL ELSE controller END WHERE id = ?",
                (
                    state.value,
                    int(attempt),
                    int(recovery),
                    int(error_retry),
                    error,
                    state.final,
                    time.time(),
                    state is JobState.QUEUED,
                    job_id,
                ),
            )
            self._event(db, job_id, event, detail, instance_id, dph_total)
            return self._get(db, job_id)

    def place(
        self, job_id: int, *, instance_id: int | None, task_id: int | None, controller: str | None = None
    ) -> None:
        """Record where the job runs now: its box and its task there (and, on adoption,
        the controller that watches it)."""
        with self.store.transaction() as db:
            db.execute(
                "UPDATE jobs SET instance_id = ?, task_id = ?, controller = coalesce(?, controller) WHERE id = ?",
                (instance_id, task_id, controller, job_id),
            )

    def note(
        self,
        job_id: int,
        event: str,
        detail: str | None = None,
        *,
        instance_id: int | None = None,
        dph_total: float | None = None,
    ) -> None:
        """Record an event that changes no state (an offer chosen, a resume's step)."""
        with self.store.transaction() as db:
            self._event(db, job_id, event, detail, instance_id, dph_total)

    def active(self) -> list[JobRecord]:
        """The jobs a controller must be working on (provisioning, running, recovering)."""
        with self.store.transaction() as db:
            rows = db.execute(
                f"SELECT * FROM jobs WHERE url = ? AND state IN ({', '.join('?' * len(_ACTIVE))}) ORDER BY id",
                (self.url, *_ACTIVE),
            ).fetchall()
        return [_record(row) for row in rows]

    def controllers(self) -> set[str]:
        """Every controller that ever claimed or adopted a job here (their sessions' ids)."""
        with self.store.transaction() as db:
            rows = db.execute(
                "SELECT detail FROM job_events WHERE event IN ('claimed', 'adopted') AND detail LIKE 'by controller %'"
            ).fetchall()
        return {str(row[0]).split()[2] for row in rows if len(str(row[0]).split()) > 2}

    def get(self, job_id: int) -> JobRecord:
        with self.store.transaction() as db:
            return self._get(db, job_id)

    def find(self, name: str) -> JobRecord:
        """The latest job called ``name``."""
        with self.store.transaction() as db:
            row = db.execute(
                "SELECT * FROM jobs WHERE url = ? AND name = ? ORDER BY id DESC LIMIT 1", (self.url, name)
            ).fetchone()
        if row is None:
            raise ConfigError(f"no job called {name!r} on {self.url}: `vastnb jobs` lists the ones there are.")
        return _record(row)

    def jobs(self) -> list[JobRecord]:
        """Every job of this market, oldest first."""
        with self.store.transaction() as db:
            return [_record(row) for row in db.execute("SELECT * FROM jobs WHERE url = ? ORDER BY id", (self.url,))]

    def events(self, job_id: int) -> list[JobEvent]:
        """What happened to a job, oldest first."""
        with self.store.transaction() as db:
            rows = db.execute(
                "SELECT at, event, detail, instance_id, dph_total FROM job_events WHERE job = ? ORDER BY at, rowid",
                (job_id,),
            ).fetchall()
        return [JobEvent(*row) for row in rows]

    def _get(self, db: sqlite3.Connection, job_id: int) -> JobRecord:
        row = db.execute("SELECT * FROM jobs WHERE id = ? AND url = ?", (job_id, self.url)).fetchone()
        if row is None:
            raise ConfigError(f"no job {job_id} on {self.url}: `vastnb jobs` lists the ones there are.")
        return _record(row)

    @staticmethod
    def _event(
        db: sqlite3.Connection,
        job_id: int,
        event: str,
        detail: str | None = None,
        instance_id: int | None = None,
        dph_total: float | None = None,
    ) -> None:
        db.execute(
            "INSERT INTO job_events VALUES (?, ?, ?, ?, ?, ?)",
            (job_id, time.time(), event, detail, instance_id, dph_total),
        )
