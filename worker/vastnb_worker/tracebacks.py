"""A task's exception as data, for the notebook to render from its own records.

Code the notebook ships carries a code id in place of its file name
(``<vastnb:0123456789abcdef>``). A frame running such code is reported as that id, its
line number and function name; the notebook knows which file or cell the id stands for,
and its source lines. Frames of code that lives on the box (its installed libraries)
are reported with the box's path and line text. The worker's own frames are cut.
"""

from __future__ import annotations

import linecache
import re
import traceback
from typing import Any, Optional

__all__ = ["code_filename", "code_id", "describe", "MAX_FRAMES"]

#: Frames from these files are the worker's own, cut from tracebacks shown to users.
WORKER_DIR = __file__.rsplit("/", 1)[0]

#: A RecursionError has a thousand frames: the outer ones and the innermost are kept.
MAX_FRAMES = 100
_KEEP_OUTER = 20

_CODE_ID = re.compile(r"<vastnb:([0-9a-f]{16})>\Z")


def code_filename(code: str) -> str:
    """The ``co_filename`` that stands for code id ``code``."""
    return f"<vastnb:{code}>"


def code_id(filename: str) -> Optional[str]:
    """The code id ``filename`` stands for, or None for a file on the box."""
    match = _CODE_ID.match(filename)
    return match.group(1) if match else None


def describe(exc: BaseException) -> dict[str, Any]:
    """``exc`` as the ERROR frame's meta: ``type`` (qualified name), ``message``,
    ``frames`` (the user's frames, outermost first; ``omitted`` counts those cut from a
    very deep stack) and ``exception`` (Python's own last lines: ``Type: message``,
    notes, a SyntaxError's line and caret)."""
    summaries = [f for f in traceback.extract_tb(exc.__traceback__) if not f.filename.startswith(WORKER_DIR)]
    omitted = max(0, len(summaries) - MAX_FRAMES)
    if omitted:
        summaries = summaries[:_KEEP_OUTER] + summaries[_KEEP_OUTER + omitted :]
    module = type(exc).__module__
    name = type(exc).__qualname__ if module == "builtins" else f"{module}.{type(exc).__qualname__}"
    meta: dict[str, Any] = {
        "type": name,
        "message": _text(exc),
        "frames": [_frame(f) for f in summaries],
        "exception": "".join(traceback.format_exception_only(type(exc), exc)),
    }
    if omitted:
        meta["omitted"] = {"after": _KEEP_OUTER, "count": omitted}
    return meta


def _text(exc: BaseException) -> str:
    try:
        return str(exc)
    except Exception:  # noqa: BLE001 - a __str__ that raises: Python prints <exception str() failed>
        return "<exception str() failed>"


def _frame(summary: traceback.FrameSummary) -> dict[str, Any]:
    frame: dict[str, Any] = {"line": summary.lineno or 0, "name": summary.name}
    code = code_id(summary.filename)
    if code is not None:
        frame["code"] = code
    else:
        frame["file"] = summary.filename
        frame["text"] = linecache.getline(summary.filename, summary.lineno or 0).rstrip(
            "\r\n"
        )  # unstripped: columns fit
    colno, end_colno = getattr(summary, "colno", None), getattr(summary, "end_colno", None)
    if colno is not None and end_colno is not None and getattr(summary, "end_lineno", None) == summary.lineno:
        frame["columns"] = [colno, end_colno]
    return frame
