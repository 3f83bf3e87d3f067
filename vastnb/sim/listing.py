"""Filtering, ordering and paging of listed records, as ``GET /api/v1/instances/`` does.

Only stored columns can be filtered or ordered on; computed ones (``dph_total``,
``num_gpus``...) are refused with Vast's "is not a valid search key". Page tokens are
opaque to clients.
"""

from __future__ import annotations

import base64
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from vastnb.sim.market import SimError

__all__ = ["STORED_COLUMNS", "filter_records", "page_token", "parse_page_token"]

STORED_COLUMNS = frozenset(
    {
        "id",
        "label",
        "actual_status",
        "intended_status",
        "cur_state",
        "next_state",
        "machine_id",
        "host_id",
        "gpu_name",
        "image_uuid",
        "is_bid",
        "start_date",
        "geolocation",
        "template_id",
    }
)

_OPS = {
    "eq": lambda a, b: a == b,
    "neq": lambda a, b: a != b,
    "gt": lambda a, b: a is not None and a > b,
    "gte": lambda a, b: a is not None and a >= b,
    "lt": lambda a, b: a is not None and a < b,
    "lte": lambda a, b: a is not None and a <= b,
    "in": lambda a, b: a in b,
    "notin": lambda a, b: a not in b,
}


def _column(name: Any) -> str:
    if name not in STORED_COLUMNS:
        raise SimError(400, "invalid_args", f"{name} is not a valid search key")
    return str(name)


def filter_records(records: Sequence[Mapping[str, Any]], filters: Any, order_by: Any) -> list[Mapping[str, Any]]:
    """``records`` that pass every ``{column: {op: value}}`` filter, ordered."""
    if not isinstance(filters, Mapping) or not isinstance(order_by, list):
        raise SimError(400, "invalid_args", "select_filters must be an object and order_by a list")
    checks: list[tuple[str, Callable[[Any, Any], Any], Any]] = []
    for name, ops in filters.items():
        column = _column(name)
        if not isinstance(ops, Mapping) or any(op not in _OPS for op in ops):
            raise SimError(400, "invalid_args", f"filter on {column} must be {{op: value}} with op in {sorted(_OPS)}")
        checks.extend((column, _OPS[op], value) for op, value in ops.items())
    try:
        kept = [r for r in records if all(test(r.get(col), value) for col, test, value in checks)]
    except TypeError as exc:
        raise SimError(400, "invalid_args", f"cannot compare: {exc}") from None
    # Vast always adds id as the final tiebreaker.
    keys = [*order_by, {"col": "id", "dir": "asc"}]
    for key in reversed(keys):
        column = _column(key.get("col") if isinstance(key, Mapping) else None)
        descending = str(key.get("dir", "asc")).lower() == "desc"
        kept.sort(
            key=lambda r: (r.get(column) is None, 0 if r.get(column) is None else r.get(column)), reverse=descending
        )
    return kept


def page_token(offset: int) -> str:
    return base64.urlsafe_b64encode(f"offset:{offset}".encode()).decode()


def parse_page_token(token: str | None) -> int:
    """The offset a token stands for; a bad token is Vast's 400 ``invalid_token``."""
    if not token:
        return 0
    try:
        kind, _, value = base64.urlsafe_b64decode(token.encode()).decode().partition(":")
        if kind != "offset":
            raise ValueError(kind)
        return max(0, int(value))
    except (ValueError, UnicodeDecodeError):
        raise SimError(400, "invalid_token", "after_token is not a token this API gave out") from None
