"""Offload over a WAN: what each step costs in round trips, and bulk against the link's ceiling.

Run: ``python bench/wan.py`` (needs OpenSSH's sshd, which ``tests/sshd.py`` installs and runs
on 127.0.0.1 as root; about 5 minutes). A delaying proxy (``tests/wanproxy.py``, in a child
process) sits in front of that sshd, and vastnb's :class:`SSHTransport` points at the proxy.
Three settings: +0 ms (the proxy, no delay, no cap), +100 ms RTT at 100 Mbit/s, and +20 ms
RTT at 1 Gbit/s. Each figure is given

- in round trips: (its time at the setting - its time at +0) / RTT: what the added
  latency costs it, the machine's own costs (process starts, pickling) taken out;
- against the bare tool through the same proxy: ``ssh host true`` on a fresh connection for
  connecting and first calls (and the round trips added on top of it), the same over the
  shared ControlMaster connection for a second session, a one-byte echo over that
  connection for a no-op call; and for bulk, the fraction of the raw ceiling vastnb
  reaches: the same bytes through ``ssh host cat > /dev/null`` over the same connection
  (``head -c`` there and back for the round trip), timed from when the remote command is
  ready, as a session's calls are (the SSH channel's opening is not bulk).

Figures: fresh ``ssh host true``; an SSH connect with vastnb's options (it also starts the
ControlMaster); the first call on a fresh connection, cold (the worker is shipped), warm
(cached on the box, no worker running) and with the worker still running (a reconnect); a
second Session over the shared ControlMaster; a no-op call (median); a ``%%vast run``-like
cell pushing 64 MiB; a 256 MiB numpy array there and back. The settings take turns, fresh
connection by fresh connection, so that the machine's load drifts alike for all, and each
one-off figure keeps its best of five (of 15 for the bare tools; the noise of a busy
machine only ever adds). Reading the round trips: the +0 times are a few hundred ms of
CPU (ssh's key exchange, sshd and python starting), and the part of it that runs while
the other side waits on the network is on the critical path at +0 only, so the figures
undercount (``ssh host true`` is 8 exchanges, and reads as about 7 at 100 ms RTT); at
20 ms RTT a busy machine's noise is worth a few round trips. "RTTs over bare" compares
like with like and is the steadier figure; ``ssh -v`` and timestamps on the session's
steps count the exchanges exactly.

What a loopback proxy hides: TCP never sees the delay (the proxy's sockets are loopback
ones, acknowledged at once), so there is no slow start, congestion window or loss, and
a fresh connection's TCP handshake is free (one more round trip on a real path, for the
bare tool and vastnb alike: ``ssh host true`` is 8 round trips here, 9 there). On a
real path a fresh connection starts with about 10 segments (14 KiB) in flight and doubles
each round trip: the cold first call's 120 KiB worker costs some 3 round trips more there,
and bulk pays slow start (and any loss) too. SSH's own channel window (2 MiB in OpenSSH)
does see the delay, as on a real path: it caps one channel at 2 MiB per RTT (100 MiB/s
at 20 ms, just under 1 Gbit/s). The machine's CPUs are shared by every process here (ssh,
sshd, the proxy, the worker), so the +0 bulk figures are CPU-bound. The box's shell does
not read its startup file (see :func:`skip_shell_startup`), and runs this venv's python.
"""

from __future__ import annotations

import contextlib
import functools
import os
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from vastnb.offload import Session, SSHTransport
from vastnb.offload.zipapp import worker_zipapp

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))  # the tests' sshd, and the proxy

from sshd import SSHServer, ensure_openssh_server
from wanproxy import spawn

ARRAY = np.arange(32 * 1024 * 1024, dtype=np.float64)  # 256 MiB, as in bench/offload.py
PUSH = np.random.default_rng(0).bytes(64 << 20)  # the 64 MiB a cell pushes
ECHO = "import os\nwhile True:\n    b = os.read(0, 1)\n    if not b: break\n    os.write(1, b)\n"
PYTHON = sys.executable  # the box's python: this venv's (numpy, for the array), by its path
MIB = 2**20
REPS = 5  # rounds of fresh connections, the settings taking turns (each figure keeps its best)
BARE_REPS = 3  # the bare tools' fresh connections per round: cheap, and the yardstick of the rest


@dataclass
class Setting:
    name: str
    delay: float  # seconds one way
    rate: float | None  # bytes/s per direction, None: no cap
    calls: int  # no-op calls and echoes (the median is kept)
    bulk64: int  # 64 MiB pushes, and their raw ceilings (the best is kept)
    bulk256: int  # 256 MiB round trips, and their raw ceilings (the best is kept)

    @property
    def rtt(self) -> float:
        return 2 * self.delay


SETTINGS = [
    Setting("+0 ms", 0.0, None, calls=100, bulk64=2, bulk256=2),
    Setting("+100 ms RTT, 100 Mbit/s", 0.050, 100e6 / 8, calls=15, bulk64=2, bulk256=1),
    Setting("+20 ms RTT, 1 Gbit/s", 0.010, 1e9 / 8, calls=30, bulk64=3, bulk256=2),
]

# (key, label, baseline key or None, bulk bytes or 0)
FIGURES = [
    ("ssh_true", "bare `ssh host true`, fresh connection", None, 0),
    ("connect", "SSH connect, vastnb's options (+ControlMaster)", "ssh_true", 0),
    ("cold", "first call, fresh conn., cold (ships worker)", "ssh_true", 0),
    ("warm", "first call, fresh conn., warm (cached)", "ssh_true", 0),
    ("reconnect", "first call, fresh conn., worker running", "ssh_true", 0),
    ("mux_true", "bare `ssh host true` over the ControlMaster", None, 0),
    ("second", "second Session + first call, shared master", "mux_true", 0),
    ("echo", "bare 1-byte echo over the ControlMaster", None, 0),
    ("noop", "no-op call (median)", "echo", 0),
    ("cat64", "raw `cat > /dev/null`, 64 MiB", None, len(PUSH)),
    ("push64", "cell pushing 64 MiB (run_cell push=)", "cat64", len(PUSH)),
    ("raw256", "raw `head -c`, 256 MiB there and back", None, 2 * ARRAY.nbytes),
    ("array256", "256 MiB array there and back (call)", "raw256", 2 * ARRAY.nbytes),
]
LABELS = {key: label for key, label, _, _ in FIGURES}
BASE = {key: base for key, _, base, _ in FIGURES}
BULK = {key: size for key, _, _, size in FIGURES}


def timed(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def run(argv: list[str]) -> None:
    """Run a command to its end; raise with its stderr if it fails."""
    with tempfile.TemporaryFile() as err:  # a file: a backgrounded ControlMaster may hold a pipe
        process = subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err, timeout=120)
        if process.returncode != 0:
            err.seek(0)
            raise RuntimeError(f"{shlex.join(argv[-2:])} failed ({process.returncode}): {err.read().decode()[-500:]}")


def read_exactly(fd: int, n: int) -> None:
    """Read ``n`` bytes from ``fd`` into one reused buffer (the bytes are dropped)."""
    buffer = memoryview(bytearray(min(n, 1 << 20)))
    while n:
        got = os.readv(fd, [buffer[: min(n, len(buffer))]])
        if not got:
            raise RuntimeError(f"the stream ended {n} bytes short")
        n -= got


def raw_seconds(argv: list[str], data: bytes | memoryview, back: int = 0) -> float:
    """``data`` through ``cat > /dev/null`` on the far side of ``argv`` (or, with ``back``,
    through ``head -c``, and that many bytes of ``head -c /dev/zero`` back), timed from the
    moment the remote command is ready to the end of its answer."""
    size = len(memoryview(data).cast("B"))
    remote = (
        f"echo r; head -c {size} > /dev/null; head -c {back} /dev/zero" if back else "echo r; cat > /dev/null; echo d"
    )
    process = subprocess.Popen([*argv, remote], stdin=subprocess.PIPE, stdout=subprocess.PIPE, bufsize=0)
    assert process.stdin and process.stdout
    read_exactly(process.stdout.fileno(), 2)  # "r\n": the channel is open and the command runs
    start = time.perf_counter()
    process.stdin.write(data)
    if back:
        read_exactly(process.stdout.fileno(), back)
    else:
        process.stdin.close()
        read_exactly(process.stdout.fileno(), 2)  # "d\n": every byte reached cat
    elapsed = time.perf_counter() - start
    process.stdin.close()
    if process.wait(timeout=60) != 0:
        raise RuntimeError(f"{remote!r} failed ({process.returncode})")
    return elapsed


def echo_median(argv: list[str], calls: int) -> float:
    """One byte there and back through a bare process on the far side of ``argv``: the median."""
    process = subprocess.Popen(
        [*argv, shlex.join([PYTHON, "-c", ECHO])], stdin=subprocess.PIPE, stdout=subprocess.PIPE, bufsize=0
    )
    assert process.stdin and process.stdout
    stdin, stdout = process.stdin, process.stdout

    def echo() -> None:
        stdin.write(b"x")
        stdout.read(1)

    try:
        for _ in range(3):
            echo()
        return statistics.median(timed(echo) for _ in range(calls))
    finally:
        stdin.close()
        process.wait()


def quiet(stream: str, text: str) -> None:
    """The sessions' output goes nowhere (the calls print nothing anyway)."""


def skip_shell_startup(server: SSHServer) -> None:
    """Point the box's HOME at an empty folder (sshd's ``SetEnv``), so that the user's shell
    reads no startup file: bash reads ``~/.bashrc`` even for ``ssh host command``, and
    this machine's (pyenv's init) costs a quarter of a second of CPU per command, which
    cancels out of the round trips but drowns them in noise."""
    home = server.workdir / "home"
    home.mkdir(exist_ok=True)
    with server.config.open("a") as config:
        config.write(f"SetEnv HOME={home}\n")


class Route:
    """One setting's way to the box: its proxy, the bare ssh and vastnb's transport
    through it, and the times measured so far."""

    def __init__(self, setting: Setting, proxy_port: int, server: SSHServer, scratch: Path) -> None:
        self.setting = setting
        self.box_home = scratch / "box"  # one box: the settings take turns
        known_hosts = scratch / "known_hosts"
        self.bare = server.ssh_args(known_hosts)
        self.bare[self.bare.index("-p") + 1] = str(proxy_port)
        self.bare[-1:-1] = ["-o", "ControlMaster=no", "-o", "ControlPath=none"]
        self.transport = SSHTransport(
            host=server.host,
            port=proxy_port,
            user=server.user,
            identity=server.client_key,
            known_hosts=known_hosts,
            control_dir=Path(tempfile.mkdtemp(prefix="cm", dir=scratch)),
            home=str(self.box_home),
            python=PYTHON,
            options=["-F", "/dev/null"],
        )
        self.mux = ["ssh", *self.transport.ssh_options(), f"{server.user}@{server.host}", "--"]
        self.got: dict[str, list[float]] = {key: [] for key in LABELS}
        run([*self.bare, "true"])  # records the host key under this port, and warms the path

    def first_call(self) -> tuple[Session, float]:
        session = Session(self.transport, on_output=quiet)
        return session, timed(lambda: session.call(int))

    def fresh(self) -> None:
        """One of each figure that needs a fresh connection, worker or session."""
        got, transport = self.got, self.transport
        for _ in range(BARE_REPS):
            got["ssh_true"].append(timed(lambda: run([*self.bare, "true"])))
            transport.close_master()
            got["connect"].append(timed(lambda: run([*self.mux, "true"])))  # also starts the master
            transport.close_master()
        shutil.rmtree(self.box_home, ignore_errors=True)  # no worker cached, none running (the last was stopped)
        session, seconds = self.first_call()
        got["cold"].append(seconds)
        session.restart_worker()  # the worker stops; its zipapp stays cached
        transport.close_master()
        session, seconds = self.first_call()
        got["warm"].append(seconds)
        session.close()
        transport.close_master()  # the worker runs on: a reconnect (a kernel restarted, say)
        session, seconds = self.first_call()
        got["reconnect"].append(seconds)
        for _ in range(BARE_REPS):
            got["mux_true"].append(timed(lambda: run([*self.mux, "true"])))
        second, seconds = self.first_call()
        got["second"].append(seconds)
        second.close()
        session.restart_worker()
        transport.close_master()

    def steady(self) -> None:
        """No-op calls and bulk, on one session."""
        got, mux = self.got, self.mux
        session, _ = self.first_call()
        got["echo"].append(echo_median(mux, self.setting.calls))
        noop = functools.partial(session.call, int)
        for _ in range(3):
            noop()
        got["noop"].append(statistics.median(timed(noop) for _ in range(self.setting.calls)))
        for _ in range(self.setting.bulk64):
            got["cat64"].append(raw_seconds(mux, PUSH))
            got["push64"].append(timed(lambda: session.run_cell("n = len(blob)", push={"blob": PUSH})))
        back: list[np.ndarray] = []
        for _ in range(self.setting.bulk256):
            got["raw256"].append(raw_seconds(mux, ARRAY.data.cast("B"), back=ARRAY.nbytes))
            got["array256"].append(timed(lambda: back.append(session.call(lambda a: a, ARRAY))))
            assert np.array_equal(back.pop(), ARRAY)
        session.restart_worker()
        self.transport.close_master()

    def results(self) -> dict[str, float]:
        """Each figure's best time (for the no-op call and the echo: the best median)."""
        return {key: min(times) for key, times in self.got.items()}


# -- the tables ----------------------------------------------------------------------------


def over_bare(key: str, setting: Setting, at: dict[str, float], zero: dict[str, float]) -> float:
    """Round trips a figure adds to its bare tool's: the gap between them, at the setting
    against at +0, over the RTT."""
    base = BASE[key]
    assert base is not None
    return ((at[key] - at[base]) - (zero[key] - zero[base])) / setting.rtt


def cells(key: str, setting: Setting, at: dict[str, float], zero: dict[str, float]) -> list[str]:
    """time, MiB/s (bulk), round trips, against the bare tool, round trips over the bare tool."""
    t, base, size = at[key], BASE[key], BULK[key]
    row = [f"{t * 1000:8.1f} ms" if t < 10 else f"{t:8.2f} s ", f"{size / MIB / t:7.1f}" if size else ""]
    row.append(f"{(t - zero[key]) / setting.rtt:6.1f}" if setting.rtt else "")
    if base is None:
        return [*row, "", ""]
    row.append(f"{at[base] / t:6.0%} of ceiling" if size else f"{t / at[base]:6.2f}x bare")
    row.append(f"{over_bare(key, setting, at, zero):+6.1f}" if setting.rtt else "")
    return row


WIDTHS = [48, 11, 7, 6, 16, 14]


def line(cells: list[str]) -> str:
    return "  " + "  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(cells, WIDTHS)))  # noqa: B905 - as many cells as widths


def table(setting: Setting, at: dict[str, float], zero: dict[str, float]) -> None:
    rtt = f", RTT {setting.rtt * 1000:g} ms" if setting.rtt else ""
    print(f"\n{setting.name}{rtt}")
    print(line(["figure", "time", "MiB/s", "RTTs", "vs bare tool", "RTTs over bare"]))
    print(line(["-" * w for w in WIDTHS]))
    for key in LABELS:
        print(line([LABELS[key], *cells(key, setting, at, zero)]))


def goals(setting: Setting, at: dict[str, float], zero: dict[str, float]) -> None:
    def rtts(key: str) -> float:
        return (at[key] - zero[key]) / setting.rtt

    checks = [
        ("no-op call <= 1.1 round trips", rtts("noop"), 1.1, "RTT"),
        ("cold first call <= bare ssh + 2 round trips", over_bare("cold", setting, at, zero), 2.0, "RTT over bare"),
        ("warm first call <= bare ssh + 1 round trip", over_bare("warm", setting, at, zero), 1.0, "RTT over bare"),
        ("second session <= 2 round trips in all", rtts("second"), 2.0, "RTT"),
    ]
    print(f"  goals at {setting.name}:")
    for text, value, limit, unit in checks:
        print(f"    {'met ' if value <= limit else 'MISS'}  {text:<46} {value:6.1f} {unit}")
    for key in ("push64", "array256"):
        base = BASE[key]
        assert base is not None
        share = at[base] / at[key]
        print(f"    {'met ' if share >= 0.9 else 'MISS'}  {LABELS[key][:36] + ' >= 90%':<46} {share:6.0%} of ceiling")


def main() -> None:
    load = os.getloadavg()[0]
    print(f"vastnb WAN bench, Python {sys.version.split()[0]}, {os.cpu_count()} CPUs, load {load:.1f}")
    started = time.monotonic()
    worker_zipapp()  # built once per process: not part of any first call
    try:
        ensure_openssh_server()
    except BaseException as exc:  # noqa: BLE001 - pytest.skip raises a BaseException
        print(f"skipped: no sshd ({exc})")
        return
    scratch = Path(tempfile.mkdtemp(prefix="vnbwan"))
    try:
        server = SSHServer(scratch / "sshd")
        skip_shell_startup(server)
        with server, contextlib.ExitStack() as proxies:
            routes = [
                Route(s, proxies.enter_context(spawn(server.port, delay=s.delay, rate=s.rate)), server, scratch)
                for s in SETTINGS
            ]
            for rep in range(REPS):  # the settings take turns: the machine's load drifts alike for all
                for route in routes:
                    route.fresh()
                print(
                    f"  fresh connections, round {rep + 1} of {REPS} ({time.monotonic() - started:.0f} s)", flush=True
                )
            for route in routes:
                route.steady()
                print(f"  calls and bulk at {route.setting.name} ({time.monotonic() - started:.0f} s)", flush=True)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    zero = routes[0].results()
    for route in routes:
        table(route.setting, route.results(), zero)
        if route.setting.rtt:
            goals(route.setting, route.results(), zero)
    print(
        "\nRTTs: (time - time at +0) / RTT. CPU that overlaps network waits counts at +0 only, so"
        "\nthese undercount (fresh `ssh true` is 8 exchanges); at 20 ms, noise is worth a few RTTs."
        f"\n({time.monotonic() - started:.0f} s in all, load now {os.getloadavg()[0]:.1f})"
    )


if __name__ == "__main__":
    main()
