"""Fixtures for offload: a ``box`` session over each transport, and cleanup of what it starts.

``box`` runs every test that uses it twice: over ``LocalTransport`` (a worker subprocess on this
machine) and over ``SSHTransport`` to the session's real OpenSSH ``sshd`` on 127.0.0.1. Both
reach a worker whose files live in this test's folder, and both record the box's output as
``(stream, text)`` pairs in ``box.outputs``. After the test the box's daemon is stopped with
``restart_worker()``, anything it left behind is ended by pid, and the test's own ControlMaster
connections are closed (the one every ``box`` shares, at the end of the run): no process of a
test outlives it.

Both transports reach this machine, so a test can hand the box a file path and watch it.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import sys
import tempfile
import time
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import cloudpickle
import pytest
from sshd import SSHServer

from vastnb.offload import LocalTransport, Session, SSHTransport, Transport

#: How long a stopped daemon may take to disappear before it is killed.
EXIT_GRACE = 5.0


class Recorder(list):  # type: ignore[type-arg]
    """``on_output`` that keeps (stream, text) pairs; ``text()`` joins one stream."""

    def __call__(self, stream: str, text: str) -> None:
        self.append((stream, text))

    def text(self, stream: str | None = None) -> str:
        return "".join(t for s, t in self if stream is None or s == stream)


def daemon_pids(home: str | Path, modes: tuple[str, ...] = ("daemon", "relay")) -> list[int]:
    """The pids of worker daemons (and relays) serving ``home``, found by their argv."""
    home = os.path.abspath(str(home))
    pids = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            argv = cmdline.read_bytes().split(b"\0")
        except OSError:
            continue
        args = [a.decode(errors="replace") for a in argv]
        if "--home" in args and args.index("--home") + 1 < len(args) and args[args.index("--home") + 1] == home:
            if any(mode in args for mode in modes):
                pids.append(int(cmdline.parent.name))
    return pids


def end_processes(home: str | Path, grace: float = EXIT_GRACE) -> list[int]:
    """Wait up to ``grace`` s for ``home``'s worker processes to exit, then kill them by pid.
    Returns the pids that had to be killed."""
    deadline = time.monotonic() + grace
    while daemon_pids(home) and time.monotonic() < deadline:
        time.sleep(0.05)
    killed = daemon_pids(home)
    for pid in killed:
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGKILL)
    return killed


def stop_master(transport: SSHTransport) -> None:
    """End the ControlMaster connection of ``transport`` (ControlPersist would keep it 5 min)."""
    transport.close_master()


def control_dir() -> Path:
    """A short folder for ControlMaster sockets: a socket path must stay under ~100 bytes."""
    return Path(tempfile.mkdtemp(prefix="vnb"))


def make_ssh_transport(server: SSHServer, tmp: Path, **kwargs: Any) -> SSHTransport:
    options: dict[str, Any] = {
        "host": server.host,
        "port": server.port,
        "user": server.user,
        "identity": server.client_key,
        "known_hosts": tmp / "known_hosts",
        "home": str(tmp / "boxhome"),
        # The box's python: the test venv's, which has numpy, as a pytorch image would.
        "python": sys.executable,
        "options": ["-F", "/dev/null"],
    }
    options.update(kwargs)
    if options.get("control_dir") is None:
        options["control_dir"] = control_dir()
    return SSHTransport(**options)


def worker_home(transport: Transport) -> str:
    return str(transport.home)


class Boxes:
    """Opens sessions and transports for one test; cleans all of them up after it."""

    def __init__(self, tmp_path: Path) -> None:
        self.tmp_path = tmp_path
        self.sessions: list[Session] = []
        self.transports: list[Transport] = []
        self.masters: list[SSHTransport] = []  # ControlMasters of this test's own

    def transport(self, kind: str, server: SSHServer | None = None, **kwargs: Any) -> Transport:
        if kind == "local":
            kwargs.setdefault("home", self.tmp_path / "box")
            transport: Transport = LocalTransport(**kwargs)
        else:
            assert server is not None
            transport = make_ssh_transport(server, self.tmp_path, **kwargs)
            if "control_dir" not in kwargs:
                self.masters.append(transport)
        self.transports.append(transport)
        return transport

    def session(self, transport: Transport, **kwargs: Any) -> Session:
        recorder = Recorder()
        kwargs.setdefault("on_output", recorder)
        kwargs.setdefault("connect_timeout", 20)
        session = Session(transport, **kwargs)
        session.outputs = recorder  # type: ignore[attr-defined]
        self.sessions.append(session)
        return session

    def cleanup(self) -> None:
        for session in self.sessions:
            with contextlib.suppress(Exception):
                session.close()
        for home in {worker_home(transport) for transport in self.transports}:
            end_processes(home)
        for transport in self.masters:
            with contextlib.suppress(Exception):
                stop_master(transport)
            if transport.control_dir is not None:
                shutil.rmtree(transport.control_dir, ignore_errors=True)


@pytest.fixture
def boxes(tmp_path: Path) -> Iterator[Boxes]:
    """A factory for more sessions and transports, all cleaned up after the test."""
    made = Boxes(tmp_path)
    yield made
    made.cleanup()


@pytest.fixture(params=["local", "ssh"])
def link(request: pytest.FixtureRequest) -> str:
    """The transport kind: ``local`` (a subprocess) or ``ssh`` (OpenSSH to the test sshd)."""
    return str(request.param)


@pytest.fixture(scope="session")
def ssh_link(sshd: SSHServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Path]]:
    """One ControlMaster (and the known_hosts it was checked with) for every ``box`` of the
    run: each box has its own worker home, but the SSH handshake is paid once, as a
    session's calls after its first would pay it."""
    folder = tmp_path_factory.mktemp("ssh-link")
    shared = {"known_hosts": folder / "known_hosts", "control_dir": control_dir()}
    yield shared
    with contextlib.suppress(Exception):
        stop_master(make_ssh_transport(sshd, folder, **shared))
    shutil.rmtree(shared["control_dir"], ignore_errors=True)


@pytest.fixture
def transport(link: str, boxes: Boxes, request: pytest.FixtureRequest) -> Transport:
    """The box's transport over ``link``: each test has its own worker home."""
    if link == "local":
        return boxes.transport("local")
    return boxes.transport("ssh", request.getfixturevalue("sshd"), **request.getfixturevalue("ssh_link"))


@pytest.fixture
def box(transport: Transport, boxes: Boxes, request: pytest.FixtureRequest) -> Iterator[Session]:
    """A session with this test's box; ``box.outputs`` records what the box printed.

    The test module is pickled by value, as a notebook's own functions are: the box cannot
    import it. On teardown the box's worker is stopped with ``restart_worker()``."""
    cloudpickle.register_pickle_by_value(request.module)
    session = boxes.session(transport)
    yield session
    if daemon_pids(worker_home(transport), ("daemon",)):
        with contextlib.suppress(Exception), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "the worker restarted", where a test replaced it
            session.restart_worker()
    session.close()
