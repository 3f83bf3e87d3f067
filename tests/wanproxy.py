"""A WAN on loopback: a TCP proxy on 127.0.0.1 that delays what it forwards, and can cap
its rate, so a local server (the tests' sshd) can be reached as if it were far away.

``with WANProxy(port, delay=0.05, rate=12.5e6) as proxy:`` listens on ``127.0.0.1:<proxy.port>``
and forwards each connection to ``127.0.0.1:port``. In each direction, bytes read at time
``t`` are written at ``t + delay`` (in order, and without waiting on one another: a
stream keeps flowing, it is only late), after a token bucket of ``rate`` bytes per
second when there is a cap (``burst`` bytes may pass at once). An end of stream is passed
on (a half-close) once the bytes before it are; a reset or error ends both sides at once.

What it leaves out: the proxy's own sockets are loopback ones, acknowledged at once, so
TCP on either side never sees the delay: no slow start, no congestion window, no loss.
The client's kernel sends as fast as the proxy reads; the proxy holds at most
``max_queue`` bytes read but not yet written per direction (a bottleneck's buffer), then
stops reading, which is the back-pressure a sender meets on a real path. Application
windows (SSH's channel window) do see the delay, as on a real path.

``spawn(...)`` runs the proxy in a child process (``python tests/wanproxy.py``), so that
moving bytes there does not compete with the measuring process for its GIL.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import ipaddress
import socket
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Iterator

__all__ = ["WANProxy", "spawn", "LOOPBACK"]

LOOPBACK = "127.0.0.1"
CHUNK = 1 << 16  # bytes read at once
_EOF = None  # what a direction's queue holds for the end of its stream


def _loopback(host: str) -> str:
    """``host`` if it names this machine (a loopback address, or ``localhost``); else ValueError.
    No name is resolved: a proxy that may only reach loopback never asks DNS."""
    if host == "localhost":
        return LOOPBACK
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        raise ValueError(f"WANProxy forwards to loopback only, given {host!r} (not a loopback address)") from None
    if not address.is_loopback:
        raise ValueError(f"WANProxy forwards to loopback only, not to {host}")
    return str(address)


class _Direction:
    """One way of one connection: a reader that stamps what it reads with when it may
    leave, and a writer that sends it then."""

    def __init__(self, pipe: _Pipe, src: socket.socket, dst: socket.socket) -> None:
        self.pipe, self.src, self.dst = pipe, src, dst
        proxy = pipe.proxy
        self.delay, self.rate, self.burst, self.max_queue = proxy.delay, proxy.rate, proxy.burst, proxy.max_queue
        self.queue: collections.deque[tuple[float, bytes | None]] = collections.deque()
        self.queued = 0  # bytes read, not yet written
        self.cond = threading.Condition()
        self.tokens = float(self.burst)
        self.stamped = time.monotonic()  # when the bucket was last brought up to date
        self.last_due = 0.0
        self.done = False  # the writer passed on the end of the stream (or gave up)
        self.threads = [
            threading.Thread(target=self._read, daemon=True, name="wanproxy-read"),
            threading.Thread(target=self._write, daemon=True, name="wanproxy-write"),
        ]

    def start(self) -> None:
        for thread in self.threads:
            thread.start()

    def _due(self, now: float, size: int) -> float:
        """When ``size`` bytes read at ``now`` arrive: after the token bucket lets them
        leave (the bucket may go into debt; it refills at ``rate``), then ``delay``."""
        leave = now
        if self.rate:
            self.tokens = min(float(self.burst), self.tokens + (now - self.stamped) * self.rate) - size
            self.stamped = now
            if self.tokens < 0:
                leave = now - self.tokens / self.rate
        self.last_due = max(self.last_due, leave + self.delay)  # never ahead of what came before
        return self.last_due

    def _read(self) -> None:
        try:
            while True:
                with self.cond:
                    while self.queued >= self.max_queue and not self.pipe.closed:
                        self.cond.wait()
                    if self.pipe.closed:
                        return
                    room = self.max_queue - self.queued
                data = self.src.recv(min(CHUNK, room))
                now = time.monotonic()
                with self.cond:
                    if not data:
                        self.queue.append((max(self.last_due, now + self.delay), _EOF))
                        self.cond.notify_all()
                        return
                    step = self.burst if self.rate else len(data)
                    for at in range(0, len(data), step):
                        piece = data[at : at + step]
                        self.queue.append((self._due(now, len(piece)), piece))
                    self.queued += len(data)
                    self.cond.notify_all()
        except OSError:
            self.pipe.abort()

    def _write(self) -> None:
        try:
            while True:
                with self.cond:
                    while not self.pipe.closed:
                        if self.queue:
                            wait = self.queue[0][0] - time.monotonic()
                            if wait <= 0:
                                break
                            self.cond.wait(wait)
                        else:
                            self.cond.wait()
                    if self.pipe.closed:
                        return
                    now = time.monotonic()
                    pieces: list[bytes] = []
                    end = False
                    while self.queue and self.queue[0][0] <= now:  # everything due goes in one write
                        _, piece = self.queue.popleft()
                        if piece is _EOF:
                            end = True
                            break
                        pieces.append(piece)
                if pieces:
                    data = b"".join(pieces)
                    self.dst.sendall(data)
                    with self.cond:
                        self.queued -= len(data)
                        self.cond.notify_all()
                if end:
                    with contextlib.suppress(OSError):
                        self.dst.shutdown(socket.SHUT_WR)
                    self.done = True
                    self.pipe.finished()
                    return
        except OSError:
            self.pipe.abort()


class _Pipe:
    """One proxied connection: two directions; closed when both ended, or at once on an error."""

    def __init__(self, proxy: WANProxy, client: socket.socket, upstream: socket.socket) -> None:
        self.proxy = proxy
        self.client, self.upstream = client, upstream
        self.closed = False
        self.lock = threading.Lock()
        self.directions = (_Direction(self, client, upstream), _Direction(self, upstream, client))

    def start(self) -> None:
        for direction in self.directions:
            direction.start()

    def finished(self) -> None:
        if all(d.done for d in self.directions):
            self.close()

    def abort(self) -> None:
        """A reset or error on either side: both sides end now (with a reset, as it came)."""
        for sock in (self.client, self.upstream):
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.close()

    def close(self) -> None:
        with self.lock:
            if self.closed:
                return
            self.closed = True
        for sock in (self.client, self.upstream):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)  # wakes a thread blocked in recv or sendall
        for direction in self.directions:
            with direction.cond:
                direction.cond.notify_all()
        for sock in (self.client, self.upstream):
            sock.close()
        self.proxy._forget(self)


class WANProxy:
    """A delaying, optionally rate-capped TCP proxy from ``127.0.0.1:<port>`` to
    ``host:target_port`` (loopback only). ``delay``: seconds one way, in each direction;
    ``rate``: bytes per second per direction, None for no cap; ``burst``: bytes the bucket
    holds (default: 2 ms at ``rate``, at least 16 KiB); ``max_queue``: bytes held per
    direction before reading stops (default: twice the bandwidth-delay product, at least 4 MiB)."""

    def __init__(
        self,
        target_port: int,
        *,
        host: str = LOOPBACK,
        delay: float = 0.0,
        rate: float | None = None,
        burst: int | None = None,
        max_queue: int | None = None,
    ) -> None:
        if delay < 0 or (rate is not None and rate <= 0):
            raise ValueError("delay must be >= 0 and rate > 0 (or None)")
        self.target = (_loopback(host), int(target_port))
        self.delay = float(delay)
        self.rate = float(rate) if rate else None
        self.burst = int(burst or max(16384, (self.rate or 0) * 0.002))
        self.max_queue = int(max_queue or max(4 << 20, 2 * (self.rate or 0) * self.delay))
        self.port = 0
        self._listener: socket.socket | None = None
        self._pipes: set[_Pipe] = set()
        self._lock = threading.Lock()
        self._accepter: threading.Thread | None = None

    def __repr__(self) -> str:
        cap = f", {self.rate * 8 / 1e6:g} Mbit/s" if self.rate else ""
        return f"<WANProxy 127.0.0.1:{self.port} -> {self.target[0]}:{self.target[1]}, +{self.delay * 1000:g} ms{cap}>"

    def start(self) -> WANProxy:
        if self._listener is not None:
            return self
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind((LOOPBACK, 0))
        listener.listen(64)
        self._listener, self.port = listener, listener.getsockname()[1]
        self._accepter = threading.Thread(target=self._accept, args=(listener,), daemon=True, name="wanproxy-accept")
        self._accepter.start()
        return self

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return  # the listener was closed: stop()
            try:
                upstream = socket.create_connection(self.target, timeout=10)
                upstream.settimeout(None)
            except OSError:
                client.close()  # nothing to forward to: the client sees the connection end
                continue
            for sock in (client, upstream):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            pipe = _Pipe(self, client, upstream)
            with self._lock:
                stopped = self._listener is None
                if not stopped:
                    self._pipes.add(pipe)
            if stopped:
                pipe.close()
                return
            pipe.start()

    def _forget(self, pipe: _Pipe) -> None:
        with self._lock:
            self._pipes.discard(pipe)

    @property
    def connections(self) -> int:
        """Connections open through the proxy now."""
        with self._lock:
            return len(self._pipes)

    def stop(self) -> None:
        """Stop listening and end every connection through the proxy."""
        with self._lock:
            listener, self._listener = self._listener, None
            pipes = list(self._pipes)
        if listener is None:
            return
        with contextlib.suppress(OSError):
            listener.shutdown(socket.SHUT_RDWR)  # wakes accept()
        listener.close()
        if self._accepter is not None:
            self._accepter.join(timeout=5)
        for pipe in pipes:
            pipe.close()

    def __enter__(self) -> WANProxy:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


@contextlib.contextmanager
def spawn(target_port: int, *, delay: float = 0.0, rate: float | None = None, host: str = LOOPBACK) -> Iterator[int]:
    """A :class:`WANProxy` in a child process; yields the port it listens on. It ends when
    this context does (its stdin closes)."""
    _loopback(host)
    argv = [sys.executable, __file__, str(target_port), "--host", host, "--delay", repr(delay)]
    if rate:
        argv += ["--rate", repr(rate)]
    process = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        if not line.strip().isdigit():
            raise RuntimeError(f"the proxy did not start: {line!r}")
        yield int(line)
    finally:
        if process.stdin is not None:
            process.stdin.close()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def main() -> None:
    parser = argparse.ArgumentParser(
        description="A delaying TCP proxy on 127.0.0.1; prints its port, runs until stdin closes."
    )
    parser.add_argument("target_port", type=int)
    parser.add_argument("--host", default=LOOPBACK)
    parser.add_argument("--delay", type=float, default=0.0, help="seconds one way, each direction")
    parser.add_argument("--rate", type=float, default=None, help="bytes per second per direction")
    args = parser.parse_args()
    with WANProxy(args.target_port, host=args.host, delay=args.delay, rate=args.rate) as proxy:
        print(proxy.port, flush=True)
        sys.stdin.read()  # until the parent closes it (or exits)


if __name__ == "__main__":
    main()
