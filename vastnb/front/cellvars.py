"""The notebook's names a cell sends to a box (``%%vast run``, ``%%vast job``)."""

from __future__ import annotations

import ast
import builtins
import sys
from collections.abc import Mapping
from typing import Any

from IPython.core.error import UsageError

__all__ = ["names", "free_names", "cell_push", "LARGE_PUSH"]

#: A pushed value above this size gets a warning: it crosses the network on every run.
LARGE_PUSH = 256 * 2**20


def cell_push(cell: str, push: str | None, user_ns: Mapping[str, Any]) -> dict[str, Any]:
    """The names to send with ``cell``: those ``--push`` names (all must exist), else the
    ones the cell reads that the notebook defines (never IPython's own)."""
    try:
        wanted = names(push) if push is not None else free_names(cell)
    except SyntaxError as exc:
        raise UsageError(f"the cell is not valid Python: {exc}") from None
    missing = [n for n in wanted if n not in user_ns] if push is not None else []
    if missing:
        raise UsageError(f"--push names what the notebook does not define: {', '.join(missing)}")
    chosen = {n: user_ns[n] for n in wanted if n in user_ns and not _internal(n)}
    for name, size in ((n, _size(v)) for n, v in chosen.items()):
        if size > LARGE_PUSH:
            print(
                f"[vastnb] pushing {name} ({size / 2**20:.0f} MiB) to the box on every run; "
                "use --push to choose what to send",
                file=sys.stderr,
            )
    return chosen


def names(text: str | None) -> list[str]:
    names = [n.strip() for n in (text or "").split(",") if n.strip()]
    for name in names:
        if not name.isidentifier():
            raise UsageError(f"{name!r} is not a Python name (give names separated by commas: --pull model,losses)")
    return names


def free_names(source: str) -> list[str]:
    """Names a cell reads before (or without) binding them itself, in order of first use:
    what must come from the notebook. Builtins are left out."""
    tree = ast.parse(source)
    # A comprehension binds its targets before its element reads them, though the element
    # comes first in the text: they are its own, never the notebook's.
    bound: set[str] = {
        n.id
        for c in ast.walk(tree)
        if isinstance(c, ast.comprehension)
        for n in ast.walk(c.target)
        if isinstance(n, ast.Name)
    }
    free: list[str] = []
    nodes = sorted(
        (
            n
            for n in ast.walk(tree)
            if isinstance(n, (ast.Name, ast.alias, ast.arg, ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))
        ),
        key=lambda n: (getattr(n, "lineno", 0), getattr(n, "col_offset", 0)),
    )
    for node in nodes:
        if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Load):
            if node.id not in bound and node.id not in free and not hasattr(builtins, node.id):
                free.append(node.id)
        elif isinstance(node, ast.Name):
            bound.add(node.id)
        elif isinstance(node, ast.alias):
            bound.add((node.asname or node.name).split(".")[0])
        elif isinstance(node, ast.arg):
            bound.add(node.arg)
        else:
            bound.add(node.name)
    return free


def _size(value: Any) -> int:
    """A cheap estimate of what pushing ``value`` costs, in bytes (arrays, tensors, bytes)."""
    nbytes = getattr(value, "nbytes", None)
    if isinstance(nbytes, int):
        return nbytes
    if hasattr(value, "element_size") and hasattr(value, "nelement"):
        return int(value.element_size() * value.nelement())
    return len(value) if isinstance(value, (bytes, bytearray, memoryview, str)) else 0


def _internal(name: str) -> bool:
    """IPython's own names (In, Out, exit, _1...): never pushed. Modules are pushed: they
    travel by name and are imported on the box."""
    return name.startswith("_") or name in ("In", "Out", "get_ipython", "exit", "quit")
