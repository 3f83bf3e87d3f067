"""``vastnb demo``: the whole loop on the simulated market, in well under a minute.

Launch ``dev-test`` on the simulator, train a small model on the box with its output
streamed here, bring the result back, show what it cost (simulated), destroy the box.
"""

from __future__ import annotations

import sys
from typing import TextIO

import cloudpickle

from vastnb.client import Client
from vastnb.lifecycle.launch import LaunchEvent

__all__ = ["run_demo", "train"]


def train(steps: int = 400, lr: float = 0.05) -> dict[str, float]:
    """Fit y = 3x - 1 by gradient descent, in plain Python: runs on any box."""
    import math
    import random

    rng = random.Random(0)
    data = [(x, 3 * x - 1 + rng.gauss(0, 0.1)) for x in (rng.uniform(-1, 1) for _ in range(256))]
    w = b = 0.0
    loss = math.inf
    for step in range(1, steps + 1):
        gw = gb = loss = 0.0
        for x, y in data:
            err = w * x + b - y
            gw, gb, loss = gw + 2 * err * x, gb + 2 * err, loss + err * err
        n = len(data)
        w, b, loss = w - lr * gw / n, b - lr * gb / n, loss / n
        if step % 100 == 0:
            print(f"step {step:4d}  loss {loss:.4f}  w={w:.3f} b={b:.3f}", flush=True)
    return {"w": w, "b": b, "loss": loss}


def run_demo(out: TextIO | None = None) -> dict[str, float]:
    """Launch, train, report, tear down. Returns the trained parameters."""
    write = (out or sys.stdout).write

    def show(event: LaunchEvent) -> None:
        write(event.line() + "\n")

    # This module is not installed on the box: ship train() by value.
    cloudpickle.register_pickle_by_value(sys.modules[__name__])
    with Client(backend="sim") as vast:
        write("Launching dev-test on the SIMULATED market (nothing is billed)...\n")
        with vast.launch("dev-test", name=None, progress=show) as box:
            write(f"Training on {box!r}:\n")
            result = box.run(train)
            cost = box.cost()
        write(f"Result from the box: w={result['w']:.3f} b={result['b']:.3f} loss={result['loss']:.4f}\n")
        write(f"Simulated cost: ${cost:.6f} for {box.name}; the box is destroyed, nothing is left billing.\n")
    return result
