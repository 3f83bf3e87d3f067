"""The safe result policy against a box that plays the attacker.

Each payload is what a box with root could send in place of a result: a few hundred bytes
that, under the old allow-list, crashed the notebook (a numpy dtype with forged flags
hiding an object field), imported and ran a numpy submodule, or asked for 2 GiB. Each is
decoded in a child process, so a crash fails the test instead of ending the run.
"""

from __future__ import annotations

import pickle
import subprocess
import sys
import textwrap
from typing import Any

import numpy as np
import pandas as pd
import pytest
import torch

from vastnb.errors import UnsafeResultError
from vastnb.offload import Session, safe
from vastnb_worker import protocol, tables


class Reduced:
    """Pickles as ``fn(*args)`` then ``state``, whatever ``fn`` is: a forged payload."""

    def __init__(self, fn: Any, args: tuple[Any, ...], state: Any = None) -> None:
        self.fn, self.args, self.state = fn, args, state

    def __reduce__(self) -> Any:
        return (self.fn, self.args) if self.state is None else (self.fn, self.args, self.state)


def forged_dtype_array() -> bytes:
    """An array whose dtype claims no object field, with one: 8 raw bytes become a pointer."""
    obj = Reduced(np.dtype, ("O8", False, True), (3, "|", None, None, None, -1, -1, 0))  # flags forged to 0
    void = Reduced(np.dtype, ("V8", False, True), (3, "|", None, ("a",), {"a": (obj, 0)}, 8, 1, 0))
    array = Reduced(MULTIARRAY._reconstruct, (np.ndarray, (0,), b"b"), (1, (1,), void, False, b"\x41" * 8))
    return pickle.dumps([array], protocol=5)


MULTIARRAY = np._core.multiarray if hasattr(np, "_core") else np.core.multiarray
NUMERIC = np._core.numeric if hasattr(np, "_core") else np.core.numeric

ATTACKS = {
    "forged dtype flags": forged_dtype_array,
    "bytearray(2**31)": lambda: pickle.dumps(Reduced(bytearray, (2**31,)), protocol=5),
    "bytes(2**31)": lambda: pickle.dumps(Reduced(bytes, (2**31,)), protocol=5),
    "list(range(10**12))": lambda: pickle.dumps(Reduced(list, (range(10**12),)), protocol=5),
    # Raw opcodes: GLOBAL module name, an empty tuple or a string argument, REDUCE.
    "a numpy submodule": lambda: b"cnumpy.f2py.__main__\nmain\n)R.",
    "os.system": lambda: b"cos\nsystem\n(S'echo pwned'\ntR.",
    "an object dtype": lambda: pickle.dumps(np.array([None, 1], dtype=object), protocol=5),
    "a structured dtype": lambda: pickle.dumps(np.zeros(2, dtype=[("a", "f8"), ("b", "i4")]), protocol=5),
    # A memo index far beyond what was stored: CPython would zero-fill 16 GiB for it.
    "a memo index of 2**30": lambda: b"\x80\x05N" + b"r" + (2**30).to_bytes(4, "little") + b".",
    "a shape the buffer does not fill": lambda: pickle.dumps(
        Reduced(NUMERIC._frombuffer, (bytearray(16), np.dtype("f8"), (10**6,), "C")), protocol=5
    ),
}


@pytest.mark.parametrize("attack", ATTACKS)
def test_a_hostile_payload_is_refused_without_a_crash_or_an_import(attack: str) -> None:
    payload = ATTACKS[attack]()
    probe = textwrap.dedent(f"""
        import sys
        from vastnb.offload import safe
        from vastnb.errors import UnsafeResultError
        try:
            value = safe({payload!r}, [])
        except UnsafeResultError as exc:
            print("refused:", exc)
        else:
            print("decoded:", type(value).__name__)
        print("imported:", sorted(m for m in sys.modules if m.startswith("numpy.f2py")))
    """)
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, f"the decoder died ({done.returncode}): {done.stderr[-2000:]}"
    assert "refused: the box sent" in done.stdout, done.stdout
    assert "imported: []" in done.stdout and "pwned" not in done.stdout


FRAMES = {
    "numbers, strings, missing values": lambda: pd.DataFrame(
        {"step": [1, 2, 3], "loss": [0.5, None, 0.2], "tag": ["a", None, "c"], "ok": [True, False, True]}
    ),
    "dates, zones, categories": lambda: pd.DataFrame(
        {
            "at": pd.date_range("2024-01-01", periods=3, freq="h"),
            "local": pd.date_range("2024-01-01", periods=3, tz="Europe/Paris"),
            "size": pd.Categorical(["s", "l", "s"], categories=["s", "l"], ordered=True),
        },
        index=pd.Index([10, 20, 30], name="step"),
    ).assign(raw=pd.Series(["x", "y", "z"], index=[10, 20, 30], dtype=object)),
    "a series": lambda: pd.Series([1.5, 2.5], index=pd.CategoricalIndex(["train", "eval"]), name="loss"),
    "a big frame": lambda: pd.DataFrame(np.arange(80_000.0).reshape(10_000, 8), columns=list("abcdefgh")),
}


@pytest.mark.parametrize("make", FRAMES.values(), ids=FRAMES.keys())
def test_dataframes_come_back_as_themselves_under_the_safe_policy(make: Any) -> None:
    value = make()
    body, buffers = protocol.encode(value)
    got = safe(body, [bytearray(b) for b in buffers])
    check = pd.testing.assert_frame_equal if isinstance(value, pd.DataFrame) else pd.testing.assert_series_equal
    check(got, value, check_freq=False)


@pytest.mark.parametrize(
    "args",
    [
        ("frame", [("a", ("strings", [1, 2], "object", None))], ("range", 0, 2, 1, None)),  # "strings" that are not
        ("frame", [("t", ("datetime_tz", np.zeros(1, "M8[ns]"), "../../etc/passwd", None))], ("range", 0, 1, 1, None)),
        (
            "frame",
            [("c", ("categorical", np.zeros(1, "f8"), ("strings", ["a"], "object", None), False, None))],
            ("range", 0, 1, 1, None),
        ),
        ("frame", [("a", ("array", [1, 2], None))], ("range", 0, 2, 1, None)),  # a list posing as an array
        ("series", [], ("range", 0, 0, 1, None)),
        ("frame", [(object(), ("array", np.zeros(1), None))], ("range", 0, 1, 1, None)),
    ],
    ids=[
        "non-strings",
        "a zone that is a path",
        "float codes",
        "a list for an array",
        "an empty series",
        "an odd label",
    ],
)
def test_a_forged_table_is_refused(args: tuple[Any, ...]) -> None:
    payload = pickle.dumps(Reduced(tables.rebuild_table, args), protocol=5)
    with pytest.raises(UnsafeResultError):
        safe(payload, [])


@pytest.mark.parametrize(
    "value",
    [
        {"loss": [0.5, 0.25], "step": 3, "name": "run", "done": True, "when": None},
        np.arange(12.0).reshape(3, 4),
        np.zeros((4, 4))[:, 1],  # not contiguous: numpy's other pickle form
        np.array(["2024-01-01T00:00"], dtype="datetime64[m]"),
        np.float32(1.5),
        {"weight": torch.randn(3, 2), "half": torch.ones(2, dtype=torch.bfloat16)},
        [(shared := (np.eye(3)[:, 1], np.dtype("f4"))), shared],  # one tuple of stand-ins, met twice
    ],
    ids=["plain data", "array", "strided array", "datetimes", "numpy scalar", "state_dict", "a shared tuple"],
)
def test_plain_results_come_back_under_the_safe_policy(value: Any) -> None:
    body, buffers = protocol.encode(value)
    got = safe(body, [bytearray(b) for b in buffers])
    assert repr(got) == repr(value)


def test_vastnbs_own_calls_decode_safely_whatever_the_sessions_policy(box: Session) -> None:
    class Anything:
        pass

    assert box.control(dict, a=1) == {"a": 1}
    with pytest.raises(UnsafeResultError, match="the safe result policy refuses it"):
        box.control(Anything)  # trusted session: its result would be unpickled as anything
    assert isinstance(box.call(Anything), object)  # the user's own calls keep the session's policy
