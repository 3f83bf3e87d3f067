"""The official Vast CLI's offer-query mini-language, parsed into a ``POST /api/v0/bundles/`` body.

``gpu_name=RTX_4090 num_gpus>=1 dph<2`` becomes ``{"gpu_name": {"eq": "RTX 4090"},
"num_gpus": {"gte": "1"}, "dph_total": {"lt": "2"}}`` plus the CLI's default filters, as
``vastai search offers`` would send it, so a query copied from Vast's docs means the same here.
"""

from __future__ import annotations

import copy
import difflib
import re
from typing import Any, NamedTuple, TypeAlias

from vastnb.errors import ConfigError

__all__ = [
    "Query",
    "DEFAULT_FILTERS",
    "OFFER_FIELDS",
    "ALIASES",
    "UNIT_MULTIPLIERS",
    "parse_query",
    "parse_order",
    "format_query",
    "looks_like_query",
]

#: A ``/bundles/`` request body: ``{field: {op: value}}`` plus control keys (order, type, limit...).
Query: TypeAlias = dict[str, Any]

#: The filters the CLI adds unless told ``--no-default``.
DEFAULT_FILTERS: dict[str, dict[str, Any]] = {
    "verified": {"eq": True},
    "external": {"eq": False},
    "rentable": {"eq": True},
    "rented": {"eq": False},
}

#: Filterable offer fields: the CLI's list, plus ``reliability2``, which the server also accepts.
OFFER_FIELDS: frozenset[str] = frozenset(
    "bw_nvlink compute_cap cpu_arch cpu_cores cpu_cores_effective cpu_ghz cpu_ram cuda_max_good "
    "datacenter direct_port_count driver_version disk_bw disk_space dlperf dlperf_per_dphtotal "
    "dph_total duration external flops_per_dphtotal gpu_arch gpu_display_active gpu_frac gpu_mem_bw "
    "gpu_name gpu_ram gpu_total_ram gpu_max_power gpu_max_temp has_avx host_id id inet_down "
    "inet_down_cost inet_up inet_up_cost machine_id min_bid mobo_name num_gpus pci_gen pcie_bw "
    "reliability reliability2 rentable rented storage_cost static_ip total_flops ubuntu_version "
    "verification verified vms_enabled geolocation cluster_id".split()
)

#: Short names the CLI accepts. (It dropped ``reliability -> reliability2`` in 2024.)
ALIASES: dict[str, str] = {
    "dph": "dph_total",
    "dlperf_usd": "dlperf_per_dphtotal",
    "flops_usd": "flops_per_dphtotal",
    "cuda_vers": "cuda_max_good",
    "display_active": "gpu_display_active",
}

#: Fields written in friendly units: GB -> the API's MB, days -> seconds.
UNIT_MULTIPLIERS: dict[str, int] = {"cpu_ram": 1000, "gpu_ram": 1000, "gpu_total_ram": 1000, "duration": 86400}

# Sortable but not filterable: ``score`` is the CLI's default order key.
_ORDER_ONLY_FIELDS = frozenset({"score", "dph_base"})
_CONTROL_KEYS = frozenset({"order", "type", "limit", "allocated_storage", "disable_bundling"})

# Every spelling, blanks removed ("not eq" -> "noteq"), to the API's operator.
_SPELLINGS = {
    "eq": "= == eq",
    "neq": "!= neq noteq",
    "gt": "> gt",
    "gte": ">= gte",
    "lt": "< lt",
    "lte": "<= lte",
    "in": "in",
    "notin": "notin nin",
}
_OPERATORS = {spelling: op for op, spellings in _SPELLINGS.items() for spelling in spellings.split()}
_OP_SYMBOLS = {"eq": "=", "neq": "!=", "gt": ">", "gte": ">=", "lt": "<", "lte": "<=", "in": " in ", "notin": " notin "}
_VALID_OPS = "Valid operators: = == != < <= > >= eq neq noteq 'not eq' gt gte lt lte in notin nin 'not in'. "
_HOW = "Write each comparison as field op value, e.g. gpu_name=RTX_4090 num_gpus>=1 geolocation in [US,CA]."
_LITERALS: dict[str, Any] = {"true": True, "True": True, "false": False, "False": False, "None": None, "null": None}
_WILDCARDS = frozenset({"?", "*", "any"})

_WORD_OPS = r"not\s+eq|not\s+in|noteq|notin|nin|neq|eq|gte|gt|lte|lt|in"
# A word operator needs blanks around it (or a following [ or "), as in the CLI's own grammar.
_HEAD = re.compile(rf'\s*(?P<field>\w+)(?:\s*(?P<sym>[=<>!]+)\s*|\s+(?P<word>{_WORD_OPS})(?:\s+|(?=[\["]|$)))?', re.A)
_VALUE = re.compile(r'\[(?P<list>(?:"[^"]*"|[^\]"])*)\]|"(?P<quoted>[^"]*)"|(?P<bare>[^\s"\[]\S*)')
_ITEM = re.compile(r'\s*(?:"(?P<quoted>[^"]*)"|(?P<bare>[^,"]*))\s*(?:,|\Z)')
_FIELD_OP = re.compile(r"([A-Za-z0-9_]+)\s*[=<>!]")


class _Word(NamedTuple):
    text: str
    quoted: bool  # quoted text is kept verbatim: no underscore, literal or wildcard handling


class _Comparison(NamedTuple):
    field: str  # as written, before aliases
    op: str  # the API's name: eq, gte, in...
    value: _Word | list[_Word]  # a list when written in [brackets]
    piece: str  # the comparison as written, quoted in errors


def _error(what: str, piece: str, hint: str = _HOW) -> ConfigError:
    return ConfigError(f"{what} in {piece!r}. {hint}")


def _items(text: str, piece: str) -> list[_Word]:
    """Split ``a,"b c",d`` into words; empty items are skipped, as the CLI does."""
    words: list[_Word] = []
    pos = 0
    while pos < len(text):
        m = _ITEM.match(text, pos)
        if m is None or m.end() == pos:
            raise _error("malformed list", piece, 'Write lists as [a,b,c] or ["RTX 4090","RTX 3090"].')
        if m["quoted"] is not None:
            words.append(_Word(m["quoted"], True))
        elif m["bare"].strip():
            words.append(_Word(m["bare"].strip(), False))
        pos = m.end()
    return words


def _scan(text: str) -> list[_Comparison]:
    """Split a query into comparisons, checking only the syntax."""
    found: list[_Comparison] = []
    pos = 0
    while text[pos:].strip():
        rest = text[pos:].strip()
        near = " ".join(rest.split()[:2])
        head = _HEAD.match(text, pos)
        if head is None:
            raise _error("expected a field name (letters, digits and _)", rest.split()[0])
        field, raw_op = head["field"], head["sym"] or head["word"]
        if raw_op is None:
            raise _error(f"missing operator after {field!r}", near, _VALID_OPS + _HOW)
        op = _OPERATORS.get("".join(raw_op.split()))
        if op is None:
            raise _error(f"unknown operator {raw_op!r}", rest.split()[0], _VALID_OPS + _HOW)
        value = _VALUE.match(text, head.end())
        if value is None and text[head.end() : head.end() + 1] in ('"', "["):
            raise _error('unclosed " or [', rest, 'Close the string with " or the list with ].')
        # Unlike the CLI, do not take the next comparison (``num_gpus>= dph<2``) as the value.
        if value is None or ((m := _FIELD_OP.match(value["bare"] or "")) and m[1] in OFFER_FIELDS | ALIASES.keys()):
            raise _error(f"missing value after {field} {raw_op.strip()}", near)
        if value.end() < len(text) and not text[value.end()].isspace():
            raise _error("expected a blank after the value", rest.split()[0])
        piece = text[head.start("field") : value.end()]
        if value["list"] is not None:
            parsed: _Word | list[_Word] = _items(value["list"], piece)
        else:
            parsed = _Word(value["bare"], False) if value["quoted"] is None else _Word(value["quoted"], True)
        found.append(_Comparison(field, op, parsed, piece))
        pos = value.end()
    return found


def _canonical(name: str, piece: str, extra: frozenset[str] = frozenset()) -> str:
    """Resolve an alias, and refuse a field the server would ignore."""
    field = ALIASES.get(name, name)
    if field in OFFER_FIELDS or field in extra:
        return field
    # The CLI only warns here, but the server ignores unknown fields, so a typo'd
    # constraint (``num_gpu>=8``) would quietly rent the wrong, maybe dearer, machine.
    close = difflib.get_close_matches(name, sorted(OFFER_FIELDS | extra | ALIASES.keys()), n=3, cutoff=0.6)
    if close:
        hint = f"Did you mean {' or '.join(map(repr, close))}?"
    else:
        hint = f"Known fields: {', '.join(sorted(OFFER_FIELDS | extra))}."
    raise _error(f"unknown field {name!r}", piece, hint)


def _driver_version(text: str, piece: str) -> int:
    """``535.86.05`` -> ``535086005``: each part zero-padded to three digits, as the CLI does."""
    parts = text.split(".")
    if len(parts) != 3 or not all(p.isdigit() for p in parts):
        raise _error(f"bad driver_version {text!r}", piece, "Write it as X.Y.Z, e.g. driver_version>=535.86.05.")
    return int("".join(p.zfill(3) for p in parts))


def _value(field: str, word: _Word, piece: str, in_list: bool) -> Any:
    if field in UNIT_MULTIPLIERS:
        try:
            return float(word.text) * UNIT_MULTIPLIERS[field]
        except ValueError:
            unit = "days" if field == "duration" else "GB"
            raise _error(f"{field} takes a number of {unit}", piece, f"Write e.g. {field}>=24.") from None
    if field == "driver_version" and "." in word.text:
        return _driver_version(word.text, piece)
    if word.quoted:
        return word.text
    if not in_list and word.text in _LITERALS:  # the CLI never converts list items
        return _LITERALS[word.text]
    return word.text.replace("_", " ")  # the CLI's way to write a space in a bare word


def parse_query(text: str, *, defaults: bool = True) -> Query:
    """Parse a CLI query string (``gpu_name=RTX_4090 num_gpus>=1``) into a ``/bundles/`` body.

    Numbers stay strings, as the CLI sends them, except GB/day fields (scaled to MB/seconds)
    and ``driver_version`` (made an int). ``field=any`` drops that filter, a default too.
    With ``defaults`` the CLI's default filters come first and the query overrides them per
    operator. Raises :class:`ConfigError` for an unknown field or a malformed comparison.
    """
    query: Query = copy.deepcopy(DEFAULT_FILTERS) if defaults else {}
    for name, op, raw, piece in _scan(text):
        field = _canonical(name, piece)
        if isinstance(raw, list) or op in ("in", "notin"):
            if op not in ("in", "notin"):
                raise _error(f"a list needs 'in' or 'notin', not {op!r}", piece, f"Write {name} in [a,b].")
            words = raw if isinstance(raw, list) else [raw] if raw.quoted else _items(raw.text, piece)
            if not words:
                raise _error("empty list", piece, f"Give at least one item, e.g. {name} in [a,b].")
            query.setdefault(field, {})[op] = [_value(field, w, piece, True) for w in words]
        elif not raw.quoted and raw.text in _WILDCARDS:
            if op != "eq":
                raise _error(f"wildcard {raw.text!r} only works with =", piece, f"Write {name}=any to drop it.")
            query.pop(field, None)
        else:
            query.setdefault(field, {})[op] = _value(field, raw, piece, False)
    return query


def parse_order(text: str) -> list[list[str]]:
    """Parse ``num_gpus,total_flops-`` into ``[["num_gpus", "asc"], ["total_flops", "desc"]]``.

    A ``-`` suffix (or prefix) sorts descending; ``+`` or none, ascending. Aliases apply.
    """
    order: list[list[str]] = []
    for part in filter(None, (p.strip() for p in text.split(","))):
        name = part.strip("+-")
        if not re.fullmatch(r"[A-Za-z0-9_]+", name):
            raise _error("bad sort key", part, "Write e.g. 'num_gpus,total_flops-' (- for descending).")
        direction = "desc" if "-" in (part[0], part[-1]) else "asc"
        order.append([_canonical(name, part, _ORDER_ONLY_FIELDS), direction])
    return order


def _bare_ok(text: str, in_list: bool) -> bool:
    """Whether ``text`` can be written unquoted: parsing turns ``_`` into a space and converts
    literals, so text holding ``_`` (or a tab, or a literal like ``true``) must be quoted."""
    if not text or "_" in text or text[0] in '"[' or any(c.isspace() and c != " " for c in text):
        return False
    if in_list:  # items are split on commas and stripped, never converted
        return not any(c in text for c in ',]"') and text == text.strip()
    return text not in _LITERALS and text not in _WILDCARDS and not _FIELD_OP.match(text)


def _format_word(value: Any, in_list: bool) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    if not isinstance(value, str):
        return str(value)  # numbers come back as strings, which the server accepts too
    if _bare_ok(value, in_list):
        return value.replace(" ", "_")
    if '"' in value:
        raise ConfigError(f"{value!r} cannot be written in CLI query syntax: it holds a quote.")
    return f'"{value}"'


def _unscale(value: Any, mult: int) -> str:
    """The shortest decimal that scales back to exactly ``value`` (24576.0 -> ``24.576``)."""
    try:
        target = float(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{value!r} is not a number, so cannot be shown in GB or days.") from None
    for digits in range(1, 18):
        if float(text := f"{target / mult:.{digits}g}") * mult == target:
            return text
    return repr(target / mult)


def format_query(query: Query) -> str:
    """Write a ``/bundles/`` body's filters back in CLI syntax (``gpu_name in [RTX_4090] num_gpus>=1``).

    Control keys (order, type, limit, allocated_storage) are left out. Numbers come back as
    strings, so ``parse_query(format_query(q), defaults=False)`` is equivalent to ``q``.
    """
    parts: list[str] = []
    for field, ops in query.items():
        if field in _CONTROL_KEYS:
            continue
        if not isinstance(ops, dict):
            raise ConfigError(f"filter {field!r} must be an {{op: value}} dict, not {ops!r}.")
        for op, value in ops.items():
            if op not in _OP_SYMBOLS:
                raise ConfigError(f"unknown operator {op!r} on {field!r}; the API knows {', '.join(_OP_SYMBOLS)}.")
            values = value if isinstance(value, list) else [value]
            if field in UNIT_MULTIPLIERS:
                words = [_unscale(v, UNIT_MULTIPLIERS[field]) for v in values]
            elif field == "driver_version" and all(type(v) is int for v in values):
                words = [f"{v // 10**6}.{v // 1000 % 1000}.{v % 1000:02d}" for v in values]
            else:
                words = [_format_word(v, op in ("in", "notin")) for v in values]
            shown = f"[{','.join(words)}]" if op in ("in", "notin") else words[0]
            parts.append(f"{field}{_OP_SYMBOLS[op]}{shown}")
    return " ".join(parts)


def looks_like_query(text: str) -> bool:
    """True when ``text`` holds a comparison (``num_gpus>=1``, ``geolocation in [US]``), so is not
    a profile name such as ``training-standard`` (letters, digits, ``-``, ``_`` and ``.`` only)."""
    return bool(re.search(rf"[=<>!]|\s(?:{_WORD_OPS})(?:\s|\[)", text))
