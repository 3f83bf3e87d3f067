"""The decoders of what a box or a bucket sends, fuzzed (``decoders.py``) in a child
process: a crash there (a segfault in a C extension) fails this test instead of ending
the run. Seeded and bounded: a few seconds."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

FUZZERS = ["results", "manifests", "frames"]


@pytest.mark.parametrize("fuzzer", FUZZERS)
def test_decoders_survive_random_and_mutated_input(fuzzer: str) -> None:
    script = Path(__file__).with_name("decoders.py")
    env = {**os.environ, "FUZZ_EXAMPLES": "400"}
    done = subprocess.run([sys.executable, str(script), fuzzer], capture_output=True, text=True, timeout=300, env=env)
    assert done.returncode == 0, f"the fuzzer died ({done.returncode}):\n{done.stdout[-2000:]}\n{done.stderr[-4000:]}"
    assert f"fuzz {fuzzer}: 400 examples, only documented errors" in done.stdout
