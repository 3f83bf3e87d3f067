"""Reaching a simulated box: a local worker process, in the box's own environment, that
answers only while its instance runs (as an SSH port with nothing behind it refuses)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from vastnb.offload.transport import LocalTransport
from vastnb.sim.boxes import LocalBox

__all__ = ["SimBoxTransport", "local_transport"]


@dataclass
class SimBoxTransport(LocalTransport):
    """A local worker that answers only while ``power_mark`` exists (the box runs)."""

    power_mark: Path = field(kw_only=True)
    instance_id: int = field(kw_only=True)

    retry_patterns = ("Connection refused",)

    def argv(self, boot_args: list[str]) -> list[str]:
        argv = super().argv(boot_args)
        # Checked by the process itself, so a box powered off after this argv was built
        # still refuses, as a dead sshd would.
        guard = (
            f"import os, sys\nif not os.path.exists({str(self.power_mark)!r}):\n"
            f"    sys.exit('ssh: connect to simulated instance {self.instance_id}: Connection refused')\n"
        )
        code = argv.index("-c") + 1
        argv[code] = guard + argv[code]
        return argv

    def describe(self) -> str:
        return f"simulated instance {self.instance_id} (local worker in {self.home})"


def local_transport(box: LocalBox) -> SimBoxTransport:
    """How to reach simulated ``box``'s worker: its own python, with its environment."""
    return SimBoxTransport(
        home=box.root,
        workdir=box.workdir,
        python=str(box.python),
        environment=dict(box.env),
        power_mark=box.power_mark,
        instance_id=box.instance_id,
    )
