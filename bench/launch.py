"""Launch speed: from ``launch()`` to a ready box on the simulator, zero simulated delays.

Run: ``python bench/launch.py``. Each launch is split at the "connecting" event into
- our own overhead: offer selection, the SSH key check, create, the state store, the
  status polls until running;
- worker start: connecting, bootstrapping and handshaking with a fresh worker daemon on
  the box, and arming its watchdog;
and compared with baselines measured in the same run:
- a bare worker start: a fresh ``Session(LocalTransport(...)).connect()`` (the same
  bootstrap and handshake, with no market and no lifecycle around it);
- a bare interpreter: ``python -I -c pass``, the floor of any process start.
"""

from __future__ import annotations

import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from vastnb import Client
from vastnb.lifecycle.launch import LaunchEvent, LaunchPolicy
from vastnb.offload import LocalTransport, Session
from vastnb.sim import SimConfig

RUNS = 10


def launches(home: Path) -> tuple[list[float], list[float]]:
    """(total, worker-start) seconds of RUNS launches."""
    vast = Client(
        backend="sim",
        home=home,
        sim_config=SimConfig(create_delay=0, load_delay=0),
        launch_policy=LaunchPolicy(poll=0.005),
    )
    totals, workers = [], []
    for _ in range(RUNS + 1):
        marks: dict[str, float] = {}

        def mark(event: LaunchEvent, marks: dict[str, float] = marks) -> None:
            marks[event.stage] = event.elapsed

        start = time.perf_counter()
        box = vast.launch("dev-test", progress=mark)
        total = time.perf_counter() - start
        box.down()
        totals.append(total)
        workers.append(total - marks["connecting"])
    vast.close()
    return totals[1:], workers[1:]  # the first pays one-off costs (key generation, imports)


def bare_workers(root: Path) -> list[float]:
    out = []
    for i in range(RUNS):
        home = root / f"bare-{i}"
        start = time.perf_counter()
        session = Session(LocalTransport(home=home))
        session.connect()
        out.append(time.perf_counter() - start)
        session.call(_exit_daemon)
        session.close()
    return out


def _exit_daemon() -> None:
    import os
    import signal
    import threading

    threading.Timer(0.1, os.kill, (os.getpid(), signal.SIGTERM)).start()


def bare_python() -> list[float]:
    out = []
    for _ in range(RUNS):
        start = time.perf_counter()
        subprocess.run([sys.executable, "-I", "-c", "pass"], check=True)
        out.append(time.perf_counter() - start)
    return out


def main() -> None:
    root = Path(tempfile.mkdtemp(prefix="vnb-bench-"))
    try:
        python = statistics.median(bare_python()) * 1000
        bare = statistics.median(bare_workers(root / "bare")) * 1000
        totals, workers = launches(root / "home")
        total = statistics.median(totals) * 1000
        worker = statistics.median(workers) * 1000
        ours = statistics.median(t - w for t, w in zip(totals, workers, strict=True)) * 1000
    finally:
        shutil.rmtree(root, ignore_errors=True)
    print(f"launch() to a ready box on the simulator, zero delays, median of {RUNS}:")
    print(f"  {'bare python -I -c pass':<40} {python:8.1f} ms")
    print(f"  {'bare worker start (Session.connect)':<40} {bare:8.1f} ms")
    print(
        f"  {'launch() total':<40} {total:8.1f} ms  {total / bare:5.2f}x bare worker, {total / python:5.2f}x bare python"
    )
    print(f"  {'  our own overhead':<40} {ours:8.1f} ms  {ours / bare:5.2f}x bare worker")
    print(f"  {'  worker start inside launch':<40} {worker:8.1f} ms  {worker / bare:5.2f}x bare worker")


if __name__ == "__main__":
    main()
