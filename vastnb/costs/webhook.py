"""A budget alert posted to the webhook of ``budgets.yaml``: in a thread of its own, with
retries, never blocking the poll that raised it (a webhook down must not stop enforcement).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

import httpx

__all__ = ["post_alert"]

log = logging.getLogger("vastnb.costs.webhook")


def post_alert(
    url: str,
    payload: Mapping[str, Any],
    *,
    tries: int = 4,
    backoff_s: float = 1.0,
    timeout_s: float = 10.0,
    done: Callable[[bool], None] | None = None,
) -> threading.Thread:
    """POST ``payload`` as JSON to ``url`` in a daemon thread: up to ``tries`` times, the
    wait doubling from ``backoff_s``, until a 2xx answer; ``done(delivered)`` at the end."""

    def send() -> None:
        delivered = False
        for attempt in range(tries):
            try:
                answer = httpx.post(url, json=dict(payload), timeout=timeout_s)
                if answer.is_success:
                    delivered = True
                    break
                why = f"HTTP {answer.status_code}"
            except httpx.HTTPError as exc:
                why = f"{type(exc).__name__}: {exc}"
            log.warning("budget webhook %s: attempt %d of %d failed (%s)", url, attempt + 1, tries, why)
            if attempt + 1 < tries:
                time.sleep(backoff_s * 2**attempt)
        if done is not None:
            done(delivered)

    thread = threading.Thread(target=send, name="vastnb-budget-webhook", daemon=True)
    thread.start()
    return thread
