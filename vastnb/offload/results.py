"""What comes back from a box, decoded in one place.

A rented box belongs to a stranger, so its answers are untrusted input. Every value
and exception a box sends is unpickled here, through a :data:`ResultPolicy`:
:func:`trusted` (the default: full pickle, so functions, classes and models come back)
or :func:`safe` (plain data, numpy arrays and tensors only; nothing that runs code).
"""

from __future__ import annotations

import io
import pickle
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, NoReturn

from vastnb_worker import protocol
from vastnb_worker.protocol import Frame

from ..errors import RemoteError, UnsafeResultError
from .sourcemap import SOURCES

if TYPE_CHECKING:
    from .session import Session

__all__ = ["ResultPolicy", "trusted", "safe", "raise_remote", "RemoteTask"]

ResultPolicy = Callable[[bytes, Sequence[Any]], Any]


def trusted(body: bytes, buffers: Sequence[Any]) -> Any:
    """Unpickle anything: right for a box only you run code on."""
    return protocol.decode(body, buffers)


# What :func:`safe` lets a pickle name: data types and array rebuilders, nothing that
# imports arbitrary code or calls arbitrary functions.
_SAFE_GLOBALS = {
    ("builtins", name)
    for name in ("dict", "list", "tuple", "set", "frozenset", "bytearray", "complex", "slice", "range", "bytes", "str", "int", "float", "bool")
} | {
    ("collections", "OrderedDict"), ("collections", "defaultdict"), ("collections", "deque"),
    ("datetime", "datetime"), ("datetime", "date"), ("datetime", "timedelta"), ("datetime", "timezone"),
    ("decimal", "Decimal"), ("fractions", "Fraction"),
    ("numpy", "dtype"), ("numpy", "ndarray"),
    ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.numeric", "_frombuffer"), ("numpy._core.numeric", "_frombuffer"),
    ("numpy.core.multiarray", "scalar"), ("numpy._core.multiarray", "scalar"),
    ("vastnb_worker.protocol", "_rebuild_tensor"),
}  # fmt: skip


class _SafeUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in _SAFE_GLOBALS and not (module.startswith("numpy") and name.endswith("DType")):
            raise pickle.UnpicklingError(
                f"the box sent {module}.{name}, which the safe result policy refuses: only plain data, "
                "numpy arrays and tensors come back. Use results=trusted for boxes you trust."
            )
        return super().find_class(module, name)


def safe(body: bytes, buffers: Sequence[Any]) -> Any:
    """Unpickle plain data, numpy arrays and torch tensors only."""
    try:
        return _SafeUnpickler(io.BytesIO(body), buffers=buffers).load()
    except pickle.UnpicklingError as exc:
        raise UnsafeResultError(str(exc)) from None


def raise_remote(frame: Frame, policy: ResultPolicy, task: int) -> NoReturn:
    """Raise what an ERROR frame reports: KeyboardInterrupt for an interrupted task (as a
    local cell would), else a RemoteError carrying the box's traceback, rendered from the
    notebook's own records of the code it shipped."""
    meta = frame.meta
    if meta.get("type") == "KeyboardInterrupt":
        raise KeyboardInterrupt(meta.get("message") or f"task {task} interrupted on the box")
    exception = None
    if frame.body:
        try:
            exception = policy(frame.body, frame.buffers)
        except Exception:  # the type may not exist here: the text says it all anyway
            exception = None
    error = RemoteError(
        str(meta.get("type", "Exception")),
        str(meta.get("message", "")),
        SOURCES.render(meta),
        exception=exception if isinstance(exception, BaseException) else None,
        task=task,
    )
    raise error from None


class RemoteTask:
    """A task started detached on a box. It outlives the connection that started it."""

    def __init__(self, session: Session, task_id: int, *, cell: bool = False) -> None:
        self.session = session
        self.id = task_id
        self._cell = cell

    def __repr__(self) -> str:
        return f"<RemoteTask {self.id} on {self.session.transport.describe()}>"

    def state(self) -> str:
        """queued, running, done, failed, interrupted or cancelled."""
        for info in self.session.tasks():
            if info["task"] == self.id:
                return str(info["state"])
        return "unknown"

    def result(self) -> Any:
        """Stream the task's output from the start, wait, and return its value."""
        return self.session.attach(self.id)

    def interrupt(self) -> None:
        self.session.interrupt(self.id)
