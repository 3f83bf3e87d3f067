"""The simulated instances' machines: real worker processes on this machine.

Each simulated instance has a folder (its "disk") under ``<home>/sim/boxes/<id>/``. While
the instance is running the folder holds a ``powered`` mark and the worker can be
reached, and the instance's ``onstart`` runs as its container's would (the boot switch
that vastnb sends there guards it). A stopped, exited or offline instance refuses
connections as an SSH port with nothing behind it would, and its processes are ended as a
container's would be. A destroyed instance loses its folder. The worker daemon outlives
the kernel that started it, as a rented machine does, so a restarted kernel finds its
instances still there.

A box is a machine of its own (:class:`LocalBox`): its own ``$HOME`` and its own Python,
a virtual environment made at its first start and layered on the notebook's packages, so
what code on the box installs lands on the box and goes with it. How the orchestrator
reaches a box is the backends' business (``vastnb.backends.local``): the simulator
imports nothing of the orchestrator's but the shared contract (``vastnb.base``,
``vastnb.errors``) and the box-side package ``vastnb_worker``.
"""

from __future__ import annotations

import os
import shutil
import signal
import site
import subprocess
import sys
import sysconfig
import threading
import time
import venv
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace

from vastnb.base.procs import alive, process_token
from vastnb_worker.relay import PID_NAME

__all__ = ["Boxes", "Gpus", "LocalBox"]

POWER = "powered"
LAYER = "_vastnb_notebook_env.pth"  # in the box venv's site-packages: the notebook's packages, after the box's own
ONSTART_GROUP = "onstart.pgid"  # the process group the container's onstart runs in
STOP_GRACE = 5.0  # seconds between SIGTERM and SIGKILL, as `docker stop` gives (10 s)
KILL_WAIT = 5.0  # the most seconds kill_worker waits for the killed worker to be gone


@dataclass(frozen=True)
class LocalBox:
    """One simulated instance's machine, as the orchestrator's backend needs to reach it."""

    instance_id: int
    root: Path  # the box's folder, its "disk"
    home: Path  # $HOME on the box
    workdir: Path
    python: Path  # the box's own interpreter, in its own virtual environment
    env: dict[str, str] = field(hash=False)  # an SSH login's environment on the box
    power_mark: Path  # exists while the box is powered on

    @property
    def env_dir(self) -> Path:
        """The box's virtual environment (``sys.prefix`` on the box)."""
        return self.python.parent.parent


@dataclass(frozen=True)
class Gpus:
    """A simulated machine's GPUs, as the instance record has them. The box gets an
    ``nvidia-smi`` on its PATH that reports them (its ranks still run on the CPU)."""

    name: str
    count: int
    memory_mb: int  # per GPU (the record's gpu_ram, in MiB as nvidia-smi counts)
    driver: str | None = None
    cuda: float | None = None

    def nvidia_smi(self) -> str:
        """The ``nvidia-smi`` script: GPU rows for a ``--query-gpu`` (in the order of the
        worker's health query), else a header with the driver and CUDA versions."""
        row = f'"$i, {self.name}, {self.memory_mb}, 0, 0, 34"'
        return (
            "#!/bin/sh\n# vastnb's simulator: this machine's GPUs, as nvidia-smi reports them.\n"
            'case "$*" in\n'
            f'  *--query-gpu=*) i=0; while [ "$i" -lt {self.count} ]; do echo {row}; i=$((i + 1)); done ;;\n'
            f'  *) echo "| NVIDIA-SMI (simulated)  Driver Version: {self.driver or "?"}  '
            f'CUDA Version: {self.cuda or "?"} |" ;;\n'
            "esac\n"
        )


class Boxes:
    """The machines behind a simulated market's instances, under ``root``."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def home(self, instance_id: int) -> Path:
        return self.root / str(instance_id)

    def local(self, instance_id: int) -> LocalBox:
        """Instance ``instance_id``'s machine (its venv is made when it first powers on;
        a running box powered on by an older vastnb, without one, gets it now)."""
        root = self.home(instance_id)
        env_dir, home = root / "venv", root / "home"
        box = LocalBox(
            instance_id=instance_id,
            root=root,
            home=home,
            workdir=root / "workspace",
            python=env_dir / "bin" / "python",
            env=_login_env(env_dir, home),
            power_mark=root / POWER,
        )
        if box.power_mark.exists():
            _furnish(box)
        return box

    def power_on(
        self, instance_id: int, *, onstart: str | None = None, key: str = "", gpus: Gpus | None = None
    ) -> None:
        """The container starts: connections are taken, and ``onstart`` runs as Vast runs
        it, a shell command in the background with the instance's id and own key in
        ``CONTAINER_ID`` and ``CONTAINER_API_KEY``, in the box's environment (its
        ``python3`` is the box's own). The box's venv is made at its first start; its
        ``nvidia-smi`` reports ``gpus``."""
        box = self.local(instance_id)
        box.root.mkdir(parents=True, exist_ok=True)
        # A container starts with none of its processes from before its stop (one still in
        # its stop's grace period is ended now: a stop completes before a start).
        _end_group(box.root, 0.0)
        _furnish(box)
        if gpus is not None and gpus.count > 0:
            smi = box.env_dir / "bin" / "nvidia-smi"
            smi.write_text(gpus.nvidia_smi())
            smi.chmod(0o755)
        box.power_mark.touch()
        if onstart:
            _end_onstart(box.root, instance_id)  # a container runs one onstart at a time
            env = {**box.env, "CONTAINER_ID": str(instance_id), "CONTAINER_API_KEY": key}
            with open(box.root / "onstart.log", "ab") as log:
                shell = subprocess.Popen(
                    ["/bin/sh", "-c", onstart],
                    cwd=box.root,
                    env=env,
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=log,
                    start_new_session=True,
                )
            (box.root / ONSTART_GROUP).write_text(str(shell.pid))
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

    def kill_worker(self, instance_id: int) -> int | None:
        """The box's worker daemon dies at once (SIGKILL to its process group: the daemon
        and its tasks' subprocesses), as an out-of-memory kill would end it; the box stays
        powered, and nothing on it starts a new worker (the boot switch only watches), so
        it stays dead until a new connection starts one. The killed daemon's pid, once it
        is gone; None if no worker of this box was running."""
        home = self.home(instance_id)
        try:
            pid = int((home / PID_NAME).read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return None  # no worker ever started there
        token = process_token(pid)
        if token is None or not alive(pid, token) or not _serves(pid, home):
            return None  # it died already (the pid file outlives a killed daemon)
        _signal_group(pid, signal.SIGKILL)
        deadline = time.monotonic() + KILL_WAIT
        while alive(pid, token) and time.monotonic() < deadline:
            time.sleep(0.01)
        return pid


def _serves(pid: int, home: Path) -> bool:
    """Whether process ``pid`` is the worker daemon of the box at ``home`` (its command
    line says ``daemon --home <home>``), not a later process given the same pid. Where
    the command line cannot be read, the pid file is trusted."""
    try:
        argv = [a.decode(errors="replace") for a in Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")]
    except OSError:
        return not Path("/proc/self").exists()  # no /proc (macOS): the pid file is all there is
    at = argv.index("--home") + 1 if "--home" in argv else len(argv)
    return "daemon" in argv and at < len(argv) and os.path.abspath(argv[at]) == os.path.abspath(home)


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
            if int(stat.read_text().rsplit(")", 1)[1].split()[2]) == group and mark in (
                stat.parent / "environ"
            ).read_bytes().split(b"\0"):
                _signal_group(group, signal.SIGKILL)
                return
        except (OSError, ValueError, IndexError):
            continue


def _signal_group(pid: int, sig: signal.Signals) -> None:
    try:
        os.killpg(pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def _login_env(env_dir: Path, home: Path) -> dict[str, str]:
    """A box's whole environment, as an SSH login on a rented box has it: the box venv's
    ``bin`` first on PATH, the box's HOME, a locale; nothing of the notebook's (no keys,
    not the notebook venv's ``bin``)."""
    notebook = {str(Path(sys.prefix) / "bin")} if sys.prefix != sys.base_prefix else set()
    if os.environ.get("VIRTUAL_ENV"):
        notebook.add(str(Path(os.environ["VIRTUAL_ENV"]) / "bin"))
    path = [p for p in os.environ.get("PATH", "/usr/bin:/bin").split(os.pathsep) if p and p not in notebook]
    return {
        "PATH": os.pathsep.join([str(env_dir / "bin"), *path]),
        "HOME": str(home),
        "LANG": "C.UTF-8",
        "VIRTUAL_ENV": str(env_dir),
    }


def _purelib(env_dir: Path) -> Path:
    """The site-packages folder of the virtual environment at ``env_dir``."""
    scheme = "venv" if "venv" in sysconfig.get_scheme_names() else "posix_prefix"
    return Path(sysconfig.get_path("purelib", scheme, vars={"base": str(env_dir), "platbase": str(env_dir)}))


def _furnish(box: LocalBox) -> None:
    """The box's venv and HOME, if not made yet."""
    if not (_purelib(box.env_dir) / LAYER).exists():  # written last: the venv is whole
        _BoxVenv(clear=True, symlinks=True, with_pip=False).create(box.env_dir)
    box.home.mkdir(exist_ok=True)


class _BoxVenv(venv.EnvBuilder):
    """A box's own virtual environment, layered on the notebook's: made in process and
    without pip (milliseconds, where ``python -m venv`` with pip takes seconds). The
    notebook's site-packages (their .pth files too) come after the box's own, so what
    the box installs wins, and ``python -m pip`` (the notebook's pip, seen through the
    layer) installs into the box's venv; ``pip`` on the box's PATH runs just that."""

    def post_setup(self, context: SimpleNamespace) -> None:
        bin_dir = Path(context.bin_path)
        for name in ("pip", "pip3"):
            (bin_dir / name).write_text('#!/bin/sh\nexec "$(dirname "$0")/python" -m pip "$@"\n')
            (bin_dir / name).chmod(0o755)
        layers = [d for d in site.getsitepackages() if os.path.isdir(d)]
        line = "import site; " + "; ".join(f"site.addsitedir({d!r})" for d in layers)
        (_purelib(Path(context.env_dir)) / LAYER).write_text(line + "\n")
