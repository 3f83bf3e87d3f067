"""Session.call: what a notebook's functions, closures and classes do on a box, and what comes back."""

from __future__ import annotations

import os

import numpy as np
import pytest

from vastnb.errors import RemoteError
from vastnb.offload import Session


def add(a: int, b: int = 0) -> int:
    return a + b


def test_functions_closures_lambdas_and_classes(box: Session) -> None:
    assert box.call(add, 2, b=40) == 42 and box.call(add, 1) == 1  # module-level, with kwargs
    assert box.call(os.getpid) != os.getpid()  # it does run elsewhere

    offset, scale = 3, [10]

    def affine(x: int) -> int:  # a closure over this test's values
        return x * scale[0] + offset

    assert box.call(affine, 4) == 43
    assert box.call(lambda *xs, sep="-": sep.join(xs), "a", "b", sep="+") == "a+b"

    class Counter:  # a class of the notebook's, pickled by value both ways
        def __init__(self, start: int) -> None:
            self.n = start

        def bump(self) -> Counter:
            self.n += 1
            return self

    counter = box.call(lambda c: c.bump().bump(), Counter(5))
    assert isinstance(counter, Counter) and counter.n == 7


def test_an_unpicklable_result_is_a_clear_remote_error(box: Session) -> None:
    def numbers() -> object:
        return (i for i in range(3))

    with pytest.raises(RemoteError) as info:
        box.call(numbers)
    message = str(info.value)
    assert "could not be pickled" in message and "generator" in message
    assert "Return plain data" in message
    assert "cloudpickle" not in info.value.remote_traceback and "vastnb_worker" not in info.value.remote_traceback
    assert box.call(add, 1, 1) == 2  # the session goes on


def test_numpy_arrays_round_trip(box: Session) -> None:
    array = np.random.default_rng(0).random(8 << 20)  # 64 MiB of float64
    back = box.call(lambda a: a[::-1].copy(), array)
    assert back.dtype == array.dtype and back.shape == array.shape
    assert np.array_equal(back[::-1], array)
    assert back.flags.writeable
    back[0] = -1.0  # usable as any array

    arrays = [np.arange(n, dtype=dt) for n in (0, 1, 1000, 70_000) for dt in (np.int8, np.float32, np.int64)]
    arrays.append(np.arange(200_000, dtype=np.float64).reshape(400, 500)[:, ::2])  # not contiguous
    for a, b in zip(arrays, box.call(lambda xs: xs, arrays), strict=True):
        assert a.dtype == b.dtype and np.array_equal(a, b)


def test_torch_tensor_round_trip(box: Session) -> None:
    torch = pytest.importorskip("torch")
    tensor = torch.arange(1 << 20, dtype=torch.float32).reshape(1024, 1024)
    back = box.call(lambda t: t * 2, tensor)
    assert torch.equal(back, tensor * 2)
