"""Budgets on the box: a budget holds with the notebook and the controller gone.

Every box of a budget carries a deadline in its watchdog (``vastnb_worker.watchdog``, on
the box's own clock): the earlier of its profile's maximum duration and the time the
budget's remaining money lasts at the summed price of all the budget's billing instances.
Past it, the box destroys itself with its own restricted key. Whenever one of the budget's
boxes is launched, stopped, started or destroyed (:class:`BoxDeadlines` is the fleet's
``on_change``), and whenever the controller sees the budget's burn rate change, every box
of the budget is re-armed with the new deadline.

Overshoot: the deadline is worked out from the market's charges when it is armed, so a
budget overshoots by at most what its boxes spend between two re-arms at unchanged prices
(the charges' lag of a few seconds), and the box's watchdog checks at least once a minute.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field

from vastnb.costs.guard import applicable, burn_rate, standing
from vastnb.lifecycle.fleet import Fleet
from vastnb.lifecycle.rental import Rental
from vastnb.offload import Session, safe
from vastnb.profiles.budgets import Budget

__all__ = ["BoxDeadlines"]


@dataclass
class BoxDeadlines:
    """Deadlines of the boxes of ``budgets`` over ``fleet`` (see the module doc)."""

    fleet: Fleet
    budgets: Callable[[], list[Budget]]
    log: Callable[[str], None] = print
    burn: dict[str, float] = field(default_factory=dict)  # per budget scope, as last armed
    rearming: list[threading.Thread] = field(default_factory=list)

    def __call__(self, rental: Rental) -> tuple[float, str] | None:
        """Seconds until the tightest budget of ``rental`` runs out at its current burn,
        and why; None when no budget applies or nothing of one bills."""
        tightest: tuple[float, str] | None = None
        if rental.team is None:
            return None
        for budget in applicable(self.budgets(), rental.team, rental.project):
            where = standing(self.fleet.store, self.fleet.api, self.fleet.url, budget, self.fleet.ledger.now())
            burn, left = float(where["burn_usd_per_hour"]), float(where["remaining_usd"])  # type: ignore[arg-type]
            if burn <= 0:
                continue
            seconds = max(0.0, left) / burn * 3600
            if tightest is None or seconds < tightest[0]:
                tightest = (seconds, f"budget {budget.scope} ran out (${left:,.2f} left at ${burn:,.2f}/h)")
        return tightest

    def changed(self, instance_id: int) -> None:
        """One box of a budget started or stopped billing: re-arm every box of its budgets,
        in a thread (a stop or a destroy never waits on the other boxes)."""
        rental = self.fleet.rental(instance_id)
        if rental is not None and rental.team is not None:
            for budget in applicable(self.budgets(), rental.team, rental.project):
                self._rearm_soon(budget)

    def check(self) -> None:
        """Each poll (the controller's, or the notebook's): re-arm the boxes of any budget
        whose burn rate moved since they were armed (a box ended or started elsewhere)."""
        for budget in self.budgets():
            burn = burn_rate(self.fleet.store, self.fleet.url, budget)
            if abs(burn - self.burn.get(budget.scope, 0.0)) > 1e-9:
                self._rearm_soon(budget)

    def _rearm_soon(self, budget: Budget) -> None:
        self.burn[budget.scope] = burn_rate(self.fleet.store, self.fleet.url, budget)
        # Not a daemon: a process that launched or ended a box exits only once the budget's
        # other boxes know their new deadline.
        thread = threading.Thread(target=self.rearm, args=(budget,), name="vastnb-budget-rearm")
        thread.start()
        self.rearming.append(thread)

    def rearm(self, budget: Budget) -> None:
        """Arm every live box of ``budget`` with its deadline now; a box out of reach is
        told, and keeps the deadline it had (the next change tries it again)."""
        for rental in self.fleet.store.instances(self.fleet.url):
            if (
                not rental.billing
                or not rental.instance_key
                or budget not in applicable([budget], rental.team, rental.project)
            ):
                continue
            session = Session(self.fleet.transport(rental.id), results=safe)
            try:
                self.fleet.arm_watchdog(session, rental.id)
            except Exception as exc:  # noqa: BLE001 - one box out of reach never stops the others' re-arm
                self.log(f"instance {rental.id}: could not move its budget deadline ({type(exc).__name__}: {exc})")
            finally:
                session.close()
