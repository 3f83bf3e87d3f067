"""The notebook's record of the code it ships, from which a box's tracebacks are shown.

Every code object sent to a box travels under a code id (its ``co_filename`` there is
``<vastnb:id>``), and this map keeps, for each id, where the code came from (a file, a
notebook cell) and its source lines. A box reports a failure as frames (code id, line
number, function name); :meth:`SourceMap.render` turns them into the traceback the user
reads, from these records alone. A frame is never looked up by a path the box names: a
hostile box must not be able to print a file of the user's machine into the output.
"""

from __future__ import annotations

import hashlib
import linecache
import re
import threading
import traceback
import types
from collections import OrderedDict
from collections.abc import Mapping
from typing import Any, NamedTuple

from vastnb_worker.tracebacks import MAX_FRAMES, code_filename

__all__ = ["SourceMap", "SOURCES", "clean", "FIELD", "TEXT"]

_CODE_ID = re.compile(r"[0-9a-f]{16}\Z")
_CODE_FILENAME = re.compile(r"<vastnb:([0-9a-f]{16})>")
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")  # terminal escapes included; \t and \n kept
FIELD = 500  # characters kept of a path, a function name, a type name or a line the box sends
TEXT = 20_000  # characters kept of an exception's message and its own lines
_REPEATS = 3  # identical frames shown before "[Previous line repeated N more times]"
UNKNOWN = 'File "<code sent from another kernel>"'


class Source(NamedTuple):
    where: str  # 'File "/home/me/train.py"' or 'Cell In[3]', as the traceback names it
    lines: tuple[str, ...]


class SourceMap:
    """Code ids of shipped code, and where each came from. Bounded: the oldest records
    go first (a traceback of code shipped that long ago names the code as unknown)."""

    def __init__(self, limit: int = 2048) -> None:
        self.limit = limit
        self._records: OrderedDict[str, Source] = OrderedDict()
        self._files: dict[str, tuple[list[str], str]] = {}  # filename -> (linecache's lines, code id)
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._records)

    def name_code(self, code: types.CodeType) -> str:
        """The ``co_filename`` ``code`` gets on the box (``protocol.encode``'s
        ``code_filename``): its file's id, recorded with the file's current lines."""
        filename = code.co_filename
        lines = linecache.getlines(filename)  # IPython registers cells here; a file is read once
        with self._lock:
            known = self._files.get(filename)
            if known is not None and known[0] is lines and known[1] in self._records:  # unchanged: no hashing
                self._records.move_to_end(known[1])
                return code_filename(known[1])
        digest = self._record(_where(filename), lines)
        with self._lock:
            self._files[filename] = (lines, digest)
            if len(self._files) > self.limit:
                self._files.pop(next(iter(self._files)))
        return code_filename(digest)

    def name_source(self, where: str, lines: list[str] | tuple[str, ...]) -> str:
        """Record source text shown as ``where`` (a cell run on the box); the filename to
        compile it under."""
        return code_filename(self._record(where, lines))

    def _record(self, where: str, lines: list[str] | tuple[str, ...]) -> str:
        """Keep ``lines`` as ``where``; their id, a digest of both (the same code always
        gets the same id, so payloads stay deterministic)."""
        lines = tuple(lines)
        digest = hashlib.sha256("\0".join((where, *lines)).encode("utf-8", "surrogatepass")).hexdigest()[:16]
        with self._lock:
            self._records[digest] = Source(where, lines)
            self._records.move_to_end(digest)
            while len(self._records) > self.limit:
                self._records.popitem(last=False)
        return digest

    def render(self, meta: Mapping[str, Any]) -> str:
        """The traceback of an ERROR frame's ``meta``, as Python prints one: the frames
        from this map's records (or, for the box's own libraries, the box's words, bounded
        and stripped of control characters), then the exception's lines and any hint."""
        frames = meta.get("frames")
        frames = [f for f in frames[: MAX_FRAMES + 1] if isinstance(f, Mapping)] if isinstance(frames, list) else []
        omitted = meta.get("omitted")
        omitted = omitted if isinstance(omitted, Mapping) else {}
        shown = [self._frame(frame) for frame in frames]
        out = ["Traceback (most recent call last):\n"] if shown else []
        repeats = 0
        for index, text in enumerate(shown):
            if index == _int(omitted.get("after")) and _int(omitted.get("count")):
                out.append(f"  [... {_int(omitted.get('count'))} frames omitted ...]\n")
            repeats = repeats + 1 if index and text == shown[index - 1] else 0
            if repeats < _REPEATS:
                out.append(text)
            elif index == len(shown) - 1 or shown[index + 1] != text:  # the run ends here
                out.append(f"  [Previous line repeated {repeats - _REPEATS + 1} more times]\n")
        out.append(self._exception(meta))
        hint = clean(meta.get("hint"), FIELD * 2)
        if hint:
            out.append(f"\n{hint}\n")
        return "".join(out)

    def _frame(self, frame: Mapping[str, Any]) -> str:
        line, name = _int(frame.get("line")), clean(frame.get("name"), FIELD, oneline=True)
        code = frame.get("code")
        if isinstance(code, str) and _CODE_ID.match(code):
            source = self._records.get(code)
            where = source.where if source else UNKNOWN
            text = source.lines[line - 1] if source and 0 < line <= len(source.lines) else ""
        else:
            where = f'File "{clean(frame.get("file"), FIELD, oneline=True)}"'
            text = clean(frame.get("text"), FIELD, oneline=True)
        shown = f"  {where}, line {line}, in {name}\n"
        return shown + _source_line(text.rstrip("\r\n") + "\n", line, frame.get("columns")) if text.strip() else shown

    def _exception(self, meta: Mapping[str, Any]) -> str:
        text = clean(meta.get("exception"), TEXT)
        if not text.strip():
            text = f"{clean(meta.get('type'), FIELD, oneline=True)}: {clean(meta.get('message'), TEXT)}\n"
        # A SyntaxError in code the notebook sent names it by its id: say where it is.
        return _CODE_FILENAME.sub(lambda m: self._where_of(m.group(1)), text)

    def _where_of(self, code: str) -> str:
        source = self._records.get(code)
        where = source.where if source else UNKNOWN
        return where[len('File "') : -1] if where.startswith('File "') else where


def _where(filename: str) -> str:
    """How a traceback names ``filename``: IPython's ``Cell In[3]`` for a notebook cell."""
    try:
        from IPython import get_ipython

        shell = get_ipython()
        label = shell.compile.format_code_name(filename) if shell is not None else None
    except (ImportError, AttributeError):
        label = None
    return f"{label[0]} {label[1]}" if label else f'File "{filename}"'


def _int(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 1 << 31 else 0


def clean(value: Any, limit: int, *, oneline: bool = False) -> str:
    """Text from the box, safe to print: a string, cut to ``limit`` characters, without
    terminal control sequences (nor line breaks, for a one-line field)."""
    if not isinstance(value, str):
        return ""
    text = _CONTROL.sub("?", value[:limit])
    return text.replace("\n", " ") if oneline else text


def _source_line(text: str, line: int, columns: Any) -> str:
    """The frame's line of source (``text``, as linecache keeps it: with its newline) as
    Python prints it, with its ``~~^^`` marks under the part that failed. Python's own
    formatter draws them, from ``text`` alone: the frame it is given names no file."""
    marks: dict[str, int] = {}
    if isinstance(columns, list) and len(columns) == 2 and all(_int(c) == c for c in columns):
        marks = {"end_lineno": line, "colno": columns[0], "end_colno": columns[1]}
    try:
        # The column keywords are Python 3.11's (mypy checks for 3.10, where they raise TypeError).
        frame = traceback.FrameSummary("", line, "", lookup_line=False, line=text, **marks)  # type: ignore[arg-type]
        return traceback.StackSummary.from_list([frame]).format()[0].split("\n", 1)[1]
    except Exception:  # noqa: BLE001 - Python 3.10 has no columns; odd columns: the line without marks
        return f"    {text.strip()}\n"


#: The map every session of this process records into and renders from.
SOURCES = SourceMap()
