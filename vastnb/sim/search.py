"""The offer search engine behind the simulator's ``POST /api/v0/bundles/``.

It applies a Vast search body (POST /bundles/, docs.vast.ai) the way the real server does: ``field: {op:
value}`` filters with numeric strings coerced, underscores read as spaces, country codes for
``geolocation``, then ``order``, ``limit``, and pricing by ``type`` and ``allocated_storage``.
Each call compiles the body once into small predicate closures, then narrows the offer list one
predicate at a time, so 10,000 offers take milliseconds.
"""

from __future__ import annotations

import functools
import math
import operator
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from vastnb.sim.catalogue import DEFAULT_STORAGE_GB, apply_pricing

__all__ = ["DEFAULT_LIMIT", "SearchError", "search_offers"]

#: Results returned when the body has no ``limit``. The real default is undocumented; 64 is ours.
DEFAULT_LIMIT = 64
DEFAULT_ORDER: tuple[tuple[str, str], ...] = (("score", "desc"),)

_Getter = Callable[[Mapping[str, Any]], Any]
_Predicate = Callable[[Mapping[str, Any]], bool]

_COMPARE: dict[str, Callable[[Any, Any], bool]] = {
    "eq": operator.eq,
    "neq": operator.ne,
    "gt": operator.gt,
    "gte": operator.ge,
    "lt": operator.lt,
    "lte": operator.le,
}
_OPS = (*_COMPARE, "in", "notin")
# Top-level keys that steer the search rather than filter it.
_CONTROL_KEYS = frozenset(
    {
        "order",
        "type",
        "limit",
        "allocated_storage",
        "disable_bundling",
        "target_reliability",
        "extra_ids",
        "select_cols",
    }
)
# Pricing per ``type``: True prices at min_bid. Both on-demand spellings are in use (OAS vs CLI).
_TYPES = {"on-demand": False, "ondemand": False, "reserved": False, "bid": True, "interruptible": True}
_BOOL_FIELDS = frozenset(
    {
        "verified",
        "rentable",
        "rented",
        "external",
        "static_ip",
        "has_avx",
        "gpu_display_active",
        "vms_enabled",
        "is_bid",
        "datacenter",
        "is_vm_deverified",
    }
)
_STRING_FIELDS = frozenset(
    {
        "gpu_name",
        "gpu_arch",
        "cpu_name",
        "cpu_arch",
        "verification",
        "geolocation",
        "mobo_name",
        "ubuntu_version",
        "os_version",
        "disk_name",
        "public_ipaddr",
        "hostname",
        "resource_type",
    }
)
# Fields whose value the search computes rather than reads (see _getter).
_DERIVED = frozenset(
    {
        "dph_total",
        "discounted_dph_total",
        "storage_total_cost",
        "dlperf_per_dphtotal",
        "flops_per_dphtotal",
        "is_bid",
        "datacenter",
        "reliability",
        "reliability2",
        "driver_version",
    }
)


class SearchError(ValueError):
    """A search body the server would refuse; the HTTP layer answers 400 ``invalid_args``."""


def search_offers(offers: Iterable[Mapping[str, Any]], body: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Offers matching ``body``, ordered and limited, as priced copies (inputs stay untouched)."""
    if not isinstance(body, Mapping):
        raise SearchError(f"search body must be a JSON object, not {type(body).__name__}")
    bid = _search_type(body.get("type"))
    storage = body.get("allocated_storage")
    storage = DEFAULT_STORAGE_GB if storage is None else _number("allocated_storage", storage)
    if storage is None or not math.isfinite(storage) or storage < 0:
        raise SearchError("allocated_storage must be a number of GB >= 0")
    limit = _limit(body.get("limit"))
    rows = list(offers)
    for predicate in _compile(body, rows[0] if rows else {}, bid=bid, storage=storage):
        # Narrowing one predicate at a time costs one call per surviving offer, not all().
        rows = [row for row in rows if predicate(row)]
    # Stable sorts applied last key first give a multi-key order.
    for field, descending in reversed(_order(body.get("order"))):
        rows = _sorted(rows, _getter(field, bid=bid, storage=storage), descending)
    results = []
    for row in rows[:limit]:
        copy = dict(row)
        apply_pricing(copy, disk_gb=storage, bid=bid)
        results.append(copy)
    return results


def _compile(body: Mapping[str, Any], sample: Mapping[str, Any], *, bid: bool, storage: float) -> list[_Predicate]:
    """The body's filters as predicates, the likely most selective first (AND commutes)."""
    known = _DERIVED.union(sample)  # any field the offers carry, plus computed ones
    exact: dict[str, Any] = {}
    ranked: list[tuple[int, _Predicate]] = []
    for field, ops in body.items():
        if field in _CONTROL_KEYS or not isinstance(ops, Mapping):
            continue
        bad = [op for op in ops if op not in _OPS]
        if bad:
            raise SearchError(f"{field}: unknown operator {bad[0]!r}; use one of {', '.join(_OPS)}")
        kind = _kind(field, sample)
        if field not in known or kind is None:
            continue  # the real server tolerates fields it does not know
        getter = _getter(field, bid=bid, storage=storage)
        for op, value in ops.items():
            if op == "eq" and kind in ("bool", "number") and field not in _DERIVED:
                target = _bool(field, value) if kind == "bool" else _number(field, value)
                if target is not None:
                    exact[field] = target  # fused below into one tuple comparison
                    continue
            # Text matches (gpu_name, geolocation) usually cut the most, so they run first.
            rank = 0 if kind == "str" and op in ("eq", "in") else 2
            ranked.append((rank, _predicate(field, kind, getter, op, value)))
    if exact:
        ranked.append((1, _exact(exact)))
    return [predicate for _, predicate in sorted(ranked, key=lambda pair: pair[0])]


def _exact(exact: Mapping[str, Any]) -> _Predicate:
    """All plain ``eq`` filters in one test: itemgetter pulls the fields in C."""
    keys, targets = tuple(exact), tuple(exact.values())
    if len(keys) == 1:
        return lambda o: o.get(keys[0]) == targets[0]
    pick = operator.itemgetter(*keys)

    def match(offer: Mapping[str, Any]) -> bool:
        try:
            return bool(pick(offer) == targets)
        except KeyError:  # a missing field is null, and null equals no target
            return False

    return match


def _search_type(value: Any) -> bool:
    """True for interruptible (bid) pricing; reserved is priced as on-demand here."""
    key = "on-demand" if value is None else str(value).strip().lower()
    if key in _TYPES:
        return _TYPES[key]
    raise SearchError(f"type must be 'on-demand', 'bid' or 'reserved', not {value!r}")


def _limit(value: Any) -> int:
    if value is None:
        return DEFAULT_LIMIT
    number = _number("limit", value)
    if number is None or not math.isfinite(number) or number < 0 or number != int(number):
        raise SearchError(f"limit must be a whole number >= 0, not {value!r}")
    return int(number)


def _order(value: Any) -> list[tuple[str, bool]]:
    """``[[field, "asc"|"desc"], ...]`` as (field, descending) pairs."""
    if value is None:
        value = DEFAULT_ORDER
    if not isinstance(value, (list, tuple)):
        raise SearchError("order must be a list of [field, 'asc'|'desc'] pairs")
    keys = []
    for item in value:
        pair = [item] if isinstance(item, str) else item
        if not isinstance(pair, (list, tuple)) or not 1 <= len(pair) <= 2:
            raise SearchError(f"order entry {item!r} is not [field, 'asc'|'desc']")
        direction = str(pair[1]).lower() if len(pair) == 2 else "asc"
        if direction not in ("asc", "desc") or not isinstance(pair[0], str):
            raise SearchError(f"order entry {item!r} is not [field, 'asc'|'desc']")
        keys.append((pair[0], direction == "desc"))
    return keys


def _kind(field: str, sample: Mapping[str, Any]) -> str | None:
    """How values of ``field`` compare: bool, version, str or number (None: not at all)."""
    if field in _BOOL_FIELDS:
        return "bool"
    if field == "driver_version":
        return "version"
    value = sample.get(field)
    if field in _STRING_FIELDS or isinstance(value, str):
        return "str"
    if isinstance(value, (list, tuple, Mapping)):
        return None  # nested values (pricing blocks) are not filterable
    return "bool" if isinstance(value, bool) else "number"


def _getter(field: str, *, bid: bool, storage: float) -> _Getter:
    """How to read ``field`` from an offer, with prices as this search recomputes them."""
    per_gb = storage / 720.0  # $/GB/month -> $/h for the allocated disk

    def price(o: Mapping[str, Any]) -> Any:
        compute = o.get("min_bid") if bid else None
        if compute is None:
            compute = o.get("dph_base")
        return o.get("dph_total") if compute is None else compute + per_gb * (o.get("storage_cost") or 0.0)

    def per_dollar(key: str) -> _Getter:
        return lambda o: (o.get(key) or 0.0) / p if (p := price(o)) else None

    derived: dict[str, _Getter] = {
        "dph_total": price,
        "discounted_dph_total": price,
        "storage_total_cost": lambda o: per_gb * (o.get("storage_cost") or 0.0),
        "dlperf_per_dphtotal": per_dollar("dlperf"),
        "flops_per_dphtotal": per_dollar("total_flops"),
        "is_bid": lambda o: bid,
        "datacenter": lambda o: (o.get("hosting_type") or 0) >= 1,
        # The two reliability fields carry one value; read whichever the offer has.
        "reliability": lambda o: o.get("reliability", o.get("reliability2")),
        "reliability2": lambda o: o.get("reliability2", o.get("reliability")),
        "driver_version": lambda o: o.get("driver_vers") or _version(o.get("driver_version")),
    }
    return derived.get(field) or (lambda o: o.get(field))


def _sorted(rows: list[Mapping[str, Any]], get: _Getter, descending: bool) -> list[Any]:
    """``rows`` stably sorted on ``get``; offers with a null value go last either way."""
    keys = list(map(get, rows))
    if None in keys:  # tuples keep nulls from being compared with numbers
        keys = [(k is not None, k) if descending else (k is None, k) for k in keys]
    order = sorted(range(len(rows)), key=keys.__getitem__, reverse=descending)
    return [rows[i] for i in order]


def _predicate(field: str, kind: str, get: _Getter, op: str, value: Any) -> _Predicate:
    """One compiled test; null offer values fail every op but ``eq``/``neq`` null, as in SQL."""
    many = op in ("in", "notin")
    items = list(value) if isinstance(value, (list, tuple)) else [value]
    if not many and isinstance(value, (list, tuple, Mapping)):
        raise SearchError(f"{field}: {op} needs a single value, not {value!r}")
    if any(isinstance(v, (list, tuple, Mapping)) for v in items):
        raise SearchError(f"{field}: {op} needs a list of plain values, not {value!r}")
    if field == "geolocation":
        get, items = _geo(get, items)
    elif kind == "str":
        raw, get = get, (lambda o: None if (x := raw(o)) is None else _norm(x))
        items = [None if v is None else _norm(v) for v in items]
    elif kind == "bool":
        # No per-offer bool(): True == 1 and hash(True) == hash(1), so 0/1 ints match too.
        items = [_bool(field, v) for v in items]
    else:
        items = [_version(v) if kind == "version" else _number(field, v) for v in items]
    if many:
        wanted, null = frozenset(v for v in items if v is not None), None in items
        if op == "in":
            return lambda o: null if (x := get(o)) is None else x in wanted
        return lambda o: (x := get(o)) is not None and x not in wanted
    target = items[0]
    if target is None:
        if op in ("eq", "neq"):
            return (lambda o: get(o) is None) if op == "eq" else (lambda o: get(o) is not None)
        raise SearchError(f"{field}: {op} cannot compare with null")
    if op == "eq":
        return lambda o: get(o) == target  # a null never equals a non-null target
    compare = _COMPARE[op]
    return lambda o: (x := get(o)) is not None and compare(x, target)


def _geo(get: _Getter, items: list[Any]) -> tuple[_Getter, list[Any]]:
    """Country codes match an offer's trailing ``, CC``; any longer text, the whole place."""
    values = [None if v is None else _norm(v) for v in items]
    if all(v is None or (len(v) == 2 and v.isalpha()) for v in values):
        return (lambda o: None if (x := get(o)) is None else _country(x)), values
    return (lambda o: None if (x := get(o)) is None else _norm(x)), values


@functools.lru_cache(maxsize=8192)
def _norm(value: Any) -> str:
    # Offers repeat a few hundred distinct strings, so caching makes this a dict lookup.
    return " ".join(str(value).replace("_", " ").split()).casefold()


@functools.lru_cache(maxsize=8192)
def _country(place: Any) -> str:
    return _norm(str(place).rsplit(",", 1)[-1])


def _number(field: str, value: Any) -> float | int | None:
    """Numbers as given, numeric strings (the CLI sends ``"0.98"``) parsed, null kept."""
    if value is None or isinstance(value, (int, float)):
        if value != value:  # NaN compares false with everything: refuse it
            raise SearchError(f"{field}: NaN is not a number to compare with")
        return int(value) if isinstance(value, bool) else value
    if isinstance(value, str):
        try:
            number = float(value.strip())
        except ValueError:
            raise SearchError(f"{field}: expected a number, got {value!r}") from None
        return _number(field, number)
    raise SearchError(f"{field}: expected a number, got {value!r}")


def _bool(field: str, value: Any) -> bool | None:
    if value is None or isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("true", "1", "1.0"):
        return True
    if text in ("false", "0", "0.0"):
        return False
    raise SearchError(f"{field}: expected true or false, got {value!r}")


def _version(value: Any) -> float | int | None:
    """Driver versions compare as the CLI encodes them: ``535.86.05`` -> 535086005."""
    if isinstance(value, str) and value.count(".") == 2:
        try:
            major, minor, patch = (int(part) for part in value.strip().split("."))
        except ValueError:
            raise SearchError(f"driver_version: bad version {value!r}") from None
        return major * 1_000_000 + minor * 1_000 + patch
    return _number("driver_version", value)
