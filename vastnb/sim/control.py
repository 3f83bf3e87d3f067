"""Sim-only endpoints under ``/_sim/``: make things happen that a real market does on
its own (time passing, preemption, being outbid, host trouble, a dead worker, an image pull
that never ends, offer races, failures).

They let a test or a demo drive a ``vastnb sim serve`` process from outside, with the
same key as the rest of the API. The real Vast API has no such paths.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from vastnb.sim.errors import SimError, number
from vastnb.sim.routes import SimAPI, SimRequest, route

__all__ = ["MAX_FAULT_TIMES"]

#: The most requests one injected fault may hit.
MAX_FAULT_TIMES = 10_000


@route("POST", "/_sim/advance")
def _advance(api: SimAPI, request: SimRequest, _: re.Match[str]) -> Any:
    seconds = number(request.object().get("seconds", 0), "seconds")  # the clock only moves forward
    api.market.advance(seconds)
    return {"success": True, "now": api.market.now()}


@route("POST", r"/_sim/preempt/(\d+)")
def _preempt(api: SimAPI, request: SimRequest, match: re.Match[str]) -> Any:
    # The market checks resume_after (None: no automatic resume).
    api.market.preempt(int(match.group(1)), resume_after=request.object().get("resume_after", 60.0))
    return {"success": True}


@route("POST", r"/_sim/outbid/(\d+)")
def _outbid(api: SimAPI, request: SimRequest, match: re.Match[str]) -> Any:
    # The market checks price and resume_after (None: the default price; no automatic resume).
    body = _fields(request, "price", "resume_after")
    price = api.market.outbid(int(match.group(1)), price=body.get("price"), resume_after=body.get("resume_after"))
    return {"success": True, "min_bid": price}


@route("POST", r"/_sim/kill-worker/(\d+)")
def _kill_worker(api: SimAPI, request: SimRequest, match: re.Match[str]) -> Any:
    _fields(request)
    return {"success": True, "pid": api.market.kill_worker(int(match.group(1)))}


@route("POST", "/_sim/stall-loading")
def _stall_loading(api: SimAPI, request: SimRequest, _: re.Match[str]) -> Any:
    body = _fields(request, "count", "after")  # the market checks them
    api.market.stall_loading(body.get("count", 1), after=body.get("after", 0))
    return {"success": True}


@route("POST", r"/_sim/status/(\d+)")
def _status(api: SimAPI, request: SimRequest, match: re.Match[str]) -> Any:
    try:
        api.market.set_status(int(match.group(1)), str(request.object().get("status")))
    except ValueError as exc:
        raise SimError(400, "invalid_args", str(exc)) from None
    return {"success": True}


@route("POST", r"/_sim/take/(\d+)")
def _take(api: SimAPI, request: SimRequest, match: re.Match[str]) -> Any:
    api.market.take_offer(int(match.group(1)))
    return {"success": True}


@route("POST", "/_sim/faults")
def _fault(api: SimAPI, request: SimRequest, _: re.Match[str]) -> Any:
    body = dict(request.object())
    times, status = body.get("times", 1), body.get("status", 503)
    if not isinstance(times, int) or isinstance(times, bool) or not 1 <= times <= MAX_FAULT_TIMES:
        raise SimError(400, "invalid_args", f"times must be a whole number from 1 to {MAX_FAULT_TIMES}, got {times!r}")
    if not isinstance(status, int) or isinstance(status, bool) or not 100 <= status <= 599:
        raise SimError(400, "invalid_args", f"bad fault: status must be an HTTP status code, got {status!r}")
    try:
        api.faults.inject(str(body.pop("kind", "")), **body)
    except (TypeError, ValueError, re.error) as exc:
        raise SimError(400, "invalid_args", f"bad fault: {exc}") from None
    return {"success": True}


def _fields(request: SimRequest, *allowed: str) -> Mapping[str, Any]:
    """The request's JSON object (an empty body is an empty one), holding no field but ``allowed``."""
    body = request.object()
    if unknown := sorted(set(body) - set(allowed)):
        takes = f"takes only {', '.join(allowed)}" if allowed else "takes no fields"
        raise SimError(400, "invalid_args", f"unknown field {unknown[0]!r}: {request.path} {takes}")
    return body
