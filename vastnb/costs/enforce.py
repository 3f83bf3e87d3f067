"""Budgets while instances run: alerts at each threshold, and at 100% the budget's boxes end.

Every poll, the controller (a process of its own: see ``vastnb controller run``), or the
notebook's client while no controller runs, asks :class:`Enforcer` to look at each budget
that has live instances counted against it:

- each alert threshold reached this month is recorded once (``budget_alerts``, keyed by
  budget, month and threshold, so a restarted controller never alerts twice), told in the
  controller's log (or as a :class:`~vastnb.errors.BudgetWarning` in a notebook) and posted
  to the budget's ``webhook``, if it has one (:mod:`vastnb.costs.webhook`);
- at 100%, every instance counted against the budget ends: a job's is marked
  ``budget_exceeded`` (its runner stops the box, so the job's checkpoint manager writes its
  final checkpoint on SIGTERM, then destroys it); any other is stopped at once (SIGTERM, as
  on preemption) and destroyed once the grace period has passed (a stopped instance still
  bills its disk).

Each check also re-arms the boxes' own deadlines when a budget's burn rate moved
(:mod:`vastnb.costs.deadline`), so the budget holds on the boxes if every process is gone.

Overshoot is bounded by what the budget's instances spend in one poll interval (and the
market's charges lag of a few seconds), plus the grace period of the stop.
"""

from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Callable, Iterable

from vastnb.costs.deadline import BoxDeadlines
from vastnb.costs.guard import applicable, spent_by_budget
from vastnb.costs.webhook import post_alert
from vastnb.errors import LifecycleError, VastError
from vastnb.jobs.queue import JobQueue
from vastnb.jobs.states import JobState
from vastnb.lifecycle.fleet import Fleet
from vastnb.profiles.budgets import Budget

__all__ = ["Enforcer"]


class Enforcer:
    """Holds ``budgets`` over ``fleet``'s instances (see the module doc)."""

    def __init__(
        self,
        fleet: Fleet,
        budgets: Iterable[Budget],
        *,
        grace_s: float = 10.0,
        log: Callable[[str], None] = print,
        deadlines: BoxDeadlines | None = None,
    ) -> None:
        self.fleet, self.budgets, self.grace_s, self.log = fleet, list(budgets), grace_s, log
        self.deadlines = deadlines  # the boxes' own deadlines, re-armed when a burn rate moves
        self.queue = JobQueue(fleet.store, fleet.url)
        self.stopped: dict[int, float] = {}  # instance -> when this enforcer stopped it
        self.webhooks: list[threading.Thread] = []  # alerts being posted

    def check(self, now: float | None = None) -> None:
        """One look at every budget: alerts for what was spent this month, and the live
        instances of a budget that broke end."""
        self.fleet.api.list_instances()  # a reading of every instance, for the ledger
        now = self.fleet.api.now() if now is None else now
        live = [r for r in self.fleet.store.instances(self.fleet.url) if r.billing and r.team is not None]
        spending = spent_by_budget(self.fleet.store, self.fleet.api, self.fleet.url, self.budgets, now)
        for budget in self.budgets:
            counted = [r for r in live if budget in applicable([budget], r.team, r.project)]
            spent = spending[budget.scope]
            self._alert(budget, spent, now)
            if spent >= budget.monthly_limit_usd:
                for rental in counted:
                    self._end(rental.id, rental.job, budget, spent, now)
        self._destroy_stopped(now)
        if self.deadlines is not None:
            self.deadlines.check()

    def _alert(self, budget: Budget, spent: float, now: float) -> None:
        month = dt.datetime.fromtimestamp(now, dt.timezone.utc).strftime("%Y-%m")
        for threshold in budget.alert_thresholds:
            if spent < threshold * budget.monthly_limit_usd:
                continue
            with self.fleet.store.transaction() as db:
                added = db.execute(
                    "INSERT OR IGNORE INTO budget_alerts VALUES (?, ?, ?, ?, ?, ?)",
                    (budget.scope, month, threshold, now, spent, budget.monthly_limit_usd),
                ).rowcount
            if not added:
                continue
            message = (
                f"budget {budget.scope}: {threshold * 100:g}% of ${budget.monthly_limit_usd:,.2f} reached "
                f"(${spent:,.2f} spent in {month})"
            )
            self.log(message)
            if budget.webhook:
                alert: dict[str, object] = {"budget": budget.scope, "team": budget.team, "project": budget.project}
                alert |= {"month": month, "threshold": threshold, "spent_usd": round(spent, 6)}
                alert |= {"limit_usd": budget.monthly_limit_usd, "message": message}
                self.webhooks.append(post_alert(budget.webhook, alert))

    def _end(self, instance_id: int, job: int | None, budget: Budget, spent: float, now: float) -> None:
        why = f"budget {budget.scope} reached: ${spent:,.2f} of ${budget.monthly_limit_usd:,.2f} this month"
        if job is not None:
            try:
                state = self.queue.get(job).state
                if not state.final:
                    self.queue.transition(job, JobState.BUDGET_EXCEEDED, "budget exceeded", why, error=why)
                    self.log(f"job {job}: {why}; its box is stopped and destroyed")
                return  # its runner ends its box, after the final checkpoint
            except (LifecycleError, VastError) as exc:
                self.log(f"job {job}: could not mark it budget_exceeded ({exc}); ending its box here")
        if instance_id in self.stopped:
            return
        try:
            self.fleet.stop(instance_id)  # SIGTERM on the box: a final checkpoint
            self.stopped[instance_id] = now
            self.log(f"instance {instance_id}: {why}; stopped, destroyed in {self.grace_s:g} s")
        except (VastError, LifecycleError) as exc:
            self.log(f"instance {instance_id}: stopping it failed ({exc}); destroying it now")
            self._destroy(instance_id, why)

    def _destroy_stopped(self, now: float) -> None:
        for instance_id, at in list(self.stopped.items()):
            if now - at >= self.grace_s and self._destroy(instance_id, "its budget was reached"):
                del self.stopped[instance_id]

    def _destroy(self, instance_id: int, note: str) -> bool:
        try:
            self.fleet.destroy(instance_id, note)
            return True
        except VastError as exc:
            self.log(f"instance {instance_id}: destroying it failed ({exc}); tried again next poll")
            return False
