"""The state store: which instances vastnb launched, who owns them, what they cost.

One SQLite database (WAL) under ``VASTNB_HOME``, shared by every kernel and CLI of the
user. An instance's row is written right after the create call answers, before any
waiting, so a process killed at any later point leaves a row a fresh ``Client`` finds.
Each row names the *session* (one Python process) that owns it; a session whose process
is gone owns nothing any more, and its instances are orphans.

Every operation opens its own short connection: safe across threads, processes and
``fork``, and a crashed writer leaves nothing locked (SQLite rolls it back). The schema is
versioned; opening a file from an earlier vastnb migrates it forward
(:mod:`~vastnb.lifecycle.migrations`).

Only the fleet (:class:`~vastnb.lifecycle.fleet.Fleet`) writes instance rows; a state
changes only by :meth:`StateStore.transition`, checked against the state machine in the
same transaction.
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
from vastnb.errors import ConfigError
from vastnb.lifecycle.migrations import MIGRATIONS, SCHEMA_VERSION
from vastnb.lifecycle.rental import Rental
from vastnb.lifecycle.states import InstanceState, check_transition

__all__ = ["StateStore", "SessionInfo"]


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


_COLUMNS = [f.name for f in fields(Rental)]
#: Columns :meth:`StateStore.update` may change: the state goes through transition().
_UPDATABLE = {"keep", "session"}


def _rental(row: tuple[Any, ...]) -> Rental:
    values = dict(zip(_COLUMNS, row, strict=False))
    values["keep"] = bool(values["keep"])
    values["state"] = InstanceState(values["state"])
    return Rental(**values)


def _value(value: Any) -> Any:
    return value.value if isinstance(value, InstanceState) else value


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
        finally:
            db.close()
        self._migrate()

    def _migrate(self) -> None:
        """Bring the file to :data:`SCHEMA_VERSION`, a copy of it set aside first."""
        db = sqlite3.connect(self.path, timeout=30.0, isolation_level=None)
        try:
            version = db.execute("PRAGMA user_version").fetchone()[0]
            if version > SCHEMA_VERSION:
                raise ConfigError(
                    f"{self.path} was written by a newer vastnb (schema {version}; this one knows up to "
                    f"{SCHEMA_VERSION}): upgrade vastnb, or point VASTNB_HOME at another folder."
                )
            made = db.execute("SELECT count(*) FROM sqlite_master").fetchone()[0]  # not a new file
            if version < SCHEMA_VERSION and made and not self._backup(version).exists():
                self._back_up(db, version)  # outside the transaction: a backup must read the file
        finally:
            db.close()
        if version == SCHEMA_VERSION:
            return
        with self.transaction() as db:  # one process migrates; the others wait, then find it done
            for migrate in MIGRATIONS[db.execute("PRAGMA user_version").fetchone()[0] :]:
                migrate(db)
            db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")

    def _backup(self, version: int) -> Path:
        return self.path.with_name(f"{self.path.name}.v{version}.bak")

    def _back_up(self, db: sqlite3.Connection, version: int) -> None:
        """A consistent copy of the file before it is migrated from ``version``, made
        whole under a temporary name and then renamed (no half-written backups)."""
        final = self._backup(version)
        partial = final.with_name(f"{final.name}.{os.getpid()}")
        copy = sqlite3.connect(partial)
        try:
            db.backup(copy)
        finally:
            copy.close()
        os.chmod(partial, 0o600)  # it holds the instances' keys too
        os.replace(partial, final)

    @property
    def version(self) -> int:
        """The schema version of the file (:data:`SCHEMA_VERSION` once opened)."""
        with self.transaction() as db:
            return int(db.execute("PRAGMA user_version").fetchone()[0])

    @contextlib.contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """One write transaction (``BEGIN IMMEDIATE``) on a short connection of its own:
        committed when the block ends, rolled back if it raises. Other tables of the same
        file (the job queue's) use it too."""
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
        with self.transaction() as db:
            db.execute(
                "INSERT INTO sessions VALUES (?, ?, ?, ?, ?, ?)",
                (info.id, info.host, info.pid, info.token, info.started_at, None),
            )
        return info

    def end_session(self, session: str) -> None:
        with self.transaction() as db:
            db.execute("UPDATE sessions SET ended_at = ? WHERE id = ?", (time.time(), session))

    def session(self, session: str) -> SessionInfo | None:
        with self.transaction() as db:
            row = db.execute("SELECT * FROM sessions WHERE id = ?", (session,)).fetchone()
        return SessionInfo(*row) if row else None

    # -- instances ------------------------------------------------------------------------

    def record(self, rental: Rental) -> None:
        """Write a new instance, and its first state in the history."""
        with self.transaction() as db:
            db.execute(
                f"INSERT OR REPLACE INTO instances VALUES ({', '.join('?' * len(_COLUMNS))})",
                [_value(getattr(rental, c)) for c in _COLUMNS],
            )
            db.execute(
                "INSERT INTO history VALUES (?, ?, ?, ?, ?, ?)",
                (rental.url, rental.id, rental.created_at, rental.state.value, rental.dph_total, "created"),
            )

    def transition(self, url: str, instance_id: int, state: InstanceState, note: str | None = None) -> Rental | None:
        """Move one instance to ``state`` (checked against the state machine, in the same
        transaction) and write it into the history with ``note``; the instance after, or
        None if the store has no such instance. Destroyed is final: destroying again
        adds a note, and the first time counts."""
        with self.transaction() as db:
            row = db.execute(
                "SELECT state, dph_total FROM instances WHERE url = ? AND id = ?", (url, instance_id)
            ).fetchone()
            if row is None:
                return None
            check_transition(instance_id, InstanceState(row[0]), state)
            if state is InstanceState.DESTROYED:
                db.execute(
                    "UPDATE instances SET state = ?, destroyed_at = coalesce(destroyed_at, ?) WHERE url = ? AND id = ?",
                    (state.value, time.time(), url, instance_id),
                )
            else:
                db.execute("UPDATE instances SET state = ? WHERE url = ? AND id = ?", (state.value, url, instance_id))
            price = None if state is InstanceState.DESTROYED else row[1]
            db.execute(
                "INSERT INTO history VALUES (?, ?, ?, ?, ?, ?)",
                (url, instance_id, time.time(), state.value, price, note),
            )
            got = db.execute("SELECT * FROM instances WHERE url = ? AND id = ?", (url, instance_id)).fetchone()
        return _rental(got)

    def update(self, url: str, instance_id: int, *, note: str | None = None, **changes: Any) -> None:
        """Change who owns an instance, or whether it is kept; a ``note`` goes
        into the history. The state changes only by :meth:`transition`."""
        refused = set(changes) - _UPDATABLE
        if refused:
            raise ValueError(f"update() cannot change {', '.join(sorted(refused))} (the state changes by transition())")
        with self.transaction() as db:
            if changes:
                sets = ", ".join(f"{c} = ?" for c in changes)
                db.execute(
                    f"UPDATE instances SET {sets} WHERE url = ? AND id = ?", [*changes.values(), url, instance_id]
                )
            if note:
                row = db.execute(
                    "SELECT state, dph_total FROM instances WHERE url = ? AND id = ?", (url, instance_id)
                ).fetchone()
                if row:
                    db.execute(
                        "INSERT INTO history VALUES (?, ?, ?, ?, ?, ?)",
                        (url, instance_id, time.time(), row[0], row[1], note),
                    )

    def get(self, url: str, instance_id: int) -> Rental | None:
        with self.transaction() as db:
            row = db.execute("SELECT * FROM instances WHERE url = ? AND id = ?", (url, instance_id)).fetchone()
        return _rental(row) if row else None

    def find(self, url: str, name: str) -> Rental | None:
        """The live instance called ``name`` (else the latest one of that name)."""
        with self.transaction() as db:
            row = db.execute(
                "SELECT * FROM instances WHERE url = ? AND name = ? ORDER BY destroyed_at IS NULL DESC, created_at DESC LIMIT 1",
                (url, name),
            ).fetchone()
        return _rental(row) if row else None

    def instances(self, url: str, *, live: bool = True) -> list[Rental]:
        query = (
            "SELECT * FROM instances WHERE url = ?"
            + (" AND destroyed_at IS NULL" if live else "")
            + " ORDER BY created_at"
        )
        with self.transaction() as db:
            return [_rental(row) for row in db.execute(query, (url,))]

    def history(self, url: str, instance_id: int) -> list[tuple[float, str, float | None, str | None]]:
        """(time, state, $/h, note) for one instance, oldest first."""
        with self.transaction() as db:
            return db.execute(
                "SELECT at, state, dph_total, note FROM history WHERE url = ? AND id = ? ORDER BY at, rowid",
                (url, instance_id),
            ).fetchall()
