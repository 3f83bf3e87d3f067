"""The simulated Vast API over real HTTP, on loopback (``vastnb sim serve``).

Any Vast client, ours or the official CLI (``VAST_URL=http://127.0.0.1:PORT``), can
talk to it. Standard library only: a threading HTTP server is plenty for one user.
"""

from __future__ import annotations

import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from . import control  # noqa: F401  (registers the /_sim/ routes)
from .routes import SimAPI, SimRequest

__all__ = ["SimServer"]

LOOPBACK = ("127.0.0.1", "::1", "localhost")


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"

    def _serve(self) -> None:
        url = urllib.parse.urlsplit(self.path)
        length = int(self.headers.get("Content-Length") or 0)
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
        self.send_response(response.status)
        self.send_header("Content-Type", response.content_type)
        self.send_header("Content-Length", str(len(response.body)))
        self.end_headers()
        self.wfile.write(response.body)

    do_GET = do_POST = do_PUT = do_DELETE = _serve

    def log_message(self, format: str, *args: Any) -> None:
        if self.server.verbose:
            super().log_message(format, *args)


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], api: SimAPI, *, verbose: bool, timeout_delay: float) -> None:
        self.api, self.verbose, self.timeout_delay = api, verbose, timeout_delay
        super().__init__(address, _Handler)


class SimServer:
    """Serves ``api`` on ``host:port`` (port 0 picks a free one) in a background thread.

    Use as a context manager, or call :meth:`serve_forever` from a CLI.
    """

    def __init__(self, api: SimAPI, host: str = "127.0.0.1", port: int = 0, *, verbose: bool = False,
                 timeout_delay: float = 5.0) -> None:  # fmt: skip
        if host not in LOOPBACK:
            # The simulator has no real security; never expose it beyond this machine.
            raise ValueError(f"the simulator serves on loopback only (127.0.0.1 or ::1), not {host!r}")
        self.api = api
        self._server = _Server((host, port), api, verbose=verbose, timeout_delay=timeout_delay)
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

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
