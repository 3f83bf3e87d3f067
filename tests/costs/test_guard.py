"""Budgets hold before anything is rented: a launch or a job whose worst case (its profile's
top price for its whole maximum duration) is above a per-job limit, or above what is left of
a month, is refused with the numbers and the way out, and nothing is created or queued."""

from __future__ import annotations

import calendar
from collections.abc import Iterator
from pathlib import Path

import pytest

from vastnb import Client
from vastnb.costs.guard import applicable, month_start
from vastnb.errors import BudgetError
from vastnb.lifecycle.launch import LaunchPolicy
from vastnb.profiles.budgets import Budget
from vastnb.sim import SimConfig

PROFILE = """\
dev-test:
  gpu: RTX_4090
  num_gpus: 1
  max_price_per_hour: 0.25
  min_reliability: 0.90
  max_duration_hours: 2
  team: ml
  project: vision
free-team:
  gpu: RTX_4090
  num_gpus: 1
  max_price_per_hour: 0.25
  min_reliability: 0.90
  max_duration_hours: 2
"""


def _folder(tmp_path: Path, budgets: str) -> Path:
    folder = tmp_path / "profiles"
    folder.mkdir()
    (folder / "gpu_profiles.yaml").write_text(PROFILE)
    (folder / "budgets.yaml").write_text(budgets)
    return folder


@pytest.fixture
def client(tmp_path: Path) -> Iterator[object]:
    made: list[Client] = []

    def make(budgets: str) -> Client:
        vast = Client(
            backend="sim",
            profiles=_folder(tmp_path, budgets),
            sim_config=SimConfig(create_delay=0.05, load_delay=0.05),
            launch_policy=LaunchPolicy(poll=0.02),
        )
        made.append(vast)
        return vast

    yield make
    for vast in made:
        vast.close()


def _nothing_rented(vast: Client) -> None:
    assert vast.sim is not None and vast.sim.market.instances() == []
    assert vast.fleet.store.instances(vast.fleet.url, live=False) == []


def test_a_launch_over_the_per_job_limit_is_refused_before_anything_is_rented(client) -> None:  # type: ignore[no-untyped-def]
    vast = client("budgets:\n  - {team: ml, monthly_limit_usd: 100, per_job_limit_usd: 0.3}\n")
    with pytest.raises(BudgetError) as caught:
        vast.launch("dev-test")
    message = str(caught.value)
    assert "up to $0.50 ($0.25/h for 2 h), above the per-job limit $0.30 of budget ml" in message
    assert "budgets.yaml, line 2" in message and "raise per_job_limit_usd" in message
    assert (caught.value.scope, caught.value.limit, caught.value.worst) == ("ml", 0.3, 0.5)
    _nothing_rented(vast)


def test_the_tightest_of_the_team_and_project_budgets_binds(client) -> None:  # type: ignore[no-untyped-def]
    vast = client(
        "budgets:\n"
        "  - {team: ml, monthly_limit_usd: 100}\n"
        "  - {team: ml, project: vision, monthly_limit_usd: 0.4}\n"
        "  - {team: ml, project: nlp, monthly_limit_usd: 0.01}\n"
    )
    with pytest.raises(BudgetError, match=r"more than the \$0.40 left this month of budget ml/vision"):
        vast.launch("dev-test")
    _nothing_rented(vast)


def test_team_and_project_given_at_launch_override_the_profiles(client) -> None:  # type: ignore[no-untyped-def]
    vast = client("budgets:\n  - {team: ml, project: nlp, monthly_limit_usd: 0.01}\n")
    with pytest.raises(BudgetError, match="ml/nlp"):
        vast.launch("free-team", team="ml", project="nlp")
    _nothing_rented(vast)
    box = vast.launch("dev-test", project="speech")  # ml/speech: no budget of its own, none team-wide
    row = vast.instances().loc[box.id]
    assert (row.team, row.project) == ("ml", "speech")
    box.down()


def test_what_was_spent_this_month_counts(client) -> None:  # type: ignore[no-untyped-def]
    vast = client("budgets:\n  - {team: ml, monthly_limit_usd: 0.52}\n")
    box = vast.launch("dev-test")  # worst case 0.50 of 0.52: allowed
    assert vast.sim is not None
    vast.sim.advance(3600)  # an hour at its price is spent
    box.down()
    spent = box.cost()
    assert spent > 0.02
    with pytest.raises(BudgetError) as caught:
        vast.launch("dev-test")
    assert caught.value.spent == pytest.approx(spent, abs=1e-6)
    assert f"${spent:,.2f} spent of $0.52" in str(caught.value)
    assert len(vast.fleet.store.instances(vast.fleet.url, live=False)) == 1  # the refused one made nothing


def test_a_job_over_budget_is_refused_and_nothing_is_queued(client) -> None:  # type: ignore[no-untyped-def]
    vast = client("budgets:\n  - {team: ml, monthly_limit_usd: 100, per_job_limit_usd: 0.3}\n")
    with pytest.raises(BudgetError, match="this job could spend up to"):
        vast.submit(print, profile="dev-test", checkpoint="s3://bucket/x")
    assert vast.jobs().empty and not vast.controller.status()["running"]
    _nothing_rented(vast)


def test_applicable_budgets_and_month_boundaries() -> None:
    ml, vision, other = Budget("ml", 10), Budget("ml", 5, project="vision"), Budget("ops", 1)
    assert applicable([ml, vision, other], "ml", "vision") == [ml, vision]
    assert applicable([ml, vision, other], "ml", "nlp") == [ml]
    assert applicable([ml, vision, other], None, "vision") == []
    first = calendar.timegm((2026, 12, 1, 0, 0, 0))
    assert month_start(first) == first and month_start(first - 1) == calendar.timegm((2026, 11, 1, 0, 0, 0))
    assert month_start(calendar.timegm((2024, 2, 29, 23, 59, 59))) == calendar.timegm((2024, 2, 1, 0, 0, 0))


def test_budgets_show_what_is_spent_left_burning_and_projected(client) -> None:  # type: ignore[no-untyped-def]
    from vastnb.costs.guard import month_end

    vast = client(
        "budgets:\n"
        "  - {team: ml, monthly_limit_usd: 10, alert_thresholds: [0.001, 0.5]}\n"
        "  - {team: ops, monthly_limit_usd: 5}\n"
    )
    box = vast.launch("dev-test")
    assert vast.sim is not None
    vast.sim.advance(3600)
    frame = vast.budgets()
    assert frame.columns.name == "SIMULATED"
    ml, ops = frame.iloc[0], frame.iloc[1]
    spent = box.cost()
    assert ml.spent_usd == pytest.approx(spent, abs=1e-4) and ml.remaining_usd == pytest.approx(10 - spent, abs=1e-4)
    assert ml.burn_usd_per_hour == pytest.approx(box.price_per_hour)
    hours_left = (month_end(vast.sim.market.now()) - vast.sim.market.now()) / 3600
    assert ml.projected_usd == pytest.approx(spent + box.price_per_hour * hours_left, abs=0.5)
    assert ml.alert == "0.1% reached"  # the highest threshold reached
    assert (ops.spent_usd, ops.burn_usd_per_hour, ops.alert) == (0.0, 0.0, "")
    box.down()
    assert vast.budgets().iloc[0].burn_usd_per_hour == 0.0
    assert vast.cost(box.name) == box.cost() > 0  # what it cost, after it is gone
