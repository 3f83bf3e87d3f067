"""Modules next to the notebook travel with the code that uses them.

A box has the packages of its image, not the files in your project folder. Functions
and classes from modules under the working folder are pickled by value (cloudpickle's
``register_pickle_by_value``), so ``from mylib import train`` works on the box too.
"""

from __future__ import annotations

import os
import sys
import sysconfig
from pathlib import Path

import cloudpickle

__all__ = ["ship_local_modules", "is_local"]

_INSTALLED = tuple(
    str(Path(p).resolve())
    for p in {sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"], sys.prefix, sys.base_prefix}
)
_checked: set[str] = set()
_seen: tuple[int, str | None] = (0, None)  # sys.modules' size and newest name at the last look


def is_local(module_file: str, root: Path) -> bool:
    """True for a source file under ``root`` that is not part of an installed environment."""
    path = str(Path(module_file).resolve())
    return path.startswith(str(root) + os.sep) and not path.startswith(_INSTALLED)


def ship_local_modules(root: Path | None = None) -> list[str]:
    """Register every imported top-level module under ``root`` (default: the working
    folder) for pickling by value; the names newly registered. Only modules not seen
    before are examined, so calling this before every call costs next to nothing."""
    global _seen
    # Unchanged means nothing new to examine. The newest name too, not the size alone: a
    # module dropped from sys.modules and another imported leave the size as it was.
    seen = (len(sys.modules), next(reversed(sys.modules), None))
    if seen == _seen and root is None:
        return []  # the common case, on every call: a few hundred ns, not a scan
    _seen = seen
    root = (root or Path.cwd()).resolve()
    shipped = []
    for name, module in list(sys.modules.items()):
        if name in _checked or "." in name:
            continue
        _checked.add(name)
        file = getattr(module, "__file__", None)
        if not file or name in ("__main__", "vastnb", "vastnb_worker") or not file.endswith(".py"):
            continue
        if is_local(file, root):
            cloudpickle.register_pickle_by_value(module)
            shipped.append(name)
    return shipped
