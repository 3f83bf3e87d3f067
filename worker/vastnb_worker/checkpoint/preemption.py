"""SIGTERM, the notice a spot or interruptible box gets before it is taken away.

The signal handler only notes the time: the training loop may be in the middle of an
optimizer step, so the state is not consistent until it reaches its next ``save()``. That
call saves a final checkpoint whatever the schedule says, waits for every upload until the
grace period ends, and then lets the process exit as SIGTERM would have
(``SystemExit(143)``), or calls the handler that was installed before ours.

A loop that does not reach ``save()`` in time (a step longer than the grace period) is not
waited for: a watchdog thread ends the process at the deadline, after the uploads already
in flight had their chance to finish. A checkpoint cut off there has no manifest, so the
previous one stays the latest.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
from typing import Any, Optional

__all__ = ["Preemption", "EXIT_STATUS"]

#: What a shell reports for a process ended by SIGTERM, and what ours exits with.
EXIT_STATUS = 128 + signal.SIGTERM
#: Past the grace period, the loop's own exit gets this long before the watchdog acts.
EXIT_MARGIN = 1.0


class Preemption:
    """SIGTERM handling for one checkpoint manager (see the module's docstring). The
    handler is installed only from the main thread, and never over a SIGTERM that the
    process ignores."""

    def __init__(self, grace: float, *, install: bool = True) -> None:
        self.grace = grace
        self.deadline: Optional[float] = None
        self.installed = False
        self._previous: Any = None
        self._requested = threading.Event()
        self._done = threading.Event()  # the loop handled it (or the manager closed)
        self._wake = threading.Event()
        self._finishing = False
        if install and threading.current_thread() is threading.main_thread():
            previous = signal.getsignal(signal.SIGTERM)
            if previous is not signal.SIG_IGN:
                self._previous = previous
                signal.signal(signal.SIGTERM, self._on_signal)
                self.installed = True
                # Started now: starting a thread inside a signal handler could deadlock.
                threading.Thread(target=self._watch, name="vastnb-preemption", daemon=True).start()

    @property
    def requested(self) -> bool:
        """True once SIGTERM arrived (or :meth:`request` was called)."""
        return self._requested.is_set()

    def remaining(self) -> float:
        """Seconds left in the grace period (the full period before any request)."""
        return self.grace if self.deadline is None else max(0.0, self.deadline - time.monotonic())

    def request(self) -> None:
        """Start the grace period, as SIGTERM does."""
        if not self._requested.is_set():
            self.deadline = time.monotonic() + self.grace
            self._requested.set()
            self._wake.set()

    def _on_signal(self, signum: int, frame: Any) -> None:
        self.request()

    def finish(self) -> None:
        """The final checkpoint is done or the grace period is over: exit the way the
        signal would have, or hand over to the handler that was there before ours. Only
        the first call acts: ``close()`` in a ``finally`` after ``save()`` exited is a no-op."""
        if self._finishing:
            return
        self._finishing = True
        previous = self._previous
        self.uninstall()
        if callable(previous):
            self._done.set()  # the handler that was there before decides what happens now
            previous(signal.SIGTERM, None)
        else:
            # The watchdog stays armed: an exit held up past the deadline (by an upload
            # thread that Python waits for at exit) is ended by it.
            raise SystemExit(EXIT_STATUS)

    def uninstall(self) -> None:
        """Put the previous handler back (main thread only) and stop the watchdog."""
        if self.installed and threading.current_thread() is threading.main_thread():
            if signal.getsignal(signal.SIGTERM) == self._on_signal:
                signal.signal(signal.SIGTERM, self._previous if self._previous is not None else signal.SIG_DFL)
            self.installed = False
        if not self._requested.is_set():
            self._done.set()
            self._wake.set()

    def _watch(self) -> None:
        self._wake.wait()
        if self._done.is_set() or self.deadline is None:
            return
        if self._done.wait(self.remaining() + EXIT_MARGIN):
            return
        # The loop did not get back to save() in time, or its exit is held up. signal.signal
        # cannot be called from this thread to restore the default action: exit directly.
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except Exception:  # noqa: BLE001 - a closed or broken stream must not stop the exit
                pass
        os._exit(EXIT_STATUS)
