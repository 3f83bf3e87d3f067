"""Budgets on the box: a budget holds with the notebook and the controller gone.

Every box of a budget carries a deadline in its watchdog (``vastnb_worker.watchdog``, on
the box's own clock): the earlier of its profile's maximum duration and the time the
budget's remaining money lasts at the summed price of all the budget's billing instances.
Past it, the box destroys itself with its own restricted key. Whenever one of the budget's
boxes is launched, stopped, started or destroyed (:class:`BoxDeadlines` is the fleet's
``on_change``), and whenever the controller sees the budget's burn rate change, every box
of the budget is re-armed with the new deadline.

The deadline is :data:`BACKSTOP_S` past the moment the money runs out: a controller or a
notebook that still runs ends the boxes first, with a final checkpoint; the boxes' own
deadline is the backstop. Overshoot on the boxes alone: what they spend in those two
minutes and until their watchdog's next check (at most 5 s), plus the charges' lag when
the deadline was worked out.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field

from vastnb.costs.guard import applicable, burn_rate, standing
from vastnb.lifecycle.fleet import Fleet
from vastnb.lifecycle.rental import Rental
from vastnb.market.records import ActualStatus
from vastnb.offload import Session, safe
from vastnb.profiles.budgets import Budget

__all__ = ["BoxDeadlines", "BACKSTOP_S"]

#: A box ends itself this long after its budget's money runs out: time for a controller or
#: notebook that still runs to end it first, the gentle way (a final checkpoint on SIGTERM).
BACKSTOP_S = 120.0


@dataclass
class BoxDeadlines:
    """Deadlines of the boxes of ``budgets`` over ``fleet`` (see the module doc)."""

    fleet: Fleet
    budgets: Callable[[], list[Budget]]
    log: Callable[[str], None] = print
    burn: dict[str, float] = field(default_factory=dict)  # per budget scope, as last armed
    lock: threading.Lock = field(default_factory=threading.Lock)
    running: dict[str, threading.Thread] = field(default_factory=dict)  # a re-arm under way, per budget
    again: set[str] = field(default_factory=set)  # budgets changed again while re-armed

    def __call__(self, rental: Rental) -> tuple[float, str] | None:
        """Seconds until the tightest budget of ``rental`` runs out at its current burn,
        and why; None when no budget applies or nothing of one bills."""
        tightest: tuple[float, str] | None = None
        if rental.team is None:
            return None
        for budget in applicable(self.budgets(), rental.team, rental.project):
            where = standing(self.fleet.store, self.fleet.api, self.fleet.url, budget, self.fleet.api.now())
            burn, left = float(where["burn_usd_per_hour"]), float(where["remaining_usd"])  # type: ignore[arg-type]
            if burn <= 0:
                continue
            seconds = max(0.0, left) / burn * 3600 + BACKSTOP_S
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
        """Re-arm ``budget``'s boxes in a thread: one at a time per budget, once more after
        it if another change came meanwhile. Not a daemon: a process that launched or ended
        a box exits only once the budget's other boxes know their new deadline."""
        self.burn[budget.scope] = burn_rate(self.fleet.store, self.fleet.url, budget)
        with self.lock:
            if budget.scope in self.running:
                self.again.add(budget.scope)
                return
            thread = threading.Thread(target=self._rearm_until_settled, args=(budget,), name="vastnb-budget-rearm")
            self.running[budget.scope] = thread
        thread.start()

    def _rearm_until_settled(self, budget: Budget) -> None:
        while True:
            try:
                self.rearm(budget)
            except Exception as exc:  # noqa: BLE001 - the market out of reach: the next change tries again
                self.log(f"budget {budget.scope}: could not move its boxes' deadlines ({type(exc).__name__}: {exc})")
            with self.lock:
                if budget.scope not in self.again:
                    del self.running[budget.scope]
                    return
                self.again.discard(budget.scope)

    def join(self, timeout: float | None = None) -> None:
        """Wait for the re-arms under way."""
        for thread in list(self.running.values()):
            thread.join(timeout)

    def rearm(self, budget: Budget) -> None:
        """Arm every running box of ``budget`` (as the market shows it) with its deadline
        now; a box out of reach is told, and keeps the deadline it had. A box that is not
        running gets its deadline when it starts."""
        running = {i.id for i in self.fleet.api.list_instances() if i.actual_status is ActualStatus.RUNNING}
        for rental in self.fleet.store.instances(self.fleet.url):
            if rental.id not in running or not rental.instance_key:
                continue
            if budget not in applicable([budget], rental.team, rental.project):
                continue
            session = Session(self.fleet.transport(rental.id), results=safe)
            try:
                self.fleet.arm_watchdog(session, rental.id)
            except Exception as exc:  # noqa: BLE001 - one box out of reach never stops the others' re-arm
                self.log(f"instance {rental.id}: could not move its budget deadline ({type(exc).__name__}: {exc})")
            finally:
                session.close()
