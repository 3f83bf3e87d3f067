"""What comes back from a box, decoded in one place.

A rented box belongs to a stranger, so its answers are untrusted input. Every value
and exception a box sends is unpickled here, through a :data:`ResultPolicy`:
:func:`safe` (plain data, numpy arrays and tensors only; nothing that runs code: what a
launched ``Box`` uses unless the user trusts it) or :func:`trusted` (full pickle, so
functions, classes and models come back: a bare ``Session``'s default, for a worker of
one's own).
"""

from __future__ import annotations

import pickle
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, NoReturn

from vastnb.errors import RemoteError, UnsafeResultError
from vastnb.offload.sourcemap import FIELD, SOURCES, TEXT, clean
from vastnb_worker import protocol, safepickle
from vastnb_worker.protocol import Frame

if TYPE_CHECKING:
    from vastnb.offload.session import Session

__all__ = ["ResultPolicy", "trusted", "safe", "raise_remote", "RemoteTask"]

ResultPolicy = Callable[[bytes, Sequence[Any]], Any]


def trusted(body: bytes, buffers: Sequence[Any]) -> Any:
    """Unpickle anything: right for a box only you run code on."""
    return protocol.decode(body, buffers)


def safe(body: bytes, buffers: Sequence[Any]) -> Any:
    """Plain data, numpy arrays of plain dtypes and torch tensors only, checked before
    anything is built (``vastnb_worker.safepickle``): whatever bytes a box sends, nothing
    is imported or run, and nothing can crash the notebook."""
    try:
        return safepickle.loads(body, buffers)
    except safepickle.Refused as exc:
        raise UnsafeResultError(
            f"the box sent {exc}; the safe result policy refuses it: only plain data, numpy arrays and "
            "tensors come back. Return those, or use results=trusted for a box you trust (its pickles can "
            "run code here)."
        ) from None
    except (
        pickle.UnpicklingError,
        ValueError,
        TypeError,
        EOFError,
        MemoryError,
        RecursionError,
        OverflowError,
        IndexError,
        KeyError,
        AttributeError,
    ) as exc:
        raise UnsafeResultError(f"the box sent a result that does not decode ({type(exc).__name__}: {exc})") from None


def raise_remote(frame: Frame, policy: ResultPolicy, task: int | None, *, job: str | None = None) -> NoReturn:
    """Raise what an ERROR (or CONTROL_ERROR) frame reports: KeyboardInterrupt for an
    interrupted task (as a local cell would), else a RemoteError carrying the box's
    traceback, rendered from the notebook's own records of the code it shipped. ``task``
    is None for a control call: it is no task; ``job`` names the job whose code raised."""
    meta = frame.meta
    if meta.get("type") == "KeyboardInterrupt":
        raise KeyboardInterrupt(meta.get("message") or f"task {task} interrupted on the box")
    exception = None
    if frame.body:
        try:
            exception = policy(frame.body, frame.buffers)
        except Exception:  # noqa: BLE001 - the type may not exist here: the text says it all anyway
            exception = None
    error = RemoteError(
        clean(meta.get("type"), FIELD, oneline=True) or "Exception",  # the box's words, bounded and inert
        clean(meta.get("message"), TEXT),
        SOURCES.render(meta),
        exception=exception if isinstance(exception, BaseException) else None,
        task=task,
        job=job,
    )
    raise error from None


class RemoteTask:
    """A task started detached on a box. It outlives the connection that started it."""

    def __init__(
        self, session: Session, task_id: int, *, cell: bool = False, results: ResultPolicy | None = None
    ) -> None:
        self.session = session
        self.id = task_id
        self._cell = cell
        self.results = results  # how its value is decoded; None: the session's policy

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
        return self.session.attach(self.id, results=self.results)

    def interrupt(self) -> None:
        self.session.interrupt(self.id)
