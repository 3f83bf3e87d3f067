"""The simulated marketplace: offers, instances, their states on a clock, and billing.

This is the business logic behind the simulated REST API (:mod:`vastnb.sim.routes`).
It keeps Vast's state fields and transitions: ``null -> loading -> running``; stop
and start (a restart waits in *scheduling* for its GPUs); destroy; preemption of bid
instances (``stopped`` in all three state fields, then automatic resume); and
``exited``/``offline``/``unknown`` on demand. Time is wall time plus an offset that
tests move forward with :meth:`Market.advance`.
"""

from __future__ import annotations

import contextlib
import functools
import secrets
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import billing
from .catalogue import generate_offers
from .search import SearchError, search_offers
from .instances import new_instance, to_api
from .state import StateStore

__all__ = ["Market", "SimConfig", "SimError"]

State = dict[str, Any]
FAULT_STATES = frozenset({"exited", "offline", "unknown"})


class SimError(Exception):
    """An API error the simulator answers with: HTTP status, Vast error code, message."""

    def __init__(self, status: int, code: str, msg: str, **extra: Any) -> None:
        super().__init__(msg)
        self.status, self.code, self.msg, self.extra = status, code, msg, extra


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


class Market:
    """The simulator's state and rules. ``home`` None keeps everything in memory."""

    def __init__(self, home: Path | None = None, config: SimConfig | None = None) -> None:
        self.config = config or SimConfig()
        self.store = StateStore(home / "sim" / "market.json" if home else None, self._initial)
        self._offers: list[dict[str, Any]] | None = None

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
        """A transaction on the state, brought up to the current simulated time first."""
        with self.store.transaction() as state:
            now = time.time() + state["clock_offset"]
            self._advance_to(state, now)
            yield state, now

    def now(self) -> float:
        """The simulated time (epoch seconds)."""
        with self._tx() as (_, now):
            return now

    def advance(self, seconds: float) -> None:
        """Move the simulated clock forward: transitions fire and billing accrues."""
        with self.store.transaction() as state:
            state["clock_offset"] += seconds
            self._advance_to(state, time.time() + state["clock_offset"])

    def _advance_to(self, state: State, target: float) -> None:
        """Apply every scheduled transition and bill every second up to ``target``."""
        t = state["last_advanced"]
        instances = state["instances"]
        user = state["user"]
        while t < target:
            pending = [e[0] for i in instances.values() for e in i["events"] if e[0] > t]
            step_end = min([target, *pending])
            burn = sum(sum(billing.rates(i)) for i in instances.values()) / 3600  # $/s
            if user["balance"] > 0 and burn > 0 and user["balance"] <= burn * (step_end - t):
                # The balance runs out inside this step: bill up to that second, then
                # Vast stops every instance.
                step_end = t + user["balance"] / burn
                self._bill(state, t, step_end)
                for inst in instances.values():
                    if inst["actual_status"] in billing.GPU_BILLED | {"loading", "created", None}:
                        self._set_stopped(inst, "stopped: account balance reached $0; add credit to restart")
                t = step_end
                continue
            self._bill(state, t, step_end)
            t = step_end
            for inst in instances.values():
                due = [e for e in inst["events"] if e[0] <= t]
                inst["events"] = [e for e in inst["events"] if e[0] > t]
                for when, action in due:
                    self._fire(inst, action, when)
        state["last_advanced"] = max(t, state["last_advanced"])

    def _bill(self, state: State, t0: float, t1: float) -> None:
        for inst in state["instances"].values():
            state["user"]["balance"] -= billing.accrue(inst, t0, t1)

    def _fire(self, inst: dict[str, Any], action: str, when: float) -> None:
        if action == "loading":
            inst.update(actual_status="loading", status_msg=f"Pulling image {inst['image']}")
        elif action == "running":
            inst.update(actual_status="running", status_msg="success, running", started_at=when)
        elif action == "resume":
            inst.update(intended_status="running", cur_state="running", next_state="running")
            inst.update(actual_status="loading", status_msg="resumed: your bid is winning again")
            inst["events"].append([when + self.config.load_delay, "running"])

    @staticmethod
    def _set_stopped(inst: dict[str, Any], msg: str) -> None:
        inst.update(actual_status="stopped", intended_status="stopped", cur_state="stopped", next_state="stopped")
        inst.update(status_msg=msg, events=[], started_at=None)

    # -- offers -----------------------------------------------------------------------------

    @functools.cached_property
    def catalogue(self) -> list[dict[str, Any]]:
        """Every offer the market knows, rented or not (generated from the seed)."""
        return generate_offers(seed=self.config.seed, count=self.config.offers)

    @functools.cached_property
    def _offer_index(self) -> dict[int, dict[str, Any]]:
        return {o["id"]: o for o in self.catalogue}

    @functools.cached_property
    def _machine_gpus(self) -> dict[int, int]:
        """GPUs per machine: its largest offer (smaller offers are slices of it)."""
        sizes: dict[int, int] = {}
        for o in self.catalogue:
            sizes[o["machine_id"]] = max(sizes.get(o["machine_id"], 0), o["num_gpus"])
        return sizes

    def _available(self, state: State) -> list[dict[str, Any]]:
        """Offers that can be rented now, with ``rented`` set where the caller rents."""
        used: dict[int, int] = {}
        for inst in state["instances"].values():
            used[inst["machine_id"]] = used.get(inst["machine_id"], 0) + inst["num_gpus"]
        taken = set(state["taken"])
        out = []
        for offer in self.catalogue:
            machine_used = used.get(offer["machine_id"], 0)
            if offer["id"] in taken or offer["num_gpus"] > self._machine_gpus[offer["machine_id"]] - machine_used:
                continue
            out.append({**offer, "rented": True} if machine_used else offer)
        return out

    def search(self, body: Mapping[str, Any]) -> list[dict[str, Any]]:
        """``POST /bundles/``: the offers matching ``body``."""
        with self._tx() as (state, _):
            try:
                return search_offers(self._available(state), body)
            except SearchError as exc:
                raise SimError(400, "invalid_args", str(exc)) from None

    def take_offer(self, offer_id: int) -> None:
        """Someone else rents ``offer_id`` (the race between search and create)."""
        with self._tx() as (state, _):
            state["taken"].append(int(offer_id))

    # -- instances --------------------------------------------------------------------------

    def create(self, offer_id: int, payload: Mapping[str, Any]) -> dict[str, Any]:
        """``PUT /asks/{id}/``: rent an offer. A ``price`` makes it a bid (interruptible)."""
        with self._tx() as (state, now):
            offer = self._offer(offer_id)
            available = {o["id"] for o in self._available(state)} if offer else set()
            if offer is None or offer_id not in available:
                raise SimError(404, "no_such_ask", f"error 404/3603: no_such_ask Instance type by id {offer_id} is not available.", ask_id=offer_id)
            if not payload.get("image") and not payload.get("template_hash_id"):
                raise SimError(400, "invalid_args", "image is required", ask_id=offer_id)
            disk = _number(payload.get("disk", 10.0), "disk")
            if disk < 8:
                raise SimError(400, "invalid_args", f"disk must be at least 8 GB, got {disk}", ask_id=offer_id)
            if len(str(payload.get("label") or "")) > 256:
                raise SimError(400, "label_too_long", "label must be at most 256 characters", ask_id=offer_id)
            bid = None if payload.get("price") is None else _number(payload["price"], "price")
            if bid is not None and not 0.001 <= bid <= 128:
                raise SimError(400, "invalid_price", f"price must be between 0.001 and 128, got {bid}", ask_id=offer_id)
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
            if outbid:
                # Vast's spot pitfall: the instance exists (stopped, billing disk) and the
                # error still names it. A careful client destroys it.
                raise SimError(
                    400,
                    "invalid_price",
                    f"Your bid ${bid:.4f}/h is below the minimum bid ${offer['min_bid']:.4f}/h; "
                    "the instance was created stopped and will start when your bid wins.",
                    new_contract=instance_id,
                    ask_id=offer_id,
                )
            return {"success": True, "new_contract": instance_id, "instance_api_key": inst["instance_api_key"]}

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
                if inst["actual_status"] != "stopped":
                    self._set_stopped(inst, "stopped by user")
            elif target == "running":
                if inst["actual_status"] in FAULT_STATES:
                    raise SimError(400, "invalid_args", f"instance {instance_id} is {inst['actual_status']} and cannot start")
                if state["user"]["balance"] <= 0:
                    raise SimError(400, "insufficient_credit", "your balance is $0 or less; add credit to start instances")
                if inst["intended_status"] != "running":
                    # A restart waits for the same GPUs ("scheduling" in Vast's console).
                    inst.update(intended_status="running", next_state="running")
                    inst["status_msg"] = "scheduling: waiting for the GPUs on this machine to be free"
                    inst["events"] = [[now + self.config.schedule_delay, "loading"],
                                      [now + self.config.schedule_delay + self.config.load_delay, "running"]]
                    inst["cur_state"] = "running"
            else:
                raise SimError(400, "invalid_args", f"state must be 'running' or 'stopped', got {target!r}")

    def set_label(self, instance_id: int, label: str) -> None:
        with self._tx() as (state, _):
            if len(label) > 1024:
                raise SimError(400, "label_too_long", "label must be at most 1024 characters")
            self._get(state, instance_id)["label"] = label

    def destroy(self, instance_id: int) -> None:
        """``DELETE /instances/{id}/``: gone for good; billing stops, the GPUs free up."""
        with self._tx() as (state, now):
            inst = self._get(state, instance_id)
            state.setdefault("destroyed", {})[str(instance_id)] = {
                "id": inst["id"], "label": inst["label"], "ledger": inst["ledger"], "traffic": inst["traffic"],
                "inet_up_cost": inst["inet_up_cost"], "inet_down_cost": inst["inet_down_cost"], "destroyed_at": now,
            }  # fmt: skip
            del state["instances"][str(instance_id)]

    def change_bid(self, instance_id: int, price: float) -> None:
        with self._tx() as (state, now):
            inst = self._get(state, instance_id)
            if not 0.001 <= price <= 32 * max(1, inst["num_gpus"]):
                raise SimError(400, "invalid_args", f"price must be between 0.001 and {32 * inst['num_gpus']}")
            inst["gpu_dph"], inst["is_bid"] = price, True
            outbid = str(inst.get("status_msg") or "").startswith("outbid")
            if outbid and price >= inst["min_bid"]:
                inst["events"] = [[now + self.config.schedule_delay, "resume"]]

    def _get(self, state: State, instance_id: int) -> dict[str, Any]:
        inst = state["instances"].get(str(instance_id))
        if inst is None:
            raise SimError(404, "no_such_instance", f"Instance {instance_id} not found.")
        return inst

    # -- SSH keys and account ---------------------------------------------------------------

    def attach_ssh_key(self, instance_id: int, key: str) -> None:
        with self._tx() as (state, _):
            inst = self._get(state, instance_id)
            inst["ssh_keys"].append({"id": len(inst["ssh_keys"]) + 1, "name": "", "public_key": _ssh_key(key)})

    def instance_ssh_keys(self, instance_id: int) -> list[dict[str, Any]]:
        with self._tx() as (state, _):
            inst = self._get(state, instance_id)
            return [*inst["ssh_keys"], *({"id": k["id"], "name": "account", "public_key": k["key"]} for k in inst.get("account_keys", []))]

    def account_ssh_keys(self) -> list[dict[str, Any]]:
        with self._tx() as (state, _):
            return list(state["ssh_keys"])

    def add_account_ssh_key(self, key: str) -> dict[str, Any]:
        with self._tx() as (state, now):
            record = {"id": 9000 + len(state["ssh_keys"]), "user_id": state["user"]["id"], "key": _ssh_key(key),
                      "created_at": now, "deleted_at": None}  # fmt: skip
            state["ssh_keys"].append(record)
            return record

    def user(self) -> dict[str, Any]:
        """``GET /users/current/``: the account, with its balance (the API echoes the key)."""
        with self._tx() as (state, _):
            user = dict(state["user"])
            user["balance"] = round(user["balance"], 6)
            user["credit"] = user["balance"]
            return user

    @property
    def api_key(self) -> str:
        """The key this simulated account accepts."""
        with self.store.transaction() as state:
            return state["user"]["api_key"]

    def charges(self, start: float, end: float) -> list[dict[str, Any]]:
        """Per-instance charges over [start, end], in Vast's ``/charges/`` result shape."""
        with self._tx() as (state, _):
            records = [*state["instances"].values(), *state.get("destroyed", {}).values()]
            records.sort(key=lambda i: i["id"])
            return [r for r in (billing.charge_record(i, start, end) for i in records) if r is not None]

    # -- what tests and demos can make happen -----------------------------------------------

    def preempt(self, instance_id: int, *, resume_after: float | None = 60.0) -> None:
        """Outbid a bid instance: stopped in all three state fields, then (optionally) an
        automatic resume ``resume_after`` simulated seconds later, as Vast does."""
        with self._tx() as (state, now):
            inst = self._get(state, instance_id)
            if not inst["is_bid"]:
                raise SimError(400, "invalid_args", f"instance {instance_id} is on-demand; only bids are preempted")
            self._set_stopped(inst, "outbid: a higher bid took this machine")
            if resume_after is not None:
                inst["events"] = [[now + resume_after, "resume"]]

    def set_status(self, instance_id: int, status: str) -> None:
        """Force ``exited``, ``offline`` or ``unknown`` (host trouble), or back to ``running``."""
        if status not in FAULT_STATES | {"running"}:
            raise ValueError(f"status must be one of {sorted(FAULT_STATES | {'running'})}")
        with self._tx() as (state, now):
            inst = self._get(state, instance_id)
            inst.update(actual_status=status, events=[], status_msg=f"simulated: {status}")
            if status == "running":
                inst["started_at"] = now

    def record_traffic(self, instance_id: int, *, up_bytes: int = 0, down_bytes: int = 0) -> None:
        """Bill bytes moved to and from an instance."""
        with self._tx() as (state, now):
            inst = self._get(state, instance_id)
            state["user"]["balance"] -= billing.record_traffic(inst, now, up_bytes / 1e9, down_bytes / 1e9)

    def set_balance(self, dollars: float) -> None:
        with self._tx() as (state, _):
            state["user"]["balance"] = float(dollars)


def _number(value: Any, name: str) -> float:
    """A number the client may have sent as a string, as Vast accepts."""
    try:
        return float(value)
    except (TypeError, ValueError):
        raise SimError(400, "invalid_args", f"{name} must be a number, got {value!r}") from None


def _ssh_key(key: str) -> str:
    key = str(key).strip()
    if not key.startswith(("ssh-", "ecdsa-", "sk-")) or len(key.split()) < 2:
        raise SimError(400, "invalid_args", "ssh_key must be an OpenSSH public key ('ssh-ed25519 AAAA... comment')")
    return key
