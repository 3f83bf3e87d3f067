"""The simulator's persistent state: one JSON document under ``VASTNB_HOME``.

Every API call is one transaction: take an exclusive file lock, read, change, write
atomically (temp file + rename), unlock. That keeps several kernels, a CLI and a
``vastnb sim serve`` process consistent with each other, as one real marketplace is,
and a restarted kernel finds its instances still there and still billing.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from vastnb.base.private import private_folder
from vastnb_worker.files import write_private

__all__ = ["StateStore"]

State = dict[str, Any]


class StateStore:
    """A JSON document guarded by a lock; in memory only when ``path`` is None."""

    def __init__(self, path: Path | None, initial: Callable[[], State]) -> None:
        self.path = path
        self._initial = initial
        self._memory: State | None = None
        # The file lock serialises processes (and threads too, each opening the lock
        # file anew); this lock also covers the in-memory mode, which has no file.
        self._thread_lock = threading.RLock()
        if path is not None:  # the state holds the simulated account's key
            private_folder(path.parent, what="the simulator's state folder")

    @contextlib.contextmanager
    def transaction(self) -> Iterator[State]:
        """The state, to read and change; written back if the block does not raise."""
        with self._thread_lock:
            if self.path is None:
                if self._memory is None:
                    self._memory = self._initial()
                snapshot = json.loads(json.dumps(self._memory))
                yield snapshot
                self._memory = snapshot
                return
            with self._file_lock():
                state = self._read()
                yield state
                self._write(state)

    @contextlib.contextmanager
    def _file_lock(self) -> Iterator[None]:
        assert self.path is not None
        with open(self.path.with_suffix(".lock"), "a+") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    def _read(self) -> State:
        assert self.path is not None
        try:
            text = self.path.read_text()
        except FileNotFoundError:
            return self._initial()
        return json.loads(text)

    def _write(self, state: State) -> None:
        assert self.path is not None
        # The whole state on every call: no fsync (a simulator, not a ledger).
        write_private(str(self.path), json.dumps(state, separators=(",", ":")), sync=False)
