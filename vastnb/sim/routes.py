"""The simulated Vast REST API: requests in, Vast-shaped responses out.

:class:`SimAPI` is transport-neutral. :mod:`vastnb.sim.transport` hands it httpx
requests in process; :mod:`vastnb.sim.server` serves it over HTTP on loopback. Routes,
bodies, status codes and quirks follow the real Vast API's.
"""

from __future__ import annotations

import dataclasses
import json
import math
import re
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from vastnb.sim.errors import number
from vastnb.sim.gate import Faults, RateLimiter, identity_of, instance_key_target
from vastnb.sim.listing import filter_records, page_token, parse_page_token
from vastnb.sim.market import Market, SimError

__all__ = ["SimAPI", "SimRequest", "SimResponse", "MAX_BODY_BYTES", "loads"]

V1_MAX_LIMIT = 25
CHARGES_MAX_LIMIT = 500
#: The largest request body the simulator takes, in bytes. Vast's biggest bodies (a create
#: with 32 KiB of env and 4 KiB of onstart, a search) are far smaller.
MAX_BODY_BYTES = 1024 * 1024


def loads(text: str | bytes, what: str, *, code: str = "invalid_request") -> Any:
    """Parse JSON strictly: NaN, Infinity, and numbers beyond a float (``1e999``, an
    integer of 400 digits) are refused with a 400 ``code``, as is text that is not JSON,
    so that no request can bring a non-finite number into the market. ``what`` names the
    text in messages."""

    def refuse(literal: str) -> Any:
        shown = literal if len(literal) <= 24 else f"a number of {len(literal)} digits"
        raise SimError(400, code, f"{what} holds {shown}, which is not a finite JSON number; send a number in range")

    def real(literal: str) -> float:
        value = float(literal)
        return value if math.isfinite(value) else refuse(literal)

    def whole(literal: str) -> int:
        if len(literal) > _FLOAT_DIGITS:  # checked first: int() refuses more than 4,300 digits
            refuse(literal)
        value = int(literal)
        return value if abs(value) <= _LARGEST_FLOAT else refuse(literal)

    try:
        return json.loads(text, parse_constant=refuse, parse_float=real, parse_int=whole)
    except ValueError:  # UnicodeDecodeError included
        raise SimError(400, code, f"{what} is not valid JSON") from None


_LARGEST_FLOAT = int(sys.float_info.max)
_FLOAT_DIGITS = len(str(_LARGEST_FLOAT)) + 1  # and a sign


@dataclass(frozen=True)
class SimRequest:
    method: str
    path: str
    query: Mapping[str, str] = field(default_factory=dict)
    headers: Mapping[str, str] = field(default_factory=dict)  # lower-case names
    body: bytes = b""

    def json(self) -> Any:
        if not self.body.strip():
            return {}
        return loads(self.body, "the request body")

    def object(self) -> Mapping[str, Any]:
        """The JSON body, which must be an object (an empty body is an empty one)."""
        body = self.json()
        if not isinstance(body, Mapping):
            raise SimError(400, "invalid_request", "the request body must be a JSON object")
        return body


@dataclass(frozen=True)
class SimResponse:
    status: int
    body: bytes
    content_type: str = "application/json"
    timeout: bool = False  # the transport must act as if no answer ever came
    date: float | None = None  # the simulated clock when it answered (its Date header)

    @classmethod
    def of(cls, status: int, data: Any) -> SimResponse:
        return cls(status, json.dumps(data, allow_nan=False).encode())  # JSON has no NaN or Infinity


def too_large(length: int | str) -> SimResponse:
    """The answer to a body of ``length`` bytes (as a number, or the digits a
    Content-Length header announced), over :data:`MAX_BODY_BYTES`."""
    size = str(length)
    if len(size) > 24:
        size = f"a {len(size)}-digit number of"
    return SimResponse.of(
        413,
        {
            "success": False,
            "error": "request_too_large",
            "msg": f"the request body is {size} bytes, over the limit of {MAX_BODY_BYTES} bytes; send a smaller body",
        },
    )


Handler = Callable[["SimAPI", SimRequest, re.Match[str]], Any]
_ROUTES: list[tuple[str, re.Pattern[str], str | None, bool, Handler]] = []


def route(method: str, pattern: str, *, limit: str | None = None, auth: bool = True) -> Callable[[Handler], Handler]:
    """Register a handler for ``method`` on a path regex (trailing slash optional)."""

    def register(handler: Handler) -> Handler:
        _ROUTES.append((method, re.compile(f"^{pattern}/?$"), limit, auth, handler))
        return handler

    return register


class SimAPI:
    """The simulated API over a :class:`Market`.

    ``rate_limit_scale`` scales Vast's per-endpoint minimum intervals (0 turns limits
    off, 1 is Vast's own); ``faults`` is where tests inject failures.
    """

    def __init__(self, market: Market, *, rate_limit_scale: float = 0.0) -> None:
        self.market = market
        self.limiter = RateLimiter(rate_limit_scale)
        self.faults = Faults()

    def handle(self, request: SimRequest) -> SimResponse:
        """The answer to ``request``, dated by the simulated clock."""
        return dataclasses.replace(self._answer(request), date=self.market.clock())

    def _answer(self, request: SimRequest) -> SimResponse:
        if len(request.body) > MAX_BODY_BYTES:
            return too_large(len(request.body))
        try:
            return self._handle(request)
        except SimError as exc:
            return SimResponse.of(exc.status, {"success": False, "error": exc.code, "msg": exc.msg, **exc.extra})
        except Exception as exc:  # noqa: BLE001 - answer, as a real server does, rather than hang up
            return SimResponse.of(
                500, {"success": False, "error": "server_error", "msg": f"{type(exc).__name__}: {exc}"}
            )

    def _handle(self, request: SimRequest) -> SimResponse:
        path = request.path
        for method, pattern, limit, needs_auth, handler in _ROUTES:
            match = pattern.match(path)
            if not match or method != request.method:
                continue
            key = identity_of(request.headers, request.query)
            if needs_auth:
                if key is None:
                    return SimResponse.of(
                        403, {"success": False, "error": "not_authorized", "msg": "This action requires login."}
                    )
                if key != self.market.api_key and not self._instance_key_may(key, request):
                    return SimResponse.of(401, {"success": False, "error": "auth_error", "msg": "Invalid user key"})
            elif key is not None and key != self.market.api_key:
                # Open endpoints (offer search) need no key, but refuse a wrong one: 404.
                return SimResponse.of(404, {"success": False, "error": "auth_error", "msg": "Invalid user key"})
            # The /_sim/ controls stay reachable whatever faults are waiting.
            fault = None if path.startswith("/_sim/") else self.faults.take(request.method, path)
            if fault and fault.kind == "timeout":
                return SimResponse(504, b"", timeout=True)
            if fault and fault.kind == "status":
                if fault.status == 429:
                    return SimResponse(429, (fault.body or "API requests too frequent").encode(), "text/plain")
                return SimResponse(
                    fault.status, (fault.body or f"<html>{fault.status} Bad Gateway</html>").encode(), "text/html"
                )
            if fault and fault.kind in ("race", "outbid") and (ask := re.search(r"/asks/(\d+)", path)):
                act = self.market.take_offer if fault.kind == "race" else self.market.raise_min_bid
                act(int(ask.group(1)))
            threshold = self.limiter.check(key or "anonymous", limit) if limit else None
            if threshold is not None:
                return SimResponse(
                    429, f"API requests too frequent endpoint threshold={threshold}".encode(), "text/plain"
                )
            result = handler(self, request, match)
            return result if isinstance(result, SimResponse) else SimResponse.of(200, result)
        if any(pattern.match(path) for _, pattern, *_ in _ROUTES):
            return SimResponse.of(
                405,
                {"success": False, "error": "method_not_allowed", "msg": f"{request.method} is not allowed on {path}"},
            )
        return SimResponse.of(404, {"success": False, "error": "not_found", "msg": f"no such endpoint: {path}"})

    def _instance_key_may(self, key: str, request: SimRequest) -> bool:
        """An instance's own key may start, stop or destroy that instance, nothing else."""
        target = instance_key_target(request.method, request.path, request.body)
        return target is not None and self.market.instance_for_key(key) == target


# -- offers -----------------------------------------------------------------------------------


@route("POST", "/api/v0/bundles", limit="search", auth=False)
def _search(api: SimAPI, request: SimRequest, _: re.Match[str]) -> Any:
    body = request.json()
    if not isinstance(body, Mapping):
        raise SimError(400, "invalid_args", "the search body must be a JSON object of field: {op: value}")
    return {"offers": _offers(api, body)}


@route("GET", "/api/v0/bundles", limit="search", auth=False)
def _search_legacy(api: SimAPI, request: SimRequest, _: re.Match[str]) -> Any:
    body = loads(request.query.get("q") or "{}", "q", code="invalid_args")
    if not isinstance(body, Mapping):
        raise SimError(400, "invalid_args", "q must be a JSON object")
    return {"offers": _offers(api, body)}


def _offers(api: SimAPI, body: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The offers a search body asks for; the disk it prices them with must be a sane size."""
    if body.get("allocated_storage") is not None:
        number(body["allocated_storage"], "allocated_storage")
    return api.market.search(body)


@route("PUT", r"/api/v0/asks/(\d+)", limit="create")
def _create(api: SimAPI, request: SimRequest, match: re.Match[str]) -> Any:
    return api.market.create(int(match.group(1)), request.object())


# -- instances --------------------------------------------------------------------------------


@route("GET", r"/api/v0/instances/(\d+)", limit="show")
def _show(api: SimAPI, request: SimRequest, match: re.Match[str]) -> Any:
    # A singular object under a plural key, or null: Vast's shape.
    return {"instances": api.market.show(int(match.group(1)))}


@route("GET", "/api/v0/instances")
def _list_v0(api: SimAPI, request: SimRequest, _: re.Match[str]) -> Any:
    instances = api.market.instances()
    return {"instances_found": len(instances), "instances": instances}


@route("GET", "/api/v1/instances", limit="list")
def _list_v1(api: SimAPI, request: SimRequest, _: re.Match[str]) -> Any:
    filters = _json_param(request, "select_filters", {})
    order = _json_param(request, "order_by", [{"col": "id", "dir": "asc"}])
    limit = _int_param(request, "limit", V1_MAX_LIMIT)
    limit = 5 if limit <= 0 else min(limit, V1_MAX_LIMIT)
    instances = filter_records(api.market.instances(), filters, order)
    start = parse_page_token(request.query.get("after_token"))
    page = instances[start : start + limit]
    more = start + limit < len(instances)
    labels: dict[str, int] = {}
    for inst in instances:
        labels[str(inst.get("label"))] = labels.get(str(inst.get("label")), 0) + 1
    return {
        "success": True,
        "instances_found": len(page),
        "total_instances": len(instances),
        "label_counts": labels,
        "next_token": page_token(start + limit) if more else None,
        "instances": page,
    }


@route("PUT", r"/api/v0/instances/(\d+)", limit="manage")
def _manage(api: SimAPI, request: SimRequest, match: re.Match[str]) -> Any:
    body, instance_id = request.object(), int(match.group(1))
    if "state" in body:
        api.market.set_state(instance_id, str(body["state"]))
    if "label" in body:
        api.market.set_label(instance_id, str(body["label"]))
    if "state" not in body and "label" not in body:
        raise SimError(400, "invalid_args", "send {'state': 'running'|'stopped'} or {'label': ...}")
    return {"success": True}


@route("DELETE", r"/api/v0/instances/(\d+)", limit="destroy")
def _destroy(api: SimAPI, request: SimRequest, match: re.Match[str]) -> Any:
    own = identity_of(request.headers, request.query) != api.market.api_key
    api.market.destroy(int(match.group(1)), by="its own key" if own else "the account's key")
    return {"success": True}


@route("PUT", r"/api/v0/instances/bid_price/(\d+)", limit="bid")
def _bid(api: SimAPI, request: SimRequest, match: re.Match[str]) -> Any:
    price = request.object().get("price")
    if price is None:
        raise SimError(400, "invalid_args", "price is required")
    api.market.change_bid(int(match.group(1)), price)
    return {"success": True}


@route("POST", r"/api/v0/instances/(\d+)/ssh", limit="ssh_add")
def _attach_ssh(api: SimAPI, request: SimRequest, match: re.Match[str]) -> Any:
    api.market.attach_ssh_key(int(match.group(1)), str(request.object().get("ssh_key") or ""))
    return {"success": True, "msg": "SSH key attached; it may take a few seconds to reach the instance."}


@route("GET", r"/api/v0/instances/(\d+)/ssh")
def _instance_keys(api: SimAPI, request: SimRequest, match: re.Match[str]) -> Any:
    # Quirk: a JSON string inside the JSON body.
    return {"success": True, "ssh_keys": json.dumps(api.market.instance_ssh_keys(int(match.group(1))))}


# -- overlay networks -------------------------------------------------------------------------


@route("POST", "/api/v0/overlay")
def _create_overlay(api: SimAPI, request: SimRequest, _: re.Match[str]) -> Any:
    body = request.object()
    api.market.create_overlay(body.get("cluster_id"), body.get("name"))
    return {"success": True, "msg": f"Overlay {body.get('name')} created on cluster {body.get('cluster_id')}."}


@route("GET", "/api/v0/overlay")
def _overlays(api: SimAPI, request: SimRequest, _: re.Match[str]) -> Any:
    return api.market.overlays()  # a bare list, as the CLI reads it


@route("PUT", "/api/v0/overlay")
def _join_overlay(api: SimAPI, request: SimRequest, _: re.Match[str]) -> Any:
    body = request.object()
    if isinstance(body.get("instance_id"), bool) or not isinstance(body.get("instance_id"), int):
        raise SimError(400, "invalid_args", "instance_id must be an integer")
    api.market.join_overlay(body.get("name"), body["instance_id"])
    return {"success": True, "msg": "Instance added to the overlay."}


@route("DELETE", "/api/v0/overlay")
def _delete_overlay(api: SimAPI, request: SimRequest, _: re.Match[str]) -> Any:
    api.market.delete_overlay(request.object())
    return {"success": True, "msg": "Overlay deleted."}


# -- account ----------------------------------------------------------------------------------


@route("GET", "/api/v0/ssh")
def _account_keys(api: SimAPI, request: SimRequest, _: re.Match[str]) -> Any:
    return api.market.account_ssh_keys()


@route("POST", "/api/v0/ssh", limit="ssh_add")
def _add_account_key(api: SimAPI, request: SimRequest, _: re.Match[str]) -> Any:
    return {"success": True, "key": api.market.add_account_ssh_key(str(request.object().get("ssh_key") or ""))}


@route("GET", "/api/v0/users/current")
def _user(api: SimAPI, request: SimRequest, _: re.Match[str]) -> Any:
    return api.market.user()


@route("GET", "/api/v0/charges", limit="charges")
def _charges(api: SimAPI, request: SimRequest, _: re.Match[str]) -> Any:
    filters = _json_param(request, "select_filters", {})
    day = filters.get("day") if isinstance(filters, Mapping) else None
    if not isinstance(day, Mapping) or "gte" not in day or "lte" not in day:
        raise SimError(400, "invalid_args", 'select_filters must hold "day": {"gte": start, "lte": end}')
    limit = _int_param(request, "limit", 100)
    limit = 100 if limit <= 0 else min(limit, CHARGES_MAX_LIMIT)
    results = api.market.charges(number(day["gte"], "day.gte"), number(day["lte"], "day.lte"))
    if request.query.get("latest_first", "").lower() == "true":
        results.reverse()
    start = parse_page_token(request.query.get("after_token"))
    page = results[start : start + limit]
    more = start + limit < len(results)
    return {
        "success": True,
        "count": len(page),
        "total": round(sum(r["amount"] for r in results), 6),
        "next_token": page_token(start + limit) if more else None,
        "results": page,
    }


def _int_param(request: SimRequest, name: str, default: int) -> int:
    raw = request.query.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError:
        raise SimError(400, "invalid_args", f"{name} must be an integer, got {raw!r}") from None


def _json_param(request: SimRequest, name: str, default: Any) -> Any:
    raw = request.query.get(name)
    if not raw:
        return default
    return loads(raw, name, code="invalid_args")
