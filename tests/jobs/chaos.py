"""Chaos runs: a job trained on the simulator while 1-3 faults strike at random moments.

One run (:func:`run`) is seeded: the seed picks the faults and the training steps they
strike after. A "kernel" process submits the job and waits for it, as a notebook would;
faults come from here: the box preempted, outbid, its host offline, its worker killed,
the controller SIGKILLed (and started again), the kernel SIGKILLed. The run then checks
what a user would: the job succeeded, its result is bit-identical to an uninterrupted
run, the work redone after each fault (steps trained twice) is at most one checkpoint
interval (counting the step whose checkpoint was still uploading when the box died: steps
0..N for a first checkpoint at step N), and nothing is left billing.

Used by tests/jobs/test_chaos.py (a few seeds in CI) and bench/chaos.py (the campaign).
"""

from __future__ import annotations

import itertools
import os
import random
import re
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

FAULTS = ("preempt", "outbid", "offline", "kill_worker", "kill_controller", "kill_kernel")
BOX_FAULTS = frozenset(FAULTS[:4])  # those that cost the job its box
REPO = Path(__file__).resolve().parents[2]
_STEP = re.compile(r"^step (\d+) ", re.M)


@dataclass
class ChaosRun:
    """What one seeded run did and found."""

    seed: int
    faults: list[tuple[str, int]]  # (fault, the step it is to strike after), as planned
    model: str
    state: str = ""
    correct: bool = False
    attempts: int = 0
    struck: list[str] = field(default_factory=list)  # the faults injected (a job may end before the last)
    redone: list[int] = field(default_factory=list)  # steps trained twice, per lost box
    left_billing: list[int] = field(default_factory=list)
    seconds: float = 0.0
    error: str = ""

    def ok(self, every: int) -> bool:
        """Succeeded, bit-identical, at most one interval (+ the uploading step) redone, nothing billing."""
        within = all(redone <= every + 1 for redone in self.redone)
        return self.state == "succeeded" and self.correct and within and not self.left_billing and not self.error


def plan(seed: int, steps: int) -> list[tuple[str, int]]:
    """The faults of run ``seed``: 1-3 of them, each after a training step, in order."""
    rng = random.Random(seed)
    count = rng.randint(1, 3)
    at = sorted(rng.sample(range(4, steps - 8), count))
    return [(rng.choice(FAULTS), step) for step in at]


def _kernel(home: Path, checkpoint: str, name: str, model: str, steps: int, every: int, delay: float) -> Any:
    code = (
        "import sys, time; sys.path.insert(0, sys.argv[1]);"
        "from tests.jobs import work; from tests.jobs.conftest import FAST_SIM, FAST_POLICY, FAST_CONTROLLER;"
        "import vastnb;"
        "vast = vastnb.Client(backend='sim', sim_config=FAST_SIM, launch_policy=FAST_POLICY, controller=FAST_CONTROLLER);"
        f"fn = work.{'train_torch' if model == 'torch' else 'train'};"
        f"job = vast.submit(fn, args=({steps}, {every}, {delay}), profile='inference-batch', name='{name}',"
        " checkpoint=sys.argv[2], max_recoveries=6);"
        "print('submitted', flush=True); job.wait(); print(job.state.value, flush=True)"
    )
    env = {**os.environ, "VASTNB_HOME": str(home), "VASTNB_BACKEND": "sim"}
    process = subprocess.Popen(
        [sys.executable, "-c", code, str(REPO), checkpoint], stdout=subprocess.PIPE, text=True, env=env
    )
    assert process.stdout is not None
    line = process.stdout.readline().strip()
    if line != "submitted":
        process.kill()
        raise RuntimeError(f"the kernel did not submit (said {line!r})")
    return process


def _steps_by_attempt(logs: str) -> list[list[int]]:
    parts = re.split(r"^=== attempt \d+ .*$", logs, flags=re.M)[1:]
    return [[int(s) for s in _STEP.findall(part)] for part in parts]


def run(
    seed: int, home: Path, *, model: str = "plain", steps: int = 48, every: int = 8, delay: float = 0.04
) -> ChaosRun:
    """One chaos run under ``home`` (a fresh VASTNB_HOME); see the module doc."""
    from vastnb import Client

    from . import work
    from .conftest import FAST_CONTROLLER, FAST_POLICY, FAST_SIM

    os.environ["VASTNB_HOME"] = str(home)
    faults = plan(seed, steps)
    outcome = ChaosRun(seed, faults, model)
    started = time.monotonic()
    name = f"chaos{seed}"
    vast = Client(backend="sim", home=home, sim_config=FAST_SIM, launch_policy=FAST_POLICY, controller=FAST_CONTROLLER)
    kernel = _kernel(home, str(home / "runs" / name), name, model, steps, every, delay)
    try:
        job = vast.job(name)
        attempts = 1
        for fault, step in faults:
            if not _wait_running_past(job, step, attempts, timeout=120):
                break  # it finished first: the remaining faults found nothing to strike
            if not _strike(vast, job, fault, kernel):
                break  # it ended as the fault came
            outcome.struck.append(fault)
            if fault in BOX_FAULTS:
                attempts = job.record.attempts + 1  # the next fault strikes the replacement
        state = job.wait(timeout=300)
        outcome.state = state.value
        if state.value == "succeeded":
            result = job.result()
            if model == "torch":
                import torch

                expected = work.torch_reference(steps)
                outcome.correct = all(torch.equal(result["w"][k], v) for k, v in expected.items())
            else:
                outcome.correct = result["w"] == work.reference(steps)
        outcome.attempts = job.record.attempts
        by_attempt = _steps_by_attempt(job.logs())
        for before, after in itertools.pairwise(by_attempt):
            if before and after:
                outcome.redone.append(max(0, max(before) - min(after) + 1))
        outcome.left_billing = _left_billing(vast)
    except Exception as exc:  # noqa: BLE001 - a run reports what broke; the caller asserts
        outcome.error = f"{type(exc).__name__}: {exc}"
        outcome.left_billing = _left_billing(vast)
    finally:
        if kernel.poll() is None:
            kernel.kill()
        kernel.wait()
        vast.controller.stop(timeout=30)
        assert vast.sim is not None
        for inst in vast.sim.market.instances():  # whatever a failed run left, for the next run's sake
            vast.sim.market.destroy(int(inst["id"]))
        vast.close()
        outcome.seconds = time.monotonic() - started
    return outcome


def _wait_running_past(job: Any, step: int, attempts: int, timeout: float) -> bool:
    """Until the job runs its attempt ``attempts`` (or a later one) and has trained past
    ``step``; False if it ended."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        record = job.record
        if record.state.final:
            return False
        if record.state.value == "running" and record.attempts >= attempts:
            current = _steps_by_attempt(job.logs())
            if current and current[-1] and max(current[-1]) >= step:
                return True
        time.sleep(0.05)
    raise TimeoutError(f"job {job.name} did not pass step {step} within {timeout} s")


def _strike(vast: Any, job: Any, fault: str, kernel: Any) -> bool:
    """Inject ``fault``; False if the job ended (its box gone) just before it struck."""
    from vastnb.sim import SimError

    try:
        _inject(vast, job, fault, kernel)
    except SimError:
        # The controller destroys a finished job's box just before it marks the job final.
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if job.record.state.final:
                return False
            time.sleep(0.05)
        raise
    return True


def _inject(vast: Any, job: Any, fault: str, kernel: Any) -> None:
    sim, instance = vast.sim, job.record.instance_id
    if fault == "preempt":
        sim.preempt(instance, resume_after=None)
    elif fault == "outbid":
        sim.outbid(instance)
    elif fault == "offline":
        sim.set_status(instance, "offline")
    elif fault == "kill_worker":
        sim.kill_worker(instance)
    elif fault == "kill_controller":
        pid = vast.controller.status()["pid"]
        if pid:
            os.kill(pid, signal.SIGKILL)
            while vast.controller.status()["running"]:
                time.sleep(0.02)
        vast.controller.ensure()  # as the next job.wait() in any kernel would
    elif fault == "kill_kernel":
        kernel.kill()
    else:
        raise ValueError(f"unknown fault {fault!r}")


def _left_billing(vast: Any, wait: float = 20.0) -> list[int]:
    """Instances still on the market once the job ended (given the controller ``wait`` s)."""
    deadline = time.monotonic() + wait
    while True:
        left = [int(i["id"]) for i in vast.sim.market.instances()]
        if not left or time.monotonic() > deadline:
            return left
        time.sleep(0.1)
