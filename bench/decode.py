"""What the safe result policy costs: decoding what a box sends, safe against trusted.

Run: ``python bench/decode.py`` (needs the test extra: torch, pandas, numpy). Each payload
is encoded as a worker encodes a result (``protocol.encode``), then decoded by the safe
policy (``vastnb_worker.safepickle``: checked rebuilders only) and, as the baseline in the
same run, by a full unpickle (``protocol.decode``, the trusted policy). Printed: the ratio
safe / trusted, then both times (best of five).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd
import torch

from vastnb_worker import protocol, safepickle

REPEATS = 5

PAYLOADS: dict[str, Callable[[], Any]] = {
    "state_dict, 64 tensors, 256 MiB": lambda: {f"layer{i}": torch.randn(1024, 1024) for i in range(64)},
    "DataFrame, 1M rows x 8 floats": lambda: pd.DataFrame(
        np.random.default_rng(0).standard_normal((1_000_000, 8)), columns=list("abcdefgh")
    ),
    "DataFrame, 100k rows of strings": lambda: pd.DataFrame(
        {"s": [f"row{i}" for i in range(100_000)], "v": np.arange(100_000.0)}
    ),
    "plain dict, 10k lists": lambda: {f"k{i}": [i, i * 0.5, str(i)] for i in range(10_000)},
}


def best(decode: Callable[[], Any]) -> float:
    times = []
    for _ in range(REPEATS):
        start = time.perf_counter()
        decode()
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    for name, make in PAYLOADS.items():
        body, buffers = protocol.encode(make())
        received = [bytearray(b) for b in buffers]  # as a channel delivers them
        trusted = best(lambda body=body, received=received: protocol.decode(body, received))
        safe = best(lambda body=body, received=received: safepickle.loads(body, received))
        print(f"{name:34s} safe/trusted {safe / trusted:5.2f}x  ({safe * 1e3:7.1f} ms vs {trusted * 1e3:7.1f} ms)")


if __name__ == "__main__":
    main()
