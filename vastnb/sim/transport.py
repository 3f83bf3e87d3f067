"""The simulator as an httpx transport: the whole REST API in process, no sockets."""

from __future__ import annotations

import email.utils

import httpx

from vastnb.sim import control  # noqa: F401  (registers the /_sim/ routes)
from vastnb.sim.routes import SimAPI, SimRequest

__all__ = ["SimTransport"]


class SimTransport(httpx.BaseTransport):
    """Answers httpx requests from a :class:`~vastnb.sim.routes.SimAPI`."""

    def __init__(self, api: SimAPI) -> None:
        self.api = api

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        response = self.api.handle(
            SimRequest(
                method=request.method,
                path=request.url.path,
                query=dict(request.url.params),
                headers={k.lower(): v for k, v in request.headers.items()},
                body=request.read(),
            )
        )
        if response.timeout:
            raise httpx.ReadTimeout("simulated timeout: the server never answered", request=request)
        headers = {"Content-Type": response.content_type}
        if response.date is not None:
            headers["Date"] = email.utils.formatdate(response.date, usegmt=True)
        return httpx.Response(response.status, content=response.body, headers=headers)
