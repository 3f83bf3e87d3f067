"""One connection to a box's worker: the process (a local python, or ssh), the
bootstrap exchange, the handshake, and a reader thread that turns the byte stream into
frames. A blocking read is never interrupted half-way (Ctrl-C lands in whoever waits
on the queue), so the stream never loses its place.

The handshake's reply is the stream's first frame, and the reader takes it: a first task
can follow HELLO at once (:meth:`Connection.open`'s ``first``), so that across the internet
the first call on a new connection costs one round trip, not two. A worker that refuses
HELLO reads nothing after it.
"""

from __future__ import annotations

import collections
import contextlib
import os
import queue
import subprocess
import threading
import time
from collections.abc import Callable
from typing import Any

from vastnb.errors import ConnectionLostError, HandshakeError, TransportError
from vastnb.offload.transport import Transport
from vastnb.offload.zipapp import worker_zipapp
from vastnb_worker.protocol import MAX_FRAME, BadFrame, Channel, ChannelClosed, Frame, Kind
from vastnb_worker.relay import WORKER_DIED

__all__ = ["Connection"]

_CLOSED = None  # what the reader thread queues when the stream ends
HELLO_TIMEOUT = 60.0  # seconds a started worker may take to answer HELLO (a stuck one is given up on)


class Connection:
    """A live worker connection. Use :meth:`open`."""

    def __init__(
        self,
        transport: Transport,
        process: subprocess.Popen[bytes],
        stderr_tail: collections.deque[str],
        *,
        max_frame: int = MAX_FRAME,
    ) -> None:
        self.transport = transport
        self.process = process
        self._stderr_tail = stderr_tail
        assert process.stdin is not None and process.stdout is not None
        self.channel = Channel(process.stdout.fileno(), process.stdin.fileno(), max_frame=max_frame)
        self.lost_because = ""  # why the stream was given up, when the box sent something that is not a frame
        self.frames: queue.Queue[Frame | None] = queue.Queue()
        self.hello: dict[str, Any] = {}  # the worker's HELLO, once settled
        self.alive = True
        self._reader: threading.Thread | None = None  # the thread reading frames, once started
        self._reply: Frame | None = None  # the handshake's reply, the stream's first frame
        self._replied = threading.Event()  # set when it came, or the stream ended before it
        self._settled = False

    @classmethod
    def open(
        cls,
        transport: Transport,
        versions: dict[str, Any],
        *,
        timeout: float = 120.0,
        max_frame: int = MAX_FRAME,
        first: Callable[[Connection], None] | None = None,
    ) -> Connection:
        """Start the worker and shake hands, retrying (bounded by ``timeout``) while a
        new box settles: its SSH key still propagating, its sshd still starting. A frame
        from the box over ``max_frame`` bytes ends the connection unread. ``first(connection)``
        sends a task right behind HELLO, before its answer: the worker reads it only if it
        accepts the session (HandshakeError otherwise: send it again on the next one)."""
        deadline = time.monotonic() + timeout
        delay = 0.5
        while True:
            try:
                connection = cls._open_once(transport, versions, max_frame)
                lost: ConnectionLostError | None = None
                if first is not None:
                    try:
                        first(connection)
                    except ConnectionLostError as exc:  # a refusal ends the stream: settle() says so
                        lost = exc
                connection.settle(timeout=max(deadline - time.monotonic(), HELLO_TIMEOUT))
                if lost is not None:
                    raise lost
                return connection
            except TransportError as exc:
                retryable = any(p in str(getattr(exc, "stderr", "")) for p in transport.retry_patterns)
                if not retryable or time.monotonic() + delay > deadline:
                    raise
                time.sleep(delay)
                delay = min(delay * 2, 8.0)

    @classmethod
    def _open_once(cls, transport: Transport, versions: dict[str, Any], max_frame: int) -> Connection:
        data, digest = worker_zipapp()
        argv = transport.argv([digest, str(len(data))])
        try:
            process = subprocess.Popen(
                argv,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                bufsize=0,
                env=transport.env(),
                start_new_session=True,  # Ctrl-C in the notebook must not kill ssh: we forward it
            )
        except FileNotFoundError:  # no such program here: a local python, or ssh itself
            if argv[0] == "ssh":
                raise TransportError("no `ssh` command on this machine: install the OpenSSH client") from None
            raise transport.failure(127, f"{argv[0]}: not found") from None
        tail: collections.deque[str] = collections.deque(maxlen=40)
        threading.Thread(target=_drain, args=(process, tail), daemon=True).start()
        connection = cls(transport, process, tail, max_frame=max_frame)
        try:
            connection._bootstrap(data)
            connection.channel.send(Kind.HELLO, meta={"versions": versions})
        except ChannelClosed:
            error = connection._fail()  # ssh's exit status and last words, before close() ends it
            connection.close()
            raise error from None
        except BaseException:
            connection.close()
            raise
        connection._reader = threading.Thread(target=connection._read, name="vastnb-frames", daemon=True)
        connection._reader.start()
        return connection

    def _fail(self) -> TransportError:
        try:
            returncode = self.process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            returncode = None
        time.sleep(0.05)  # let the stderr thread catch the last lines
        stderr = "".join(self._stderr_tail)
        error = self.transport.failure(returncode, stderr)
        error.stderr = stderr
        return error

    def _bootstrap(self, zipapp: bytes) -> None:
        line = b""
        fd = self.channel.read_fd
        while not line.endswith(b"\n") and len(line) < 64:
            chunk = os.read(fd, 1)  # byte by byte: what follows belongs to the session
            if not chunk:
                raise self._fail()
            line += chunk
        answer = line.decode(errors="replace").strip()
        if answer.startswith("OLD"):
            raise TransportError(
                f"python3 on {self.transport.describe()} is {answer[4:]}; the worker needs Python 3.9 or "
                "newer. Rent with a newer image (any pytorch/pytorch image has it)."
            )
        if answer == "SEND":
            assert self.process.stdin is not None
            try:
                self.process.stdin.write(zipapp)
            except BrokenPipeError:
                raise self._fail() from None
        elif answer != "HAVE":
            raise TransportError(
                f"unexpected answer from the worker bootstrap on {self.transport.describe()}: {answer!r}"
            )

    def settle(self, timeout: float = HELLO_TIMEOUT) -> dict[str, Any]:
        """Wait for the worker's answer to HELLO: its HELLO (kept in :attr:`hello`), or
        HandshakeError when it refused the session (``restarting``: a stale worker stepped
        aside, and a new connection gets a fresh one), or TransportError when the stream
        ended first. Anything sent behind HELLO was read only if this returns."""
        if self._settled:
            return self.hello
        if not self._replied.wait(timeout):
            self.close()
            raise TransportError(
                f"no answer to HELLO from the worker on {self.transport.describe()} in {timeout:.0f} s"
            )
        reply = self._reply
        if reply is None:
            error = self._fail()  # ssh's exit status and last words, before close() ends it
            self.close()
            raise error
        if reply.kind == Kind.REFUSED:
            self.close()
            error = HandshakeError(
                f"the worker on {self.transport.describe()} refused the session: {reply.meta.get('message')}"
            )
            error.restarting = bool(reply.meta.get("restarting"))
            raise error
        self.hello, self._settled = reply.meta, True
        return self.hello

    def _read(self) -> None:
        try:
            self._reply = self.channel.receive()  # HELLO or REFUSED
            self._replied.set()
            while True:
                self.frames.put(self.channel.receive())
        except BadFrame as exc:
            self.lost_because = str(exc)
        except (ChannelClosed, ValueError, OSError):
            pass
        except Exception as exc:  # noqa: BLE001 - whatever went wrong, the session must learn the stream is over, not hang
            self.lost_because = f"reading its frames failed ({type(exc).__name__}: {exc})"
        self.alive = False
        self._replied.set()  # no reply, if none came: settle() says why
        self.frames.put(_CLOSED)

    def usable(self) -> bool:
        """Alive as far as can be told without a round trip: the stream is open and its
        process (the relay, or ssh) still runs."""
        return self.alive and self.process.poll() is None

    def worker_died(self) -> bool:
        """Once the stream has ended: whether the box's worker itself ended (killed, out
        of memory, crashed), as the relay reports by its exit status, not the connection."""
        try:
            return self.process.wait(timeout=2) == WORKER_DIED
        except subprocess.TimeoutExpired:
            return False

    def send(
        self,
        kind: Kind,
        task: int = 0,
        meta: dict[str, Any] | None = None,
        body: bytes = b"",
        buffers: list[Any] | tuple[Any, ...] = (),
    ) -> None:
        try:
            self.channel.send(kind, task, meta, body, buffers)
        except (ChannelClosed, OSError) as exc:
            self.alive = False
            raise ConnectionLostError(f"the connection to {self.transport.describe()} is gone ({exc})") from None

    def next(self, timeout: float | None = None) -> Frame | None:
        """The next frame; None on timeout. Raises ConnectionLostError at end of stream."""
        try:
            frame = self.frames.get(timeout=timeout)
        except queue.Empty:
            return None
        if frame is _CLOSED:
            self.frames.put(_CLOSED)  # every later caller learns it too
            why = f": {self.lost_because}" if self.lost_because else ""
            raise ConnectionLostError(f"the connection to {self.transport.describe()} was lost{why}")
        return frame

    def close(self) -> None:
        self.alive = False
        with contextlib.suppress(OSError):
            if self.process.stdin is not None:
                self.process.stdin.close()
        try:
            self.process.terminate()
            self.process.wait(timeout=5)
        except (OSError, subprocess.TimeoutExpired):
            self.process.kill()
            with contextlib.suppress(OSError, subprocess.TimeoutExpired):
                self.process.wait(timeout=5)
        # The frames thread ends at the end of the stream, and only then is its descriptor
        # closed: a number closed under a thread still reading it can be reused at once by the
        # next connection's pipe, and that thread would take the bytes meant for the new one
        # (the new relay's first line), leaving it waiting for ever. Rather an fd kept open.
        reader = self._reader
        if reader is not None and reader is not threading.current_thread():
            reader.join(timeout=5)
        if reader is None or not reader.is_alive():
            with contextlib.suppress(OSError):
                if self.process.stdout is not None:
                    self.process.stdout.close()


def _drain(process: subprocess.Popen[bytes], tail: collections.deque[str]) -> None:
    """Keep the last lines of the process's stderr (ssh's messages) for error reports."""
    assert process.stderr is not None
    for raw in iter(process.stderr.readline, b""):
        tail.append(raw.decode(errors="replace"))
