"""What tests and demos can make happen to the simulated market's instances: the faults a
job controller has to survive.

- :meth:`FaultsMixin.preempt`: a bid instance loses its GPUs (then, optionally, resumes);
- :meth:`FaultsMixin.outbid`: another renter bids more for the same offer: its minimum
  bid rises above the instance's bid, and the instance stops as a preempted one does;
- :meth:`FaultsMixin.set_status`: host trouble (``exited``, ``offline``, ``unknown``);
- :meth:`FaultsMixin.kill_worker`: the box answers the API, but its worker is dead;
- :meth:`FaultsMixin.stall_loading`: the next instances' image pulls never finish.

:class:`FaultsMixin` is part of :class:`vastnb.sim.market.Market`; it works on the same
state, through the market's transactions.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from vastnb.sim.errors import SimError, number

if TYPE_CHECKING:
    from vastnb.sim.boxes import Boxes
    from vastnb.sim.market import SimConfig

__all__ = ["FaultsMixin", "FAULT_STATES", "MAX_STALLS", "is_outbid"]

State = dict[str, Any]
Instance = dict[str, Any]

#: The states host trouble leaves an instance in (:meth:`FaultsMixin.set_status`).
FAULT_STATES = frozenset({"exited", "offline", "unknown"})
#: The most instance creations one :meth:`FaultsMixin.stall_loading` may stall.
MAX_STALLS = 10_000
#: How much more than the instance's bid another renter bids by default.
OUTBID_FACTOR = 1.25


def is_outbid(inst: Instance) -> bool:
    """Stopped because its bid lost (at create, by preemption, by being outbid, or by
    lowering it)."""
    return str(inst.get("status_msg") or "").startswith("outbid")


class FaultsMixin:
    """Faults injected on purpose. Needs the host class's ``config``, ``boxes``,
    ``_tx()``, ``_get()``, ``_set_stopped()`` and ``_power_on()``."""

    config: SimConfig
    boxes: Boxes | None
    _tx: Callable[[], contextlib.AbstractContextManager[tuple[State, float]]]
    _get: Callable[[State, int], Instance]
    _set_stopped: Callable[[Instance, str], None]
    _power_on: Callable[[Instance], None]

    def preempt(self, instance_id: int, *, resume_after: float | None = 60.0) -> None:
        """Outbid a bid instance: stopped in all three state fields, then (optionally) an
        automatic resume ``resume_after`` simulated seconds later, as Vast does."""
        if resume_after is not None:
            resume_after = number(resume_after, "resume_after")
        with self._tx() as (state, now):
            inst = self._get(state, instance_id)
            if not inst["is_bid"]:
                raise SimError(400, "invalid_args", f"instance {instance_id} is on-demand; only bids are preempted")
            wanted = inst["intended_status"] == "running" or is_outbid(inst)
            self._set_stopped(inst, "outbid: a higher bid took this machine")
            if not wanted:
                inst["status_msg"] = "stopped by user"  # nothing to resume
            elif resume_after is not None:
                inst["events"] = [[now + resume_after, "resume"]]

    def outbid(self, instance_id: int, price: float | None = None, resume_after: float | None = None) -> float:
        """Another renter outbids interruptible instance ``instance_id``: the offer's minimum
        bid rises to ``price`` (default: the instance's bid * 1.25, rounded up to $0.001),
        and the instance stops as :meth:`preempt` stops it, its ``status_msg`` saying by how
        much. With ``resume_after``, that renter leaves after so many simulated seconds:
        the minimum bid falls back and the instance resumes if its bid wins again; without,
        it waits for its own bid to be raised (``change_bid``). The new minimum bid."""
        if resume_after is not None:
            resume_after = number(resume_after, "resume_after")
        if price is not None:
            price = number(price, "price")
        with self._tx() as (state, now):
            inst = self._get(state, instance_id)
            if not inst["is_bid"]:
                raise SimError(400, "invalid_args", f"instance {instance_id} is on-demand; only bids are outbid")
            bid = float(inst["gpu_dph"])
            if price is None:
                price = math.ceil(round(bid * OUTBID_FACTOR * 1000, 6)) / 1000
            elif price <= bid:
                raise SimError(
                    400,
                    "invalid_args",
                    f"price must be above instance {instance_id}'s bid of ${bid:.4f}/h to outbid it, got ${price:.4f}/h",
                )
            prior = float(inst["min_bid"])
            wanted = inst["intended_status"] == "running" or is_outbid(inst)
            state.setdefault("min_bids", {})[str(inst["bundle_id"])] = price
            inst["min_bid"] = price
            self._set_stopped(inst, f"outbid: another renter bid ${price:.4f}/h, above your ${bid:.4f}/h")
            if not wanted:
                inst["status_msg"] = "stopped by user"  # nothing to resume
            elif resume_after is not None:
                inst["events"] = [[now + resume_after, "outbid-ends", prior]]
            return price

    def _outbid_ends(self, state: State, inst: Instance, when: float, prior: float) -> None:
        """The renter who outbid ``inst`` leaves: the offer's minimum bid falls back to
        ``prior``, and the instance resumes if its bid wins again."""
        state.setdefault("min_bids", {})[str(inst["bundle_id"])] = prior
        inst["min_bid"] = prior
        if is_outbid(inst) and inst["gpu_dph"] >= prior:
            inst["events"].append([when, "resume"])

    def set_status(self, instance_id: int, status: str) -> None:
        """Force ``exited``, ``offline`` or ``unknown`` (host trouble), or back to ``running``."""
        if status not in FAULT_STATES | {"running"}:
            raise ValueError(f"status must be one of {sorted(FAULT_STATES | {'running'})}, got {status!r}")
        with self._tx() as (state, now):
            inst = self._get(state, instance_id)
            inst.update(actual_status=status, events=[], status_msg=f"simulated: {status}")
            if status == "running":
                inst.update(intended_status="running", cur_state="running", next_state="running", started_at=now)
                self._power_on(inst)
            elif self.boxes:
                self.boxes.power_off(instance_id)

    def kill_worker(self, instance_id: int) -> int:
        """The worker daemon on running instance ``instance_id``'s machine dies (SIGKILL,
        with its tasks), while the instance stays ``running`` in the API and keeps billing:
        a box that answers the API but whose worker is dead. Nothing restarts it until
        someone connects again. The killed daemon's pid."""
        with self._tx() as (state, _):
            inst = self._get(state, instance_id)
            if self.boxes is None:
                raise SimError(
                    400,
                    "invalid_args",
                    f"instance {instance_id} has no machine: this market keeps everything in memory "
                    "(give it a home folder for boxes with workers)",
                )
            if inst["actual_status"] != "running":
                raise SimError(
                    400,
                    "invalid_args",
                    f"instance {instance_id} is {inst['actual_status'] or 'not started yet'}, not running; "
                    "only a running instance's worker can be killed",
                )
            pid = self.boxes.kill_worker(instance_id)
            if pid is None:
                raise SimError(
                    400,
                    "invalid_args",
                    f"instance {instance_id} has no live worker to kill: nobody has connected since it "
                    "started, or its worker is dead already",
                )
            return pid

    def stall_loading(self, count: int = 1, *, after: int = 0) -> None:
        """The next ``count`` instances created, once ``after`` more have been created normally,
        stay ``loading`` for ever (their image pull never finishes) until destroyed. Replaces
        any stall still pending; a count of 0 cancels it."""
        for name, value in (("count", count), ("after", after)):
            if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= MAX_STALLS:
                raise SimError(
                    400, "invalid_args", f"{name} must be a whole number from 0 to {MAX_STALLS}, got {value!r}"
                )
        with self._tx() as (state, _):
            state["stall_loading"], state["stall_after"] = count, after

    def _take_stall(self, state: State, instance_id: int) -> None:
        """A new instance: stalled in ``loading`` if a stall is pending and due."""
        if state.get("stall_loading", 0) > 0 and state.get("stall_after", 0) > 0:
            state["stall_after"] -= 1
        elif state.get("stall_loading", 0) > 0:
            state["stall_loading"] -= 1
            state.setdefault("stalled", []).append(instance_id)

    @staticmethod
    def _stalled(state: State, inst: Instance) -> bool:
        """Whether ``inst``'s image pull never finishes."""
        return inst["id"] in state.get("stalled", ())
