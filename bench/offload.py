"""Offload speed: call latency, big-array throughput and first-call cost, local and SSH.

Run: ``python bench/offload.py`` (needs ``pip install -e '.[bench]'``; the SSH part needs
OpenSSH's sshd, which ``tests/sshd.py`` installs and runs on 127.0.0.1 as root).
Every figure is printed with its ratio to a baseline measured in the same run:
- no-op round trip against ipyparallel's ``apply_sync`` on a local engine, and against
  a bare one-byte echo over the same kind of link (a pipe, or the same SSH connection);
- a 256 MiB float64 array sent and returned, against the raw link: the same bytes
  through ``cat > /dev/null`` (the link alone), and into a receiving buffer (what any
  transfer of an array must also pay: fresh memory on this VM costs ~1 GB/s);
- the first call on a fresh connection, cold (the box lacks the worker) and warm (it has
  it cached, but no worker runs), against starting a bare echo process over the link.
  For SSH the cold call also opens the SSH connection that later calls reuse.
"""

from __future__ import annotations

import os
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from vastnb.offload import LocalTransport, Session, SSHTransport, Transport

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

CALLS = 300
ARRAY = np.arange(32 * 1024 * 1024, dtype=np.float64)  # 256 MiB
MIB = ARRAY.nbytes / 2**20
ECHO = "import os\nwhile True:\n    b = os.read(0, 1)\n    if not b: break\n    os.write(1, b)\n"


def median_ms(fn: Callable[[], object], n: int = CALLS) -> float:
    for _ in range(20):
        fn()
    times = []
    for _ in range(n):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1000


def row(label: str, value: float, unit: str, baseline: float | None = None, base_label: str = "") -> None:
    ratio = f"{value / baseline:6.2f}x {base_label}" if baseline else ""
    print(f"  {label:<44} {value:10.3f} {unit:<6} {ratio}")


def bare_echo_ms(argv: list[str]) -> float:
    """One byte there and back through a process on the far side of the link."""
    process = subprocess.Popen(
        [*argv, shlex.join(["python3", "-c", ECHO])] if argv else [sys.executable, "-c", ECHO],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        bufsize=0,
    )
    assert process.stdin and process.stdout

    def echo() -> None:
        process.stdin.write(b"x")  # type: ignore[union-attr]
        process.stdout.read(1)  # type: ignore[union-attr]

    try:
        return median_ms(echo)
    finally:
        process.stdin.close()
        process.wait()


def fresh_echo_s(argv: list[str]) -> float:
    """Start a bare echo process over the link and do one round trip: the floor for a
    first call, which must also start a process there."""
    start = time.perf_counter()
    process = subprocess.Popen(
        [*argv, shlex.join(["python3", "-c", ECHO])] if argv else [sys.executable, "-c", ECHO],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        bufsize=0,
    )
    assert process.stdin and process.stdout
    process.stdin.write(b"x")
    process.stdout.read(1)
    elapsed = time.perf_counter() - start
    process.stdin.close()
    process.wait()
    return elapsed


def raw_link_mib_s(argv: list[str], *, into_memory: bool) -> float:
    """256 MiB through the link to a reader that discards it, or lands it in memory."""
    reader = (
        f"import os,mmap\nn={ARRAY.nbytes}\nm=memoryview(mmap.mmap(-1,n))\ng=0\nwhile g<n: g+=os.readv(0,[m[g:]])\n"
    )
    command = ["python3", "-c", reader] if into_memory else ["cat"]
    if argv:
        command = [*argv, shlex.join(["python3", "-c", reader]) if into_memory else "cat > /dev/null"]
    process = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, bufsize=0)
    assert process.stdin
    start = time.perf_counter()
    process.stdin.write(memoryview(ARRAY).cast("B"))
    process.stdin.close()
    process.wait()
    return MIB / (time.perf_counter() - start)


def ipyparallel_noop_ms() -> float | None:
    try:
        import ipyparallel as ipp
    except ImportError:
        print("  (ipyparallel not installed: pip install -e '.[bench]')")
        return None
    with ipp.Cluster(n=1, log_level=40) as rc:
        view = rc[0]
        return median_ms(lambda: view.apply_sync(int), n=200)


def bench(
    name: str, transport: Transport, link_argv: list[str], reset: Callable[[], None], ipp_ms: float | None
) -> None:
    print(f"\n{name}: {transport.describe()}")
    reset()
    session = Session(transport, on_output=lambda stream, text: None)
    start = time.perf_counter()
    session.call(int)
    cold = time.perf_counter() - start
    session.restart_worker()
    start = time.perf_counter()
    session.call(int)
    warm = time.perf_counter() - start

    noop = median_ms(lambda: session.call(int))
    echo = bare_echo_ms(link_argv)
    row("no-op call, median", noop, "ms", echo, "bare echo")
    row("bare echo over the same link", echo, "ms")
    if ipp_ms:
        row("no-op call vs ipyparallel apply_sync", noop, "ms", ipp_ms, "ipyparallel")

    start = time.perf_counter()
    back = session.call(lambda a: a, ARRAY)
    array = 2 * MIB / (time.perf_counter() - start)
    assert np.array_equal(back, ARRAY)
    del back
    link = raw_link_mib_s(link_argv, into_memory=False)
    landed = raw_link_mib_s(link_argv, into_memory=True)
    row("256 MiB array there and back", array, "MiB/s", link, "raw link (cat)")
    row("  same, against the link into memory", array, "MiB/s", landed, "raw into memory")
    row("raw link, cat > /dev/null", link, "MiB/s")
    row("raw link, into a 256 MiB buffer", landed, "MiB/s")

    fresh = fresh_echo_s(link_argv)
    row("first call, cold cache (ships the worker)", cold, "s", fresh, "fresh echo")
    row("first call, warm cache (worker cached)", warm, "s", fresh, "fresh echo")
    row("fresh bare echo process, one round trip", fresh, "s")
    session.restart_worker()
    session.close()


def main() -> None:
    print(f"vastnb offload bench, Python {sys.version.split()[0]}, {os.cpu_count()} CPUs")
    ipp_ms = ipyparallel_noop_ms()
    if ipp_ms:
        print(f"  ipyparallel apply_sync no-op on a local engine: {ipp_ms:.3f} ms (median of 200)")
    scratch = Path(tempfile.mkdtemp(prefix="vnbbench"))
    try:
        home = scratch / "local"
        bench("local", LocalTransport(home), [], lambda: shutil.rmtree(home, ignore_errors=True), ipp_ms)
        try:
            from sshd import SSHServer, ensure_openssh_server

            ensure_openssh_server()
        except BaseException as exc:  # noqa: BLE001 - pytest.skip raises a BaseException
            print(f"\nssh: skipped ({exc})")
            return
        with SSHServer(scratch / "sshd") as server:
            server.start()
            control = scratch / "cm"
            control.mkdir()
            box_home = scratch / "box"
            transport = SSHTransport(
                host=server.host,
                port=server.port,
                user=server.user,
                identity=server.client_key,
                known_hosts=scratch / "known_hosts",
                control_dir=control,
                home=str(box_home),
                options=["-F", "/dev/null"],
            )
            # The baselines go over the same multiplexed SSH connection as the session.
            link = ["ssh", *transport.ssh_options(), f"{server.user}@{server.host}", "--"]
            bench("ssh", transport, link, lambda: shutil.rmtree(box_home, ignore_errors=True), ipp_ms)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
