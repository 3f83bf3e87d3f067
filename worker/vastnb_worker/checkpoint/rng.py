"""Random number generator states, as plain data, so a resumed run draws what the
uninterrupted run would have drawn: Python's ``random``, numpy's global generator, torch's
CPU generator and every CUDA device's.

numpy and torch are captured only when the process already imported them (a run that never
used them has no state there to keep), and restored only when the checkpoint holds them.
"""

from __future__ import annotations

import random
import sys
from typing import Any

__all__ = ["capture", "restore"]


def capture() -> dict[str, Any]:
    """The generators' states as lists, ints and bytes (no arrays, no tensors)."""
    state: dict[str, Any] = {"python": random.getstate()}
    numpy = sys.modules.get("numpy")
    if numpy is not None:
        kind, keys, pos, has_gauss, gauss = numpy.random.get_state()
        state["numpy"] = (kind, keys.tolist(), int(pos), int(has_gauss), float(gauss))
    torch = sys.modules.get("torch")
    if torch is not None:
        state["torch"] = torch.get_rng_state().numpy().tobytes()
        # Only when CUDA is already in use: asking would initialise it.
        if torch.cuda.is_available() and torch.cuda.is_initialized():
            state["cuda"] = [s.numpy().tobytes() for s in torch.cuda.get_rng_state_all()]
    return state


def restore(state: dict[str, Any]) -> None:
    """Put the generators back as :func:`capture` found them."""
    if "python" in state:
        version, internal, gauss = state["python"]
        random.setstate((version, tuple(internal), gauss))
    if "numpy" in state:
        import numpy

        kind, keys, pos, has_gauss, gauss = state["numpy"]
        numpy.random.set_state((kind, numpy.array(keys, dtype=numpy.uint32), pos, has_gauss, gauss))
    if "torch" in state:
        import torch

        torch.set_rng_state(torch.frombuffer(bytearray(state["torch"]), dtype=torch.uint8))
        if "cuda" in state and torch.cuda.is_available():
            devices = min(len(state["cuda"]), torch.cuda.device_count())
            for index in range(devices):  # a box with fewer GPUs restores those it has
                torch.cuda.set_rng_state(torch.frombuffer(bytearray(state["cuda"][index]), dtype=torch.uint8), index)
