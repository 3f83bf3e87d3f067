"""Fuzz the decoders of what comes from a box or a bucket (run by test_decoders.py in a
child process, so that a crash is a failed test, not a lost run).

Hypothesis feeds random bytes, and valid payloads mutated (bytes flipped, cut, repeated),
to: the safe result policy, the checkpoint manifest parser and the frame reader. Each may
return data or raise only its documented error; nothing else, and nothing is run or
imported on the way. Derandomized (seeded by the test's name) and bounded in examples.
"""

from __future__ import annotations

import os
import sys
import threading
from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd
from hypothesis import HealthCheck, given, settings, strategies as st

from vastnb.errors import UnsafeResultError
from vastnb.offload import safe
from vastnb_worker import protocol
from vastnb_worker.checkpoint.manifest import CheckpointInfo, Part, manifest_key, new_id
from vastnb_worker.errors import CheckpointError
from vastnb_worker.protocol import BadFrame, Channel, ChannelClosed

EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "400"))
FUZZ = settings(
    max_examples=EXAMPLES, derandomize=True, deadline=None, database=None, suppress_health_check=list(HealthCheck)
)

SEEDS: list[bytes] = [
    protocol.encode(value)[0]
    for value in (
        {"loss": [0.5, None], "step": 3, "tags": ("a", "b"), "raw": b"xy"},
        np.arange(12.0).reshape(3, 4),
        np.zeros((4, 4))[:, 1],
        np.array(["2024-01-01"], dtype="datetime64[D]"),
        pd.DataFrame({"a": [1, 2], "s": ["x", None], "c": pd.Categorical(["u", "v"])}),
        ValueError("boom", 3),
    )
]


def mutated(seed: bytes, data: st.DataObject) -> bytes:
    """``seed`` with a few bytes changed, removed or repeated."""
    body = bytearray(seed)
    for _ in range(data.draw(st.integers(1, 4))):
        at = data.draw(st.integers(0, max(0, len(body) - 1)))
        action = data.draw(st.sampled_from(["flip", "cut", "repeat", "truncate"]))
        if action == "flip" and body:
            body[at] = data.draw(st.integers(0, 255))
        elif action == "cut":
            del body[at : at + data.draw(st.integers(1, 8))]
        elif action == "repeat":
            body[at:at] = body[at : at + data.draw(st.integers(1, 16))]
        else:
            del body[at:]
    return bytes(body)


@FUZZ
@given(st.data())
def fuzz_results(data: st.DataObject) -> None:
    body = (
        data.draw(st.binary(max_size=512))
        if data.draw(st.booleans())
        else mutated(data.draw(st.sampled_from(SEEDS)), data)
    )
    try:
        safe(body, [])
    except UnsafeResultError:
        pass


CHECKPOINT_ID = new_id(7)


def real_manifest() -> bytes:
    """A manifest as vastnb writes one."""
    part = Part(name="state", key=f"{CHECKPOINT_ID}/state.pkl", size=10, sha256="a" * 64, codec="pickle")
    return CheckpointInfo(id=CHECKPOINT_ID, step=7, time=1.7e9, metrics={"loss": 0.5}, parts=(part,)).to_json()


@FUZZ
@given(st.data())
def fuzz_manifests(data: st.DataObject) -> None:
    seed = real_manifest()
    body = data.draw(st.binary(max_size=512)) if data.draw(st.booleans()) else mutated(seed, data)
    try:
        CheckpointInfo.from_json(body, url="s3://bucket/run", name=manifest_key(CHECKPOINT_ID))
    except CheckpointError:
        pass


@FUZZ
@given(st.data())
def fuzz_frames(data: st.DataObject) -> None:
    seed = b"".join(bytes(p) for p in _frame_bytes())
    stream = data.draw(st.binary(max_size=256)) if data.draw(st.booleans()) else mutated(seed, data)
    read, write = os.pipe()
    writer = threading.Thread(target=lambda: (os.write(write, stream), os.close(write)))
    writer.start()
    channel = Channel(read, os.open(os.devnull, os.O_WRONLY), max_frame=1 << 20)
    try:
        while True:
            channel.receive()
    except (ChannelClosed, BadFrame):
        pass
    finally:
        writer.join()
        channel.close()


def _frame_bytes() -> list[Any]:
    """The bytes of a real RESULT frame with a buffer, as a channel writes them."""
    read, write = os.pipe()
    body, buffers = protocol.encode(np.arange(600.0))
    Channel(os.open(os.devnull, os.O_RDONLY), write).send(protocol.Kind.RESULT, 1, {"cell": True}, body, buffers)
    os.close(write)
    chunks = []
    while chunk := os.read(read, 1 << 16):
        chunks.append(chunk)
    os.close(read)
    return chunks


FUZZERS: dict[str, Callable[[], None]] = {"results": fuzz_results, "manifests": fuzz_manifests, "frames": fuzz_frames}

if __name__ == "__main__":
    for name in sys.argv[1:] or list(FUZZERS):
        FUZZERS[name]()
        print(f"fuzz {name}: {EXAMPLES} examples, only documented errors", flush=True)
    leaked = sorted(m for m in sys.modules if m.startswith(("numpy.f2py", "subprocess")) and m != "subprocess")
    assert not leaked, leaked
