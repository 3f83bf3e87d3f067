"""The embedded simulator: its REST API answered in process, its boxes worker processes on
this machine (or, with ``SimConfig(ssh_address=...)``, behind a real sshd on loopback),
its boxes' self-destruct requests spooled to a folder the market reads."""

from __future__ import annotations

from pathlib import Path

from vastnb.backends.base import BoxOptions, SelfDestruct, SSHBackend
from vastnb.backends.local import local_transport
from vastnb.market.api import VastAPI
from vastnb.market.records import Instance
from vastnb.offload.transport import Transport
from vastnb.sim import Simulator

__all__ = ["SimBackend"]


class SimBackend(SSHBackend):
    """The simulated market of ``simulator``, in this process."""

    name = "sim"
    simulated = True
    poll = 0.1

    def __init__(self, simulator: Simulator, api: VastAPI, home: Path, box: BoxOptions | None = None) -> None:
        super().__init__(api, home, box)
        self.simulator: Simulator = simulator
        market = simulator.market
        # Worker processes on this machine, unless the market points its instances at an sshd.
        self._boxes = market.boxes if market.config.ssh_address is None else None

    def reachable(self, instance: Instance) -> bool:
        if self._boxes is None:
            return super().reachable(instance)
        return self._boxes.powered(instance.id)

    def transport(self, instance_id: int) -> Transport:
        if self._boxes is None:
            return super().transport(instance_id)
        return local_transport(self._boxes.local(instance_id))

    def worker_home(self) -> str:
        if self._boxes is None:
            return super().worker_home()
        return str(self._boxes.root / "{id}")

    def self_destruct(self) -> SelfDestruct:
        market = self.simulator.market
        return SelfDestruct(str(market.selfdestruct_url()), str(market.clock_path))
