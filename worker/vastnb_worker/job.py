"""The job a task runs as, on the box: ``context()`` inside a function or cell sent with
``vast.submit(...)`` says which job and attempt it is, and where its checkpoints go.

A job's controller sends that with the task (``meta["job"]``); the worker binds it for
the task's run only. ``CheckpointManager()`` without a URL takes the job's checkpoint
location from here, and tells the controller from which step it resumed (one marked
line of output, which the controller reads as an event).
"""

from __future__ import annotations

import contextlib
import linecache
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Optional

__all__ = ["JobContext", "context", "bound", "RESUMED_MARK", "note_resumed", "run_script"]

#: The line a resumed job prints (to stderr) with the step it resumed from.
RESUMED_MARK = "[vastnb] resumed from checkpoint step "


@dataclass(frozen=True)
class JobContext:
    """The job a task runs for."""

    name: str
    attempt: int  # 1 for the first run; one more for each box lost or error retried
    checkpoint: Optional[str]  # the job's checkpoint URL (None: it restarts from the beginning)


_current: Optional[JobContext] = None


def context() -> Optional[JobContext]:
    """The job this code runs as, or None outside a job (a plain ``box.run``)."""
    return _current


def _parse(meta: Any) -> Optional[JobContext]:
    """A job context from a task's meta; anything malformed is no job (it came over the wire)."""
    if not isinstance(meta, dict):
        return None
    name, attempt, checkpoint = meta.get("name"), meta.get("attempt"), meta.get("checkpoint")
    if not isinstance(name, str) or not isinstance(attempt, int) or isinstance(attempt, bool):
        return None
    if checkpoint is not None and not isinstance(checkpoint, str):
        return None
    return JobContext(name[:200], attempt, checkpoint)


@contextlib.contextmanager
def bound(meta: Any) -> Iterator[Optional[JobContext]]:
    """Bind the job of a task's ``meta["job"]`` (if any) while the task runs."""
    global _current
    previous, _current = _current, _parse(meta)
    try:
        yield _current
    finally:
        _current = previous


def note_resumed(step: int) -> None:
    """Inside a job: tell its controller the run resumed from checkpoint ``step``."""
    if _current is not None:
        print(f"{RESUMED_MARK}{int(step)} (job {_current.name}, attempt {_current.attempt})", file=sys.stderr)


def run_script(source: str, filename: str, argv: list, modules: dict) -> None:
    """Run a submitted script as ``__main__`` with ``sys.argv = argv``; ``modules`` (name
    -> source: the local modules it imports) are importable while it runs."""
    import importlib.abc
    import importlib.util
    import types

    class _Shipped(importlib.abc.MetaPathFinder, importlib.abc.Loader):
        def find_spec(self, name: str, path: Any = None, target: Any = None) -> Any:
            if name not in modules:
                return None
            is_package = any(other.startswith(name + ".") for other in modules)
            return importlib.util.spec_from_loader(name, self, is_package=is_package)

        def create_module(self, spec: Any) -> None:
            return None

        def exec_module(self, module: types.ModuleType) -> None:
            code = compile(modules[module.__name__], f"<{module.__name__}.py>", "exec")
            exec(code, module.__dict__)

    finder = _Shipped()
    saved_argv = sys.argv
    sys.meta_path.insert(0, finder)
    path = f"<{filename}>"
    linecache.cache[path] = (len(source), None, source.splitlines(True), path)  # its lines in tracebacks
    try:
        sys.argv = list(argv)
        namespace = {"__name__": "__main__", "__file__": filename}
        exec(compile(source, path, "exec"), namespace)
    finally:
        sys.argv = saved_argv
        sys.meta_path.remove(finder)
