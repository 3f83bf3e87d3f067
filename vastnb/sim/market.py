"""The simulated marketplace: offers, instances, their states on a clock, and billing.

This is the business logic behind the simulated REST API (:mod:`vastnb.sim.routes`).
It keeps Vast's state fields and transitions: ``null -> loading -> running``; stop
and start (a restart waits in *scheduling* for its GPUs); destroy; preemption of bid
instances (``stopped`` in all three state fields, then automatic resume). The faults tests
make happen (preemption, being outbid, host trouble, a dead worker, a stalled image pull)
are in :mod:`vastnb.sim.faults`. Time is wall time plus an offset that tests move forward
with :meth:`Market.advance`.
"""

from __future__ import annotations

import contextlib
import secrets
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vastnb.sim import billing, selfdestruct
from vastnb.sim.account import AccountMixin
from vastnb.sim.boxes import Boxes, Gpus
from vastnb.sim.errors import MAX_ADVANCE_S, Range, SimError, create_number, number
from vastnb.sim.faults import FAULT_STATES, FaultsMixin, is_outbid
from vastnb.sim.instances import new_instance, retire, to_api
from vastnb.sim.offers import OffersMixin
from vastnb.sim.overlays import OverlaysMixin, join_on_create
from vastnb.sim.state import StateStore
from vastnb_worker.files import write_private

__all__ = ["Market", "SimConfig", "SimError"]

State = dict[str, Any]


#: Vast's limit on a create's ``args``, ``args_str`` and ``onstart`` together, in characters.
LAUNCH_LIMIT = 4096


@dataclass(frozen=True)
class SimConfig:
    """How the simulated market behaves. Delays are simulated seconds."""

    seed: int = 0
    offers: int = 600
    starting_credit: float = 25.0
    create_delay: float = 1.0  # created (null) -> loading
    load_delay: float = 3.0  # loading -> running: the image pull
    schedule_delay: float = 2.0  # a restart waits this long for its GPUs
    ssh_address: tuple[str, int] | None = None  # a real sshd every instance points at
    # With ssh_address: the sshd's AuthorizedKeysFile, where a running instance's keys
    # are installed (as Vast installs them on the box).
    authorized_keys: Path | None = None


class Market(OffersMixin, AccountMixin, FaultsMixin, OverlaysMixin):
    """The simulator's state and rules. ``home`` None keeps everything in memory.

    The offers live in :class:`OffersMixin`, the account side (SSH keys, user, charges,
    balance) in :class:`AccountMixin`, the faults tests inject in :class:`FaultsMixin`,
    overlay networks in :class:`OverlaysMixin`.
    """

    def __init__(self, home: Path | None = None, config: SimConfig | None = None) -> None:
        self.config = config or SimConfig()
        self.store = StateStore(home / "sim" / "market.json" if home else None, self._initial)
        #: The instances' machines (local worker processes); None for an in-memory market.
        self.boxes = Boxes(home / "sim" / "boxes") if home else None

    def _initial(self) -> State:
        return {
            "version": 1,
            "seed": self.config.seed,
            "clock_offset": 0.0,
            "last_advanced": time.time(),
            "next_id": 20_000_000 + self.config.seed * 1000,
            "user": {
                "id": 424242,
                "email": "you@sim.vastnb.invalid",
                "username": "sim-user",
                "balance": self.config.starting_credit,
                "api_key": "sim_" + secrets.token_hex(16),
            },
            "ssh_keys": [],
            "instances": {},
            "taken": [],
        }

    # -- time -------------------------------------------------------------------------------

    @contextlib.contextmanager
    def _tx(self) -> Iterator[tuple[State, float]]:
        """A transaction on the state, brought up to the current simulated time first
        (self-destruct requests from boxes are carried out on the way, at their moment)."""
        with self.store.transaction() as state:
            now = time.time() + state["clock_offset"]
            handled = selfdestruct.process(state, selfdestruct.folder_of(self.store.path), now, self._advance_to)
            self._advance_to(state, now)
            yield state, now
        # Only once the state that carried them out is saved; their machines go, as on destroy.
        selfdestruct.finish(handled, self.boxes.remove if self.boxes else None)

    def selfdestruct_url(self) -> str | None:
        """The ``file://`` URL a simulated box's watchdog is armed with (its requests are
        carried out by the next transaction); None for an in-memory market."""
        return selfdestruct.url_of(self.store.path)

    def now(self) -> float:
        """The simulated time (epoch seconds)."""
        with self._tx() as (_, now):
            return now

    def clock(self) -> float:
        """The simulated time, from the clock file where there is one (no transaction)."""
        if self.clock_path is not None:
            try:
                return time.time() + float(self.clock_path.read_text())
            except FileNotFoundError:  # written by the first advance: none yet, no offset yet
                return time.time()
            except (OSError, ValueError):
                pass
        return self.now()

    def advance(self, seconds: float) -> None:
        """Move the simulated clock forward: transitions fire and billing accrues."""
        if not 0 <= seconds <= MAX_ADVANCE_S:  # NaN fails too
            raise ValueError(
                f"the clock only moves forward, by 0 to {MAX_ADVANCE_S:g} seconds at a time, not by {seconds}"
            )
        with self._tx() as (state, _):  # boxes' self-destruct requests first, at their moment
            state["clock_offset"] += seconds
            self._advance_to(state, time.time() + state["clock_offset"])
            if self.clock_path is not None:  # the boxes' switches read the clock here (never half-written)
                write_private(str(self.clock_path), repr(state["clock_offset"]), sync=False)

    @property
    def clock_path(self) -> Path | None:
        """A file with the simulated clock's offset from this machine's, for the boxes."""
        return None if self.store.path is None else self.store.path.parent / "clock"

    def destroyed_by(self, instance_id: int) -> str | None:
        """Who ended a destroyed instance ("the account's key", "itself: <why>"), or None."""
        with self._tx() as (state, _):
            return (state.get("destroyed", {}).get(str(instance_id)) or {}).get("by")

    def _advance_to(self, state: State, target: float) -> None:
        """Apply every scheduled transition and bill every second up to ``target``."""
        t = state["last_advanced"]
        instances = state["instances"]
        user = state["user"]
        while True:
            self._fire_due(state, t)
            if user["balance"] <= 0:
                # Vast stops every instance once the balance is gone (disks keep billing).
                for inst in instances.values():
                    if inst["intended_status"] == "running" and inst["actual_status"] not in FAULT_STATES:
                        self._set_stopped(inst, "stopped: account balance reached $0; add credit to restart")
            if t >= target:
                break
            pending = [e[0] for i in instances.values() for e in i["events"]]  # all later than t
            step_end = min([target, *pending])
            burn = sum(sum(billing.rates(i)) for i in instances.values()) / 3600  # $/s
            if user["balance"] > 0 and burn > 0 and user["balance"] <= burn * (step_end - t):
                # The balance runs out inside this step: bill up to that moment only; the
                # next round stops the instances there.
                step_end = t + user["balance"] / burn
                self._bill(state, t, step_end)
                user["balance"] = 0.0  # what was left is what the step cost, rounding aside
            else:
                self._bill(state, t, step_end)
            t = step_end
        state["last_advanced"] = max(t, state["last_advanced"])

    def _fire_due(self, state: State, t: float) -> None:
        """Fire every transition due by ``t``, in time order (a transition may queue more)."""
        for inst in state["instances"].values():
            while due := sorted(e for e in inst["events"] if e[0] <= t):
                inst["events"] = [e for e in inst["events"] if e[0] > t]
                for when, action, *args in due:
                    self._fire(state, inst, action, when, *args)

    def _bill(self, state: State, t0: float, t1: float) -> None:
        for inst in state["instances"].values():
            state["user"]["balance"] -= billing.accrue(inst, t0, t1)

    def _fire(self, state: State, inst: dict[str, Any], action: str, when: float, *args: Any) -> None:
        if action == "loading":
            inst.update(actual_status="loading", status_msg=f"Pulling image {inst['image']}")
        elif action == "running" and self._stalled(state, inst):
            pass  # its image pull never finishes (stall_loading)
        elif action == "running":
            inst.update(actual_status="running", status_msg="success, running", started_at=when)
            self._power_on(inst)
        elif action == "resume":
            inst.update(intended_status="running", cur_state="running", next_state="running")
            inst.update(actual_status="loading", status_msg="resumed: your bid is winning again")
            inst["events"].append([when + self.config.load_delay, "running"])
        elif action == "outbid-ends":
            self._outbid_ends(state, inst, when, *args)

    def _set_stopped(self, inst: dict[str, Any], msg: str) -> None:
        inst.update(actual_status="stopped", intended_status="stopped", cur_state="stopped", next_state="stopped")
        inst.update(status_msg=msg, events=[], started_at=None)
        if self.boxes:
            self.boxes.power_off(inst["id"])

    def _power_on(self, inst: dict[str, Any]) -> None:
        """The instance runs: its machine answers, with the instance's SSH keys installed,
        and its container's onstart runs, as Vast runs it at every start."""
        if self.boxes:
            gpus = Gpus(
                inst["gpu_name"],
                int(inst["num_gpus"] or 0),
                int(inst.get("gpu_ram") or 0),
                inst.get("driver_version"),
                inst.get("cuda_max_good"),
            )
            self.boxes.power_on(inst["id"], onstart=inst.get("onstart"), key=inst["instance_api_key"], gpus=gpus)
        if self.config.authorized_keys is not None:
            keys = [k["key"] for k in inst.get("account_keys", [])] + [k["public_key"] for k in inst["ssh_keys"]]
            path = Path(self.config.authorized_keys)
            present = set(path.read_text().splitlines()) if path.exists() else set()
            with path.open("a") as f:
                f.writelines(f"{k}\n" for k in keys if k not in present)

    # -- instances --------------------------------------------------------------------------

    def create(self, offer_id: int, payload: Mapping[str, Any]) -> dict[str, Any]:
        """``PUT /asks/{id}/``: rent an offer. A ``price`` makes it a bid (interruptible)."""
        offer_id = int(offer_id)
        with self._tx() as (state, now):
            offer = self._offer_index.get(offer_id)
            available = {o["id"] for o in self._available(state)} if offer else set()
            if offer is None or offer_id not in available:
                raise SimError(
                    404,
                    "no_such_ask",
                    f"error 404/3603: no_such_ask Instance type by id {offer_id} is not available.",
                    ask_id=offer_id,
                )
            if not payload.get("image") and not payload.get("template_hash_id"):
                raise SimError(400, "invalid_args", "image is required", ask_id=offer_id)
            disk = create_number(offer_id, payload.get("disk", 10.0), "disk")
            if not isinstance(payload.get("args") or [], list):
                raise SimError(
                    400,
                    "invalid_args",
                    f"args must be a list of strings, got {type(payload['args']).__name__}",
                    ask_id=offer_id,
                )
            if len(str(payload.get("label") or "")) > 256:
                raise SimError(400, "label_too_long", "label must be at most 256 characters", ask_id=offer_id)
            if _launch_length(payload) > LAUNCH_LIMIT:
                raise SimError(
                    400,
                    "invalid_args",
                    f"args, args_str and onstart together must be at most {LAUNCH_LIMIT} "
                    f"characters, got {_launch_length(payload)}",
                    ask_id=offer_id,
                )
            bid = (
                None
                if payload.get("price") is None
                else create_number(offer_id, payload["price"], "price", code="invalid_price")
            )
            offer = {**offer, "min_bid": state.get("min_bids", {}).get(str(offer_id), offer["min_bid"])}
            outbid = bid is not None and bid < offer["min_bid"]
            instance_id = state["next_id"]
            state["next_id"] += 1
            inst = state["instances"][str(instance_id)] = new_instance(
                offer,
                {**payload, "disk": disk},
                instance_id=instance_id,
                now=now,
                bid=bid,
                outbid=outbid,
                create_delay=self.config.create_delay,
                load_delay=self.config.load_delay,
            )
            # Vast installs the account's keys on instances created after them.
            inst["account_keys"] = list(state["ssh_keys"])
            join_on_create(state, payload, inst)  # refused (nothing created) if it cannot join
            self._take_stall(state, instance_id)
            if not outbid:
                return {"success": True, "new_contract": instance_id, "instance_api_key": inst["instance_api_key"]}
        # Vast's spot pitfall: the instance exists (stopped, billing disk) and the error still
        # names it. A careful client destroys it. Raised after the transaction commits.
        raise SimError(
            400,
            "invalid_price",
            f"Your bid ${bid:.4f}/h is below the minimum bid ${offer['min_bid']:.4f}/h; "
            "the instance was created stopped and will start when your bid wins.",
            new_contract=instance_id,
            ask_id=offer_id,
        )

    def show(self, instance_id: int) -> dict[str, Any] | None:
        """``GET /instances/{id}/``: the instance, or None once destroyed."""
        with self._tx() as (state, now):
            inst = state["instances"].get(str(instance_id))
            return to_api(inst, now, self.config.ssh_address) if inst else None

    def instances(self) -> list[dict[str, Any]]:
        """Every live instance of the account, in id order."""
        with self._tx() as (state, now):
            return [to_api(i, now, self.config.ssh_address) for _, i in sorted(state["instances"].items())]

    def set_state(self, instance_id: int, target: str) -> None:
        """``PUT /instances/{id}/ {"state": ...}``: start or stop."""
        with self._tx() as (state, now):
            inst = self._get(state, instance_id)
            if target == "stopped":
                # Also cancels a restart still scheduling, and any automatic resume.
                if inst["actual_status"] != "stopped" or inst["intended_status"] != "stopped" or inst["events"]:
                    self._set_stopped(inst, "stopped by user")
            elif target == "running":
                if inst["actual_status"] in FAULT_STATES:
                    raise SimError(
                        400, "invalid_args", f"instance {instance_id} is {inst['actual_status']} and cannot start"
                    )
                if state["user"]["balance"] <= 0:
                    raise SimError(
                        400, "insufficient_credit", "your balance is $0 or less; add credit to start instances"
                    )
                if is_outbid(inst):
                    # Outbid: it starts when the bid wins (change_bid, or the market's resume).
                    inst["intended_status"] = "running"
                elif inst["intended_status"] != "running":
                    # A restart waits for the same GPUs ("scheduling" in Vast's console).
                    inst.update(intended_status="running", next_state="running")
                    inst["status_msg"] = "scheduling: waiting for the GPUs on this machine to be free"
                    inst["events"] = [
                        [now + self.config.schedule_delay, "loading"],
                        [now + self.config.schedule_delay + self.config.load_delay, "running"],
                    ]
                    inst["cur_state"] = "running"
            else:
                raise SimError(400, "invalid_args", f"state must be 'running' or 'stopped', got {target!r}")

    def set_label(self, instance_id: int, label: str) -> None:
        with self._tx() as (state, _):
            if len(label) > 1024:
                raise SimError(400, "label_too_long", "label must be at most 1024 characters")
            self._get(state, instance_id)["label"] = label

    def destroy(self, instance_id: int, *, by: str = "the account's key") -> None:
        """``DELETE /instances/{id}/``: gone for good; billing stops, the GPUs free up.
        ``by`` is kept with its charges: who ended it."""
        with self._tx() as (state, now):
            retire(state, self._get(state, instance_id), now, by=by)
            if self.boxes:
                self.boxes.remove(instance_id)

    def change_bid(self, instance_id: int, price: float) -> None:
        with self._tx() as (state, now):
            inst = self._get(state, instance_id)
            if not inst["is_bid"]:
                raise SimError(
                    400, "invalid_args", f"instance {instance_id} is on-demand; only interruptible instances have a bid"
                )
            # Vast's range for a changed bid: up to $32/h per GPU.
            price = number(price, "price", within=Range(0.001, 32 * max(1, inst["num_gpus"]), "$/h"))
            inst["gpu_dph"] = price
            if price < inst["min_bid"]:
                if inst["intended_status"] == "running" or is_outbid(inst):
                    # Under the minimum, the instance loses its GPUs (and any pending resume).
                    self._set_stopped(inst, f"outbid: bid ${price:.4f}/h is below the minimum ${inst['min_bid']:.4f}/h")
            elif is_outbid(inst):
                inst["events"] = [[now + self.config.schedule_delay, "resume"]]

    def _get(self, state: State, instance_id: int) -> dict[str, Any]:
        inst = state["instances"].get(str(instance_id))
        if inst is None:
            raise SimError(404, "no_such_instance", f"Instance {instance_id} not found.")
        return inst


def _launch_length(payload: Mapping[str, Any]) -> int:
    """What Vast limits together: ``args``, ``args_str`` and ``onstart``, in characters."""
    args = payload.get("args") or []
    return (
        sum(map(len, map(str, args))) + len(str(payload.get("args_str") or "")) + len(str(payload.get("onstart") or ""))
    )
