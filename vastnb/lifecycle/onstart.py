"""What an instance runs when its container starts: the boot switch.

Vast runs a create call's ``onstart`` when the container starts, before anything can
reach the box over SSH. vastnb sends the boot switch there (``vastnb_worker.bootswitch``:
a dead-man switch that destroys the instance past its maximum duration or after a
silence), so money safety starts with the box itself, not when a launcher gets through.
Vast allows at most :data:`LIMIT` characters for ``args``, ``args_str`` and ``onstart``
together: the program travels without its docstrings and annotations, compressed.
"""

from __future__ import annotations

import ast
import base64
import functools
import json
import re
import shlex
import zlib
from pathlib import Path
from typing import Any

import vastnb_worker.bootswitch

__all__ = ["LIMIT", "boot_switch"]

#: Vast's limit on ``args``, ``args_str`` and ``onstart`` together, in characters.
LIMIT = 4096


def boot_switch(
    *,
    url: str,
    home: str,
    silence_s: float,
    max_s: float | None,
    clock: str | None = None,
    beat_s: float | None = None,
) -> str:
    """The ``onstart`` command that starts the boot switch in the background (the
    container goes on booting), with its configuration. ``home`` may contain ``{id}``;
    ``clock`` is the simulator's; ``beat_s`` shortens how long the worker's silence is
    waited out before the switch takes over (tests)."""
    if not url.startswith("file:") and not re.search(r"/api/v\d+$", url.rstrip("/")):
        url = f"{url.rstrip('/')}/api/v0"  # a bare host (VAST_URL style): the API lives under /api/v0
    config: dict[str, Any] = {"url": url.rstrip("/"), "home": home, "silence_s": silence_s, "max_s": max_s}
    config.update({k: v for k, v in (("clock", clock), ("beat_s", beat_s)) if v is not None})
    loader = f'import base64,zlib;exec(zlib.decompress(base64.b64decode("{_packed()}")))'
    command = f"nohup python3 -I -S -c {shlex.quote(loader)} {shlex.quote(json.dumps(config))} >/dev/null 2>&1 &"
    if len(command) > LIMIT:
        raise ValueError(
            f"the boot switch's onstart is {len(command)} characters, over Vast's {LIMIT}: shorten the box home or the API URL"
        )
    return command


@functools.lru_cache(maxsize=1)
def _packed() -> str:
    """The boot switch's source, less docstrings and annotations, compressed, base64."""
    tree = _Stripped().visit(ast.parse(Path(vastnb_worker.bootswitch.__file__).read_text()))
    return base64.b64encode(zlib.compress(ast.unparse(ast.fix_missing_locations(tree)).encode(), 9)).decode()


class _Stripped(ast.NodeTransformer):
    """What the program does, without what only a reader needs: docstrings and annotations."""

    def generic_visit(self, node: ast.AST) -> ast.AST:
        body = getattr(node, "body", None)
        if (
            isinstance(body, list)
            and body
            and isinstance(body[0], ast.Expr)
            and isinstance(body[0].value, ast.Constant)
        ):
            # Any node with a list body (module, def, class, if, for, with...): ast.AST itself declares none.
            node.body = body[1:] or [ast.Pass()]  # type: ignore[attr-defined]
        return super().generic_visit(node)

    def visit_arg(self, node: ast.arg) -> ast.AST:
        node.annotation = None
        return node

    def visit_FunctionDef(self, node: ast.FunctionDef) -> ast.AST:
        node.returns = None
        return self.generic_visit(node)

    def visit_AnnAssign(self, node: ast.AnnAssign) -> ast.AST:  # ``x: T = v`` -> ``x = v``
        return (
            ast.Pass()
            if node.value is None
            else ast.Assign(targets=[node.target], value=node.value, lineno=node.lineno)
        )
