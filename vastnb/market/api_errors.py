"""Turn a failed Vast API response into the right :class:`~vastnb.errors.APIError`.

Vast's error bodies vary: ``{"success": false, "error": code, "msg": text}``, only
``msg`` or ``message``, ``{"detail": ...}``, or plain text; 401, 403 and 404 can all
mean a bad key; a refused create may still carry the id of an instance it made.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from vastnb.errors import (
    APIError,
    AuthError,
    InstanceCreateError,
    NotFoundError,
    OfferUnavailableError,
    RateLimitError,
)

__all__ = ["error_for"]

_AUTH_HINT = (
    "Check the key: pass api_key=..., set VAST_API_KEY, or run `vastai set api-key`. "
    "Keys are created at https://cloud.vast.ai/manage-keys/."
)

_HINTS: dict[str, str] = {
    "no_such_ask": "The offer was taken by someone else; search again and pick another.",
    "no_such_instance": "The instance does not exist (any more); `vastnb ps` lists yours.",
    "invalid_price": "The bid is outside what Vast accepts for this offer; check min_bid in the offer.",
    "insufficient_credit": "Add credit at https://cloud.vast.ai/billing/.",
    "missing_billing": "Add a payment method or credit at https://cloud.vast.ai/billing/.",
    "spend_rate_limit": "New accounts have a spend-rate limit; wait, or ask Vast support to raise it.",
    "label_too_long": "Use a shorter label.",
}


def _message(body: Any, text: str) -> tuple[str | None, str]:
    """(error code, human message) from whatever shape the body has."""
    if isinstance(body, Mapping):
        code = body.get("error") if isinstance(body.get("error"), str) else None
        msg = body.get("msg") or body.get("message") or body.get("detail") or code or ""
        return code, str(msg)
    return None, (text or "").strip()[:300]


def error_for(method: str, path: str, status: int, body: Any, text: str) -> APIError:
    """The error to raise for a response that failed (non-2xx, or 2xx with success false)."""
    code, msg = _message(body, text)
    what = f"{method} {path} failed with HTTP {status}" + (f" {code}" if code else "") + (f": {msg}" if msg else "")
    kwargs: dict[str, Any] = {"status": status, "code": code, "endpoint": path}
    lowered = msg.lower()

    if isinstance(body, Mapping) and body.get("new_contract"):
        # Vast made an instance even though the call failed (a bid below min_bid does
        # this): whoever catches this must destroy it, or it keeps billing for disk.
        created = int(body["new_contract"])
        return InstanceCreateError(
            f"{what}. Vast still created instance {created}; it must be destroyed "
            f"(`vastnb down {created}`) or it keeps billing for its disk.",
            created_instance_id=created,
            **kwargs,
        )
    if status in (401, 403) or "invalid user key" in lowered or code == "auth_error":
        return AuthError(f"{what}. Vast did not accept the API key. {_AUTH_HINT}", **kwargs)
    if status == 429:
        return RateLimitError(f"{what}. Vast is rate limiting this key; wait a minute and retry.", **kwargs)
    hint = _HINTS.get(code or "", "")
    if code == "no_such_ask" or (status == 410 and "ask" in path):
        return OfferUnavailableError(f"{what}. {_HINTS['no_such_ask']}", **kwargs)
    if status == 404 or code in ("no_such_instance", "not_found", "no_such_ssh_key"):
        return NotFoundError(f"{what}. {hint or 'Check the id.'}", **kwargs)
    if status >= 500 and method == "PUT" and path.startswith("/asks/"):
        # Not retried: the create may have gone through behind a failing proxy.
        hint = "The create may still have rented a machine: check `vastnb ps` for a new instance before retrying."
    elif status >= 500:
        hint = "Vast's servers are failing; try again in a few minutes (https://status.vast.ai)."
    return APIError(f"{what}." + (f" {hint}" if hint else ""), **kwargs)
