"""Kill a launcher anywhere between create and ready: the box still ends, by itself.

``vastnb launch`` and a Python launcher are killed (SIGKILL, or a plain SIGTERM) at a
moment drawn, from each run's own seed, over the whole window from the instance's create
to its "ready" (measured first, in the same run). Then, with no launcher left:

- every instance they left is an orphan (never "kept": keep is recorded only once ready);
- the simulated clock is moved past the silence limit, with no vastnb process running,
  and every instance is destroyed by its own dead-man switch: the boot switch, or the
  worker's watchdog where the launcher got as far as arming it.
"""

from __future__ import annotations

import collections
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

from vastnb import Client
from vastnb.sim import Market, Simulator

from . import children

RUNS = 2  # per launcher and signal: the dev-test profile has four offers on the simulated market
SILENCE_S = 1800.0  # the default: what a box waits without vastnb before it ends itself
WAIT = 60.0

PYTHON_JOB = """
sys.stdin.readline()  # started early: the next child's imports overlap this one's run
say("go")
box = vast.launch("dev-test", progress=lambda event: say(event.stage))
sys.stdin.readline()  # stays until killed
"""


def start(kind: str, home: Path, name: str) -> subprocess.Popen[str]:
    if kind == "python":
        return children.start(PYTHON_JOB, home)
    env = {**os.environ, "VASTNB_HOME": str(home)}
    command = str(Path(sys.executable).parent / "vastnb")  # the console script, as a user runs it
    return subprocess.Popen(
        [command, "launch", "dev-test", "--name", name],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )


def go(child: subprocess.Popen[str]) -> None:
    """Let a waiting Python launcher start its launch."""
    if child.stdin is not None:
        child.stdin.write("\n")
        child.stdin.flush()


def until(child: subprocess.Popen[str], stage: str) -> float:
    """Read the child's output up to the launch stage ``stage``; when it came."""
    assert child.stdout is not None
    for line in child.stdout:
        if line.strip() == stage or f"] {stage}:" in line:
            return time.monotonic()
    raise AssertionError(f"the launcher ended (exit {child.wait()}) before {stage!r}: {child.stderr.read()}")  # type: ignore[union-attr]


def window(kind: str, home: Path) -> float:
    """Seconds from create to ready, undisturbed."""
    child = start(kind, home, "undisturbed")
    go(child)
    created = until(child, "created")
    span = until(child, "ready") - created
    child.kill()
    child.wait()
    return span


def test_a_launcher_killed_between_create_and_ready_leaves_an_orphan_that_ends_itself(home: Path) -> None:
    market = Simulator(home).market
    ended: dict[int, str] = {}  # instance id -> what destroyed it
    unready = 0
    try:
        for kind in ("python", "cli"):
            span = window(kind, home)
            for inst in market.instances():
                market.destroy(int(inst["id"]))  # the undisturbed run's box
            for sig in (signal.SIGKILL, signal.SIGTERM):
                # A batch at a time: the profile's few offers are rented until the boxes end.
                killed: dict[int, bool] = {}  # instance id -> whether its launcher had seen "ready"
                for run in range(RUNS):
                    seed = f"{kind}-{sig.name}-{run}"
                    child = start(kind, home, f"k{run}-{sig.name.lower()}")
                    go(child)
                    created = until(child, "created")
                    time.sleep(max(0.0, random.Random(seed).uniform(0, span) - (time.monotonic() - created)))
                    child.send_signal(sig)
                    child.wait(timeout=30)
                    rest = child.stdout.read() if child.stdout else ""
                    new = {int(i["id"]) for i in market.instances()} - set(killed)
                    assert len(new) == 1, f"{seed}: {new}"
                    killed[new.pop()] = "ready" in rest
                unready += sum(not ready for ready in killed.values())
                ended.update(left_alone(market, home, killed))
    finally:
        for inst in market.instances():
            market.destroy(int(inst["id"]))

    assert all(by.startswith("itself: ") for by in ended.values()), ended
    switches = collections.Counter(
        "boot switch" if "boot switch" in by else "worker's watchdog" for by in ended.values()
    )
    print(
        f"\nlauncher kills: {len(ended)} runs, {len(ended)} instances left ({unready} before ready, all of those "
        f"orphans); ended by their own switch: {dict(switches)}"
    )


def left_alone(market: Market, home: Path, killed: dict[int, bool]) -> dict[int, str]:
    """Check that the boxes whose launcher died before "ready" are orphans, then let time
    pass with no vastnb process running; who destroyed each box."""
    with Client(backend="sim", home=home) as fresh:
        orphans = set(fresh.orphans().index)
    unready = {i for i, ready in killed.items() if not ready}
    assert unready <= orphans, f"not orphans: {unready - orphans}"

    assert market.boxes is not None
    market.advance(60)  # every container has started (past any image pull), its boot switch with it
    for instance_id in killed:
        log = market.boxes.home(instance_id) / "bootswitch.log"
        deadline = time.monotonic() + WAIT
        while "on duty" not in (log.read_text() if log.exists() else ""):
            assert time.monotonic() < deadline, f"no boot switch on instance {instance_id}"
            time.sleep(0.1)
    market.advance(SILENCE_S + 60)
    deadline = time.monotonic() + WAIT
    while left := [i for i in killed if market.show(i) is not None]:
        assert time.monotonic() < deadline, f"still billing after {WAIT:.0f} s: {left}"
        time.sleep(0.2)
    return {i: str(market.destroyed_by(i)) for i in killed}
