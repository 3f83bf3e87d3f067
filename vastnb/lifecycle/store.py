"""The state store: which instances vastnb launched, who owns them, what they cost.

One SQLite database (WAL) under ``VASTNB_HOME``, shared by every kernel and CLI of the
user. An instance's row is written right after the create call answers, before any
waiting, so a process killed at any later point leaves a row a fresh ``Client`` finds.
Each row names the *session* (one Python process) that owns it; a session whose process
is gone owns nothing any more, and its instances are orphans.

Every operation opens its own short connection: safe across threads, processes and
``fork``, and a crashed writer leaves nothing locked (SQLite rolls it back).
"""

from __future__ import annotations

import contextlib
import os
import secrets
import socket
import sqlite3
import time
from collections.abc import Iterator
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from vastnb.base.private import private_folder
from vastnb.base.procs import alive, process_token

__all__ = ["StateStore", "StoredInstance", "SessionInfo"]

SCHEMA = """
CREATE TABLE IF NOT EXISTS sessions (
    id TEXT PRIMARY KEY, host TEXT NOT NULL, pid INTEGER NOT NULL, token TEXT,
    started_at REAL NOT NULL, ended_at REAL
);
CREATE TABLE IF NOT EXISTS instances (
    url TEXT NOT NULL, id INTEGER NOT NULL, name TEXT NOT NULL, profile TEXT NOT NULL,
    label TEXT NOT NULL, session TEXT NOT NULL, keep INTEGER NOT NULL DEFAULT 0,
    offer_id INTEGER, machine_id INTEGER, gpu TEXT, num_gpus INTEGER, price_per_hour REAL,
    bid REAL, max_duration_hours REAL, instance_key TEXT, state TEXT NOT NULL,
    created_at REAL NOT NULL, destroyed_at REAL,
    PRIMARY KEY (url, id)
);
CREATE TABLE IF NOT EXISTS history (
    url TEXT NOT NULL, id INTEGER NOT NULL, at REAL NOT NULL, state TEXT NOT NULL,
    price_per_hour REAL, note TEXT
);
CREATE INDEX IF NOT EXISTS history_instance ON history (url, id);
"""


@dataclass(frozen=True)
class SessionInfo:
    """One Python process that launches instances."""

    id: str
    host: str
    pid: int
    token: str | None
    started_at: float
    ended_at: float | None

    @property
    def alive(self) -> bool:
        """True while its process runs. A session on another host cannot be checked from
        here, so it counts as alive: never destroy what might be someone's live work."""
        if self.ended_at is not None:
            return False
        if self.host != socket.gethostname():
            return True
        return alive(self.pid, self.token)


@dataclass(frozen=True)
class StoredInstance:
    """What vastnb recorded about an instance it launched."""

    url: str
    id: int
    name: str
    profile: str
    label: str
    session: str
    keep: bool
    offer_id: int | None
    machine_id: int | None
    gpu: str | None
    num_gpus: int | None
    price_per_hour: float | None
    bid: float | None
    max_duration_hours: float | None
    instance_key: str | None
    state: str
    created_at: float
    destroyed_at: float | None

    def __repr__(self) -> str:  # the instance key stays out of reprs and logs
        return f"StoredInstance(id={self.id}, name={self.name!r}, state={self.state!r}, session={self.session!r})"

    @property
    def live(self) -> bool:
        return self.destroyed_at is None


_COLUMNS = [f.name for f in fields(StoredInstance)]


def _instance(row: tuple[Any, ...]) -> StoredInstance:
    values = dict(zip(_COLUMNS, row))
    values["keep"] = bool(values["keep"])
    return StoredInstance(**values)


class StateStore:
    """The SQLite file at ``path``. Safe with several kernels and CLIs at once."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        private_folder(self.path.parent, what="vastnb's state folder (VASTNB_HOME)")
        # Per-instance keys live here: readable by the user only, from the first byte
        # (SQLite gives the -wal and -shm files the database file's mode).
        os.close(os.open(self.path, os.O_CREAT | os.O_WRONLY, 0o600))
        os.chmod(self.path, 0o600)
        db = sqlite3.connect(self.path, timeout=30.0)
        try:
            # Readers never wait for a writer; it persists. Several processes opening a
            # new file at once can get "locked" here without SQLite's busy wait: retry.
            deadline = time.monotonic() + 30.0
            while True:
                try:
                    db.execute("PRAGMA journal_mode=WAL")
                    break
                except sqlite3.OperationalError as exc:
                    if "locked" not in str(exc) or time.monotonic() > deadline:
                        raise
                    time.sleep(0.02)
            db.executescript(SCHEMA)
        finally:
            db.close()

    @contextlib.contextmanager
    def _db(self) -> Iterator[sqlite3.Connection]:
        db = sqlite3.connect(self.path, timeout=30.0, isolation_level=None)
        try:
            db.execute("PRAGMA synchronous=NORMAL")
            db.execute("BEGIN IMMEDIATE")
            try:
                yield db
            except BaseException:
                db.execute("ROLLBACK")
                raise
            db.execute("COMMIT")
        finally:
            db.close()

    # -- sessions -------------------------------------------------------------------------

    def new_session(self) -> SessionInfo:
        """Register this process as a session (before it creates anything)."""
        pid = os.getpid()
        info = SessionInfo(secrets.token_hex(4), socket.gethostname(), pid, process_token(pid), time.time(), None)
        with self._db() as db:
            db.execute("INSERT INTO sessions VALUES (?, ?, ?, ?, ?, ?)",
                       (info.id, info.host, info.pid, info.token, info.started_at, None))  # fmt: skip
        return info

    def end_session(self, session: str) -> None:
        with self._db() as db:
            db.execute("UPDATE sessions SET ended_at = ? WHERE id = ?", (time.time(), session))

    def session(self, session: str) -> SessionInfo | None:
        with self._db() as db:
            row = db.execute("SELECT * FROM sessions WHERE id = ?", (session,)).fetchone()
        return SessionInfo(*row) if row else None

    # -- instances ------------------------------------------------------------------------

    def record(self, instance: StoredInstance) -> None:
        """Write a new instance, and its first state in the history."""
        with self._db() as db:
            db.execute(f"INSERT OR REPLACE INTO instances VALUES ({', '.join('?' * len(_COLUMNS))})",
                       [getattr(instance, c) for c in _COLUMNS])  # fmt: skip
            db.execute("INSERT INTO history VALUES (?, ?, ?, ?, ?, ?)",
                       (instance.url, instance.id, instance.created_at, instance.state, instance.price_per_hour, "created"))  # fmt: skip

    def update(self, url: str, instance_id: int, *, note: str | None = None, **changes: Any) -> None:
        """Change columns of one instance; a new ``state`` also goes into the history."""
        unknown = set(changes) - set(_COLUMNS)
        if unknown:
            raise ValueError(f"no such column: {', '.join(sorted(unknown))}")
        with self._db() as db:
            if changes:
                sets = ", ".join(f"{c} = ?" for c in changes)
                db.execute(f"UPDATE instances SET {sets} WHERE url = ? AND id = ?", [*changes.values(), url, instance_id])
            if "state" in changes or note:
                row = db.execute("SELECT state, price_per_hour FROM instances WHERE url = ? AND id = ?", (url, instance_id)).fetchone()
                if row:
                    db.execute("INSERT INTO history VALUES (?, ?, ?, ?, ?, ?)", (url, instance_id, time.time(), row[0], row[1], note))

    def destroyed(self, url: str, instance_id: int, note: str = "destroyed") -> None:
        """Mark an instance gone for good (idempotent: the first time counts)."""
        with self._db() as db:
            db.execute("UPDATE instances SET state = 'destroyed', destroyed_at = coalesce(destroyed_at, ?) WHERE url = ? AND id = ?",
                       (time.time(), url, instance_id))  # fmt: skip
            db.execute("INSERT INTO history VALUES (?, ?, ?, 'destroyed', NULL, ?)", (url, instance_id, time.time(), note))

    def get(self, url: str, instance_id: int) -> StoredInstance | None:
        with self._db() as db:
            row = db.execute("SELECT * FROM instances WHERE url = ? AND id = ?", (url, instance_id)).fetchone()
        return _instance(row) if row else None

    def find(self, url: str, name: str) -> StoredInstance | None:
        """The live instance called ``name`` (else the latest one of that name)."""
        with self._db() as db:
            row = db.execute(
                "SELECT * FROM instances WHERE url = ? AND name = ? ORDER BY destroyed_at IS NULL DESC, created_at DESC LIMIT 1",
                (url, name),
            ).fetchone()
        return _instance(row) if row else None

    def instances(self, url: str, *, live: bool = True) -> list[StoredInstance]:
        query = "SELECT * FROM instances WHERE url = ?" + (" AND destroyed_at IS NULL" if live else "") + " ORDER BY created_at"
        with self._db() as db:
            return [_instance(row) for row in db.execute(query, (url,))]

    def history(self, url: str, instance_id: int) -> list[tuple[float, str, float | None, str | None]]:
        """(time, state, $/h, note) for one instance, oldest first."""
        with self._db() as db:
            return db.execute("SELECT at, state, price_per_hour, note FROM history WHERE url = ? AND id = ? ORDER BY at, rowid",
                              (url, instance_id)).fetchall()  # fmt: skip
