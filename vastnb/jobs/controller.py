"""The controller: the process that runs a market's jobs, outside any notebook.

One per ``VASTNB_HOME`` and market, guarded by a lock file (a second one exits at once).
The first ``vast.submit(...)`` starts it detached from the kernel (``ControllerProcess``),
or ``vastnb controller run`` runs it in the foreground (a server, CI). It:

1. ends every box of a finished job that a killed controller left running;
2. adopts every active job from the state store (a :class:`~vastnb.jobs.runner.JobRunner`
   thread each, which finds the job's box and task again);
3. claims queued jobs (priority, then first come, within the limits) and runs them;
4. exits after ``idle_exit_s`` with nothing queued or active (when started on demand).

Stopped (SIGTERM, ``vastnb controller stop``), it leaves the jobs' boxes working: the
next controller adopts them, and each box's watchdog ends it if none ever does.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from vastnb.base.private import private_folder
from vastnb.base.procs import alive, process_token
from vastnb.errors import ConfigError, VastError
from vastnb.jobs.artifacts import JobFiles
from vastnb.jobs.queue import JobQueue, Limits
from vastnb.jobs.runner import JobRunner
from vastnb.jobs.watch import Timing
from vastnb.lifecycle.fleet import Fleet, parse_label
from vastnb_worker.files import write_private

__all__ = ["Controller", "ControllerProcess", "ControllerSettings", "Timing", "Limits", "controller_files"]


@dataclass(frozen=True)
class ControllerFiles:
    """Where the controller of one market keeps its lock, its pid and its log."""

    folder: Path
    key: str

    @property
    def lock(self) -> Path:
        return self.folder / f"{self.key}.lock"

    @property
    def pid(self) -> Path:
        return self.folder / f"{self.key}.json"

    @property
    def log(self) -> Path:
        return self.folder / f"{self.key}.log"

    @property
    def settings(self) -> Path:
        return self.folder / f"{self.key}.settings.json"


def controller_files(home: Path, url: str) -> ControllerFiles:
    folder = Path(home) / "controller"
    private_folder(folder, what="the job controller's folder")
    return ControllerFiles(folder, "ctl-" + hashlib.sha256(url.encode()).hexdigest()[:12])


@dataclass(frozen=True)
class ControllerSettings:
    """How a controller works: its timing, its limits, when it exits by itself."""

    timing: Timing = field(default_factory=Timing)
    limits: Limits = field(default_factory=Limits)
    tick_s: float = 1.0  # how often the queue is looked at
    idle_exit_s: float | None = None  # exit after this long with no queued or active job

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ControllerSettings:
        """Settings as :meth:`to_dict` wrote them (a settings file); unknown keys are refused."""
        try:
            limits = dict(data.get("limits") or {})
            return cls(
                timing=Timing(**dict(data.get("timing") or {})),
                limits=Limits(limits.get("total"), limits.get("per_profile")),
                **{k: v for k, v in data.items() if k not in ("timing", "limits")},
            )
        except TypeError as exc:
            raise ConfigError(f"bad controller settings: {exc}") from None


class Controller:
    """Runs the jobs of ``fleet``'s market (see the module doc)."""

    def __init__(
        self,
        fleet: Fleet,
        home: Path,
        settings: ControllerSettings | None = None,
        *,
        every_poll: Sequence[Callable[[], object]] = (),
    ) -> None:
        self.fleet, self.home = fleet, Path(home)
        self.settings = settings or ControllerSettings()
        self.every_poll = list(every_poll)  # checks run each poll_s (the budgets': vastnb.costs)
        self.queue = JobQueue(fleet.store, fleet.url)
        self.files = controller_files(self.home, fleet.url)
        self.runners: dict[int, JobRunner] = {}
        self.stopping = threading.Event()

    def log(self, message: str) -> None:
        print(f"{time.strftime('%Y-%m-%d %H:%M:%S')} {message}", file=sys.stderr, flush=True)

    def run(self) -> None:
        """Run until :attr:`stopping` is set (SIGTERM sets it in the foreground command).
        Raises :class:`~vastnb.errors.ConfigError` if another controller runs."""
        with self._lock():
            controller = self.fleet.session_id
            write_private(
                str(self.files.pid),
                json.dumps({"pid": os.getpid(), "token": process_token(os.getpid()), "id": controller}),
            )
            self.log(f"controller {controller} (pid {os.getpid()}) runs the jobs of {self.fleet.url}")
            self.end_leftovers()
            idle_since = time.monotonic()
            next_poll = 0.0
            while not self.stopping.is_set():
                if time.monotonic() >= next_poll:
                    next_poll = time.monotonic() + self.settings.timing.poll_s
                    self._poll()
                busy = self._step(controller)
                if busy:
                    idle_since = time.monotonic()
                elif (
                    self.settings.idle_exit_s is not None and time.monotonic() - idle_since > self.settings.idle_exit_s
                ):
                    self.log("nothing to do: exiting")
                    break
                self.stopping.wait(self.settings.tick_s)
            self.stopping.set()
            for runner in self.runners.values():
                runner.join(timeout=30)
            self.files.pid.unlink(missing_ok=True)

    def _poll(self) -> None:
        for check in self.every_poll:
            try:
                check()
            except Exception as exc:  # noqa: BLE001 - a failing check is told, and tried again next poll
                self.log(f"{getattr(check, '__qualname__', check)} failed: {type(exc).__name__}: {exc}")

    def _step(self, controller: str) -> bool:
        """Adopt active jobs without a runner, claim queued ones; whether any job is active."""
        self.runners = {i: r for i, r in self.runners.items() if r.is_alive()}
        for job in self.queue.active():
            if job.id not in self.runners:
                self._start(job.id, controller)
        while claimed := self.queue.claim(controller, self.settings.limits):
            self.log(f"job {claimed.id} ({claimed.name}) claimed")
            self._start(claimed.id, controller)
        return bool(self.runners)

    def _start(self, job_id: int, controller: str) -> None:
        runner = JobRunner(
            self.queue,
            self.fleet,
            JobFiles(self.home, job_id),
            job_id,
            controller=controller,
            timing=self.settings.timing,
            stopping=self.stopping,
            log=self.log,
        )
        self.runners[job_id] = runner
        runner.start()

    def end_leftovers(self) -> None:
        """Destroy what a killed controller left: the boxes of jobs that are final, and the
        instances the market labels as a dead controller's that no row records (killed
        between a create's answer and its row)."""
        final = {job.id for job in self.queue.jobs() if job.state.final}
        doomed = {
            r.id: f"of finished job {r.job}" for r in self.fleet.store.instances(self.fleet.url) if r.job in final
        }
        controllers = self.queue.controllers() - {self.fleet.session_id}
        try:
            entries = self.fleet.entries() if controllers else []
        except VastError as exc:
            self.log(f"listing the market's instances failed ({exc}); its labels are looked at next start")
            entries = []
        for entry in entries:
            session = (parse_label(entry.instance.label) or ("", None))[1]
            if entry.rental is None and entry.orphan and session in controllers:
                doomed[entry.instance.id] = f"labelled by controller {session}, never recorded"
        for instance_id, why in doomed.items():
            try:
                self.fleet.destroy(instance_id, f"left by a controller: {why}")
                self.log(f"instance {instance_id} {why}: destroyed")
            except VastError as exc:
                self.log(f"instance {instance_id} {why}: destroy failed: {exc}")

    @contextlib.contextmanager
    def _lock(self) -> Iterator[None]:
        with open(self.files.lock, "a+") as lock:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise ConfigError(
                    f"a controller already runs the jobs of {self.fleet.url} from {self.home} "
                    "(`vastnb controller status` says which): one is enough."
                ) from None
            yield


class ControllerProcess:
    """The controller of a market, seen from outside: is it running, start it, stop it.
    ``settings()`` is what one started from here runs with (the settings file of
    ``vastnb controller run --settings``), ``env()`` what goes into its environment."""

    def __init__(
        self,
        home: Path,
        url: str,
        settings: Callable[[], Mapping[str, Any]] = dict,
        env: Callable[[], Mapping[str, str]] = dict,
    ) -> None:
        self.home, self.url = Path(home), url
        self.files = controller_files(self.home, url)
        self._settings, self._env = settings, env

    def ensure(self) -> bool:
        """Start one unless one runs; True if this call started it."""
        return self.start(self._settings(), self._env())

    def status(self) -> dict[str, Any]:
        """``running``, its ``pid`` and ``id``, and where its ``log`` is."""
        info: dict[str, Any] = {"running": False, "pid": None, "id": None, "log": str(self.files.log)}
        try:
            recorded = json.loads(self.files.pid.read_text())
        except (OSError, ValueError):
            return info
        if isinstance(recorded, dict) and alive(int(recorded.get("pid", 0)), recorded.get("token")):
            info.update(running=True, pid=int(recorded["pid"]), id=recorded.get("id"))
        return info

    def start(self, settings: Mapping[str, Any], env: Mapping[str, str] | None = None) -> bool:
        """Start one detached (``python -m vastnb controller run --settings FILE``) unless
        one runs; True if this call started it. ``settings`` go to that file."""
        if self.status()["running"]:
            return False
        write_private(str(self.files.settings), json.dumps(dict(settings), default=str))
        with open(self.files.log, "ab") as log:
            subprocess.Popen(
                [sys.executable, "-m", "vastnb", "controller", "run", "--settings", str(self.files.settings)],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                start_new_session=True,  # no Ctrl-C, no kernel restart reaches it
                env={**os.environ, **(env or {})},
                cwd=self.home,
            )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.status()["running"]:
                return True
            time.sleep(0.05)
        raise ConfigError(f"the job controller did not start within 60 s: its log is {self.files.log}")

    def stop(self, timeout: float = 60.0) -> bool:
        """Stop it (SIGTERM) and wait; its jobs' boxes keep working. False if none ran."""
        info = self.status()
        if not info["running"]:
            return False
        pid = info["pid"]
        token = process_token(pid)
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and alive(pid, token):  # until the process is gone, not its pid file
            time.sleep(0.05)
        return True
