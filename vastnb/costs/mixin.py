"""The costs side of :class:`~vastnb.Client`: budgets, what an instance cost, cost reports
and their reconciliation with the market's charges."""

from __future__ import annotations

import os
import threading
import warnings
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import pandas as pd

from vastnb.costs.deadline import BoxDeadlines
from vastnb.costs.enforce import Enforcer
from vastnb.costs.guard import applicable, check_budgets, month_start, spent_this_month, standing
from vastnb.costs.report import as_epoch, cost_report, reconcile
from vastnb.errors import BudgetWarning
from vastnb.profiles.budgets import Budget, load_budgets
from vastnb.profiles.profile import Profile

if TYPE_CHECKING:
    from vastnb.jobs.controller import ControllerProcess, ControllerSettings
    from vastnb.lifecycle.fleet import Fleet
    from vastnb.market.api import VastAPI

__all__ = ["CostsMixin", "BUDGET_COLUMNS", "BudgetWatch"]

BUDGET_COLUMNS = (
    "team",
    "project",
    "monthly_limit_usd",
    "per_job_limit_usd",
    "spent_usd",
    "remaining_usd",
    "burn_usd_per_hour",
    "projected_usd",
    "alert",
)


def _warn(message: str) -> None:
    warnings.warn(message, BudgetWarning, stacklevel=2)


class BudgetWatch(threading.Thread):
    """Runs ``enforcer`` every ``poll_s`` while any instance counts against a budget (a
    check that fails is told and tried again at the next poll)."""

    def __init__(self, enforcer: Enforcer, poll_s: float) -> None:
        super().__init__(name="vastnb-budget-watch", daemon=True)
        self.enforcer, self.poll_s = enforcer, poll_s
        self.stopping = threading.Event()

    def stop(self) -> None:
        """End the thread (at its next poll at the latest; a check under way finishes)."""
        self.stopping.set()
        if self.is_alive() and self is not threading.current_thread():
            self.join(timeout=30)

    def run(self) -> None:
        while not self.stopping.wait(self.poll_s):
            try:
                self.enforcer.check()
            except Exception as exc:  # noqa: BLE001 - said, and tried again next poll
                _warn(f"budgets could not be checked: {type(exc).__name__}: {exc}")
            fleet = self.enforcer.fleet
            if not any(r.billing and r.team is not None for r in fleet.store.instances(fleet.url)):
                return


class CostsMixin:
    """Needs of the client: its ``fleet``, ``api``, where its profiles (and so its budgets)
    are, its controller settings, and how it marks a table of market figures."""

    api: VastAPI
    controller_settings: ControllerSettings
    #: The thread holding the budgets in this process while no controller runs, if started.
    budget_watch: BudgetWatch | None = None
    _deadlines: BoxDeadlines | None = None
    controller: ControllerProcess
    _profiles_path: str | os.PathLike[str] | None
    _budgets: list[Budget] | None

    @property
    def fleet(self) -> Fleet:
        raise NotImplementedError

    def _market_frame(self, frame: pd.DataFrame, *, market: bool = True) -> pd.DataFrame:
        raise NotImplementedError

    def budget_entries(self) -> list[Budget]:
        """The budgets of ``budgets.yaml`` (found as the profiles are), loaded once."""
        if self._budgets is None:
            self._budgets = load_budgets(self._profiles_path)
        return self._budgets

    def budgets(self) -> pd.DataFrame:
        """Each budget of ``budgets.yaml`` this month: limit, spent (the market's charges for
        its team's instances), remaining, the burn rate of its live instances, the month-end
        projected at that rate, and the highest alert threshold reached."""
        now = self.fleet.api.now()
        store, url = self.fleet.store, self.fleet.url
        rows = [standing(store, self.api, url, b, now) for b in self.budget_entries()]
        return self._market_frame(pd.DataFrame(rows, columns=BUDGET_COLUMNS))

    def budget_enforcer(self, log: Callable[[str], None] = print) -> Enforcer:
        """What a controller runs every poll to hold the budgets over running instances
        (alerts, and at 100% their boxes end): see :mod:`vastnb.costs.enforce`."""
        grace = self.controller_settings.timing.stop_grace_s
        deadlines = BoxDeadlines(self.fleet, self.budget_entries, log=log)
        return Enforcer(self.fleet, self.budget_entries(), grace_s=grace, log=log, deadlines=deadlines)

    def _hold_budgets(self, fleet: Fleet) -> Fleet:
        """``fleet``'s boxes carry their budgets' deadlines, re-armed as boxes come and go."""
        self._deadlines = BoxDeadlines(fleet, self.budget_entries, log=_warn)
        fleet.deadline, fleet.on_change = self._deadlines, self._deadlines.changed
        return fleet

    def _close_costs(self) -> None:
        """Before the client closes: its budget watch ends, and the boxes being re-armed
        get their deadlines (the market's connection is still open for them)."""
        if self.budget_watch is not None:
            self.budget_watch.stop()
        if self._deadlines is not None:
            self._deadlines.join(timeout=60)

    def _enforce_budgets_of(self, profile: Profile) -> None:
        """A box of ``profile`` was launched: its budgets are held by the controller if one
        runs, else by this process (:meth:`_watch_budgets`)."""
        if applicable(self.budget_entries(), profile.team, profile.project) and not self.controller.status()["running"]:
            self._watch_budgets()

    def _watch_budgets(self) -> None:
        """While no controller runs, this process holds the budgets itself: a thread runs
        the enforcer every poll while any of this market's instances counts against one
        (alerts come as :class:`~vastnb.errors.BudgetWarning`)."""
        if self.budget_watch is not None and self.budget_watch.is_alive():
            return
        self.budget_watch = BudgetWatch(self.budget_enforcer(log=_warn), self.controller_settings.timing.poll_s)
        self.budget_watch.start()

    def _check_budgets(self, profile: Profile, what: str) -> None:
        """Refuse ``what`` if the worst ``profile`` could spend breaks a budget (see
        :mod:`vastnb.costs.guard`); nothing to check for a profile charged to no team."""
        if profile.team is None:
            return
        now = self.fleet.api.now()  # the market's month
        store, url = self.fleet.store, self.fleet.url
        check_budgets(
            profile, self.budget_entries(), lambda b: spent_this_month(store, self.api, url, b, now), what=what
        )

    def cost(self, ref: str | int) -> float:
        """Dollars the instance called ``ref`` (name or id) has cost in all, as the market
        charges it: while it runs, and after it is gone."""
        rental = self.fleet.resolve(ref)
        return round(self.api.charged_by_instance(rental.created_at - 3600).get(rental.id, 0.0), 6)

    def costs(
        self,
        by: str | Sequence[str] | None = ("team", "project"),
        *,
        since: Any = None,
        until: Any = None,
        freq: str | None = None,
    ) -> pd.DataFrame:
        """What vastnb's instances cost, from the ledger, broken down ``by`` any of
        instance, job, profile, gpu, team, project, user, and day, week or month (or
        ``freq``): GPU, disk and bandwidth dollars, the total, GPU-hours, $/GPU-hour and the
        share of the monthly budget that applies. ``since`` defaults to the start of this
        month (UTC), ``until`` to now; both take "YYYY-MM-DD", datetimes or epoch seconds."""
        self.fleet.api.list_instances()  # a reading of every live instance first: up to date
        frame = cost_report(
            self.fleet.store,
            self.fleet.url,
            by=by,
            since=since,
            until=until,
            freq=freq,
            now=self.fleet.api.now(),
            budgets=self.budget_entries(),
        )
        return self._market_frame(frame)

    def reconcile(self, *, since: Any = None, until: Any = None) -> pd.DataFrame:
        """The ledger's estimate of each instance against the market's own charges for it,
        item by item, over the same window (default: this month so far); ``differs`` marks
        those more than a cent and 1% apart."""
        self.fleet.api.list_instances()
        start = as_epoch(since, what="since") if since is not None else month_start(self.fleet.api.now())
        end = as_epoch(until, what="until") if until is not None else None
        return self._market_frame(reconcile(self.fleet.store, self.fleet.url, self.api, since=start, until=end))
