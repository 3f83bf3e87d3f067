"""What comes back from a box is decoded through a result policy: ``safe`` lets plain data and
arrays through, and refuses anything that would run code here."""

from __future__ import annotations

import collections
import datetime
import decimal

import numpy as np
import pytest

from vastnb.errors import RemoteError, UnsafeResultError
from vastnb.offload import Session, Transport, safe

from .conftest import Boxes


@pytest.fixture
def safe_box(transport: Transport, boxes: Boxes, box: Session) -> Session:
    """A session on the test's box that decodes with the ``safe`` policy."""
    return boxes.session(transport, results=safe)


def test_safe_lets_plain_data_and_arrays_through(safe_box: Session) -> None:
    def data() -> object:
        import collections
        import datetime
        import decimal

        import numpy as np

        return {
            "ints": [1, 2**70, -3],
            "text": "héllo",
            "bytes": b"\x00\xff",
            "nested": ({"a": (1.5, None, True)},),
            "set": {1, 2},
            "ordered": collections.OrderedDict(b=1),
            "when": datetime.datetime(2024, 5, 1, 12),
            "money": decimal.Decimal("1.10"),
            "small": np.arange(10, dtype=np.int16),
            "big": np.ones((512, 512), dtype=np.float32),
            "scalar": np.float64(2.5),
        }

    back = safe_box.call(data)
    assert back["ints"] == [1, 2**70, -3] and back["text"] == "héllo" and back["bytes"] == b"\x00\xff"
    assert back["nested"] == ({"a": (1.5, None, True)},) and back["set"] == {1, 2}
    assert back["ordered"] == collections.OrderedDict(b=1) and back["when"] == datetime.datetime(2024, 5, 1, 12)
    assert back["money"] == decimal.Decimal("1.10")
    assert np.array_equal(back["small"], np.arange(10, dtype=np.int16)) and back["small"].dtype == np.int16
    assert back["big"].shape == (512, 512) and back["big"].sum() == 512 * 512
    assert back["scalar"] == 2.5


def test_safe_refuses_what_would_run_code_here(safe_box: Session) -> None:
    def function() -> object:
        return lambda: "code from the box"

    def payload() -> object:
        import os

        class Payload:
            def __reduce__(self) -> object:
                return (os.system, ("echo pwned",))

        return Payload()

    with pytest.raises(UnsafeResultError) as info:
        safe_box.call(function)
    message = str(info.value)
    assert "safe result policy refuses" in message and "results=trusted" in message
    with pytest.raises(
        UnsafeResultError, match=r"the box sent posix.system: it is not plain data; the safe result policy refuses"
    ):
        safe_box.call(payload)
    assert safe_box.call(lambda: [1, 2]) == [1, 2]  # the session goes on


def test_safe_still_reports_remote_errors(safe_box: Session) -> None:
    def fails() -> None:
        class Custom(Exception):
            pass

        raise Custom("from the box")

    with pytest.raises(RemoteError) as info:
        safe_box.call(fails)
    assert info.value.exception is None  # its class is code: not rebuilt here
    assert info.value.remote_message == "from the box" and "Custom" in info.value.remote_type


def test_trusted_brings_back_functions(box: Session) -> None:
    def make() -> object:
        factor = 3
        return lambda x: x * factor

    assert box.call(make)(5) == 15
