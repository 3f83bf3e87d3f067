"""Output from below Python: what a task's subprocesses and C extensions write to file
descriptors 1 and 2 reaches the task, line by line, live (see :class:`Forwarder`)."""

from __future__ import annotations

import os
import select
import sys
import threading
from typing import Any

__all__ = ["Forwarder", "flush_streams"]


class Forwarder:
    """Bytes written to file descriptor 1 or 2 (by a subprocess, a C extension) go to the
    running task a line at a time (else to the log). The pipe is read under a lock, by
    this thread as bytes come and by the task's own thread when it ends (:meth:`drain`),
    so the last bytes a task wrote reach it before its outcome, never the next task."""

    def __init__(self, fd: int, name: str, current: Any, log: Any) -> None:
        read_end, write_end = os.pipe()
        os.dup2(write_end, fd)
        os.close(write_end)
        os.set_blocking(read_end, False)
        self.read_end, self.name, self.current, self.log = read_end, name, current, log
        self.pending = b""
        self.lock = threading.Lock()
        threading.Thread(target=self._run, name=f"vastnb-{name}", daemon=True).start()

    def _run(self) -> None:
        poller = select.poll()
        poller.register(self.read_end, select.POLLIN)
        while True:
            poller.poll()
            with self.lock:
                if not self._read():
                    return

    def _read(self) -> bool:
        """Deliver the whole lines the pipe holds now; False at end of file."""
        while True:
            try:
                chunk = os.read(self.read_end, 1 << 16)
            except BlockingIOError:
                return True
            if not chunk:
                return False
            self.pending += chunk
            cut = max(self.pending.rfind(b"\n"), self.pending.rfind(b"\r"))
            if cut < 0 and len(self.pending) < 1 << 16:
                continue
            ready, self.pending = (
                (self.pending[: cut + 1], self.pending[cut + 1 :]) if cut >= 0 else (self.pending, b"")
            )
            self._deliver(ready)

    def _deliver(self, data: bytes) -> None:
        task = self.current()
        text = data.decode("utf-8", errors="replace")
        if task is not None:
            task.emit(self.name, text)
        else:
            self.log.write(text)

    def drain(self) -> None:
        """Deliver everything written so far, a last partial line too (a task ended)."""
        with self.lock:
            self._read()
            if self.pending:
                ready, self.pending = self.pending, b""
                self._deliver(ready)


def flush_streams(forwarders: list[Forwarder]) -> None:
    """Deliver to the running task all it wrote: what Python holds, then what the pipes do."""
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except Exception:  # noqa: BLE001 - a closed or broken stream must not stop the flush
            pass
    for forwarder in forwarders:
        forwarder.drain()
