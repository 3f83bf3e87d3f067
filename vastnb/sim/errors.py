"""The error the simulated market answers with, and the argument check that raises it.

Every number a request carries goes through :func:`number`, which refuses anything that is
not a finite number inside the field's range (:data:`RANGES`): the market state must never
hold an infinity, a NaN, or a value so large that billing on it overflows.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

__all__ = ["SimError", "Range", "RANGES", "MAX_DISK_GB", "MAX_ADVANCE_S", "MAX_EPOCH_S", "number", "create_number"]

#: The largest disk a create may ask for. Vast documents only the minimum (8 GB); no
#: machine on its market has a petabyte, so anything above this is a typo.
MAX_DISK_GB = 100_000.0
#: The most simulated time one request may move the clock (or delay a resume): a year.
MAX_ADVANCE_S = 366 * 86_400.0
#: The latest moment a charges window may name: the year 5138, in epoch seconds.
MAX_EPOCH_S = 1e11


class SimError(Exception):
    """An API error the simulator answers with: HTTP status, Vast error code, message."""

    def __init__(self, status: int, code: str, msg: str, **extra: Any) -> None:
        super().__init__(msg)
        self.status, self.code, self.msg, self.extra = status, code, msg, extra


@dataclass(frozen=True)
class Range:
    """The values a numeric field accepts: ``low`` to ``high``, both included."""

    low: float
    high: float
    unit: str = ""

    def __str__(self) -> str:
        return f"from {self.low:g} to {self.high:g}{' ' + self.unit if self.unit else ''}"


#: The range of every numeric field requests carry, by the name :func:`number` is given.
RANGES: dict[str, Range] = {
    "disk": Range(8, MAX_DISK_GB, "GB"),  # Vast's minimum (OAS x-input-validation)
    "allocated_storage": Range(0, MAX_DISK_GB, "GB"),  # the disk a search prices offers with
    "price": Range(0.001, 128, "$/h"),  # a bid on create: Vast's documented range
    "seconds": Range(0, MAX_ADVANCE_S, "simulated seconds"),
    "resume_after": Range(0, MAX_ADVANCE_S, "simulated seconds"),
    "day.gte": Range(0, MAX_EPOCH_S, "epoch seconds"),
    "day.lte": Range(0, MAX_EPOCH_S, "epoch seconds"),
}


def number(value: Any, name: str, *, within: Range | None = None, code: str = "invalid_args") -> float:
    """``value`` as a float: a number, or a numeric string as Vast accepts, finite and in
    range (``within``, else ``RANGES[name]``); anything else is a 400 ``code`` whose message
    names the field and its range."""
    allowed = within or RANGES[name]
    try:
        result = float(value)
    except (TypeError, ValueError, OverflowError):  # OverflowError: an integer beyond any float
        result = math.nan
    if isinstance(value, bool) or not allowed.low <= result <= allowed.high:  # NaN fails every comparison
        raise SimError(400, code, f"{name} must be a number {allowed}, got {_shown(value)}")
    return result


def _shown(value: Any) -> str:
    """``value`` for a message, cut short when it is long."""
    try:
        text = repr(value)
    except ValueError:  # an integer with more digits than Python will print
        return "an integer of thousands of digits"
    return text if len(text) <= 40 else f"{text[:20]}... ({len(text)} characters)"


def create_number(offer_id: int, value: Any, name: str, *, code: str = "invalid_args") -> float:
    """A numeric create argument (see :func:`number`); its errors carry
    ``ask_id``, as all of Vast's create errors do."""
    try:
        return number(value, name, code=code)
    except SimError as exc:
        raise SimError(exc.status, exc.code, exc.msg, ask_id=offer_id) from None
