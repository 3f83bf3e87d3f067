"""Budgets hold while instances run: every alert threshold is recorded once, and at 100%
the budget's boxes end (a job's after its final checkpoint, marked budget_exceeded)."""

from __future__ import annotations

from pathlib import Path

import pytest
from jobs import work
from jobs.conftest import billing, wait_for

from vastnb import Client, JobState
from vastnb.costs.enforce import Enforcer
from vastnb.errors import JobError


def _alerts(vast: Client) -> list[tuple[str, float]]:
    with vast.fleet.store.transaction() as db:
        return db.execute("SELECT scope, threshold FROM budget_alerts ORDER BY threshold").fetchall()


def test_alerts_come_once_each_and_at_100_percent_the_budgets_boxes_end(vast: Client) -> None:
    vast.fleet.deadline = vast.fleet.on_change = None  # the enforcer alone (the boxes' own: test_deadline.py)
    first, second = vast.launch("dev-test"), vast.launch("dev-test")  # each within the budget alone
    assert vast.budget_watch is not None  # no controller runs: this process holds the budget...
    vast.budget_watch.stop()  # ...but here the test's own enforcer does, step by step
    said: list[str] = []
    enforcer = Enforcer(vast.fleet, vast.budget_entries(), grace_s=5.0, log=said.append)
    enforcer.check()
    assert _alerts(vast) == [] and said == []  # nothing spent yet
    assert vast.sim is not None
    vast.sim.advance(1.5 * 3600)  # together they spend past $0.55
    enforcer.check()
    assert _alerts(vast) == [("ml", 0.5), ("ml", 0.8), ("ml", 1.0)]
    assert [line.split(":")[1].strip().split(" ")[0] for line in said[:3]] == ["50%", "80%", "100%"]
    states = {i["id"]: i["actual_status"] for i in vast.sim.market.instances()}
    assert states == {first.id: "stopped", second.id: "stopped"}  # SIGTERM first: a final checkpoint
    enforcer.check(
        vast.fleet.api.now() + 5.0
    )  # past the grace (the market's clock): destroyed (a stopped box bills its disk)
    assert billing(vast) == []
    enforcer.check(vast.fleet.api.now() + 10.0)
    assert len(_alerts(vast)) == 3  # never twice
    assert vast.budgets().iloc[0].alert == "100% reached"


def test_a_job_over_its_budget_checkpoints_and_ends_budget_exceeded(vast: Client, tmp_path: Path) -> None:
    other = vast.launch("dev-test")  # spending against the same budget
    ckpt = tmp_path / "runs" / "capped"
    job = vast.submit(work.train, args=(4000, 10, 0.05), profile="dev-test", name="capped", checkpoint=str(ckpt))
    wait_for(lambda: "step 15 " in job.logs(), timeout=60, message="training under way")
    assert vast.sim is not None
    burn = sum(r.dph_total or 0.0 for r in vast.fleet.store.instances(vast.fleet.url))
    left = 0.55 - sum(vast.api.charged_by_instance(0).values())
    vast.sim.advance(left / burn * 3600 + 30)  # past the budget, within the boxes' own backstop
    assert job.wait(timeout=120) is JobState.BUDGET_EXCEEDED
    with pytest.raises(JobError, match="budget ml reached"):
        job.result()
    wait_for(lambda: not billing(vast), timeout=60, message="both boxes ended")
    logged = max(int(line.split()[1]) for line in job.logs().splitlines() if line.startswith("step "))
    assert vast.checkpoints(str(ckpt)).step.max() == logged  # the final checkpoint, written on SIGTERM
    assert "budget exceeded" in set(job.events().event)
    assert other.id not in billing(vast)
