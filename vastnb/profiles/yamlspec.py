"""A small strict checker for YAML config files that keeps line numbers.

Loaders describe their keys as :class:`Field` values; :func:`check_mapping` turns a mapping
node into plain Python values, or raises :class:`~vastnb.errors.ProfileError` naming the file,
the 1-based line, the key and what to write instead. It stops at the first problem: later
ones are often caused by the first. Nodes come from :func:`yaml.compose`, not ``safe_load``,
because only nodes remember their line, and dicts silently drop duplicate keys.
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, NoReturn

import yaml
from yaml.constructor import SafeConstructor

from vastnb.errors import ProfileError

__all__ = [
    "Kind",
    "Check",
    "Field",
    "Checked",
    "compose_file",
    "check_mapping",
    "mapping_items",
    "sequence_items",
    "describe",
    "fail",
    "line_of",
    "at_least",
    "within",
    "Range",
    "MAX_DEPTH",
]

#: How deeply values may nest (lists and mappings inside each other, scalars included).
#: These files need 5 at most; the limit keeps a runaway file from exhausting the stack.
MAX_DEPTH = 32

#: The value types a field may declare. "node" hands back the raw node, for nesting.
Kind = Literal["str", "int", "number", "bool", "list[str]", "list[number]", "str|list[str]", "str|number", "node"]
#: A check gets the converted value and returns None, or a phrase such as "must be more than 0".
Check = Callable[[Any], "str | None"]

_TAG = "tag:yaml.org,2002:"
_EXPECT: dict[str, str] = {
    "str": "text",
    "int": "a whole number",
    "number": "a number",
    "bool": "true or false",
    "list[str]": "a list of text values",
    "list[number]": "a list of numbers",
    "str|list[str]": "text or a list of text values",
    "str|number": "text or a number",
    "node": "a value",
}


@dataclass(frozen=True)
class Field:
    """One key a mapping may hold: its value kind, whether it is required, its default,
    and optional checks. ``expect`` and ``example`` word the error messages."""

    name: str
    kind: Kind
    required: bool = False
    default: Any = None
    check: Check | None = None
    item_check: Check | None = None  # per list item, so an error points at the item's line
    expect: str = ""
    example: str = ""

    @property
    def wanted(self) -> str:
        """What a valid value is, in words."""
        return self.expect or _EXPECT[self.kind]


@dataclass(frozen=True)
class Checked:
    """The values of a checked mapping (defaults filled in) and where each key was."""

    values: dict[str, Any]
    lines: dict[str, int]
    line: int

    def line_of(self, key: str) -> int:
        """The line of ``key``, or of the mapping itself when the key was not written."""
        return self.lines.get(key, self.line)


def fail(message: str, source: str, line: int | None, key: str | None = None) -> NoReturn:
    """Raise a :class:`ProfileError` located at ``source``, ``line``."""
    raise ProfileError(message, path=source, line=line, key=key)


def line_of(node: yaml.Node) -> int:
    """The 1-based line where ``node`` starts."""
    return node.start_mark.line + 1


class _TooDeep(Exception):
    """Raised by :class:`_Loader` at the node that nests past :data:`MAX_DEPTH`."""

    def __init__(self, line: int) -> None:
        super().__init__(line)
        self.line = line


class _Loader(yaml.SafeLoader):
    """The safe loader, refusing to nest past :data:`MAX_DEPTH`: PyYAML composes nodes
    recursively, so 10,000 nested brackets would otherwise end in a RecursionError."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._depth = 0

    def compose_node(self, parent: yaml.Node | None, index: Any) -> yaml.Node | None:
        if self._depth >= MAX_DEPTH:
            raise _TooDeep(self.peek_event().start_mark.line + 1)
        self._depth += 1
        try:
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1


def compose_file(path: Path) -> yaml.Node:
    """Parse ``path`` into a YAML node tree; refuse unreadable, invalid, too deeply nested
    or empty files."""
    source = str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        fail("the file is not UTF-8 text; save it as UTF-8 YAML", source, None)
    except OSError as exc:
        fail(f"cannot read the file ({exc.strerror or exc}); check that it is readable", source, None)
    try:
        node = yaml.compose(text, Loader=_Loader)
    except _TooDeep as exc:
        fail(
            f"values are nested more than {MAX_DEPTH} levels deep (lists or mappings inside each other), "
            "far more than this file needs; remove the extra '[', '{' or indentation",
            source,
            exc.line,
        )
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        problem = str(exc.problem or exc.context)
        if exc.context and exc.problem and exc.context_mark:
            problem += f" ({exc.context}, which starts at line {exc.context_mark.line + 1})"
        hint = (
            "YAML indents with spaces, never tabs"
            if "'\\t'" in problem
            else "keep one document: remove the '---' line"
            if "document" in problem
            else "check the indentation and quoting"
        )
        fail(f"invalid YAML: {problem}; {hint}", source, mark.line + 1 if mark else None)
    except yaml.reader.ReaderError as exc:  # a control character: it knows its offset, not its line
        char = chr(exc.character) if isinstance(exc.character, int) else exc.character
        fail(
            f"invalid YAML: the character {char!r} is not allowed; remove it",
            source,
            text[: exc.position].count("\n") + 1,
        )
    if node is None:
        fail("the file is empty (or holds only comments); see the shipped example", source, 1)
    return node


def describe(node: yaml.Node) -> str:
    """A value as the user wrote it, for 'not ...' in messages."""
    if isinstance(node, yaml.CollectionNode):
        return "a list" if isinstance(node, yaml.SequenceNode) else "a mapping of keys"
    tag = node.tag.removeprefix(_TAG)
    if tag == "null":
        return "an empty value (null)"
    shown = repr(node.value) if tag == "str" else node.value
    return f"the { {'str': 'text', 'bool': 'boolean', 'int': 'number', 'float': 'number'}.get(tag, tag) } {shown}"


def mapping_items(node: yaml.Node, source: str, what: str, parent: str | None = None) -> list[tuple[str, Any, Any]]:
    """The (key, key node, value node) triples of a mapping; refuse non-text and duplicate keys."""
    if not isinstance(node, yaml.MappingNode):
        fail(f"{what} must be a mapping of keys, not {describe(node)}", source, line_of(node), parent)
    seen: dict[str, int] = {}
    items: list[tuple[str, Any, Any]] = []
    for key_node, value_node in node.value:
        line = line_of(key_node)
        if key_node.tag == _TAG + "merge":
            # Supporting merges would hide where a value came from; write keys out instead.
            fail(f"merge keys (<<) are not supported in {what}; write each key out", source, line, "<<")
        if not (isinstance(key_node, yaml.ScalarNode) and key_node.tag == _TAG + "str"):
            shown = key_node.value if isinstance(key_node, yaml.ScalarNode) else "?"
            fail(f"keys in {what} must be text, not {describe(key_node)}; quote it: '{shown}'", source, line)
        key = key_node.value
        if key in seen:
            fail(f"duplicate key {key} in {what} (first at line {seen[key]}); keep one", source, line, key)
        seen[key] = line
        items.append((key, key_node, value_node))
    return items


def sequence_items(node: yaml.Node, source: str, key: str, example: str) -> list[yaml.Node]:
    """The item nodes of a list value; refuse anything else."""
    if not isinstance(node, yaml.SequenceNode):
        fail(
            f"{key} must be a list, not {describe(node)}; write e.g. `{key}:` then `  {example}`",
            source,
            line_of(node),
            key,
        )
    return list(node.value)


def _scalar(node: yaml.Node, field: Field, source: str, key: str, want: str) -> Any:
    """Convert one scalar node to ``want`` ("str", "int", "number", "bool") or fail."""
    tag = node.tag.removeprefix(_TAG) if isinstance(node, yaml.ScalarNode) else ""
    ok = {"str": ("str",), "int": ("int",), "number": ("int", "float"), "bool": ("bool",)}[want]  # never bool
    if tag in ok:
        allowed = _allowed(field)
        try:
            value = SafeConstructor().construct_object(node)  # YAML's own rules: 0x10, 1_000, .5
            if want == "number":
                value = float(value)
        except (OverflowError, ValueError):  # more digits than Python converts, or beyond a float
            fail(
                f"{key} must be {allowed or field.wanted}, not {_short(node.value)}, which is far too large",
                source,
                line_of(node),
                key,
            )
        if want == "number" and not math.isfinite(value):
            fail(
                f"{key} must be a finite number{f' ({allowed})' if allowed else ''}, not {node.value}",
                source,
                line_of(node),
                key,
            )
        return value
    fix = f"; write e.g. `{key}: {field.example}`" if field.example else ""
    if want == "str" and tag in ("bool", "int", "float"):
        # YAML 1.1 reads unquoted yes/no/on/off as booleans: "NO" (Norway) is the classic trap.
        why = " (YAML reads unquoted yes/no/on/off as booleans)" if tag == "bool" else ""
        fix = f"{why}; put it in quotes: '{node.value}'"
    elif want in ("int", "number") and tag == "str" and node.value.lstrip("+-").replace(".", "", 1).isdigit():
        fix = f"; remove the quotes: `{key}: {node.value}`"
    fail(f"{key} must be {field.wanted}, not {describe(node)}{fix}", source, line_of(node), key)


def _convert(node: yaml.Node, field: Field, source: str, key: str) -> Any:
    """Turn a value node into the Python value ``field.kind`` asks for, running item checks."""
    kind = field.kind
    if kind == "node":
        return node
    if kind in ("str", "int", "number", "bool"):
        return _scalar(node, field, source, key, kind)
    if kind == "str|number":
        is_text = isinstance(node, yaml.ScalarNode) and node.tag == _TAG + "str"
        return _scalar(node, field, source, key, "str" if is_text else "number")
    single = kind == "str|list[str]" and not isinstance(node, yaml.SequenceNode)
    if not (single or isinstance(node, yaml.SequenceNode)):
        fix = f"; write e.g. `{key}: {field.example}`"
        fail(f"{key} must be {field.wanted}, not {describe(node)}{fix}", source, line_of(node), key)
    items = [node] if single else list(node.value)
    if not items:
        fail(f"{key} is an empty list; list at least one value or remove the key", source, line_of(node), key)
    values = []
    for item in items:
        value = _scalar(item, field, source, key, "number" if kind == "list[number]" else "str")
        problem = field.item_check(value) if field.item_check else None
        if problem:
            fail(f"{key} {problem}", source, line_of(item), key)
        values.append(value)
    return values[0] if single else tuple(values)


def check_mapping(
    node: yaml.Node,
    fields: Iterable[Field],
    source: str,
    *,
    what: str,
    line: int | None = None,
    parent: str | None = None,
    aliases: Mapping[str, str] | None = None,
) -> Checked:
    """Check a mapping node against ``fields`` and return its values, defaults filled in.

    ``what`` names the mapping in messages ("profile 'dev-test'"); ``line`` is where a
    missing key is reported (by default, where the mapping starts); ``parent`` is the key
    holding the mapping, named in the error when it is not a mapping. ``aliases`` are other
    spellings of the keys (another schema's), only to say which key was meant.
    """
    spec = {f.name: f for f in fields}
    values: dict[str, Any] = {}
    lines: dict[str, int] = {}
    for key, key_node, value_node in mapping_items(node, source, what, parent):
        field = spec.get(key)
        if field is None:
            fail(f"unknown key {key} in {what}; {_meant(key, spec, aliases or {})}", source, line_of(key_node), key)
        lines[key] = line_of(key_node)
        # An empty value is a mistake, unless "nothing" is what the field means (default None).
        if value_node.tag == _TAG + "null" and (field.required or field.default is not None):
            fail(f"{key} has no value; write e.g. `{key}: {field.example}`", source, lines[key], key)
        value = None if value_node.tag == _TAG + "null" else _convert(value_node, field, source, key)
        problem = field.check(value) if field.check and value is not None else None
        if problem:
            fix = f"; write e.g. `{key}: {field.example}`" if field.example else ""
            fail(f"{key} {problem}{fix}", source, line_of(value_node), key)
        values[key] = value
    start = line if line is not None else line_of(node)
    for field in spec.values():
        if field.required and field.name not in values:
            fail(
                f"{what} is missing the required key {field.name} ({field.wanted}); add e.g. "
                f"`{field.name}: {field.example}`",
                source,
                start,
                field.name,
            )
        values.setdefault(field.name, field.default)
    return Checked(values, lines, start)


def _meant(key: str, spec: Mapping[str, Field], aliases: Mapping[str, str]) -> str:
    """A did-you-mean for an unknown key, among the allowed keys and their other spellings."""
    allowed = f"keys: {', '.join(spec)}"
    if key in aliases:
        return f"here it is written {aliases[key]} (the other schema's name for it); allowed {allowed}"
    close = difflib.get_close_matches(key.lower(), [*spec, *aliases], n=1, cutoff=0.6)
    return f"did you mean {aliases.get(close[0], close[0])}? Allowed {allowed}" if close else f"allowed {allowed}"


def _short(text: str) -> str:
    """A value as written, cut short when it is long (a number of 5,000 digits)."""
    return text if len(text) <= 24 else f"{text[:12]}...{text[-4:]} ({len(text)} characters)"


def _allowed(field: Field) -> str:
    """The range a field's check allows, in words ("from 1 to 64"), or "" when unknown."""
    return str(getattr(field.check, "allowed", "") or getattr(field.item_check, "allowed", ""))


def _g(value: float) -> str:
    """A number for a message: 0.25, 1e+12; an integer too large for a float, cut short."""
    try:
        return f"{value:g}"
    except OverflowError:
        return _short(str(value))


@dataclass(frozen=True)
class Range:
    """A check that a number lies from ``low`` to ``high`` (above ``low`` when ``above``).

    Its messages name the allowed range; ``allowed`` words it for other messages.
    """

    low: float
    high: float
    above: bool = False
    unit: str = ""

    @property
    def allowed(self) -> str:
        unit = f" {self.unit}" if self.unit else ""
        if self.above:
            return f"above {self.low:g} and at most {self.high:g}{unit}"
        return f"from {self.low:g} to {self.high:g}{unit}"

    def __call__(self, value: float) -> str | None:
        if value < self.low or (self.above and value == self.low):
            least = "more than" if self.above else "at least"
            return f"must be {least} {self.low:g}, not {_g(value)} (allowed: {self.allowed})"
        if value > self.high:
            return f"must be at most {self.high:g}, not {_g(value)} (allowed: {self.allowed})"
        return None


def within(low: float, high: float, *, above: bool = False, unit: str = "") -> Range:
    """A check that a number is from ``low`` to ``high`` (above ``low`` when ``above``)."""
    return Range(low, high, above, unit)


def at_least(low: float, *, inclusive: bool = True) -> Check:
    """A check that a number is >= ``low`` (or > ``low`` when not inclusive)."""

    def check(value: float) -> str | None:
        ok = value >= low if inclusive else value > low
        return None if ok else f"must be {'at least' if inclusive else 'more than'} {low:g}, not {value:g}"

    return check
