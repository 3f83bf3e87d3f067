"""How long a cost report over a month of 1,000,000 ledger intervals takes, against pandas.

Run: ``python bench/costs.py [--intervals 1000000] [--instances 2000] [--repeats 5]``.
Setup (not timed): a state store in a temporary folder, ``--instances`` rentals spread over
teams, projects, GPUs, profiles and users, and a seeded month (November 2026) of intervals
written with ``Ledger.append``; the same rows in memory as a DataFrame, team and project
already joined. Timed, median of ``--repeats``: the baseline, a plain pandas groupby of
those rows (GPU, disk and bandwidth $ per row, summed by team and project); and
``cost_report`` by team and project over the month, end to end from the store's file.
Figures are ratios to the baseline, measured in the same run (goal: <= 1.5x, under 1 s).
Both sides' totals per team and project must agree (1e-6 relative) or the bench fails.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pandas as pd

from vastnb.costs.report import as_epoch, cost_report
from vastnb.lifecycle.ledger import Interval, Ledger, billed
from vastnb.lifecycle.rental import Rental
from vastnb.lifecycle.states import InstanceState
from vastnb.lifecycle.store import StateStore

URL = "https://console.vast.ai"
SINCE, UNTIL = "2026-11-01", "2026-12-01"
CUT = ("2026-11-03 12:00", "2026-11-28 06:00")  # a window whose edges fall inside days
TEAMS = {"ml": 4, "research": 3, "infra": 2, "platform": 3}  # team: how many projects
GPUS = ["RTX_4090", "RTX_3090", "A100_SXM4", "H100_SXM", "L40S", "A6000"]
PROFILES = ["dev-test", "training", "inference-batch", "finetune"]
USERS = [f"user{i}" for i in range(12)]
STATES = np.array(["running", "loading", "stopped", "offline"])
CHECKED = ["gpu_usd", "disk_usd", "bandwidth_usd", "total_usd"]
CHUNK = 100_000


def median_seconds(work: Callable[[], object], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        work()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def rentals(rng: np.random.Generator, count: int, t0: float) -> list[Rental]:
    owners = [(team, f"{team}-p{j}") for team, n in TEAMS.items() for j in range(n)]
    out = []
    for i in range(count):
        team, project = owners[rng.integers(len(owners))]
        out.append(
            Rental(
                url=URL,
                id=1_000_000 + i,
                name=f"box{i}",
                profile=PROFILES[rng.integers(len(PROFILES))],
                label=f"vastnb:box{i}:bench",
                session="bench",
                keep=False,
                offer_id=None,
                machine_id=int(rng.integers(1, 50_000)),
                gpu_name=GPUS[rng.integers(len(GPUS))],
                num_gpus=int(rng.choice([1, 1, 1, 2, 4, 8])),
                dph_total=None,
                bid=None,
                max_duration_hours=None,
                instance_key=None,
                state=InstanceState.DESTROYED,
                created_at=t0,
                destroyed_at=t0 + 30 * 86_400,
                team=team,
                project=project,
                user=USERS[rng.integers(len(USERS))],
            )
        )
    return out


def month(rng: np.random.Generator, boxes: list[Rental], total: int, t0: float, t1: float) -> pd.DataFrame:
    """``total`` intervals as ledger rows: each box a chain inside [t0, t1), its own prices."""
    counts = rng.multinomial(total, rng.dirichlet(np.full(len(boxes), 5.0)))
    parts = []
    for box, k in zip(boxes, counts, strict=True):
        if not k:
            continue
        lo, hi = t0 + rng.uniform(0, 0.4) * (t1 - t0), t1 - rng.uniform(0, 0.4) * (t1 - t0)
        cuts = np.sort(rng.uniform(lo, hi, k + 1))
        moved = rng.random(k) < 0.3
        parts.append(
            pd.DataFrame(
                {
                    "instance_id": box.id,
                    "start": cuts[:-1],
                    "end": cuts[1:],
                    "state": STATES[rng.choice(4, k, p=[0.6, 0.1, 0.2, 0.1])],
                    "dph_base": rng.uniform(0.1, 4.0),
                    "disk_gb": float(rng.integers(10, 201)),
                    "storage_cost": rng.uniform(0.05, 0.3),
                    "up_gb": np.where(moved, rng.exponential(2.0, k), 0.0),
                    "down_gb": np.where(moved, rng.exponential(5.0, k), 0.0),
                    "up_cost": rng.uniform(0.0, 0.02),
                    "down_cost": rng.uniform(0.0, 0.02),
                    "team": box.team,
                    "project": box.project,
                    "num_gpus": box.num_gpus,
                }
            )
        )
    rows = pd.concat(parts, ignore_index=True)
    columns = zip(rows.state, rows.dph_base, rows.disk_gb, rows.storage_cost, strict=True)
    rates = [billed(s, d, g, c) for s, d, g, c in columns]
    rows["gpu_dph"], rows["disk_dph"] = (np.array(r) for r in zip(*rates, strict=True))
    return rows


def intervals(rows: pd.DataFrame) -> Iterator[Interval]:
    fields = ["instance_id", "start", "end", "state", "dph_base", "disk_gb", "storage_cost"]
    fields += ["up_gb", "down_gb", "up_cost", "down_cost"]
    for values in rows[fields].itertuples(index=False, name=None):
        yield Interval(int(values[0]), *values[1:])


def baseline(rows: pd.DataFrame, window: tuple[float, float] | None = None) -> pd.DataFrame:
    """The plain pandas answer: $ per row, summed by team and project (clipped to ``window``,
    bandwidth counted at an interval's end, for the check of a window cut inside days)."""
    start, end, moved = rows["start"], rows["end"], 1.0
    if window:
        start, end = start.clip(lower=window[0]), end.clip(upper=window[1])
        moved = ((rows["end"] >= window[0]) & (rows["end"] < window[1])).astype(float)
    hours = (end - start).clip(lower=0) / 3600 if window else (end - start) / 3600
    money = pd.DataFrame(
        {
            "team": rows["team"],
            "project": rows["project"],
            "gpu_usd": rows["gpu_dph"] * hours,
            "disk_usd": rows["disk_dph"] * hours,
            "bandwidth_usd": (rows["up_gb"] * rows["up_cost"] + rows["down_gb"] * rows["down_cost"]) * moved,
        }
    )
    sums = money.groupby(["team", "project"]).sum()
    sums["total_usd"] = sums["gpu_usd"] + sums["disk_usd"] + sums["bandwidth_usd"]
    return sums


def check(what: str, got: pd.DataFrame, want: pd.DataFrame) -> None:
    """Fail loudly unless ``got`` (indexed by team, project) matches ``want``."""
    if set(got.index) != set(want.index):
        raise SystemExit(f"{what}: groups differ: {sorted(set(got.index) ^ set(want.index))}")
    got = got.loc[want.index]
    for column in want.columns:
        a, b = got[column].to_numpy(float), want[column].to_numpy(float)
        if not np.allclose(a, b, rtol=1e-6, atol=0.0):
            worst = int(np.argmax(np.abs(a - b) / np.maximum(np.abs(b), 1e-300)))
            raise SystemExit(f"{what}: {column} of {want.index[worst]} is {a[worst]!r}, baseline {b[worst]!r}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--intervals", type=int, default=1_000_000)
    parser.add_argument("--instances", type=int, default=2_000)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    rng = np.random.default_rng(1)
    t0, t1 = as_epoch(SINCE, what="since"), as_epoch(UNTIL, what="until")
    now = t1 + 3600.0
    with tempfile.TemporaryDirectory(prefix="vastnb-costs-") as tmp:
        store = StateStore(Path(tmp) / "state.db")
        boxes = rentals(rng, args.instances, t0)
        for box in boxes:
            store.record(box)
        rows = month(rng, boxes, args.intervals, t0, t1)
        started = time.perf_counter()
        ledger = Ledger(store, URL)
        for at in range(0, len(rows), CHUNK):
            ledger.append(intervals(rows.iloc[at : at + CHUNK]))
        written = time.perf_counter() - started
        size = (Path(tmp) / "state.db").stat().st_size / 2**20

        def report(freq: str | None = None, since: str = SINCE, until: str = UNTIL) -> pd.DataFrame:
            return cost_report(store, URL, by=["team", "project"], since=since, until=until, freq=freq, now=now)

        want = baseline(rows)
        check("report by team, project", report().set_index(["team", "project"]), want)
        by_day = report("day").groupby(["team", "project"])[CHECKED].sum()
        check("report by team, project, day (summed over days)", by_day, want)
        cut = [as_epoch(CUT[0], what="since"), as_epoch(CUT[1], what="until")]
        check("report cut inside days", report(None, *CUT).set_index(["team", "project"]), baseline(rows, cut))

        base = median_seconds(lambda: baseline(rows), args.repeats)
        seconds = median_seconds(report, args.repeats)
        daily = median_seconds(lambda: report("day"), args.repeats)
        edges = median_seconds(lambda: report(None, *CUT), args.repeats)
    print(
        f"{len(rows):,} intervals of {args.instances:,} instances over {SINCE}..{UNTIL}, {len(want)} team/projects; "
        f"written with Ledger.append in {written:.1f} s ({size:.0f} MiB store)"
    )
    print(f"baseline = in-memory DataFrame, $ per row, groupby(['team', 'project']).sum(): {base * 1000:.1f} ms")
    print(
        f"totals agree with the baseline (rtol 1e-6); edges inside days: {CUT[0]}..{CUT[1]}; median of {args.repeats}:"
    )
    print(f"{'what':<56} {'ms':>8} {'x baseline':>11}")
    for label, took in [
        ("cost_report by team, project (from the store)", seconds),
        ("cost_report by team, project, freq='day'", daily),
        ("cost_report by team, project, window edges inside days", edges),
    ]:
        print(f"{label:<56} {took * 1000:8.1f} {took / base:11.2f}")
    goal = seconds / base <= 1.5 and seconds < 1.0
    print(f"goal (<= 1.5x the baseline, under 1 s): {'met' if goal else 'NOT met'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
