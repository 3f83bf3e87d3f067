"""The ledger: what each instance cost, by state, as intervals in the state store.

Every time vastnb reads instances from the market (a launch waiting for its box, a job's
watch, ``ps``, the controller's poll), :meth:`Ledger.observe` records what billing needs:
the state, ``dph_base`` (the GPUs' $/h, or the bid), the disk's size and $/GB-month, and
the bandwidth counters and $/GB. Readings with the same rates extend one open interval; a
change closes it and opens the next, so a month of polling is a few rows per instance, not
a row per second. Between two readings the earlier rates hold: a change (a stop Vast made
by itself included) is billed from the reading that sees it. That is an estimate, which is
why reports are reconciled with the market's own charges (:mod:`vastnb.costs.report`).

Billing follows Vast's: the GPU while ``running`` (or ``frozen``); the disk in every state
but ``offline``, stopped included, from creation on; bandwidth on every GB moved. Times
are the market's: the clock of its answers' ``Date`` header (:meth:`VastAPI.now`).

Each extension of an interval is also added to ``ledger_days``, one row per instance and
UTC day, in the same transaction: a report over months reads those, not every interval.
"""

from __future__ import annotations

import dataclasses
import math
import sqlite3
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from vastnb.lifecycle.store import StateStore
from vastnb.market.records import Instance

__all__ = ["GPU_BILLED", "DAY_S", "Interval", "Reading", "Ledger", "billed", "day_of", "day_pieces"]

#: States in which Vast bills the GPUs.
GPU_BILLED = frozenset({"running", "frozen"})
#: The one state in which Vast bills nothing.
UNBILLED = frozenset({"offline"})
HOURS_PER_MONTH = 720.0  # Vast's storage_cost is $/GB per month of 30 days
DAY_S = 86_400.0
#: Bandwidth counters above this many GB are not believed (the market is hostile input).
MAX_COUNTER_GB = 1e9


def day_of(at: float) -> float:
    """The start of ``at``'s UTC day."""
    return math.floor(at / DAY_S) * DAY_S


def _number(raw: Any, key: str, default: float = 0.0, *, top: float = 1e12) -> float:
    """A finite, non-negative number from the market's record (anything else: ``default``)."""
    try:
        value = float(raw.get(key))
    except (TypeError, ValueError):
        return default
    return value if math.isfinite(value) and 0.0 <= value <= top else default


def billed(state: str, dph_base: float, disk_gb: float, storage_cost: float) -> tuple[float, float]:
    """($/h for the GPUs, $/h for the disk) an instance in ``state`` is billed, as Vast does."""
    gpu = dph_base if state in GPU_BILLED else 0.0
    return gpu, 0.0 if state in UNBILLED else disk_gb * storage_cost / HOURS_PER_MONTH


@dataclass(frozen=True)
class Interval:
    """A closed interval of constant rates, known after the fact (see :meth:`Ledger.append`)."""

    instance_id: int
    start: float
    end: float
    state: str
    dph_base: float
    disk_gb: float
    storage_cost: float
    up_gb: float = 0.0  # moved during the interval
    down_gb: float = 0.0
    up_cost: float = 0.0  # $/GB
    down_cost: float = 0.0


@dataclass(frozen=True)
class Reading:
    """One instance as the market showed it at ``at``: what its billing depends on."""

    instance_id: int
    at: float
    state: str
    dph_base: float
    disk_gb: float
    storage_cost: float  # $/GB-month
    up_cost: float  # $/GB
    down_cost: float
    up_total_gb: float  # the instance's bandwidth counters so far
    down_total_gb: float
    created: float  # its start_date: the disk bills from then

    @classmethod
    def of(cls, instance: Instance, at: float) -> Reading:
        raw = instance.raw
        start = _number(raw, "start_date", math.nan)
        status = instance.actual_status.value
        return cls(
            instance_id=instance.id,
            at=at,
            state="created" if status == "provisioning" else status,
            dph_base=_number(raw, "dph_base", top=1e4),
            disk_gb=_number(raw, "disk_space", top=1e7),
            storage_cost=_number(raw, "storage_cost", top=1e3),
            up_cost=_number(raw, "inet_up_cost", top=1e3),
            down_cost=_number(raw, "inet_down_cost", top=1e3),
            up_total_gb=_number(raw, "inet_up_billed", top=MAX_COUNTER_GB),
            down_total_gb=_number(raw, "inet_down_billed", top=MAX_COUNTER_GB),
            created=min(start, at) if math.isfinite(start) else at,
        )

    @property
    def gpu_dph(self) -> float:
        """$/h billed for the GPUs in this state."""
        return billed(self.state, self.dph_base, self.disk_gb, self.storage_cost)[0]

    @property
    def disk_dph(self) -> float:
        """$/h billed for the disk in this state."""
        return billed(self.state, self.dph_base, self.disk_gb, self.storage_cost)[1]

    @property
    def rates(self) -> tuple[Any, ...]:
        """What an interval holds constant."""
        return (self.state, self.dph_base, self.disk_gb, self.storage_cost, self.up_cost, self.down_cost)


_OPEN = """SELECT row, instance_id, start, end, state, dph_base, disk_gb, storage_cost, up_cost, down_cost,
           gpu_dph, disk_dph, up_mark, down_mark FROM ledger WHERE url = ? AND open = 1"""


@dataclass
class _Open:
    row: int
    instance_id: int
    start: float
    end: float
    rates: tuple[Any, ...]
    gpu_dph: float
    disk_dph: float
    up_mark: float
    down_mark: float


class Ledger:
    """The ledger of one market's instances in ``store`` (see the module doc)."""

    def __init__(self, store: StateStore, url: str, clock: Callable[[], float] = time.time) -> None:
        self.store, self.url = store, url
        self.now = clock  # the market's time (its answers' Date), in which intervals are kept

    def observe(self, seen: Sequence[Instance], gone: Iterable[int] = (), complete: bool = False) -> None:
        """Record ``seen`` instances (vastnb's own: others are not its to count) and close
        the intervals of those ``gone`` from the market; ``complete``: ``seen`` is the
        whole account, so any other open interval ends too."""
        now = self.now()
        readings = [Reading.of(i, now) for i in seen]
        gone = set(gone)
        asked = {r.instance_id for r in readings} | gone
        if not asked and not complete:
            return
        only = "" if complete else f" AND {{}} IN ({','.join(str(int(i)) for i in asked)})"
        with self.store.transaction() as db:
            ours = dict(
                db.execute("SELECT id, destroyed_at FROM instances WHERE url = ?" + only.format("id"), (self.url,))
            )
            rows = db.execute(_OPEN + only.format("instance_id"), (self.url,))
            intervals = {o.instance_id: o for o in map(_open_row, rows)}
            for reading in readings:
                if reading.instance_id in ours:
                    self._record(db, intervals.get(reading.instance_id), reading)
            if complete:
                gone |= set(intervals) - {r.instance_id for r in readings}
            for instance_id in gone & set(intervals):
                destroyed = ours.get(instance_id)
                at = now if destroyed is None else min(now, destroyed + now - time.time())
                self._close(db, intervals[instance_id], at)

    def append(self, intervals: Iterable[Interval]) -> int:
        """Write closed ``intervals`` known after the fact (a history brought from elsewhere,
        a generated month) with their days, in one transaction; how many were written."""
        rows: list[tuple[Any, ...]] = []
        days: dict[tuple[int, float], list[float]] = {}
        for i in intervals:
            if not i.end >= i.start:
                raise ValueError(f"interval of instance {i.instance_id} ends before it starts: {i}")
            gpu_dph, disk_dph = billed(i.state, i.dph_base, i.disk_gb, i.storage_cost)
            rows.append(
                (self.url, i.instance_id, i.start, i.end, i.state, i.dph_base, i.disk_gb, i.storage_cost)
                + (gpu_dph, disk_dph, i.up_gb, i.down_gb, i.up_cost, i.down_cost)
            )
            for day, seconds in day_pieces(i.start, i.end):
                _add(
                    days,
                    (i.instance_id, day),
                    gpu_dph * seconds / 3600,
                    disk_dph * seconds / 3600,
                    0,
                    0,
                    seconds if gpu_dph else 0,
                )
            if i.up_gb or i.down_gb:
                _add(days, (i.instance_id, day_of(i.end)), 0, 0, i.up_gb * i.up_cost, i.down_gb * i.down_cost, 0)
        with self.store.transaction() as db:
            db.executemany(
                "INSERT INTO ledger (url, instance_id, start, end, open, state, dph_base, disk_gb, storage_cost,"
                " gpu_dph, disk_dph, up_gb, down_gb, up_cost, down_cost, up_mark, down_mark)"
                " VALUES (?, ?, ?, ?, 0, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 0, 0)",
                rows,
            )
            db.executemany(_ADD_DAY, [(self.url, *key, *sums) for key, sums in days.items()])
        return len(rows)

    def gone(self, instance_id: int) -> None:
        """``instance_id`` was destroyed: its open interval ends now."""
        self.observe([], [instance_id])

    def _record(self, db: sqlite3.Connection, interval: _Open | None, reading: Reading) -> None:
        if interval is None:
            seen = db.execute(
                "SELECT 1 FROM ledger WHERE url = ? AND instance_id = ? LIMIT 1", (self.url, reading.instance_id)
            ).fetchone()
            if seen:  # taken for gone, yet here again: counted from now on
                self._open(db, reading, reading.at, reading.up_total_gb, reading.down_total_gb)
                return
            # Its first reading: the disk has billed since it was created, in whatever state.
            self._open(db, dataclasses.replace(reading, state="created"), reading.created, 0.0, 0.0)
            interval = _open_row(db.execute(_OPEN + " AND instance_id = ?", (self.url, reading.instance_id)).fetchone())
        at = max(reading.at, interval.end)
        up = _delta(reading.up_total_gb, interval.up_mark)
        down = _delta(reading.down_total_gb, interval.down_mark)
        self._accrue(db, interval, at, up, down)
        same = reading.rates == interval.rates
        db.execute(
            "UPDATE ledger SET end = ?, open = ?, up_gb = up_gb + ?, down_gb = down_gb + ?, up_mark = ?, down_mark = ?"
            " WHERE row = ?",
            (at, int(same), up, down, reading.up_total_gb, reading.down_total_gb, interval.row),
        )
        if not same:
            self._open(db, reading, at, reading.up_total_gb, reading.down_total_gb)

    def _open(self, db: sqlite3.Connection, rates: Reading, start: float, up_mark: float, down_mark: float) -> None:
        db.execute(
            "INSERT INTO ledger (url, instance_id, start, end, open, state, dph_base, disk_gb, storage_cost,"
            " gpu_dph, disk_dph, up_gb, down_gb, up_cost, down_cost, up_mark, down_mark)"
            " VALUES (?, ?, ?, ?, 1, ?, ?, ?, ?, ?, ?, 0, 0, ?, ?, ?, ?)",
            (
                self.url,
                rates.instance_id,
                start,
                start,
                rates.state,
                rates.dph_base,
                rates.disk_gb,
                rates.storage_cost,
                rates.gpu_dph,
                rates.disk_dph,
                rates.up_cost,
                rates.down_cost,
                up_mark,
                down_mark,
            ),
        )

    def _close(self, db: sqlite3.Connection, interval: _Open, at: float) -> None:
        at = max(at, interval.end)
        self._accrue(db, interval, at, 0.0, 0.0)
        db.execute("UPDATE ledger SET end = ?, open = 0 WHERE row = ?", (at, interval.row))

    def _accrue(self, db: sqlite3.Connection, interval: _Open, until: float, up: float, down: float) -> None:
        """Add to ``ledger_days`` what ``interval`` cost from its end to ``until``, and the
        ``up`` and ``down`` GB moved meanwhile (billed on ``until``'s day)."""
        rows = [
            (day, interval.gpu_dph * s / 3600, interval.disk_dph * s / 3600, 0.0, 0.0, s if interval.gpu_dph else 0.0)
            for day, s in day_pieces(interval.end, until)
        ]
        if up or down:
            rows.append((day_of(until), 0.0, 0.0, up * interval.rates[4], down * interval.rates[5], 0.0))
        db.executemany(_ADD_DAY, [(self.url, interval.instance_id, *row) for row in rows])


_ADD_DAY = (
    "INSERT INTO ledger_days (url, instance_id, day, gpu, disk, bwu, bwd, gpu_s) VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
    " ON CONFLICT DO UPDATE SET gpu = gpu + excluded.gpu, disk = disk + excluded.disk,"
    " bwu = bwu + excluded.bwu, bwd = bwd + excluded.bwd, gpu_s = gpu_s + excluded.gpu_s"
)


def _add(days: dict[tuple[int, float], list[float]], key: tuple[int, float], *amounts: float) -> None:
    sums = days.setdefault(key, [0.0] * len(amounts))
    for k, amount in enumerate(amounts):
        sums[k] += amount


def day_pieces(t0: float, t1: float) -> Iterable[tuple[float, float]]:
    """(UTC day, seconds) of the span from ``t0`` to ``t1`` that fall in each day."""
    while t1 > t0:
        day = day_of(t0)
        cut = min(t1, day + DAY_S)
        yield day, cut - t0
        t0 = cut


def _delta(total: float, mark: float) -> float:
    """GB moved since the counter read ``mark`` (a counter that went back was reset)."""
    return total - mark if total >= mark else total


def _open_row(row: Sequence[Any]) -> _Open:
    return _Open(
        row=row[0],
        instance_id=row[1],
        start=row[2],
        end=row[3],
        rates=tuple(row[4:10]),
        gpu_dph=row[10],
        disk_dph=row[11],
        up_mark=row[12],
        down_mark=row[13],
    )
