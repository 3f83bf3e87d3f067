"""A real torch training program for the resume and SIGTERM tests, run as a subprocess.

It trains a tiny model on CPU with everything a resume must restore: dropout and batches
drawn from torch's RNG, noise from numpy's and Python's, Adam's moments, a StepLR schedule.
It prints ``start <step>``, ``saved <step>`` after each save() that stored a checkpoint
(its upload is then under way) and ``waiting`` when it waits for SIGTERM, and writes the
final weights to ``--out``. The tests also call :func:`main` in their own process, and
:func:`build` and :func:`train_step` to train the same model without interruption.

    python train.py URL --steps 20 [--every 5] [--endpoint URL] [--wait-at 10] [--big 32]
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from typing import Any

import numpy as np
import torch

from vastnb_worker.checkpoint import CheckpointManager


def build() -> tuple[torch.nn.Module, torch.optim.Optimizer, Any]:
    """The model, optimizer and scheduler, from fixed seeds."""
    torch.manual_seed(0)
    np.random.seed(0)
    random.seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.ReLU(), torch.nn.Dropout(0.2), torch.nn.Linear(16, 1))
    optimizer = torch.optim.Adam(model.parameters(), lr=0.05)
    return model, optimizer, torch.optim.lr_scheduler.StepLR(optimizer, step_size=4, gamma=0.5)


def train_step(model: torch.nn.Module, optimizer: torch.optim.Optimizer, scheduler: Any) -> float:
    x = torch.randn(32, 8)
    y = x.sum(dim=1, keepdim=True) + float(np.random.normal(0, 0.1)) + random.uniform(-0.1, 0.1)
    loss = torch.nn.functional.mse_loss(model(x), y)
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    scheduler.step()
    return loss.item()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("url")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--every", type=int, default=None, help="every_steps (default: every step)")
    parser.add_argument("--endpoint", default=None, help="S3 endpoint_url")
    parser.add_argument("--wait-at", type=int, default=None, help="after saving this step, wait for SIGTERM")
    parser.add_argument("--big", type=int, default=0, help="MiB of extra tensor state in every checkpoint")
    parser.add_argument("--out", default=None)
    args = parser.parse_args(argv)

    torch.set_num_threads(1)  # the same arithmetic as the uninterrupted run in the test process
    model, optimizer, scheduler = build()
    big = torch.zeros(args.big << 18)  # MiB of float32; zeros draw nothing from the RNG
    options = {"endpoint_url": args.endpoint} if args.endpoint else {}
    ckpt = CheckpointManager(args.url, every_steps=args.every, keep_last=None, grace_seconds=30, **options)
    state = ckpt.load_latest(model=model, optimizer=optimizer, scheduler=scheduler)
    start = state.step + 1 if state else 0
    print(f"start {start}", flush=True)
    for step in range(start, args.steps):
        loss = train_step(model, optimizer, scheduler)
        if ckpt.save(
            step, model=model, optimizer=optimizer, scheduler=scheduler, extras={"big": big}, metrics={"loss": loss}
        ):
            print(f"saved {step}", flush=True)
        if step == args.wait_at:
            print("waiting", flush=True)
            while not ckpt.preemption.requested:  # a long step: SIGTERM arrives during it
                time.sleep(0.01)
    ckpt.close()
    if args.out:
        torch.save(model.state_dict(), args.out)
    print("done", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
