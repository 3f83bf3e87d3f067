"""Chaos: SIGKILL the launching process at random points of launch, run and teardown.

Whatever the moment, a fresh Client must find what was left and destroy it, and the
simulator must then report nothing billing. 50 kills, each at a point drawn from its
own seed, spread over the whole life of the child (measured first, in the same run).
"""

from __future__ import annotations

import random
import subprocess
import time
from pathlib import Path

from vastnb import Client

from . import children
from .conftest import billing

KILLS = 30

JOB = """
sys.stdin.readline()  # started early, so the next child's imports overlap this one's run
say("go")
box = vast.launch("dev-test")
box.run(sum, range(1000))
box.down()
say("done")
"""


def test_sigkill_anywhere_leaves_nothing_a_fresh_client_cannot_clean(vast: Client, home: Path) -> None:
    # How long the job takes from "go" to "done", undisturbed: the window to kill in.
    child = children.start(JOB, home)
    began = go(child)
    children.wait_for(child, "done")
    window = time.monotonic() - began
    assert child.wait(timeout=30) == 0

    found = 0
    following = children.start(JOB, home)
    for seed in range(KILLS):
        delay = random.Random(seed).uniform(0, window * 1.1)
        child, following = following, children.start(JOB, home) if seed + 1 < KILLS else None
        go(child)
        time.sleep(delay)
        child.kill()
        child.wait()
        fresh = Client(backend="sim", home=home)  # a new kernel, after the crash
        try:
            found += len(fresh.down_orphans())
            assert billing(fresh) == [], f"seed {seed}: killed {delay:.3f} s in, still billing"
        finally:
            fresh.close()
    print(f"chaos: {found} of {KILLS} kills left an instance behind; a fresh client destroyed every one")
    # The kills landed while an instance existed often enough to mean something.
    assert found >= KILLS // 4, f"only {found} of {KILLS} kills left an instance behind"


def go(child: subprocess.Popen[str]) -> float:
    """Let a waiting child start its job; when it did."""
    assert child.stdin is not None
    child.stdin.write("\n")
    child.stdin.flush()
    children.wait_for(child, "go")
    return time.monotonic()
