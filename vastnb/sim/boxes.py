"""The simulated instances' machines: real worker processes on this machine.

Each simulated instance has a folder (its "disk") under ``<home>/sim/boxes/<id>/``. While
the instance is running the folder holds a ``powered`` mark and the worker can be
reached, and the instance's ``onstart`` runs as its container's would (the boot switch
that vastnb sends there guards it). A stopped, exited or offline instance refuses
connections as an SSH port with nothing behind it would, and its processes are ended as a
container's would be. A destroyed instance loses its folder. The worker daemon outlives
the kernel that started it, as a rented machine does, so a restarted kernel finds its
instances still there.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from vastnb_worker.relay import PID_NAME

from vastnb.offload.transport import LocalTransport
from vastnb.base.procs import process_token

__all__ = ["Boxes", "SimBoxTransport"]

POWER = "powered"
ONSTART_GROUP = "onstart.pgid"  # the process group the container's onstart runs in
STOP_GRACE = 5.0  # seconds between SIGTERM and SIGKILL, as `docker stop` gives (10 s)


class Boxes:
    """The machines behind a simulated market's instances, under ``root``."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def home(self, instance_id: int) -> Path:
        return self.root / str(instance_id)

    def transport(self, instance_id: int) -> SimBoxTransport:
        """How to reach instance ``instance_id``'s worker (refused unless it runs)."""
        home = self.home(instance_id)
        return SimBoxTransport(home=home, workdir=home / "workspace")

    def power_on(self, instance_id: int, *, onstart: str | None = None, key: str = "") -> None:
        """The container starts: connections are taken, and ``onstart`` runs as Vast runs
        it, a shell command in the background with the instance's id and own key in
        ``CONTAINER_ID`` and ``CONTAINER_API_KEY`` (its ``python3`` is this Python's)."""
        home = self.home(instance_id)
        home.mkdir(parents=True, exist_ok=True)
        (home / POWER).touch()
        if onstart:
            _end_onstart(home, instance_id)  # a container runs one onstart at a time
            bin_dir = str(Path(sys.executable).parent)
            env = {**self.transport(instance_id).env(), "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '/usr/bin:/bin')}",
                   "CONTAINER_ID": str(instance_id), "CONTAINER_API_KEY": key}  # fmt: skip
            with open(home / "onstart.log", "ab") as log:
                shell = subprocess.Popen(["/bin/sh", "-c", onstart], cwd=home, env=env, stdin=subprocess.DEVNULL,
                                         stdout=log, stderr=log, start_new_session=True)  # fmt: skip
            (home / ONSTART_GROUP).write_text(str(shell.pid))
            shell.wait()  # the shell itself returns at once: onstart's work goes on in its group

    def power_off(self, instance_id: int, *, grace: float = STOP_GRACE) -> None:
        """Refuse new connections and end the box's processes: SIGTERM (a training loop
        can checkpoint), then SIGKILL after ``grace`` seconds; what onstart started too."""
        home = self.home(instance_id)
        (home / POWER).unlink(missing_ok=True)
        _end_group(home, grace)
        _end_onstart(home, instance_id)

    def remove(self, instance_id: int) -> None:
        """Destroyed: the processes are killed at once and the disk is gone."""
        self.power_off(instance_id, grace=0.0)
        shutil.rmtree(self.home(instance_id), ignore_errors=True)

    def powered(self, instance_id: int) -> bool:
        return (self.home(instance_id) / POWER).exists()


def _end_group(home: Path, grace: float) -> None:
    try:
        pid = int((home / PID_NAME).read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return  # no worker ever started there
    token = process_token(pid)
    if token is None:
        return
    # The daemon leads its own process group (the relay starts it with setsid): the
    # group is the daemon, its tasks' subprocesses and nothing of ours.
    _signal_group(pid, signal.SIGKILL if grace <= 0 else signal.SIGTERM)
    if grace > 0:

        def kill_later() -> None:
            time.sleep(grace)
            if process_token(pid) == token:  # the same process, not a reused pid
                _signal_group(pid, signal.SIGKILL)

        threading.Thread(target=kill_later, name=f"vastnb-sim-stop-{pid}", daemon=True).start()


def _end_onstart(home: Path, instance_id: int) -> None:
    """Kill what the box's onstart left running: its process group, once a member of it
    is seen to be this box's (the group outlives the shell that led it)."""
    try:
        group = int((home / ONSTART_GROUP).read_text())
    except (OSError, ValueError):
        return
    mark = f"CONTAINER_ID={instance_id}".encode()
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            if int(stat.read_text().rsplit(")", 1)[1].split()[2]) == group and mark in (stat.parent / "environ").read_bytes().split(b"\0"):
                _signal_group(group, signal.SIGKILL)
                return
        except (OSError, ValueError, IndexError):
            continue


def _signal_group(pid: int, sig: signal.Signals) -> None:
    try:
        os.killpg(pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


@dataclass
class SimBoxTransport(LocalTransport):
    """A local worker that answers only while its simulated instance runs."""

    retry_patterns = ("Connection refused",)

    def argv(self, boot_args: list[str]) -> list[str]:
        argv = super().argv(boot_args)
        mark = str(self.home / POWER)
        # Checked by the process itself, so a box powered off after this argv was built
        # still refuses, as a dead sshd would.
        guard = (f"import os, sys\nif not os.path.exists({mark!r}):\n"
                 f"    sys.exit('ssh: connect to simulated instance {self.home.name}: Connection refused')\n")  # fmt: skip
        code = argv.index("-c") + 1
        argv[code] = guard + argv[code]
        return argv

    def env(self) -> dict[str, str]:
        """A box's own environment, as an SSH login on a rented box has it: a PATH, a
        locale and the box's HOME (its folder), nothing of the notebook's (no keys)."""
        return {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(self.home), "LANG": "C.UTF-8"}

    def describe(self) -> str:
        return f"simulated instance {self.home.name} (local worker in {self.home})"
