"""The simulated Vast marketplace: the same REST API, served in process or on loopback.

``Simulator(home)`` is the market with its API: ``transport()`` gives an httpx
transport for in-process use, ``serve()`` a server on loopback. State lives under
``home/sim/`` so that instances outlive the kernel, as real ones do.
"""

from __future__ import annotations

import typing
from pathlib import Path

from vastnb.sim.market import Market, SimConfig, SimError
from vastnb.sim.routes import SimAPI
from vastnb.sim.server import SimServer

__all__ = ["Simulator", "Market", "SimConfig", "SimError", "SimAPI", "SimServer", "SimTransport"]


if typing.TYPE_CHECKING:
    from vastnb.sim.transport import SimTransport


def __getattr__(name: str) -> typing.Any:  # SimTransport loads httpx: only when asked for
    if name == "SimTransport":
        from vastnb.sim.transport import SimTransport

        return SimTransport
    raise AttributeError(f"module 'vastnb.sim' has no attribute {name!r}")


class Simulator:
    """A simulated market and the API in front of it."""

    def __init__(self, home: Path | None, config: SimConfig | None = None, *, rate_limit_scale: float = 0.0) -> None:
        self.market = Market(home, config)
        self.api = SimAPI(self.market, rate_limit_scale=rate_limit_scale)

    def transport(self) -> SimTransport:
        """An httpx transport that answers from this simulator, in process."""
        from vastnb.sim.transport import SimTransport

        return SimTransport(self.api)

    def serve(
        self, host: str = "127.0.0.1", port: int = 0, *, verbose: bool = False, timeout_delay: float = 5.0
    ) -> SimServer:
        """A server for this simulator on loopback (not started); see :class:`SimServer`."""
        return SimServer(self.api, host, port, verbose=verbose, timeout_delay=timeout_delay)

    def advance(self, seconds: float) -> None:
        """Move the simulated clock forward."""
        self.market.advance(seconds)

    def preempt(self, instance_id: int, *, resume_after: float | None = 60.0) -> None:
        """Preempt a bid instance (see :meth:`Market.preempt`)."""
        self.market.preempt(instance_id, resume_after=resume_after)

    def outbid(self, instance_id: int, price: float | None = None, resume_after: float | None = None) -> float:
        """Have another renter outbid a bid instance (see :meth:`Market.outbid`); the new minimum bid."""
        return self.market.outbid(instance_id, price=price, resume_after=resume_after)

    def kill_worker(self, instance_id: int) -> int:
        """Kill a running instance's worker daemon (see :meth:`Market.kill_worker`); its pid."""
        return self.market.kill_worker(instance_id)

    def set_status(self, instance_id: int, status: str) -> None:
        """Force host trouble on an instance, or back to running (see :meth:`Market.set_status`)."""
        self.market.set_status(instance_id, status)

    def stall_loading(self, count: int = 1, *, after: int = 0) -> None:
        """Keep the next ``count`` instances created, once ``after`` more have been created,
        in ``loading`` (see :meth:`Market.stall_loading`)."""
        self.market.stall_loading(count, after=after)
