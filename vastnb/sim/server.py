"""The simulated Vast API over real HTTP, on loopback (``vastnb sim serve``).

Any Vast client, ours or the official CLI (``VAST_URL=http://127.0.0.1:PORT``), can
talk to it. Standard library only: a threading HTTP server is plenty for one user.
"""

from __future__ import annotations

import email.utils
import re
import socket
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from vastnb.sim import control  # noqa: F401  (registers the /_sim/ routes)
from vastnb.sim.routes import MAX_BODY_BYTES, SimAPI, SimRequest, SimResponse, too_large

__all__ = ["SimServer", "MAX_BODY_BYTES"]

LOOPBACK = ("127.0.0.1", "::1", "localhost")
#: After refusing a body unread, how long (seconds) and how much (bytes) of it to take in and
#: drop before hanging up, so that the client reads the refusal rather than a connection reset.
LINGER_S = 2.0
LINGER_BYTES = 4 * MAX_BODY_BYTES
_DIGITS = re.compile(r"[0-9]+")


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"

    def _serve(self) -> None:
        length = self._body_length()
        if length is None:  # refused, and answered
            return
        url = urllib.parse.urlsplit(self.path)
        response = self.server.api.handle(
            SimRequest(
                method=self.command,
                path=url.path,
                query=dict(urllib.parse.parse_qsl(url.query)),
                headers={k.lower(): v for k, v in self.headers.items()},
                body=self.rfile.read(length) if length else b"",
            )
        )
        if response.timeout:
            # Hold the request past any sane client timeout, then hang up unanswered.
            time.sleep(self.server.timeout_delay)
            self.close_connection = True
            return
        self._send(response)

    do_GET = do_POST = do_PUT = do_DELETE = _serve

    def handle_expect_100(self) -> bool:
        """A client that waits for "100 Continue" before sending its body gets the refusal
        instead, when the body announced cannot be taken."""
        return self._body_length() is not None and super().handle_expect_100()

    def _body_length(self) -> int | None:
        """The request body's size from its headers; None once a refusal is sent: a
        Content-Length that is not a byte count (the body's end is then unknown), a body
        over :data:`MAX_BODY_BYTES` (refused before a byte of it is read), or a chunked one."""
        lengths = [v.strip() for v in self.headers.get_all("Content-Length") or []]
        digits = (lengths[0].lstrip("0") or "0") if lengths else "0"
        if self.headers.get("Transfer-Encoding"):
            problem = (
                411,
                "length_required",
                "chunked request bodies are not accepted; send the body with a Content-Length header",
            )
        elif not all(_DIGITS.fullmatch(v) for v in lengths) or len(set(lengths)) > 1:
            shown = ", ".join(repr(v[:40]) for v in lengths)
            problem = (
                400,
                "invalid_request",
                f"Content-Length must be one whole number of bytes (0 or more), not "
                f"{shown}; send the body's size in bytes",
            )
        elif len(digits) > len(str(MAX_BODY_BYTES)) or int(digits) > MAX_BODY_BYTES:  # no int() of 5,000 digits
            self._refuse(too_large(digits))
            return None
        else:
            return int(digits)
        status, code, msg = problem
        self._refuse(SimResponse.of(status, {"success": False, "error": code, "msg": msg}))
        return None

    def date_time_string(self, timestamp: float | None = None) -> str:
        """The Date header: the simulated clock, as the market's own."""
        return email.utils.formatdate(self.server.api.market.clock() if timestamp is None else timestamp, usegmt=True)

    def _send(self, response: SimResponse) -> None:
        self.send_response(response.status)
        self.send_header("Content-Type", response.content_type)
        self.send_header("Content-Length", str(len(response.body)))
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(response.body)

    def _refuse(self, response: SimResponse) -> None:
        """Answer without reading the body, then hang up: where the body ends is unknown or
        too far away. What the client still sends is dropped for a moment first (at most
        :data:`LINGER_BYTES`, :data:`LINGER_S`), so that it gets to read the answer."""
        self.close_connection = True
        self._send(response)
        try:
            self.wfile.flush()
            self.connection.shutdown(socket.SHUT_WR)
            deadline = time.monotonic() + LINGER_S
            left = LINGER_BYTES
            while left > 0 and (remaining := deadline - time.monotonic()) > 0:
                self.connection.settimeout(remaining)
                chunk = self.connection.recv(min(left, 65536))
                if not chunk:
                    break
                left -= len(chunk)
        except OSError:  # the client went first, or stayed silent past LINGER_S: either way, done
            pass

    def log_message(self, format: str, *args: Any) -> None:
        if self.server.verbose:
            super().log_message(format, *args)


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], api: SimAPI, *, verbose: bool, timeout_delay: float) -> None:
        self.api, self.verbose, self.timeout_delay = api, verbose, timeout_delay
        if ":" in address[0]:
            self.address_family = socket.AF_INET6  # ::1
        super().__init__(address, _Handler)


class SimServer:
    """Serves ``api`` on ``host:port`` (port 0 picks a free one) in a background thread.

    Use as a context manager, or call :meth:`serve_forever` from a CLI.
    """

    def __init__(
        self, api: SimAPI, host: str = "127.0.0.1", port: int = 0, *, verbose: bool = False, timeout_delay: float = 5.0
    ) -> None:
        if host not in LOOPBACK:
            # The simulator has no real security; never expose it beyond this machine.
            raise ValueError(f"the simulator serves on loopback only (127.0.0.1 or ::1), not {host!r}")
        self.api = api
        self._server = _Server((host, port), api, verbose=verbose, timeout_delay=timeout_delay)
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        assert isinstance(host, str)  # a TCP server's address: (host, port)
        return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"

    def start(self) -> SimServer:
        # A short poll interval keeps stop() quick (the default waits up to 0.5 s).
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, name="vastnb-sim", daemon=True
        )
        self._thread.start()
        return self

    def serve_forever(self) -> None:
        self._server.serve_forever()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        if self._thread:
            self._thread.join()

    def __enter__(self) -> SimServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
