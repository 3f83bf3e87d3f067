"""A call in ranks against torchrun started by hand, for the same per-rank work.

Run: ``python bench/distributed.py [--nproc 4] [--steps 30] [--repeats 5]``. On one simulated
box with ``--nproc`` GPUs (its ranks run on the CPU with gloo), each rank trains a small MLP
under DDP for ``--steps`` steps. Timed, alternating, median of ``--repeats``:

- the baseline: ``python -m torch.distributed.run --standalone --nproc-per-node N`` on this
  file, started as a subprocess (what a user would type on the box);
- ``box.options(nproc=N).run(train, steps)``, from the notebook's side.

Reported as ratios to the baseline: the wall time, launcher start included (goal: <= 1.10x
on 2 CPU cores, <= 1.05x on a GPU), and the time to the first step (rank 0's first step
done, from the moment the run was asked for).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

PROFILE = """\
bench-quad:
  gpu: RTX_4090
  num_gpus: {n}
  max_price_per_hour: 10.0
  min_reliability: 0.90
  max_duration_hours: 2
"""


def train(steps: int) -> float:
    """DDP over the ranks of this launch; rank 0's Unix time when its first step was done."""
    import torch
    import torch.distributed as td

    td.init_process_group("gloo")
    torch.manual_seed(0)
    model = torch.nn.parallel.DistributedDataParallel(
        torch.nn.Sequential(torch.nn.Linear(64, 256), torch.nn.ReLU(), torch.nn.Linear(256, 1))
    )
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    data, target = torch.randn(256, 64), torch.randn(256, 1)
    first = 0.0
    for step in range(steps):
        optimizer.zero_grad()
        torch.nn.functional.mse_loss(model(data), target).backward()
        optimizer.step()
        if step == 0:
            first = time.time()
    td.destroy_process_group()
    return first


def by_hand(nproc: int, steps: int, out: Path) -> tuple[float, float]:
    started = time.time()
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={nproc}"]
    subprocess.run([*command, __file__, "--rank", str(steps), str(out)], check=True, capture_output=True)
    return time.time() - started, float(out.read_text()) - started


def through_vastnb(box: object, nproc: int, steps: int) -> tuple[float, float]:
    started = time.time()
    first = box.options(nproc=nproc).run(train, steps)  # type: ignore[attr-defined]
    return time.time() - started, first - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nproc", type=int, default=4)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()

    import cloudpickle

    from vastnb import Client

    cloudpickle.register_pickle_by_value(sys.modules[__name__])
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        (root / "profiles.yaml").write_text(PROFILE.format(n=args.nproc))
        client = Client(backend="sim", home=root / "vastnb", profiles=root / "profiles.yaml")
        try:
            box = client.launch("bench-quad")
            through_vastnb(box, args.nproc, 2)  # warm: the worker and torch imported once
            base, ours = [], []
            for _ in range(args.repeats):
                base.append(by_hand(args.nproc, args.steps, root / "first.txt"))
                ours.append(through_vastnb(box, args.nproc, args.steps))
            box.down()
        finally:
            client.close()
    for label, index in (("wall time", 0), ("time to first step", 1)):
        b = statistics.median(t[index] for t in base)
        o = statistics.median(t[index] for t in ours)
        print(f"{label}: box.options(nproc={args.nproc}).run {o:.3f} s, torchrun {b:.3f} s: {o / b:.2f}x")


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--rank":  # a rank under torchrun (the baseline)
        first = train(int(sys.argv[2]))
        if os.environ.get("RANK") == "0":
            Path(sys.argv[3]).write_text(repr(first))
    else:
        main()
