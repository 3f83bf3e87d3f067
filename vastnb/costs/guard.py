"""Budgets before anything is rented: the worst a launch or a job could spend, against
every budget that applies to its team and project.

A launch (or a job) charged to a team and project is held to each matching entry of
``budgets.yaml``: the team-wide one and the team+project one; the tightest binds. Its worst
case is the profile's most per hour for its whole maximum duration (a box past that
duration destroys itself). It is refused with a :class:`~vastnb.errors.BudgetError`,
before anything is created, when that worst case is above a budget's per-job limit or
above what is left of its month. Spent this month comes from the market's own charges for
the instances vastnb recorded with that team (and project), this calendar month in UTC.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterable

from vastnb.errors import BudgetError
from vastnb.lifecycle.store import StateStore
from vastnb.market.api import VastAPI
from vastnb.profiles.budgets import Budget
from vastnb.profiles.profile import Profile

__all__ = [
    "applicable",
    "month_start",
    "month_end",
    "spent_this_month",
    "spent_by_budget",
    "check_budgets",
    "worst_case",
    "burn_rate",
    "standing",
]


def applicable(budgets: Iterable[Budget], team: str | None, project: str | None) -> list[Budget]:
    """The budgets a spend charged to ``team`` and ``project`` counts against."""
    if team is None:
        return []
    return [b for b in budgets if b.team == team and b.project in (None, project)]


def month_start(now: float) -> float:
    """The start of ``now``'s calendar month, UTC (budgets are monthly)."""
    day = dt.datetime.fromtimestamp(now, dt.timezone.utc)
    return day.replace(day=1, hour=0, minute=0, second=0, microsecond=0).timestamp()


def month_end(now: float) -> float:
    """The start of the next calendar month, UTC."""
    day = dt.datetime.fromtimestamp(month_start(now), dt.timezone.utc)
    following = day.replace(year=day.year + 1, month=1) if day.month == 12 else day.replace(month=day.month + 1)
    return following.timestamp()


def spent_this_month(store: StateStore, api: VastAPI, url: str, budget: Budget, now: float) -> float:
    """Dollars the market charged this month for the instances counted against ``budget``."""
    return spent_by_budget(store, api, url, [budget], now)[budget.scope]


def spent_by_budget(
    store: StateStore, api: VastAPI, url: str, budgets: Iterable[Budget], now: float
) -> dict[str, float]:
    """Dollars the market charged this month for the instances counted against each of
    ``budgets``, by scope: one look at the charges for them all."""
    rentals = store.instances(url, live=False)
    counted = {b.scope: [r.id for r in rentals if applicable([b], r.team, r.project)] for b in budgets}
    if not any(counted.values()):
        return dict.fromkeys(counted, 0.0)
    charged = api.charged_by_instance(month_start(now), now + 366 * 86400)
    return {scope: sum(charged.get(i, 0.0) for i in ids) for scope, ids in counted.items()}


def worst_case(profile: Profile) -> float:
    """The most a box of ``profile`` can cost: its top price for its whole maximum duration."""
    return profile.max_price_per_hour * profile.max_duration_hours


def check_budgets(profile: Profile, budgets: Iterable[Budget], spent: Callable[[Budget], float], *, what: str) -> None:
    """Refuse ``what`` (a launch, a job) of ``profile`` if its worst case breaks a budget."""
    worst = worst_case(profile)
    how = f"up to ${worst:,.2f} (${profile.max_price_per_hour:g}/h for {profile.max_duration_hours:g} h)"
    way_out = (
        f"lower max_price_per_hour or max_duration_hours of profile {profile.name!r} ({profile.source or 'its file'})"
    )
    for budget in applicable(budgets, profile.team, profile.project):
        where = f"budget {budget.scope} ({budget.source}, line {budget.line})"
        if budget.per_job_limit_usd is not None and worst > budget.per_job_limit_usd:
            raise BudgetError(
                f"{what} could spend {how}, above the per-job limit ${budget.per_job_limit_usd:,.2f} of {where}. "
                f"Nothing was rented. {way_out[0].upper()}{way_out[1:]}, or raise per_job_limit_usd.",
                scope=budget.scope,
                limit=budget.per_job_limit_usd,
                spent=0.0,
                worst=worst,
            )
        used = spent(budget)
        left = budget.monthly_limit_usd - used
        if worst > left:
            raise BudgetError(
                f"{what} could spend {how}, more than the ${max(left, 0):,.2f} left this month of {where}: "
                f"${used:,.2f} spent of ${budget.monthly_limit_usd:,.2f}. Nothing was rented. "
                f"{way_out[0].upper()}{way_out[1:]}, end other work of {budget.scope}, or raise monthly_limit_usd.",
                scope=budget.scope,
                limit=budget.monthly_limit_usd,
                spent=used,
                worst=worst,
            )


def burn_rate(store: StateStore, url: str, budget: Budget) -> float:
    """$/h of the instances counted against ``budget`` that bill now, as rented."""
    return sum(
        r.dph_total or 0.0
        for r in store.instances(url)
        if r.billing and r.team == budget.team and (budget.project is None or r.project == budget.project)
    )


def standing(store: StateStore, api: VastAPI, url: str, budget: Budget, now: float) -> dict[str, object]:
    """Where ``budget`` stands this month: spent, remaining, the burn rate of its live
    instances ($/h as rented), the month-end projected at that rate, and the highest alert
    threshold reached."""
    spent = spent_this_month(store, api, url, budget, now)
    burn = burn_rate(store, url, budget)
    projected = spent + burn * (month_end(now) - now) / 3600
    reached = [t for t in budget.alert_thresholds if spent >= t * budget.monthly_limit_usd]
    return {
        "team": budget.team,
        "project": budget.project,
        "monthly_limit_usd": budget.monthly_limit_usd,
        "per_job_limit_usd": budget.per_job_limit_usd,
        "spent_usd": round(spent, 6),
        "remaining_usd": round(budget.monthly_limit_usd - spent, 6),
        "burn_usd_per_hour": round(burn, 6),
        "projected_usd": round(projected, 2),
        "alert": f"{max(reached) * 100:g}% reached" if reached else "",
    }
