"""When and how long to wait before trying a Vast API call again.

Vast answers an over-eager client with 429 and no Retry-After header; its body often
names the endpoint's minimum interval (``threshold=4.5``), which we honour as a floor.
The official client's 0.15 s first backoff is far below those intervals, so ours starts
at about a second and grows exponentially, with jitter so parallel kernels spread out.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass

__all__ = ["RetryPolicy", "NO_RETRY", "RETRY_STATUSES", "parse_threshold"]

#: HTTP statuses worth another try: rate limited, or a proxy in front of Vast failed.
RETRY_STATUSES = frozenset({429, 502, 503, 504})

_THRESHOLD = re.compile(r"threshold\s*=\s*([0-9]+(?:\.[0-9]+)?)")


def parse_threshold(body: str) -> float | None:
    """The ``threshold=X`` from a 429 body (plain text or JSON), in seconds, if present."""
    match = _THRESHOLD.search(body)
    return float(match.group(1)) if match else None


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential backoff with jitter, bounded by attempts and by total time.

    ``total`` bounds the whole call, sleeps included: no retry is started whose wait
    would end past it, so a call never hangs for longer than about ``total`` plus one
    request timeout.
    """

    attempts: int = 6
    base_delay: float = 1.0
    factor: float = 2.0
    max_delay: float = 20.0
    total: float = 90.0
    jitter: float = 0.25

    def delay(self, attempt: int, *, floor: float = 0.0, rng: random.Random | None = None) -> float:
        """Seconds to wait after failed attempt number ``attempt`` (1-based)."""
        backoff = min(self.max_delay, self.base_delay * self.factor ** (attempt - 1))
        spread = (rng or random).uniform(1 - self.jitter, 1 + self.jitter)
        # Jitter spreads waits below the cap but never past it; the server's minimum
        # interval is a floor that neither jitter nor the cap may undercut.
        return max(floor, min(self.max_delay, backoff * spread))

    def allows(self, attempt: int, elapsed: float, wait: float) -> bool:
        """Whether another attempt may follow attempt ``attempt`` after ``wait`` seconds."""
        return attempt < self.attempts and elapsed + wait <= self.total


#: For scripts that must not wait: fail on the first error.
NO_RETRY = RetryPolicy(attempts=1)
