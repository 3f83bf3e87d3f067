"""What stands in front of the simulated API: authentication, rate limits and faults.

Authentication is the real API's: ``Authorization: Bearer KEY`` or the legacy
``?api_key=KEY``; none gives 403 "This action requires login.", a wrong one 401. An
instance's own key (``instance_api_key``) may only start, stop or destroy that instance.
Rate limits are per endpoint and per identity, enforced as a minimum interval and
answered with a plain-text 429 without Retry-After, as Vast does. Faults are what tests
ask for: a status, a timeout, or an offer taken just before a create.
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass

__all__ = ["RATE_LIMITS", "RateLimiter", "Fault", "Faults", "identity_of", "instance_key_target"]

#: Minimum seconds between calls per identity, from Vast's OpenAPI ``x-rate-limit``.
RATE_LIMITS: dict[str, float] = {
    "create": 4.5,
    "bid": 5.5,
    "destroy": 3.0,
    "show": 2.0,
    "list": 1.0,
    "manage": 1.0,
    "ssh_add": 1.0,
    "charges": 1.0,
    "search": 6.0,  # Vast allows 10 searches a minute per IP
}


def identity_of(headers: Mapping[str, str], query: Mapping[str, str]) -> str | None:
    """The API key a request carries, from the Bearer header or the legacy query param."""
    auth = headers.get("authorization", "")
    if auth.lower().startswith("bearer "):
        return auth[7:].strip() or None
    return query.get("api_key") or None


#: What an instance's own key (``instance_api_key``) may do: start, stop or destroy it.
_INSTANCE_PATH = re.compile(r"^/api/v0/instances/(\d+)/?$")
_INSTANCE_KEY_PUT = frozenset({"state", "client_id"})


def instance_key_target(method: str, path: str, body: bytes) -> int | None:
    """The instance a request acts on, if an instance key may make it: ``DELETE`` of
    the instance, or a ``PUT`` that only changes its state. None for anything else."""
    match = _INSTANCE_PATH.match(path)
    if match is None or method not in ("DELETE", "PUT"):
        return None
    if method == "PUT":
        try:
            fields = json.loads(body or b"{}")
        except ValueError:
            return None
        if not isinstance(fields, dict) or "state" not in fields or not set(fields) <= _INSTANCE_KEY_PUT:
            return None  # a label, or anything else, needs the account's key
    return int(match.group(1))


class RateLimiter:
    """Minimum interval per (identity, endpoint), scaled; ``scale=0`` turns it off."""

    def __init__(self, scale: float = 0.0) -> None:
        self.scale = scale
        self._last: dict[tuple[str, str], float] = {}
        self._lock = threading.Lock()

    def check(self, identity: str, endpoint: str) -> float | None:
        """None if the call may go ahead, else the endpoint's threshold (seconds)."""
        threshold = RATE_LIMITS.get(endpoint, 0.0)
        if self.scale <= 0 or threshold <= 0:
            return None
        now = time.monotonic()
        with self._lock:
            last = self._last.get((identity, endpoint))
            if last is not None and now - last < threshold * self.scale:
                return threshold
            self._last[(identity, endpoint)] = now
        return None


@dataclass
class Fault:
    """One injected failure: the next ``times`` requests matching ``method`` and the
    ``path`` regex get ``kind`` ("status", "timeout", "race": the offer is taken, or
    "outbid": its minimum bid jumps) instead of service."""

    kind: str
    path: str = ".*"
    method: str | None = None
    times: int = 1
    status: int = 503
    body: str | None = None


class Faults:
    """The faults waiting to happen, consumed in the order they were injected."""

    KINDS = frozenset({"status", "timeout", "race", "outbid"})

    def __init__(self) -> None:
        self._pending: list[Fault] = []
        self._lock = threading.Lock()

    def inject(
        self,
        kind: str,
        *,
        path: str = ".*",
        method: str | None = None,
        times: int = 1,
        status: int = 503,
        body: str | None = None,
    ) -> Fault:
        """Add a fault. ``path`` is a regex searched in the request path."""
        if kind not in self.KINDS:
            raise ValueError(f"fault kind must be one of {sorted(self.KINDS)}, got {kind!r}")
        re.compile(path)
        fault = Fault(kind, path, method.upper() if method else None, times, status, body)
        with self._lock:
            self._pending.append(fault)
        return fault

    def take(self, method: str, path: str) -> Fault | None:
        """The fault for this request, if one is due (and count it as used)."""
        with self._lock:
            for fault in self._pending:
                if fault.kind in ("race", "outbid") and not re.search(r"/asks/\d+", path):
                    continue  # races only mean something on a create
                if (fault.method in (None, method)) and re.search(fault.path, path):
                    fault.times -= 1
                    if fault.times <= 0:
                        self._pending.remove(fault)
                    return fault
        return None

    def clear(self) -> None:
        with self._lock:
            self._pending.clear()
