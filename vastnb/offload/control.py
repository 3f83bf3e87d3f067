"""The notebook's side of the worker's control channel: waiting for the answer to one of
vastnb's own calls (:meth:`~vastnb.offload.session.Session.control`)."""

from __future__ import annotations

import time

from vastnb.errors import ConnectionLostError
from vastnb.offload.connection import Connection
from vastnb_worker.protocol import Frame, Kind

__all__ = ["control_reply", "CONTROL_TIMEOUT", "REPLIES"]

CONTROL_TIMEOUT = 600.0  # seconds a control call may take on the box before the session gives up on it
REPLIES = (Kind.CONTROL_RESULT, Kind.CONTROL_ERROR)  # the kinds that answer a control call


def control_reply(connection: Connection, request: int, name: str, where: str) -> Frame:
    """The answer to control request ``request`` on ``connection`` (other frames are not
    for it). Raises ConnectionLostError if the connection drops or no answer comes; the
    caller then drops the connection, so that a late answer is never taken for another."""
    deadline = time.monotonic() + CONTROL_TIMEOUT
    while time.monotonic() < deadline:
        try:
            frame = connection.next(timeout=0.5)
        except ConnectionLostError:
            why = f": {connection.lost_because}" if connection.lost_because else ""
            raise ConnectionLostError(
                f"the connection to {where} was lost during vastnb's call of {name} on the box"
                f"{why}; it may or may not have run there. The next call reconnects.",
            ) from None
        if frame is not None and frame.kind in REPLIES and frame.meta.get("control") == request:
            return frame
    raise ConnectionLostError(
        f"vastnb's call of {name} on {where} did not answer within {CONTROL_TIMEOUT:.0f} s; the next call reconnects."
    )
