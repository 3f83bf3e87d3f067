"""Sim-only endpoints under ``/_sim/``: make things happen that a real market does on
its own (time passing, preemption, host trouble, offer races, failures).

They let a test or a demo drive a ``vastnb sim serve`` process from outside, with the
same key as the rest of the API. The real Vast API has no such paths.
"""

from __future__ import annotations

import re
from typing import Any

from .market import SimError
from .routes import SimAPI, SimRequest, route

__all__: list[str] = []


@route("POST", "/_sim/advance")
def _advance(api: SimAPI, request: SimRequest, _: re.Match[str]) -> Any:
    seconds = float(request.json().get("seconds", 0))
    if seconds < 0:
        raise SimError(400, "invalid_args", "the clock only moves forward")
    api.market.advance(seconds)
    return {"success": True, "now": api.market.now()}


@route("POST", r"/_sim/preempt/(\d+)")
def _preempt(api: SimAPI, request: SimRequest, match: re.Match[str]) -> Any:
    body = request.json()
    api.market.preempt(int(match.group(1)), resume_after=body.get("resume_after", 60.0))
    return {"success": True}


@route("POST", r"/_sim/status/(\d+)")
def _status(api: SimAPI, request: SimRequest, match: re.Match[str]) -> Any:
    try:
        api.market.set_status(int(match.group(1)), str(request.json().get("status")))
    except ValueError as exc:
        raise SimError(400, "invalid_args", str(exc)) from None
    return {"success": True}


@route("POST", r"/_sim/take/(\d+)")
def _take(api: SimAPI, request: SimRequest, match: re.Match[str]) -> Any:
    api.market.take_offer(int(match.group(1)))
    return {"success": True}


@route("POST", "/_sim/faults")
def _fault(api: SimAPI, request: SimRequest, _: re.Match[str]) -> Any:
    body = dict(request.json())
    try:
        api.faults.inject(str(body.pop("kind", "")), **body)
    except (TypeError, ValueError, re.error) as exc:
        raise SimError(400, "invalid_args", f"bad fault: {exc}") from None
    return {"success": True}
