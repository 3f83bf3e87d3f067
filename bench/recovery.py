"""Recovery speed: from a lost box to training again, on the simulator, in one run.

Run: ``python bench/recovery.py [--runs 5] [--poll 0.5]``. A job trains (a plain-Python
model, a checkpoint every EVERY steps of STEP_S seconds); once it is past a step, its box
is lost, and the controller's events give the moments. Reported as ratios:

- detection: from the fault to the controller's event, in poll intervals (goal: <= 1);
- resume: from detection to the job's code running again from its checkpoint (the
  "resumed" event), against a bare ``vast.launch`` of the same profile measured in the
  same run, as (resume - bare launch) in poll intervals (goal: <= 2);
- waste: steps trained twice, in GPU-seconds, against one checkpoint interval (goal: <= 1),
  for a preemption (SIGTERM first: the checkpoint manager saves at once) and for a
  worker killed outright (no warning: back to the last periodic checkpoint).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))  # the training code the job tests send

from jobs import work
from jobs.chaos import _steps_by_attempt

from vastnb import Client
from vastnb.jobs.controller import ControllerSettings, Timing
from vastnb.lifecycle.launch import LaunchPolicy
from vastnb.sim import SimConfig

EVERY, STEP_S, STEPS = 10, 0.05, 80
SIM = SimConfig(create_delay=0.2, load_delay=0.5, schedule_delay=0.2)


def measure(vast: Client, fault: str, run: int, poll: float) -> dict[str, float]:
    assert vast.sim is not None
    name = f"{fault}-{run}"
    job = vast.submit(
        work.train,
        args=(STEPS, EVERY, STEP_S),
        profile="inference-batch",
        name=name,
        checkpoint=str(vast.home / "runs" / name),
        max_recoveries=2,
    )
    strike_after = 25 + 3 * run  # between checkpoints, at a different place each run
    while f"step {strike_after} " not in job.logs():
        time.sleep(0.01)
    at = time.time()
    box = job.record.instance_id
    assert box is not None
    if fault == "preempt":
        vast.sim.preempt(box, resume_after=None)
    else:
        vast.sim.kill_worker(box)
    job.wait(timeout=300)
    events = job.events()
    lost = events[events.event.isin(["preempted", "worker died", "unreachable"])].time.iloc[0].timestamp()
    resumed = events[events.event == "resumed"].time.iloc[0].timestamp()
    before, after = _steps_by_attempt(job.logs())[:2]
    redone = max(0, max(before) - min(after) + 1)
    return {"detect": lost - at, "resume": resumed - lost, "waste": redone * STEP_S}


def bare_launch(vast: Client) -> float:
    start = time.perf_counter()
    box = vast.launch("inference-batch")
    took = time.perf_counter() - start
    box.down()
    return took


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--poll", type=float, default=0.5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="vastnb-recovery-") as tmp:
        controller = ControllerSettings(
            timing=Timing(poll_s=args.poll, lost_after_s=10 * args.poll, backoff_s=0.0), tick_s=0.05, idle_exit_s=120
        )
        vast = Client(
            backend="sim", home=Path(tmp), sim_config=SIM, launch_policy=LaunchPolicy(poll=0.05), controller=controller
        )
        try:
            bare = statistics.median(bare_launch(vast) for _ in range(args.runs))
            rows = {f: [measure(vast, f, i, args.poll) for i in range(args.runs)] for f in ("preempt", "kill_worker")}
        finally:
            vast.controller.stop()
            vast.close()
    interval = EVERY * STEP_S
    print(
        f"poll {args.poll} s, checkpoint every {EVERY} steps of {STEP_S} s ({interval:.2f} s), bare launch "
        f"{bare:.2f} s (median of {args.runs}); medians of {args.runs} runs each:"
    )
    for fault, measured in rows.items():
        detect = statistics.median(m["detect"] for m in measured) / args.poll
        resume = (statistics.median(m["resume"] for m in measured) - bare) / args.poll
        resume_ratio = statistics.median(m["resume"] for m in measured) / bare
        waste = statistics.median(m["waste"] for m in measured) / interval
        worst = max(m["waste"] for m in measured) / interval
        print(
            f"  {fault:11s} detection {detect:4.2f} polls | resume {resume_ratio:4.2f}x a bare launch "
            f"(launch + {resume:4.2f} polls) | waste {waste:4.2f} (worst {worst:4.2f}) checkpoint intervals"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
