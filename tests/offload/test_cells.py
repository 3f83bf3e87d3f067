"""Session.run_cell: a persistent namespace on the box, like an IPython engine."""

from __future__ import annotations

import numpy as np
import pytest

from vastnb.errors import RemoteError
from vastnb.offload import CellResult, Session


def test_namespace_persists_across_cells(box: Session) -> None:
    box.run_cell("import math\nradius = 2")
    box.run_cell("area = math.pi * radius ** 2\ndef double(x):\n    return 2 * x\n")
    assert box.run_cell("round(area, 3)").value == 12.566
    assert box.run_cell("double(21)").value == 42


def test_push_and_pull(box: Session) -> None:
    weights = np.arange(1_000_000, dtype=np.float32)
    result = box.run_cell(
        "total = float(w.sum())\nw *= 2\nlabel = name.upper()",
        push={"w": weights, "name": "run"},
        pull=["total", "w", "label"],
    )
    assert isinstance(result, CellResult)
    assert set(result) == {"total", "w", "label"}
    assert result["total"] == float(weights.sum())
    assert np.array_equal(result["w"], weights * 2) and result["label"] == "RUN"
    assert box.run_cell("name").value == "run"  # pushed names stay on the box


def test_value_is_the_last_expression_and_output_streams(box: Session) -> None:
    result = box.run_cell("x = 20\nx + 22")
    assert result.value == 42 and dict(result) == {}
    assert box.run_cell("y = x").value is None  # an assignment last: no value
    assert box.run_cell("for i in range(3):\n    print('cell', i)").value is None
    assert box.run_cell("").value is None
    assert box.outputs.text() == "cell 0\ncell 1\ncell 2\n"  # type: ignore[attr-defined]


def test_pulling_a_missing_name_is_a_name_error(box: Session) -> None:
    with pytest.raises(RemoteError) as info:
        box.run_cell("present = 1", pull=["present", "absent"])
    assert info.value.remote_type == "NameError"
    assert "absent" in info.value.remote_message and "present" not in info.value.remote_message
    assert isinstance(info.value.exception, NameError)
    assert box.run_cell("present").value == 1  # the cell itself ran


def test_syntax_error_names_the_line(box: Session) -> None:
    with pytest.raises(RemoteError) as info:
        box.run_cell("a = 1\nb = (2 +\nc = 3\n")
    error = info.value
    assert error.remote_type == "SyntaxError"
    assert isinstance(error.exception, SyntaxError)
    assert "line 2" in error.remote_traceback or "line 3" in error.remote_traceback
    assert "b = (2 +" in error.remote_traceback or "c = 3" in error.remote_traceback
    assert "vastnb_worker" not in error.remote_traceback and "ast.py" not in error.remote_traceback


def test_error_in_a_cell_shows_the_cell_line(box: Session) -> None:
    with pytest.raises(RemoteError) as info:
        box.run_cell("ok = 1\nboom = 1 / 0\n")
    error = info.value
    assert error.remote_type == "ZeroDivisionError"
    assert "line 2" in error.remote_traceback and "boom = 1 / 0" in error.remote_traceback
    assert "vastnb_worker" not in error.remote_traceback
    assert box.run_cell("ok").value == 1  # lines before the error ran; the namespace is intact
