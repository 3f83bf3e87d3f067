"""The state store's schema, as a list of forward migrations.

``PRAGMA user_version`` is the number of migrations applied; opening a store applies the
missing ones in one transaction, after copying the file aside (``state.db.v<N>.bak``).
vastnb 0.1.0 wrote its tables without a version (0). A file from a newer vastnb (a higher
version) is refused rather than guessed at. Add a migration at the end; never edit one
that has shipped.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable

__all__ = ["MIGRATIONS", "SCHEMA_VERSION"]


def _v1_tables(db: sqlite3.Connection) -> None:
    """vastnb 0.1.0's tables (also made, empty, in a new file)."""
    db.execute("""CREATE TABLE IF NOT EXISTS sessions (
        id TEXT PRIMARY KEY, host TEXT NOT NULL, pid INTEGER NOT NULL, token TEXT,
        started_at REAL NOT NULL, ended_at REAL)""")
    db.execute("""CREATE TABLE IF NOT EXISTS instances (
        url TEXT NOT NULL, id INTEGER NOT NULL, name TEXT NOT NULL, profile TEXT NOT NULL,
        label TEXT NOT NULL, session TEXT NOT NULL, keep INTEGER NOT NULL DEFAULT 0,
        offer_id INTEGER, machine_id INTEGER, gpu TEXT, num_gpus INTEGER, price_per_hour REAL,
        bid REAL, max_duration_hours REAL, instance_key TEXT, state TEXT NOT NULL,
        created_at REAL NOT NULL, destroyed_at REAL,
        PRIMARY KEY (url, id))""")
    db.execute("""CREATE TABLE IF NOT EXISTS history (
        url TEXT NOT NULL, id INTEGER NOT NULL, at REAL NOT NULL, state TEXT NOT NULL,
        price_per_hour REAL, note TEXT)""")
    db.execute("CREATE INDEX IF NOT EXISTS history_instance ON history (url, id)")


def _v2_vast_names(db: sqlite3.Connection) -> None:
    """Columns named as Vast names them (gpu_name, dph_total); states from the state
    machine only (0.1.0 wrote no others; anything else is kept as a note)."""
    db.execute("ALTER TABLE instances RENAME COLUMN gpu TO gpu_name")
    db.execute("ALTER TABLE instances RENAME COLUMN price_per_hour TO dph_total")
    db.execute("ALTER TABLE history RENAME COLUMN price_per_hour TO dph_total")
    known = "('created', 'loading', 'running', 'stopped', 'starting', 'destroyed')"
    db.execute(f"""INSERT INTO history SELECT url, id, strftime('%s', 'now'), 'destroyed', NULL,
                   'unknown state ' || state || ' from an older vastnb, taken as destroyed'
                   FROM instances WHERE state NOT IN {known} AND destroyed_at IS NOT NULL""")
    db.execute(f"UPDATE instances SET state = 'destroyed' WHERE state NOT IN {known} AND destroyed_at IS NOT NULL")
    db.execute(f"UPDATE instances SET state = 'created' WHERE state NOT IN {known}")  # live: let the market say


def _v3_jobs(db: sqlite3.Connection) -> None:
    """The job queue (:mod:`vastnb.jobs`): jobs, and what happened to each."""
    db.execute("""CREATE TABLE jobs (
        id INTEGER PRIMARY KEY AUTOINCREMENT, url TEXT NOT NULL, name TEXT NOT NULL, profile TEXT NOT NULL,
        state TEXT NOT NULL, priority INTEGER NOT NULL DEFAULT 0, submitted_at REAL NOT NULL,
        payload BLOB NOT NULL, checkpoint TEXT, max_recoveries INTEGER NOT NULL DEFAULT 0,
        attempts INTEGER NOT NULL DEFAULT 0, controller TEXT, claimed_at REAL, finished_at REAL, error TEXT)""")
    db.execute("CREATE INDEX jobs_queue ON jobs (url, state, priority DESC, submitted_at, id)")
    db.execute("""CREATE TABLE job_events (
        job INTEGER NOT NULL, at REAL NOT NULL, event TEXT NOT NULL, detail TEXT,
        instance_id INTEGER, dph_total REAL)""")
    db.execute("CREATE INDEX job_events_job ON job_events (job)")


def _v4_job_runs(db: sqlite3.Connection) -> None:
    """What a controller needs to run a job and pick it up again after a restart: the kind
    of task, its settings (the profile as submitted, retries), the box and task it runs
    as, recoveries and error retries used; and which job owns an instance."""
    db.execute("ALTER TABLE jobs ADD COLUMN kind TEXT NOT NULL DEFAULT 'call'")
    db.execute("ALTER TABLE jobs ADD COLUMN settings TEXT NOT NULL DEFAULT '{}'")
    db.execute("ALTER TABLE jobs ADD COLUMN instance_id INTEGER")
    db.execute("ALTER TABLE jobs ADD COLUMN task_id INTEGER")
    db.execute("ALTER TABLE jobs ADD COLUMN recoveries INTEGER NOT NULL DEFAULT 0")
    db.execute("ALTER TABLE jobs ADD COLUMN error_retries INTEGER NOT NULL DEFAULT 0")
    db.execute("ALTER TABLE instances ADD COLUMN job INTEGER")


def _v5_charged_to(db: sqlite3.Connection) -> None:
    """The team and project an instance's spending counts against (budgets.yaml)."""
    db.execute("ALTER TABLE instances ADD COLUMN team TEXT")
    db.execute("ALTER TABLE instances ADD COLUMN project TEXT")


def _v6_budget_alerts(db: sqlite3.Connection) -> None:
    """Each budget threshold reached, once per month (vastnb.costs.enforce)."""
    db.execute("""CREATE TABLE budget_alerts (
        scope TEXT NOT NULL, month TEXT NOT NULL, threshold REAL NOT NULL, at REAL NOT NULL, spent REAL NOT NULL,
        limit_usd REAL NOT NULL, PRIMARY KEY (scope, month, threshold))""")


def _v7_ledger(db: sqlite3.Connection) -> None:
    """The ledger (:mod:`vastnb.lifecycle.ledger`): what each instance cost, as intervals
    of constant rates, and the same summed per instance and UTC day; and the user who
    rented each instance."""
    db.execute("""CREATE TABLE ledger (
        row INTEGER PRIMARY KEY, url TEXT NOT NULL, instance_id INTEGER NOT NULL,
        start REAL NOT NULL, end REAL NOT NULL, open INTEGER NOT NULL, state TEXT NOT NULL,
        dph_base REAL NOT NULL, disk_gb REAL NOT NULL, storage_cost REAL NOT NULL,
        gpu_dph REAL NOT NULL, disk_dph REAL NOT NULL, up_gb REAL NOT NULL, down_gb REAL NOT NULL,
        up_cost REAL NOT NULL, down_cost REAL NOT NULL, up_mark REAL NOT NULL, down_mark REAL NOT NULL)""")
    db.execute("CREATE INDEX ledger_open ON ledger (url, instance_id) WHERE open = 1")
    # A window's edge finds the intervals over it: by start among those of a day or less,
    # and among the few longer ones by end.
    db.execute("CREATE INDEX ledger_start ON ledger (url, start)")
    db.execute("CREATE INDEX ledger_long ON ledger (url, end) WHERE end - start > 86400")
    db.execute("""CREATE TABLE ledger_days (
        url TEXT NOT NULL, instance_id INTEGER NOT NULL, day REAL NOT NULL,
        gpu REAL NOT NULL DEFAULT 0, disk REAL NOT NULL DEFAULT 0, bwu REAL NOT NULL DEFAULT 0,
        bwd REAL NOT NULL DEFAULT 0, gpu_s REAL NOT NULL DEFAULT 0,
        PRIMARY KEY (url, day, instance_id)) WITHOUT ROWID""")
    db.execute("ALTER TABLE instances ADD COLUMN user TEXT")


#: MIGRATIONS[n] takes a file from version n to n + 1.
MIGRATIONS: list[Callable[[sqlite3.Connection], None]] = [
    _v1_tables,
    _v2_vast_names,
    _v3_jobs,
    _v4_job_runs,
    _v5_charged_to,
    _v6_budget_alerts,
    _v7_ledger,
]
SCHEMA_VERSION = len(MIGRATIONS)
