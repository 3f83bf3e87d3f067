"""Arming a box's watchdog: the box destroys itself with its own restricted key (never the
account's) past the profile's maximum duration, when its budget's money runs out (the
fleet's ``deadline`` hook, set by :mod:`vastnb.costs.deadline`), or after ``silence_s``
without any orchestrator in touch. The watchdog itself runs on the box
(``vastnb_worker.watchdog``)."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from vastnb.offload import Session

if TYPE_CHECKING:
    from vastnb.lifecycle.fleet import Fleet

__all__ = ["arm_watchdog"]


def arm_watchdog(fleet: Fleet, session: Session, instance_id: int) -> dict[str, Any]:
    """Arm (or re-arm) instance ``instance_id``'s watchdog over ``session``; its status
    (empty for an instance vastnb holds no key of)."""
    from vastnb_worker import watchdog

    rental = fleet.rental(instance_id)
    if rental is None or not rental.instance_key:
        return {}
    remaining, reason = None, None
    if rental.max_duration_hours:
        remaining = rental.max_duration_hours * 3600 - (time.time() - rental.created_at)
    budget = fleet.deadline(rental) if fleet.deadline else None
    if budget is not None and (remaining is None or budget[0] < remaining):
        remaining, reason = budget
    end = fleet.backend.self_destruct()
    armed: dict[str, Any] = session.control(
        watchdog.arm,
        instance_id,
        end.url,
        rental.instance_key,
        remaining_s=remaining,
        silence_s=fleet.backend.box.silence_s,
        clock=end.clock,
        reason=reason,
    )
    return armed
