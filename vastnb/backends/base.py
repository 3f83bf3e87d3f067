"""The backend boundary: what differs between real Vast and the simulator, in one object.

A :class:`Backend` is chosen once, when a :class:`~vastnb.Client` is built
(:func:`vastnb.backends.open_backend`), and supplies the three things that differ:

- the REST API (:attr:`Backend.api`): Vast's over HTTPS, or the simulator's, answered
  in process or by a served simulator on loopback;
- how a box is reached (:meth:`Backend.transport`, :meth:`Backend.reachable`): OpenSSH to
  the address the API reports, or a worker process on this machine;
- how a box destroys itself (:meth:`Backend.self_destruct`): the API its boot switch and
  watchdog call, and (simulated) the clock file its time follows.

Nothing above this package asks which backend it has.
"""

from __future__ import annotations

import os
import tempfile
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from vastnb.backends.keys import KeyPair, ensure_keypair, ensure_registered
from vastnb.base.private import private_folder
from vastnb.errors import InstanceGoneError
from vastnb.market.api import VastAPI
from vastnb.market.records import Instance
from vastnb.offload.transport import SSHTransport, Transport

if TYPE_CHECKING:
    from vastnb.sim import Simulator

__all__ = ["Backend", "BoxOptions", "SelfDestruct", "SSHBackend"]


@dataclass(frozen=True)
class BoxOptions:
    """How boxes are reached and guarded. ``home`` may contain ``{id}``."""

    home: str = "~/.cache/vastnb"  # where the worker lives on the box
    python: str = "python3"  # the box's Python (3.9 or newer)
    ssh_options: tuple[str, ...] = ()  # extra OpenSSH options, e.g. ("-F", "/dev/null")
    ssh_user: str = "root"  # Vast's boxes log in as root; a served simulator's sshd as you
    silence_s: float = 1800.0  # the box destroys itself after this long with no orchestrator


@dataclass(frozen=True)
class SelfDestruct:
    """What a box needs to end itself: the API it calls with its own instance key, and
    (simulated boxes) the file with the simulated clock's offset."""

    url: str
    clock: str | None = None


class Backend(ABC):
    """Real Vast or the simulator, as the rest of vastnb sees it."""

    #: "vast" or "sim": what ``Client.backend`` says.
    name: str
    #: True when every price and figure is the simulator's.
    simulated: bool = False
    #: Seconds between status checks while a box starts (the simulator answers in ms).
    poll: float = 5.0
    #: The embedded simulator, on the sim backend (to move its clock or inject faults).
    simulator: Simulator | None = None

    def __init__(self, api: VastAPI, home: Path, box: BoxOptions | None = None) -> None:
        self.api = api
        self.home = home  # VASTNB_HOME: known_hosts and the state store live here
        self.box = box or BoxOptions()
        self._keys: KeyPair | None = None

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.api.base_url}>"

    @abstractmethod
    def reachable(self, instance: Instance) -> bool:
        """Whether a running instance can take connections yet."""

    @abstractmethod
    def transport(self, instance_id: int) -> Transport:
        """How to reach instance ``instance_id``'s worker."""

    @abstractmethod
    def self_destruct(self) -> SelfDestruct:
        """How this backend's boxes destroy themselves."""

    def worker_home(self) -> str:
        """Where the worker lives on a box (``{id}`` is the instance id): the boot switch
        and the transport must agree on it."""
        return self.box.home

    def ensure_key(self) -> KeyPair:
        """vastnb's key pair, registered on the account (Vast installs it on new instances)."""
        if self._keys is None:
            keys = ensure_keypair()
            ensure_registered(self.api, keys)
            self._keys = keys
        return self._keys

    def close(self) -> None:
        self.api.close()


class SSHBackend(Backend):
    """Boxes reached by OpenSSH at the address the API reports: real Vast, or a
    simulator whose instances point at a real sshd."""

    def reachable(self, instance: Instance) -> bool:
        return instance.ssh_address() is not None

    def transport(self, instance_id: int) -> Transport:
        instance = self.api.show_instance(instance_id)
        address = instance.ssh_address() if instance else None
        if address is None:
            state = instance.actual_status.value if instance else "gone"
            raise InstanceGoneError(f"instance {instance_id} has no SSH address ({state}): start it first.")
        hosts = private_folder(self.home / "known_hosts", what="the known_hosts folder")
        return SSHTransport(
            host=address[0],
            port=address[1],
            user=self.box.ssh_user,
            identity=self.ensure_key().private,
            known_hosts=hosts / str(instance_id),
            control_dir=control_dir(),
            home=self.worker_home().format(id=instance_id),
            python=self.box.python,
            options=list(self.box.ssh_options),
        )


def control_dir() -> Path:
    """A short folder for OpenSSH ControlMaster sockets (a socket path must stay under
    ~100 bytes, and VASTNB_HOME may be deep)."""
    folder = Path(tempfile.gettempdir()) / f"vastnb-{os.getuid()}"
    return private_folder(folder, what="the SSH control-socket folder")
