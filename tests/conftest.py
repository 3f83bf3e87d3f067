"""Shared fixtures: a simulated market, and VastAPI clients talking to it two ways.

``api`` runs every test that uses it twice: over the simulator's in-process httpx
transport (``inproc``) and over real HTTP to the simulator served on 127.0.0.1
(``http``). Clients get a retry policy with small delays and a ``sleep`` that records
the waits instead of sleeping, so retry tests are fast and can check the waits.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import matplotlib.font_manager  # noqa: F401  (see below)
import pytest
from sshd import SSHServer  # tests/sshd.py: a real OpenSSH server on 127.0.0.1

from vastnb.base.secret import Secret
from vastnb.market.api import VastAPI
from vastnb.market.retry import RetryPolicy
from vastnb.sim import SimConfig, Simulator

# Importing matplotlib's font manager builds its font cache (under the real HOME: no test
# has started) while the suite is collected, before notebooks/03's kernel plots: on a fresh
# machine that kernel would otherwise print matplotlib's "building the font cache" notice
# into an output nbval compares.

# Ctrl-C as a user presses it: several tests send SIGINT to this process (a kernel's Ctrl-C)
# or to a child (the command line's), and expect KeyboardInterrupt. A shell without job
# control starts a background job (`pytest &`, `nohup pytest &`) with SIGINT ignored, and
# Python then keeps it ignored, as does every child: put Python's own handler back.
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)

#: Retries that stay well inside a test's time: about half a second, doubling.
FAST_RETRY = RetryPolicy(attempts=4, base_delay=0.5, factor=2.0, max_delay=8.0, total=60.0, jitter=0.25)
#: How long the served simulator holds a "timeout" fault before hanging up (real seconds).
TIMEOUT_DELAY = 0.5

_ACCOUNT_KEY = object()  # connect()'s default: the simulated account's own key


@pytest.fixture(autouse=True)
def isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Every test runs in its own folder, with no key, config or state of the machine's
    user: ``HOME``, the XDG config folder and ``VASTNB_HOME`` all point inside it."""
    for name in ("VAST_API_KEY", "VAST_URL", "VASTNB_BACKEND", "VASTNB_PROFILES", "VASTNB_CONFIG_DIR"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    monkeypatch.setenv("VASTNB_HOME", str(tmp_path / "vastnb"))
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.fixture
def own_cwd(isolated: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A working folder inside ``isolated`` and an empty config folder, so that files a
    test writes under ``isolated`` are not found as ``./profiles/`` by accident."""
    monkeypatch.setenv("VASTNB_CONFIG_DIR", str(isolated / "config"))
    (isolated / "cwd").mkdir()
    monkeypatch.chdir(isolated / "cwd")
    return isolated / "cwd"


@pytest.fixture
def sim(tmp_path: Any) -> Simulator:
    """A fresh simulated market, its state under ``tmp_path``, no rate limits."""
    return Simulator(tmp_path, SimConfig(create_delay=1, load_delay=3))


@pytest.fixture(params=["inproc", "http"])
def kind(request: pytest.FixtureRequest) -> str:
    """How the client reaches the simulator: ``inproc`` transport or ``http`` on loopback."""
    return request.param


@pytest.fixture
def waits() -> list[float]:
    """Every wait the clients asked for, in order (nothing actually sleeps)."""
    return []


Connect = Callable[..., VastAPI]


@pytest.fixture
def connect(kind: str, waits: list[float]) -> Iterator[Connect]:
    """``connect(sim, key=..., **VastAPI kwargs)``: a client for ``sim`` over this test's
    transport. ``key`` defaults to the account's key; pass a Secret, or None for none.
    Servers are started once per simulator and everything is closed after the test."""
    stack = contextlib.ExitStack()
    urls: dict[int, str] = {}

    def make(simulator: Simulator, key: Any = _ACCOUNT_KEY, **kwargs: Any) -> VastAPI:
        secret = Secret(simulator.market.api_key) if key is _ACCOUNT_KEY else key
        kwargs.setdefault("retry", FAST_RETRY)
        kwargs.setdefault("sleep", waits.append)
        kwargs.setdefault("timeout", 10.0)
        if kind == "inproc":
            kwargs.update(base_url="http://sim.test", transport=simulator.transport())
        else:
            if id(simulator) not in urls:
                server = simulator.serve("127.0.0.1", 0, timeout_delay=TIMEOUT_DELAY).start()
                # stop() waits out the server loop's half-second poll; nothing after the
                # test needs it gone, so it stops in the background.
                stack.callback(threading.Thread(target=server.stop, name="stop-sim", daemon=True).start)
                urls[id(simulator)] = server.url
            kwargs["base_url"] = urls[id(simulator)]
        client = VastAPI(secret, **kwargs)
        stack.callback(client.close)  # callbacks run last-in first-out: clients before servers
        return client

    with stack:
        yield make


@pytest.fixture
def api(connect: Connect, sim: Simulator) -> VastAPI:
    """A client with the account's key, over ``inproc`` and over ``http``."""
    return connect(sim)


@pytest.fixture(scope="session")
def sshd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SSHServer]:
    """One real OpenSSH server on 127.0.0.1 for the whole session (see tests/sshd.py).
    Shared: don't stop, restart or rotate it; use ``fresh_sshd`` for that. Skipped where
    sshd cannot be installed, failed instead in CI (``CI=true``)."""
    with SSHServer(tmp_path_factory.mktemp("sshd")) as server:
        yield server


@pytest.fixture
def fresh_sshd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SSHServer]:
    """A private real OpenSSH server for this test only, free to stop, restart or rotate."""
    with SSHServer(tmp_path_factory.mktemp("fresh-sshd")) as server:
        yield server
