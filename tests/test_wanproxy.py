"""The WAN proxy (tests/wanproxy.py) that benchmarks and tests put in front of a local server:
what it forwards arrives whole and in order, late by its delay each way (a lower bound is
a correctness property; no test here asserts a speed), it reaches loopback only, and an
end of stream or a reset on one side reaches the other."""

from __future__ import annotations

import contextlib
import os
import socket
import struct
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from wanproxy import WANProxy, spawn

TIMEOUT = 10.0  # no socket here waits longer: a broken proxy fails, never hangs


@contextlib.contextmanager
def server(handle: Callable[[socket.socket], None]) -> Iterator[int]:
    """A server on 127.0.0.1 running ``handle`` for each connection; yields its port."""
    listener = socket.create_server(("127.0.0.1", 0))
    threads: list[threading.Thread] = []

    def accept() -> None:
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            conn.settimeout(TIMEOUT)
            thread = threading.Thread(target=handle, args=(conn,), daemon=True)
            thread.start()
            threads.append(thread)

    acceptor = threading.Thread(target=accept, daemon=True)
    acceptor.start()
    try:
        yield listener.getsockname()[1]
    finally:
        with contextlib.suppress(OSError):
            listener.shutdown(socket.SHUT_RDWR)
        listener.close()
        acceptor.join(TIMEOUT)
        for thread in threads:
            thread.join(TIMEOUT)


def echo(conn: socket.socket) -> None:
    with conn, contextlib.suppress(OSError):
        while data := conn.recv(1 << 16):
            conn.sendall(data)


def connect(port: int) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def read_all(sock: socket.socket) -> bytes:
    chunks = []
    while chunk := sock.recv(1 << 16):
        chunks.append(chunk)
    return b"".join(chunks)


def read_exactly(sock: socket.socket, n: int) -> bytes:
    data = b""
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        assert chunk, f"the stream ended after {len(data)} of {n} bytes"
        data += chunk
    return data


@pytest.mark.parametrize(
    "settings",
    [{}, {"delay": 0.02, "rate": 20e6, "max_queue": 65536}],
    ids=["plain", "delayed-capped-small-queue"],
)
def test_random_bytes_arrive_intact_and_in_order_both_ways(settings: dict[str, Any]) -> None:
    up, down = os.urandom(3 << 20), os.urandom(2 << 20)
    received: list[bytes] = []

    def swap(conn: socket.socket) -> None:  # sends its payload while it reads the client's
        with conn:
            sender = threading.Thread(target=conn.sendall, args=(down,))
            sender.start()
            received.append(read_all(conn))
            sender.join(TIMEOUT)
            conn.shutdown(socket.SHUT_WR)

    with server(swap) as port, WANProxy(port, **settings) as proxy, connect(proxy.port) as sock:

        def send() -> None:
            sock.sendall(up)
            sock.shutdown(socket.SHUT_WR)

        sender = threading.Thread(target=send)
        sender.start()
        got = read_all(sock)
        sender.join(TIMEOUT)
    assert received == [up]
    assert got == down


def test_an_echo_round_trip_takes_at_least_twice_the_delay() -> None:
    delay = 0.1
    with server(echo) as port, WANProxy(port, delay=delay, rate=1e6) as proxy, connect(proxy.port) as sock:
        for message in (b"x", os.urandom(50_000), b"y"):
            start = time.monotonic()
            sock.sendall(message)
            assert read_exactly(sock, len(message)) == message
            assert time.monotonic() - start >= 2 * delay
        assert "+100 ms, 8 Mbit/s" in repr(proxy)


@pytest.mark.parametrize("host", ["10.0.0.5", "0.0.0.0", "example.com", "::"])
def test_it_refuses_a_target_off_this_machine(host: str) -> None:
    with pytest.raises(ValueError, match="loopback"):
        WANProxy(22, host=host)
    with pytest.raises(ValueError, match="loopback"), spawn(22, host=host):
        pass


def test_it_listens_on_loopback_and_reaches_loopback_names() -> None:
    for host in ("127.0.0.1", "localhost", "127.0.0.2", "::1"):
        WANProxy(22, host=host)  # accepted
    with server(echo) as port, WANProxy(port) as proxy, connect(proxy.port) as sock:
        assert sock.getpeername() == ("127.0.0.1", proxy.port)
        sock.sendall(b"ping")
        assert read_exactly(sock, 4) == b"ping"


@pytest.mark.parametrize("closing", ["client", "server"])
def test_closing_one_side_closes_the_other(closing: str) -> None:
    delay = 0.05
    accepted: list[socket.socket] = []
    ready = threading.Event()

    def hold(conn: socket.socket) -> None:
        accepted.append(conn)
        ready.set()

    with server(hold) as port, WANProxy(port, delay=delay) as proxy, connect(proxy.port) as client:
        assert ready.wait(TIMEOUT)
        far = accepted[0]
        client.sendall(b"before")
        assert read_exactly(far, 6) == b"before"
        closer, other = (client, far) if closing == "client" else (far, client)
        closer.close()
        start = time.monotonic()
        assert other.recv(100) == b""  # the end of the stream, passed on
        assert time.monotonic() - start >= delay * 0.9
        other.close()
        deadline = time.monotonic() + TIMEOUT
        while proxy.connections and time.monotonic() < deadline:
            time.sleep(0.01)
        assert proxy.connections == 0


def test_a_reset_on_one_side_ends_the_other() -> None:
    accepted: list[socket.socket] = []
    ready = threading.Event()

    def hold(conn: socket.socket) -> None:
        accepted.append(conn)
        ready.set()

    with server(hold) as port, WANProxy(port, delay=0.02) as proxy:
        client = connect(proxy.port)
        assert ready.wait(TIMEOUT)
        client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        client.close()  # a reset, not an orderly end
        with accepted[0] as far:
            try:
                assert far.recv(100) == b""
            except ConnectionResetError:
                pass


def test_no_target_or_a_stopped_proxy_ends_the_client_connection() -> None:
    with server(echo) as port:
        pass  # the port is free again: nothing listens there
    with WANProxy(port) as proxy, connect(proxy.port) as sock:
        try:
            assert sock.recv(100) == b""
        except ConnectionResetError:
            pass
    with server(echo) as port:
        proxy = WANProxy(port, delay=0.01).start()
        with connect(proxy.port) as sock:
            sock.sendall(b"hi")
            assert read_exactly(sock, 2) == b"hi"
            proxy.stop()
            try:
                assert sock.recv(100) == b""
            except ConnectionResetError:
                pass
        with pytest.raises(OSError):
            connect(proxy.port).close()


def test_a_proxy_in_a_child_process() -> None:
    delay = 0.05
    with server(echo) as port, spawn(port, delay=delay, rate=10e6) as proxy_port, connect(proxy_port) as sock:
        payload = os.urandom(300_000)
        start = time.monotonic()
        sock.sendall(payload)
        assert read_exactly(sock, len(payload)) == payload
        assert time.monotonic() - start >= 2 * delay
