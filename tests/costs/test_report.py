"""Cost reports from the ledger: breakdowns, periods, month boundaries and window edges, on
intervals whose cost is known by hand."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from vastnb.costs.report import cost_report
from vastnb.errors import ConfigError
from vastnb.lifecycle.ledger import Interval, Ledger
from vastnb.lifecycle.rental import Rental
from vastnb.lifecycle.states import InstanceState
from vastnb.lifecycle.store import StateStore
from vastnb.profiles.budgets import Budget

URL = "http://market.test"
HOUR = 3600.0


def _at(text: str) -> float:
    return dt.datetime.fromisoformat(text).replace(tzinfo=dt.timezone.utc).timestamp()


def _rent(store: StateStore, instance_id: int, team: str, project: str, gpu: str, num_gpus: int = 1) -> None:
    store.record(
        Rental(
            url=URL,
            id=instance_id,
            name=f"box-{instance_id}",
            profile="p",
            label=f"vastnb:box-{instance_id}:s",
            session="s",
            keep=False,
            offer_id=None,
            machine_id=None,
            gpu_name=gpu,
            num_gpus=num_gpus,
            dph_total=1.0,
            bid=None,
            max_duration_hours=None,
            instance_key=None,
            state=InstanceState.DESTROYED,
            created_at=0.0,
            destroyed_at=0.0,
            team=team,
            project=project,
            user="ada",
        )
    )


@pytest.fixture
def store(tmp_path: Path) -> StateStore:
    store = StateStore(tmp_path / "state.db")
    _rent(store, 1, "vision", "detector", "H100 SXM", num_gpus=2)
    _rent(store, 2, "vision", "segmenter", "RTX 4090")
    _rent(store, 3, "nlp", "llm", "RTX 4090")
    ledger = Ledger(store, URL)
    # Box 1: $2/h for its GPUs, 4 h across the end of November; then stopped 10 h (disk only).
    # 720 GB of disk at $0.1/GB-month is $0.1/h.
    ledger.append(
        [
            Interval(1, _at("2026-11-30 22:00"), _at("2026-12-01 02:00"), "running", 2.0, 720, 0.1),
            Interval(1, _at("2026-12-01 02:00"), _at("2026-12-01 12:00"), "stopped", 2.0, 720, 0.1),
            # Box 2: 3 h running on Nov 15, 50 GB up at $0.02/GB, offline for an hour (nothing).
            Interval(2, _at("2026-11-15 09:00"), _at("2026-11-15 12:00"), "running", 0.5, 0, 0, up_gb=50, up_cost=0.02),
            Interval(2, _at("2026-11-15 12:00"), _at("2026-11-15 13:00"), "offline", 0.5, 720, 0.1),
            # Box 3: loading (disk only) then running, Nov 20.
            Interval(3, _at("2026-11-20 10:00"), _at("2026-11-20 10:30"), "loading", 0.4, 720, 0.1),
            Interval(3, _at("2026-11-20 10:30"), _at("2026-11-20 12:30"), "running", 0.4, 720, 0.1),
        ]
    )
    return store


def _report(store: StateStore, **kwargs: object) -> object:
    return cost_report(store, URL, now=_at("2026-12-02 00:00"), **kwargs)  # type: ignore[arg-type]


def test_a_month_counts_what_fell_in_it_to_the_second(store: StateStore) -> None:
    november = _report(store, by="instance", since="2026-11-01", until="2026-12-01").set_index("instance")
    assert november.loc[1, "gpu_usd"] == pytest.approx(2 * 2.0)  # 2 of its 4 running hours
    assert november.loc[1, "gpu_hours"] == pytest.approx(2 * 2)  # two GPUs
    assert november.loc[1, "usd_per_gpu_hour"] == pytest.approx(1.0)
    assert november.loc[2, "gpu_usd"] == pytest.approx(1.5) and november.loc[2, "disk_usd"] == 0
    assert november.loc[2, "bandwidth_usd"] == pytest.approx(1.0)
    assert november.loc[3, "total_usd"] == pytest.approx(0.8 + 0.25)  # 2 h of GPU, 2.5 h of disk
    december = _report(store, by="instance", since="2026-12-01").set_index("instance")
    assert list(december.index) == [1]
    assert december.loc[1, "gpu_usd"] == pytest.approx(4.0) and december.loc[1, "disk_usd"] == pytest.approx(1.2)


def test_periods_split_at_midnight_and_month_ends(store: StateStore) -> None:
    months = _report(store, by="team", freq="month", since="2026-11-01", until="2027-01-01")
    vision = months[months.team == "vision"].set_index("period")
    assert vision.loc["2026-11-01", "gpu_usd"] == pytest.approx(4.0 + 1.5)
    assert vision.loc["2026-12-01", "total_usd"] == pytest.approx(4.0 + 1.2)  # GPU, disk running and stopped
    days = _report(store, by=["instance", "day"], since="2026-11-30", until="2026-12-02")
    assert days.groupby("period").total_usd.sum().round(6).to_dict() == {
        dt.datetime(2026, 11, 30): pytest.approx(2 * 2.1),
        dt.datetime(2026, 12, 1): pytest.approx(2 * 2.1 + 10 * 0.1),
    }


def test_a_window_inside_a_day_is_cut_from_the_intervals(store: StateStore) -> None:
    window = _report(store, by="instance", since="2026-11-30 23:30", until="2026-12-01 00:30")
    assert window.set_index("instance").loc[1, "gpu_usd"] == pytest.approx(2.0)  # one hour, across midnight
    same_day = _report(store, by="instance", since="2026-11-15 10:00", until="2026-11-15 10:45")
    assert same_day.set_index("instance").loc[2, "gpu_usd"] == pytest.approx(0.375)


def test_teams_and_projects_show_their_share_of_the_budget(store: StateStore) -> None:
    budgets = [Budget(team="vision", monthly_limit_usd=20.0), Budget(team="nlp", project="llm", monthly_limit_usd=2.1)]
    frame = _report(store, by=["team", "project"], since="2026-11-01", until="2026-12-01", budgets=budgets)
    rows = {(r.team, r.project): r for r in frame.itertuples()}
    assert rows[("nlp", "llm")].share_of_budget == pytest.approx(1.05 / 2.1)
    assert rows[("vision", "detector")].share_of_budget == pytest.approx(4.2 / 20)  # the team's, no project's
    assert list(frame.total_usd) == sorted(frame.total_usd, reverse=True)
    by_user = _report(store, by="user", since="2026-11-01", until="2026-12-01")
    assert by_user.user.tolist() == ["ada"] and by_user.share_of_budget.isna().all()


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"by": "colour"}, "cannot break costs down by 'colour': choose from instance, job"),
        ({"by": ["day", "week"]}, "one period at a time"),
        ({"since": "last tuesday"}, "since='last tuesday' is not a date"),
        ({"since": "2026-12-01", "until": "2026-11-01"}, "is before since"),
    ],
)
def test_a_bad_report_is_refused_with_the_way_out(store: StateStore, kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        _report(store, **kwargs)
