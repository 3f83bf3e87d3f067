"""The chaos campaign: ``python bench/chaos.py --runs 100`` (seeds 0..99, plain-Python model;
``--torch N`` adds N runs of the small torch model).

Each run trains a job on the simulator while 1-3 random faults strike (tests/jobs/chaos.py:
preemption, outbid, host offline, worker killed, controller SIGKILLed, kernel SIGKILLed).
Printed: runs, faults injected by kind, jobs succeeded with a bit-identical result, the work
redone per lost box against the checkpoint interval, and instances left billing.
"""

from __future__ import annotations

import argparse
import collections
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))  # the chaos driver lives with its test

from jobs import chaos

EVERY = 8


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--torch", type=int, default=0)
    parser.add_argument("--first-seed", type=int, default=0)
    args = parser.parse_args()
    runs = []
    seeds = [(s, "plain") for s in range(args.first_seed, args.first_seed + args.runs)]
    seeds += [(1000 + s, "torch") for s in range(args.torch)]
    for seed, model in seeds:
        with tempfile.TemporaryDirectory(prefix="vastnb-chaos-", ignore_cleanup_errors=True) as tmp:
            extra = {"steps": 40, "delay": 0.05} if model == "torch" else {}
            run = chaos.run(seed, Path(tmp) / "vastnb", model=model, every=EVERY, **extra)
        runs.append(run)
        mark = "ok " if run.ok(EVERY) else "BAD"
        print(
            f"{mark} seed {seed:4d} {model:5s} {run.seconds:5.1f}s faults {run.struck} redone {run.redone} {run.error}",
            flush=True,
        )
    faults = collections.Counter(f for r in runs for f in r.struck)
    redone = [x for r in runs for x in r.redone]
    print()
    print(f"runs: {len(runs)}   faults injected: {sum(faults.values())} ({dict(sorted(faults.items()))})")
    print(
        f"jobs succeeded: {sum(r.state == 'succeeded' for r in runs)}/{len(runs)}, "
        f"bit-identical to an uninterrupted run: {sum(r.correct for r in runs)}/{len(runs)}"
    )
    if redone:
        print(
            f"work redone per lost box: mean {statistics.mean(redone) / EVERY:.2f}, "
            f"max {max(redone) / EVERY:.2f} checkpoint intervals ({len(redone)} boxes lost)"
        )
    print(f"instances left billing: {sum(len(r.left_billing) for r in runs)}")
    print(f"seconds per run: mean {statistics.mean(r.seconds for r in runs):.1f}")
    return 0 if all(r.ok(EVERY) for r in runs) else 1


if __name__ == "__main__":
    sys.exit(main())
