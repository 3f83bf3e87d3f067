"""One client connection to the daemon, as its handlers see it (:class:`Link`), and how a
connection ends when its relay dies (:func:`watch_relay`, :class:`Guard`)."""

from __future__ import annotations

import os
import socket
import threading
from collections.abc import Sequence
from typing import Any, Optional

from .protocol import Channel, Kind
from .tasks import Listener, Task

__all__ = ["Link", "Guard", "watch_relay"]


class Link:
    """One connection as its handlers see it: where answers go, and the tasks it watches.

    :meth:`send` is for the connection's own thread, which alone closes the descriptors.
    Another thread (a control call's) answers with :meth:`answer`, which sends nothing
    once the connection is closing (the descriptors' numbers may already belong to
    another connection) and, like a task's frames, raises ChannelClosed when the relay
    is gone (the frame reached nobody)."""

    def __init__(self, channel: Channel, listener: Listener) -> None:
        self.channel = channel
        self.listener = listener  # sends a frame, or raises ChannelClosed once the relay is gone
        self.watched: list[Task] = []
        self._lock = threading.Lock()
        self._open = True

    def send(
        self, kind: Kind, task: int = 0, meta: Optional[dict] = None, body: bytes = b"", buffers: Sequence[Any] = ()
    ) -> None:
        self.channel.send(kind, task, meta, body, buffers)

    def answer(self, kind: Kind, task: int, meta: dict, body: bytes, buffers: list[Any]) -> None:
        with self._lock:
            if self._open:
                self.listener(kind, task, meta, body, buffers)

    def close(self) -> None:
        """From the connection's thread, before its descriptors close: no answer after this."""
        with self._lock:
            self._open = False


class Guard:
    """Orders the two ways a connection ends: its descriptors are closed once, and never
    touched after (their numbers may already belong to another connection)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.closed = False
        self.released = False  # the relay died: the descriptors now lead to /dev/null


def watch_relay(conn: socket.socket, channel: Channel, guard: Guard) -> None:
    """When the relay dies (the connection dropped, or was killed), release its pipes:
    /dev/null takes their descriptor numbers, so the serving thread sees EOF, a late
    write goes nowhere, and the client, whose pipe has no other writer, sees EOF too.
    (Only if the serving thread has not closed them already: the numbers may be reused.)"""
    try:
        conn.recv(1)
    except OSError:
        pass
    with guard.lock:
        if guard.closed:
            return
        guard.released = True
        null = os.open(os.devnull, os.O_RDWR)
        for fd in (channel.read_fd, channel.write_fd):
            try:
                os.dup2(null, fd, inheritable=False)
            except OSError:
                pass
        os.close(null)
