"""The simulated month of :mod:`vastnb.costs.activity`: real rentals on the simulator, so the
same seed gives the same month, nothing is left billing, and the ledger the month's readings
wrote agrees with the market's own charges. A three-day plan keeps each month to seconds."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pandas as pd
import pytest

from vastnb import BoxOptions, Client
from vastnb.costs.activity import Month, Plan, Workload, schedule, simulate_month
from vastnb.costs.enforce import Enforcer
from vastnb.profiles.budgets import load_budgets
from vastnb.sim import SimConfig

PROFILES = """\
train:
  gpu: RTX_4090
  num_gpus: 2
  max_price_per_hour: 1.0
  min_reliability: 0.95
  max_duration_hours: 48
  team: vision
  project: detector
eval-spot:
  gpu: RTX_4090
  num_gpus: 1
  max_price_per_hour: 0.3
  min_reliability: 0.95
  max_duration_hours: 12
  interruptible: true
  bid: min
  team: nlp
  project: llm-ft
"""
BUDGETS = "budgets:\n  - {team: nlp, monthly_limit_usd: 1.0, alert_thresholds: [0.25, 0.5]}\n"
SEED = 3


def plan(vast: Client) -> Plan:
    return Plan(
        (
            Workload(vast.profile("train"), runs=3, hours=(2, 6), pause_chance=0.5, download_gb=20, upload_gb=2),
            Workload(vast.profile("eval-spot"), runs=4, hours=(1, 3), interrupt_chance=0.6, name="eval"),
        ),
        days=3,
    )


def month(vast: Client, watch: Callable[[float], None] | None = None) -> Month:
    assert vast.sim is not None
    return simulate_month(vast.fleet, vast.sim, plan(vast), seed=SEED, watch=watch)


@pytest.fixture
def client(isolated: Path) -> Iterator[Callable[[str], Client]]:
    """``client(name)``: a sim client on a fresh home of its own; at the end, each one
    closed and its market emptied."""
    folder = isolated / "profiles"
    folder.mkdir()
    (folder / "gpu_profiles.yaml").write_text(PROFILES)
    (folder / "budgets.yaml").write_text(BUDGETS)
    made: list[Client] = []

    def make(name: str) -> Client:
        vast = Client(
            backend="sim",
            home=isolated / name,
            profiles=folder,
            sim_config=SimConfig(starting_credit=1000.0),
            box=BoxOptions(silence_s=3 * 86400.0),  # nothing talks to these boxes: they must not end themselves
        )
        made.append(vast)
        return vast

    yield make
    for vast in made:
        assert vast.sim is not None
        for inst in vast.sim.market.instances():
            vast.sim.market.destroy(int(inst["id"]))
        vast.close()


def test_the_plan_has_a_pause_and_an_interruption(client: Callable[[str], Client]) -> None:
    vast = client("a")
    runs = schedule(plan(vast), seed=SEED)
    lived = month(vast)
    assert list(lived.runs) == runs and len(runs) == 7
    assert lived.pauses >= 1 and lived.interruptions >= 1
    assert lived.instances == len(runs) + lived.interruptions
    assert all(r.start >= 0 and r.end <= 3 * 86400 for r in runs)
    assert schedule(plan(vast), seed=SEED + 1) != runs


def test_the_same_seed_makes_the_same_month(client: Callable[[str], Client]) -> None:
    first, second = client("a"), client("b")
    a, b = month(first), month(second)
    assert a.runs == b.runs and a.instances == b.instances
    for by in (["team", "project"], "job", "gpu"):
        one, other = first.costs(by=by, since=a.start), second.costs(by=by, since=b.start)
        assert one.total_usd.sum() > 0
        pd.testing.assert_frame_equal(one, other, check_exact=False, atol=1e-5)
    daily = first.costs(by="team", freq="day", since=a.start)
    assert daily.period.nunique() >= 2 and set(daily.team) == {"vision", "nlp"}


def test_nothing_is_left_billing(client: Callable[[str], Client]) -> None:
    vast = client("a")
    lived = month(vast)
    assert vast.sim is not None and vast.sim.market.instances() == []
    assert [r for r in vast.fleet.store.instances(vast.fleet.url) if r.billing] == []
    jobs = vast.jobs()
    assert len(jobs) == len(lived.runs) and set(jobs.state) == {"succeeded"}
    assert jobs.recoveries.sum() == lived.interruptions


def test_the_ledger_reconciles_with_the_markets_charges(client: Callable[[str], Client]) -> None:
    vast = client("a")
    lived = month(vast)
    frame = vast.reconcile(since=lived.start)
    assert len(frame) == lived.instances
    assert not frame.differs.any(), frame
    for item in ("gpu", "disk", "bwu", "bwd"):
        assert frame[f"{item}_estimate"].sum() == pytest.approx(frame[f"{item}_charged"].sum(), abs=0.01), item
    assert frame.bwd_charged.sum() > 0 and frame.bwu_charged.sum() > 0
    total = vast.costs(by="team", since=lived.start).total_usd.sum()
    assert total == pytest.approx(frame.charged_usd.sum(), abs=0.01)


def test_a_budget_enforcer_watching_the_month_alerts_once_each(client: Callable[[str], Client], isolated: Path) -> None:
    vast = client("a")
    alerts: list[str] = []
    enforcer = Enforcer(vast.fleet, load_budgets(isolated / "profiles"), log=alerts.append)  # alerts only
    month(vast, watch=enforcer.check)
    assert [a.split(" reached")[0] for a in alerts] == ["budget nlp: 25% of $1.00", "budget nlp: 50% of $1.00"]
    assert vast.budgets().alert.tolist() == ["50% reached"]
    assert set(vast.jobs().state) == {"succeeded"}  # under 100%: every run went to its end


def test_a_month_that_fails_leaves_nothing_billing(client: Callable[[str], Client]) -> None:
    vast = client("a")
    steps: list[float] = []

    def watch(now: float) -> None:
        steps.append(now)
        if len(steps) == 12:
            raise RuntimeError("the notebook was interrupted")

    with pytest.raises(RuntimeError, match="interrupted"):
        month(vast, watch=watch)
    assert vast.sim is not None and vast.sim.market.instances() == []
    assert [r for r in vast.fleet.store.instances(vast.fleet.url) if r.billing] == []
    assert set(vast.jobs().state) == {"succeeded", "failed"}  # none left for a controller to adopt
