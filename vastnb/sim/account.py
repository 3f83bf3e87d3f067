"""The account side of the simulated market: SSH keys, the user record, money in and out.

:class:`AccountMixin` is part of :class:`vastnb.sim.market.Market`; it works on the same
state, through the market's transactions.
"""

from __future__ import annotations

import functools
import secrets
from typing import Any

from vastnb.sim import billing
from vastnb.sim.errors import SimError

__all__ = ["AccountMixin", "MAX_BALANCE", "MAX_TRAFFIC_BYTES"]

#: The largest balance, credit or debt, a test may give the account, in dollars.
MAX_BALANCE = 1e9
#: The most bytes one call may bill as traffic: an exabyte.
MAX_TRAFFIC_BYTES = 1e18


class AccountMixin:
    """SSH keys, ``/users/current/``, ``/charges/``, bandwidth and the balance.

    Needs the host class's ``store``, ``_tx()`` (a transaction at the current simulated
    time) and ``_get(state, instance_id)``.
    """

    store: Any
    _tx: Any
    _get: Any

    # -- SSH keys ---------------------------------------------------------------------------

    def attach_ssh_key(self, instance_id: int, key: str) -> None:
        with self._tx() as (state, _):
            inst = self._get(state, instance_id)
            inst["ssh_keys"].append({"id": len(inst["ssh_keys"]) + 1, "name": "", "public_key": _ssh_key(key)})

    def instance_ssh_keys(self, instance_id: int) -> list[dict[str, Any]]:
        with self._tx() as (state, _):
            inst = self._get(state, instance_id)
            return [
                *inst["ssh_keys"],
                *({"id": k["id"], "name": "account", "public_key": k["key"]} for k in inst.get("account_keys", [])),
            ]

    def account_ssh_keys(self) -> list[dict[str, Any]]:
        with self._tx() as (state, _):
            return list(state["ssh_keys"])

    def add_account_ssh_key(self, key: str) -> dict[str, Any]:
        with self._tx() as (state, now):
            record = {
                "id": 9000 + len(state["ssh_keys"]),
                "user_id": state["user"]["id"],
                "key": _ssh_key(key),
                "created_at": now,
                "deleted_at": None,
            }
            state["ssh_keys"].append(record)
            return record

    # -- the account and its money ----------------------------------------------------------

    def user(self) -> dict[str, Any]:
        """``GET /users/current/``: the account, with its balance (the API echoes the key)."""
        with self._tx() as (state, _):
            user = dict(state["user"])
            user["balance"] = round(user["balance"], 6)
            user["credit"] = user["balance"]
            return user

    @functools.cached_property
    def api_key(self) -> str:
        """The key this simulated account accepts (fixed when the market is first made;
        cached, as every request checks it)."""
        with self.store.transaction() as state:
            return state["user"]["api_key"]

    def instance_for_key(self, key: str) -> int | None:
        """The live instance whose own restricted key (``instance_api_key``) ``key`` is."""
        if not key:
            return None
        with self._tx() as (state, _):
            for inst in state["instances"].values():
                if secrets.compare_digest(str(inst.get("instance_api_key") or "").encode(), key.encode()):
                    return int(inst["id"])
        return None

    def charges(self, start: float, end: float) -> list[dict[str, Any]]:
        """Per-instance charges over [start, end], in Vast's ``/charges/`` result shape."""
        with self._tx() as (state, _):
            records = [*state["instances"].values(), *state.get("destroyed", {}).values()]
            records.sort(key=lambda i: i["id"])
            return [r for r in (billing.charge_record(i, start, end) for i in records) if r is not None]

    def record_traffic(self, instance_id: int, *, up_bytes: int = 0, down_bytes: int = 0) -> None:
        """Bill bytes moved to and from an instance (each from 0 to :data:`MAX_TRAFFIC_BYTES`)."""
        for name, count in (("up_bytes", up_bytes), ("down_bytes", down_bytes)):
            if not _within(count, 0, MAX_TRAFFIC_BYTES):
                raise ValueError(
                    f"{name} must be a number of bytes from 0 to {MAX_TRAFFIC_BYTES:g}, not {_shown(count)}"
                )
        with self._tx() as (state, now):
            inst = self._get(state, instance_id)
            state["user"]["balance"] -= billing.record_traffic(inst, now, up_bytes / 1e9, down_bytes / 1e9)

    def set_balance(self, dollars: float) -> None:
        """Set the account's balance, in dollars (from -:data:`MAX_BALANCE` to :data:`MAX_BALANCE`)."""
        if not _within(dollars, -MAX_BALANCE, MAX_BALANCE):
            raise ValueError(
                f"the balance must be from {-MAX_BALANCE:g} to {MAX_BALANCE:g} dollars, not {_shown(dollars)}"
            )
        with self._tx() as (state, _):
            state["user"]["balance"] = float(dollars)


def _within(value: Any, low: float, high: float) -> bool:
    """Whether ``value`` is a real number (not a bool) from ``low`` to ``high``; NaN is not."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and low <= value <= high


def _shown(value: Any) -> str:
    """``value`` for a message, cut short (an integer of 5,000 digits cannot even be printed)."""
    if isinstance(value, int) and value.bit_length() > 128:
        return f"an integer of {value.bit_length()} bits"
    return repr(value)[:40]


def _ssh_key(key: str) -> str:
    key = str(key).strip()
    if not key.startswith(("ssh-", "ecdsa-", "sk-")) or len(key.split()) < 2:
        raise SimError(400, "invalid_args", "ssh_key must be an OpenSSH public key ('ssh-ed25519 AAAA... comment')")
    return key
