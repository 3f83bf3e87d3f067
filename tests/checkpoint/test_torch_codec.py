"""A torch checkpoint part with numpy arrays in it (an RNG state, metrics) loads through
torch's weights-only loader with vastnb's checked numpy stand-ins: numpy never rebuilds an
array from the file's dtype state, so a forged one is refused instead of crashing."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import torch

from vastnb_worker.checkpoint.codec import read_part


def test_numpy_arrays_in_a_torch_part_load_as_arrays(tmp_path: Path) -> None:
    state = {
        "w": torch.ones(2),
        "rng": np.random.default_rng(0).bit_generator.state,
        "legacy_rng": np.random.get_state(),
        "losses": np.arange(5.0),
        "strided": np.eye(3)[:, 1],
        "dtype": np.dtype("f4"),
        "best": np.float32(0.25),
    }
    torch.save(state, tmp_path / "part.pt")
    got = read_part(str(tmp_path / "part.pt"), "torch", where="part")
    assert torch.equal(got["w"], state["w"]) and got["rng"] == state["rng"]
    assert all(np.array_equal(a, b) for a, b in zip(got["legacy_rng"][1:2], state["legacy_rng"][1:2], strict=True))
    assert np.array_equal(got["losses"], state["losses"]) and np.array_equal(got["strided"], state["strided"])
    assert got["dtype"] == np.float32 and got["best"] == np.float32(0.25)


def test_a_forged_numpy_dtype_in_a_torch_part_is_refused_not_a_crash(tmp_path: Path) -> None:
    probe = textwrap.dedent(f"""
        import numpy as np, torch
        from vastnb_worker.checkpoint.codec import read_part
        from vastnb_worker.errors import CheckpointCorruptError

        class Reduced:
            def __init__(self, fn, args, state):
                self.fn, self.args, self.state = fn, args, state
            def __reduce__(self):
                return self.fn, self.args, self.state

        multiarray = np._core.multiarray if hasattr(np, "_core") else np.core.multiarray
        hidden = Reduced(np.dtype, ("O8", False, True), (3, "|", None, None, None, -1, -1, 0))  # flags forged
        void = Reduced(np.dtype, ("V8", False, True), (3, "|", None, ("a",), {{"a": (hidden, 0)}}, 8, 1, 0))
        array = Reduced(multiarray._reconstruct, (np.ndarray, (0,), b"b"), (1, (1,), void, False, b"A" * 8))
        torch.save({{"optimizer": array}}, {str(tmp_path / "evil.pt")!r})
        try:
            value = read_part({str(tmp_path / "evil.pt")!r}, "torch", where="evil")
            print("loaded", value["optimizer"]["a"])
        except CheckpointCorruptError as exc:
            print("refused:", "not a plain dtype" in str(exc))
    """)
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, f"the loader died ({done.returncode}): {done.stderr[-2000:]}"
    assert done.stdout.strip() == "refused: True"
