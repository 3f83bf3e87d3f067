"""What the worker runs: a task is one call or one cell, with its output and outcome.

Tasks run one at a time in the worker's main thread, in one namespace shared by every
cell (like an IPython engine). Each task keeps everything it printed, so a client that
attaches later, or again after a dropped connection, sees all of it.
"""

from __future__ import annotations

import ast
import linecache
import threading
import time
from typing import Any, Callable, Optional

from . import job, protocol, tracebacks
from .protocol import Frame, Kind

__all__ = ["Task", "execute", "TaskStream", "failure"]

Outcome = tuple[Kind, dict, bytes, list[Any]]
Listener = Callable[[Kind, int, dict, bytes, list[Any]], None]

#: Results up to this size stay on the box after delivery, for a reattach.
KEEP_DELIVERED = 1 << 20


class Task:
    """One unit of work and everything it produced."""

    def __init__(self, task_id: int, request: Frame, *, detached: bool) -> None:
        self.id = task_id
        self.request = request
        self.detached = detached
        self.state = "queued"  # queued, running, done, failed, interrupted, cancelled
        self.started: Optional[float] = None
        self.finished: Optional[float] = None
        self.log: list[tuple[str, str]] = []
        self.outcome: Optional[Outcome] = None
        self._listeners: list[Listener] = []
        self._lock = threading.Lock()

    def describe(self) -> dict:
        return {
            "task": self.id,
            "kind": self.request.kind.name.lower(),
            "state": self.state,
            "detached": self.detached,
            "started": self.started,
            "finished": self.finished,
            "tag": self.request.meta.get("tag"),
        }

    def subscribe(self, listener: Listener) -> None:
        """Send ``listener`` everything so far, then everything new, then the outcome."""
        with self._lock:
            for stream, text in self.log:
                _deliver(listener, Kind.OUTPUT, self.id, {"stream": stream, "text": text}, b"", [])
            if self.outcome is not None:
                _deliver(listener, self.outcome[0], self.id, *self.outcome[1:])
            else:
                self._listeners.append(listener)

    def unsubscribe(self, listener: Listener) -> None:
        with self._lock:
            if listener in self._listeners:
                self._listeners.remove(listener)

    def emit(self, stream: str, text: str) -> None:
        with self._lock:
            self.log.append((stream, text))
            for listener in list(self._listeners):
                if not _deliver(listener, Kind.OUTPUT, self.id, {"stream": stream, "text": text}, b"", []):
                    self._listeners.remove(listener)

    def finish(self, state: str, outcome: Outcome) -> None:
        with self._lock:
            self.state, self.finished = state, time.time()
            delivered = sum(_deliver(listener, outcome[0], self.id, *outcome[1:]) for listener in self._listeners)
            self._listeners.clear()
            size = len(outcome[2]) + sum(memoryview(b).nbytes for b in outcome[3])
            if delivered and not self.detached and size > KEEP_DELIVERED:
                # Someone has the value; the box need not hold a big result any longer.
                # (A small one is kept: "sent" is not "received" when the link is dying,
                # and the session that started the task can still attach to it.)
                outcome = failure(
                    "LookupError", f"task {self.id}'s result was already delivered to the session that started it"
                )
            self.outcome = outcome


def _deliver(listener: Listener, kind: Kind, task: int, meta: dict, body: bytes, buffers: list[Any]) -> bool:
    """Send to one listener; False if its connection is gone (it is then dropped)."""
    try:
        listener(kind, task, meta, body, buffers)
        return True
    except (protocol.ChannelClosed, OSError):
        return False


class TaskStream:
    """Stands in for ``sys.stdout``/``sys.stderr``: text goes to the running task,
    a line at a time (or at a carriage return, for progress bars), as it is written."""

    encoding = "utf-8"
    errors = "replace"

    def __init__(self, name: str, current: Callable[[], Optional[Task]], fallback: Any) -> None:
        self.name = name
        self._current = current
        self._fallback = fallback
        self._pending = ""
        self._lock = threading.Lock()

    def write(self, text: str) -> int:
        task = self._current()
        if task is None:  # output between tasks (a background thread): the worker's log
            return self._fallback.write(text)
        with self._lock:
            self._pending += text
            cut = max(self._pending.rfind("\n"), self._pending.rfind("\r"))
            if cut < 0:
                return len(text)
            ready, self._pending = self._pending[: cut + 1], self._pending[cut + 1 :]
        task.emit(self.name, ready)
        return len(text)

    def flush(self) -> None:
        task = self._current()
        with self._lock:
            ready, self._pending = self._pending, ""
        if ready and task is not None:
            task.emit(self.name, ready)

    def isatty(self) -> bool:
        return False

    def writable(self) -> bool:
        return True

    def fileno(self) -> int:
        raise OSError("task output is a stream of frames, not a file descriptor")


def execute(task: Task, namespace: dict[str, Any]) -> Any:
    """Run ``task`` in ``namespace``; its value, or the exception it raised."""
    request = task.request
    with job.bound(request.meta.get("job")):
        args = protocol.decode(request.body, request.buffers)
        if request.kind == Kind.CALL:
            fn, fn_args, fn_kwargs = args
            return fn(*fn_args, **fn_kwargs)
        return cell_result(args, namespace)


def cell_result(args: Any, namespace: dict[str, Any]) -> Any:
    """Run a cell's ``(source, push, pull, filename)`` in ``namespace``: its last
    expression's value and the names it pulls back."""
    source, push, pull, filename = args
    namespace.update(push)
    value = run_cell(source, namespace, filename)
    missing = [name for name in pull if name not in namespace]
    if missing:
        raise NameError(f"cannot pull {', '.join(missing)}: not defined on the box after the cell ran")
    return {"value": value, "pull": {name: namespace[name] for name in pull}}


def run_cell(source: str, namespace: dict[str, Any], filename: str) -> Any:
    """Execute cell source as ``filename`` (the code id the notebook gave it); the value
    of a final expression, as IPython would show it."""
    # Registered so code on the box that reads source (inspect.getsource) finds the cell's.
    linecache.cache[filename] = (len(source), None, source.splitlines(True), filename)
    try:
        tree = ast.parse(source, filename, "exec")
    except SyntaxError as exc:  # the cell's line, as Python shows it, without ast's frames
        raise exc.with_traceback(None) from None
    last = tree.body[-1] if tree.body else None
    if not isinstance(last, ast.Expr):
        last = None
    else:
        tree.body.pop()
    exec(compile(tree, filename, "exec"), namespace)
    if last is None:
        return None
    return eval(compile(ast.Expression(last.value), filename, "eval"), namespace)


def failure(kind: str, message: str) -> Outcome:
    """An ERROR outcome that no user code raised: the worker's own refusal."""
    return Kind.ERROR, {"type": kind, "message": message, "frames": [], "exception": f"{kind}: {message}\n"}, b"", []


def _module_hint(exc: ModuleNotFoundError) -> str:
    return (
        f"The box has no module {exc.name!r}. If it is a file next to your notebook, vastnb ships it "
        f"by value; otherwise install it on the box, or call cloudpickle.register_pickle_by_value({exc.name}) "
        "before running."
    )


def error_outcome(exc: BaseException) -> Outcome:
    meta = tracebacks.describe(exc)
    if isinstance(exc, ModuleNotFoundError):
        meta["hint"] = _module_hint(exc)
    try:
        body, buffers = protocol.encode(exc)
    except Exception:  # noqa: BLE001 - an exception that does not pickle still reports as text
        body, buffers = b"", []
    return Kind.ERROR, meta, body, buffers


def result_outcome(value: Any, *, cell: bool = False) -> Outcome:
    try:
        body, buffers = protocol.encode(value)
    except Exception as exc:  # noqa: BLE001 - a result that does not pickle is reported, as text
        meta = tracebacks.describe(exc.with_traceback(None))  # the pickler's frames say nothing to a user
        meta["message"] = (
            f"the result could not be pickled: {exc}. Return plain data, arrays or tensors, or pull= names instead."
        )
        meta["exception"] = f"{meta['type']}: {meta['message']}\n"
        return Kind.ERROR, meta, b"", []
    return Kind.RESULT, {"cell": True} if cell else {}, body, buffers  # a cell's: a CellResult there
