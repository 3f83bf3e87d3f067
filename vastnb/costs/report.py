"""Cost reports from the ledger: spending by instance, job, profile, GPU, team, project,
user and period, as pandas DataFrames; and the ledger reconciled with the market's charges.

A report reads ``ledger_days`` (what each instance cost each UTC day, kept by
:mod:`vastnb.lifecycle.ledger` as it records), so months of intervals cost a few rows per
instance and day. Only a window edge that falls inside a day is cut from the intervals
themselves.
"""

from __future__ import annotations

import datetime as dt
import sqlite3
import time
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
import pandas as pd

from vastnb.costs.guard import month_start
from vastnb.errors import ConfigError
from vastnb.lifecycle.ledger import DAY_S, day_of, day_pieces
from vastnb.lifecycle.store import StateStore
from vastnb.market.api import VastAPI
from vastnb.profiles.budgets import Budget

__all__ = ["DIMENSIONS", "PERIODS", "REPORT_COLUMNS", "as_epoch", "cost_report", "reconcile", "parse_by"]

#: What a report can be broken down by, and the column each reads.
DIMENSIONS = {
    "instance": "instance_id",
    "job": "job",
    "profile": "profile",
    "gpu": "gpu_name",
    "team": "team",
    "project": "project",
    "user": "user",
}
#: Periods: each row's day, its week (from Monday) or its month.
PERIODS = {"day": "D", "week": "W-SUN", "month": "M"}
REPORT_COLUMNS = [
    "gpu_usd",
    "disk_usd",
    "bandwidth_usd",
    "total_usd",
    "gpu_hours",
    "usd_per_gpu_hour",
    "share_of_budget",
]
_MONEY = ["gpu", "disk", "bwu", "bwd", "gpu_s"]
_ATTRIBUTION = """SELECT i.id, i.name, i.job, j.name, i.profile, i.gpu_name, COALESCE(i.num_gpus, 1), i.team, i.project,
    i.user FROM instances i LEFT JOIN jobs j ON j.id = i.job WHERE i.url = ?"""
_ATTRIBUTION_COLUMNS = [
    "instance_id",
    "name",
    "job_id",
    "job",
    "profile",
    "gpu_name",
    "num_gpus",
    "team",
    "project",
    "user",
]


def as_epoch(when: Any, *, what: str) -> float:
    """Epoch seconds from a date string ("2026-11-01"), a datetime (naive is UTC), a
    pandas Timestamp or a number."""
    if isinstance(when, (int, float)) and not isinstance(when, bool):
        return float(when)
    try:
        stamp = pd.Timestamp(when)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{what}={when!r} is not a date: give 'YYYY-MM-DD', a datetime or epoch seconds") from exc
    if stamp is pd.NaT:
        raise ConfigError(f"{what}={when!r} is not a date: give 'YYYY-MM-DD', a datetime or epoch seconds")
    stamp = stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")
    return float(stamp.timestamp())


def parse_by(by: str | Sequence[str] | None, freq: str | None) -> tuple[list[str], str | None]:
    """The dimensions and the period of a report; unknown names are a clear error."""
    names = [by] if isinstance(by, str) else list(by or [])
    names = [n.strip() for name in names for n in name.split(",") if n.strip()]
    periods = [n for n in names if n in PERIODS]
    if freq is not None:
        periods.append(freq)
    dims = [n for n in names if n not in PERIODS]
    unknown = [n for n in [*dims, *periods] if n not in DIMENSIONS and n not in PERIODS]
    if unknown:
        raise ConfigError(
            f"cannot break costs down by {', '.join(map(repr, unknown))}: "
            f"choose from {', '.join([*DIMENSIONS, *PERIODS])}"
        )
    if len(set(periods)) > 1:
        raise ConfigError(f"one period at a time, not {' and '.join(sorted(set(periods)))}")
    return list(dict.fromkeys(dims)), periods[0] if periods else None


def _days(db: sqlite3.Connection, url: str, since: float, until: float | None) -> list[tuple[Any, ...]]:
    """(instance, day, gpu $, disk $, up $, down $, GPU seconds) from ``since`` to ``until``
    (None: all recorded so far): whole days from ``ledger_days``, a window's edge inside a
    day cut from the intervals."""
    first = day_of(since)
    whole_from = first if since == first else first + DAY_S
    whole_until = day_of(until) if until is not None else float("inf")
    rows = db.execute(
        "SELECT instance_id, day, gpu, disk, bwu, bwd, gpu_s FROM ledger_days WHERE url = ? AND day >= ? AND day < ?",
        (url, whole_from, whole_until),
    ).fetchall()
    edges = []
    if since != first:
        edges.append((since, first + DAY_S if until is None else min(until, first + DAY_S)))
    if until is not None and until > whole_until >= whole_from:
        edges.append((whole_until, until))
    for t0, t1 in edges:
        rows.extend(_cut(db, url, t0, t1))
    return rows


_COLUMNS = "instance_id, start, end, gpu_dph, disk_dph, up_gb, down_gb, up_cost, down_cost"
#: The intervals over a window: those of a day or less by their start (index ledger_start),
#: the longer ones by their end (ledger_long).
_OVER = (
    f"SELECT {_COLUMNS} FROM ledger WHERE url = ? AND start >= ? AND start < ? AND end >= ? AND end - start <= 86400"
    f" UNION ALL SELECT {_COLUMNS} FROM ledger WHERE url = ? AND end - start > 86400 AND end >= ? AND start < ?"
)


def _cut(db: sqlite3.Connection, url: str, t0: float, t1: float) -> list[tuple[Any, ...]]:
    """The same rows as ``ledger_days`` holds, for the part of one day from ``t0`` to ``t1``."""
    out = []
    for instance_id, start, end, gpu_dph, disk_dph, up, down, up_cost, down_cost in db.execute(
        _OVER, (url, t0 - DAY_S, t1, t0, url, t0, t1)
    ):
        seconds = sum(s for _, s in day_pieces(max(start, t0), min(end, t1)))
        moved = t0 <= end < t1  # an interval's traffic is counted at its end
        out.append(
            (
                instance_id,
                day_of(t0),
                gpu_dph * seconds / 3600,
                disk_dph * seconds / 3600,
                up * up_cost if moved else 0.0,
                down * down_cost if moved else 0.0,
                seconds if gpu_dph else 0.0,
            )
        )
    return out


def cost_report(
    store: StateStore,
    url: str,
    *,
    by: str | Sequence[str] | None = ("team", "project"),
    since: Any = None,
    until: Any = None,
    freq: str | None = None,
    now: float,
    budgets: Iterable[Budget] = (),
) -> pd.DataFrame:
    """What the ledger says was spent from ``since`` (default: the start of this month,
    UTC) to ``until`` (default: all recorded so far), one row per value of ``by`` (and period, with
    ``freq`` = day, week or month), most expensive first. ``share_of_budget`` is the total
    over the monthly limit of the budget that applies to a row's team (and project)."""
    dims, period = parse_by(by, freq)
    start = as_epoch(since, what="since") if since is not None else month_start(now)
    end = as_epoch(until, what="until") if until is not None else None
    if end is not None and end < start:
        raise ConfigError(f"until ({_iso(end)}) is before since ({_iso(start)})")
    with store.transaction() as db:
        days = pd.DataFrame(_days(db, url, start, end), columns=["instance_id", "day", *_MONEY])
        who = pd.DataFrame(db.execute(_ATTRIBUTION, (url,)).fetchall(), columns=_ATTRIBUTION_COLUMNS)
    rows = days.merge(who, on="instance_id", how="left")
    rows["gpu_s"] *= rows["num_gpus"]
    keys = [
        key for d in dims for key in (["job_id", "job"] if d == "job" else [DIMENSIONS[d]])
    ]  # jobs may share a name
    if period:
        stamps = pd.to_datetime(rows["day"], unit="s")
        rows["period"] = stamps.dt.to_period(PERIODS[period]).dt.start_time
        keys.append("period")
    money = rows.groupby(keys, dropna=False, sort=False)[_MONEY].sum() if keys else rows[_MONEY].sum().to_frame().T
    frame = pd.DataFrame(
        {
            "gpu_usd": money["gpu"],
            "disk_usd": money["disk"],
            "bandwidth_usd": money["bwu"] + money["bwd"],
            "total_usd": money["gpu"] + money["disk"] + money["bwu"] + money["bwd"],
            "gpu_hours": money["gpu_s"] / 3600,
        }
    )
    frame["usd_per_gpu_hour"] = (frame["gpu_usd"] / frame["gpu_hours"]).where(frame["gpu_hours"] > 0)
    frame = frame.reset_index() if keys else frame.reset_index(drop=True)
    frame["share_of_budget"] = _shares(frame, dims, list(budgets))
    frame = frame.rename(columns={v: k for k, v in DIMENSIONS.items() if k in dims})
    sort = (["period"] if period else []) + ["total_usd"]
    frame = frame.sort_values(sort, ascending=[True] * (len(sort) - 1) + [False], kind="stable")
    shown = [column for d in dims for column in (["job_id", "job"] if d == "job" else [d])]
    return frame[[*shown, *(["period"] if period else []), *REPORT_COLUMNS]].reset_index(drop=True)


def _shares(frame: pd.DataFrame, dims: list[str], budgets: list[Budget]) -> Any:
    """Each row's total over the monthly limit of the budget for its team (and project,
    when the report is by project); NaN where none applies."""
    if "team" not in dims or not budgets:
        return np.nan
    limits = {(b.team, b.project): b.monthly_limit_usd for b in budgets}
    by_project = "project" in dims
    limit = [
        limits.get((team, project if by_project else None), limits.get((team, None), np.nan))
        for team, project in zip(frame["team"], frame["project"] if by_project else [None] * len(frame), strict=True)
    ]
    return frame["total_usd"] / pd.Series(limit, index=frame.index, dtype=float)


def reconcile(store: StateStore, url: str, api: VastAPI, *, since: float, until: float | None) -> pd.DataFrame:
    """The ledger's estimate of each instance against the market's charges for it, item by
    item (gpu, disk, bwu, bwd), over the same window (``until`` None: up to now); ``differs``
    marks an instance whose totals are more than a cent and 1% apart."""
    with store.transaction() as db:
        days = pd.DataFrame(_days(db, url, since, until), columns=["instance_id", "day", *_MONEY])
        names = dict(db.execute("SELECT id, name FROM instances WHERE url = ?", (url,)).fetchall())
    estimate = days.groupby("instance_id")[_MONEY[:4]].sum()
    charged: dict[int, dict[str, float]] = {}
    for charge in api.charges(since, until if until is not None else time.time() + 366 * DAY_S):
        if charge.instance_id is None or charge.instance_id not in names:
            continue
        items = charged.setdefault(charge.instance_id, dict.fromkeys(_MONEY[:4], 0.0))
        for item in charge.items:
            kind = str(item.get("type"))
            if kind in items:
                items[kind] += float(item.get("amount") or 0.0)
    ids = sorted(set(estimate.index) | set(charged))
    rows = []
    for instance_id in ids:
        est = estimate.loc[instance_id] if instance_id in estimate.index else pd.Series(0.0, index=_MONEY[:4])
        got = charged.get(instance_id, dict.fromkeys(_MONEY[:4], 0.0))
        row: dict[str, Any] = {"instance": instance_id, "name": names.get(instance_id)}
        for kind in _MONEY[:4]:
            row[f"{kind}_estimate"] = round(float(est[kind]), 6)
            row[f"{kind}_charged"] = round(got[kind], 6)
        row["estimate_usd"] = round(float(est.sum()), 6)
        row["charged_usd"] = round(sum(got.values()), 6)
        row["difference_usd"] = round(row["estimate_usd"] - row["charged_usd"], 6)
        gap = abs(row["difference_usd"])
        row["differs"] = bool(gap > 0.01 and gap > 0.01 * max(row["charged_usd"], row["estimate_usd"]))
        rows.append(row)
    columns = ["instance", "name"] + [f"{k}_{w}" for k in _MONEY[:4] for w in ("estimate", "charged")]
    return pd.DataFrame(rows, columns=[*columns, "estimate_usd", "charged_usd", "difference_usd", "differs"])


def _iso(at: float) -> str:
    return dt.datetime.fromtimestamp(at, dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")
