"""The error the simulated market answers with, and the argument check that raises it."""

from __future__ import annotations

import math
from typing import Any

__all__ = ["SimError", "number"]


class SimError(Exception):
    """An API error the simulator answers with: HTTP status, Vast error code, message."""

    def __init__(self, status: int, code: str, msg: str, **extra: Any) -> None:
        super().__init__(msg)
        self.status, self.code, self.msg, self.extra = status, code, msg, extra


def number(value: Any, name: str) -> float:
    """A finite number the client may have sent as a string, as Vast accepts; else 400."""
    try:
        result = float(value)
    except (TypeError, ValueError):
        result = math.nan
    if isinstance(value, bool) or not math.isfinite(result):
        raise SimError(400, "invalid_args", f"{name} must be a number, got {value!r}")
    return result
