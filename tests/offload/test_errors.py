"""An exception on the box is raised here as a RemoteError with the box's traceback."""

from __future__ import annotations

import pytest

from vastnb.errors import RemoteError, VastError
from vastnb.offload import Session


def failing_function(x: int) -> int:
    scale = 10
    return x // (scale - 10)  # the line the traceback points at


def test_remote_traceback_shows_the_users_code_only(box: Session) -> None:
    with pytest.raises(RemoteError) as info:
        box.call(failing_function, 3)
    error = info.value
    assert isinstance(error, VastError)
    assert error.remote_type == "ZeroDivisionError"
    assert error.remote_message == "integer division or modulo by zero"
    trace = error.remote_traceback
    assert trace.startswith("Traceback (most recent call last):")
    assert "in failing_function" in trace and "return x // (scale - 10)" in trace
    assert f'File "{__file__}", line {failing_function.__code__.co_firstlineno + 2}, in failing_function' in trace
    assert "vastnb_worker" not in trace and "cloudpickle" not in trace
    assert "<dynamic-code>" not in trace and "<vastnb:" not in trace  # code ids stay between notebook and box
    assert trace.rstrip().endswith("ZeroDivisionError: integer division or modulo by zero")
    assert "ZeroDivisionError" in str(error) and "return x // (scale - 10)" in str(error)
    assert error.task is not None


def test_nested_calls_and_the_original_exception(box: Session) -> None:
    class TrainingDiverged(Exception):
        def __init__(self, step: int) -> None:
            super().__init__(f"loss is nan at step {step}")
            self.step = step

    def inner(step: int) -> None:
        raise TrainingDiverged(step)

    def outer() -> None:
        inner(17)

    with pytest.raises(RemoteError) as info:
        box.call(outer)
    trace = info.value.remote_traceback
    assert trace.index("in outer") < trace.index("in inner")
    exception = info.value.exception
    assert type(exception).__name__ == "TrainingDiverged" and exception.step == 17  # type: ignore[union-attr]
    assert info.value.remote_type.endswith("TrainingDiverged")
    assert info.value.remote_message == "loss is nan at step 17"
    with pytest.raises(RemoteError) as info:
        box.call({}.__getitem__, "missing")
    assert isinstance(info.value.exception, KeyError) and info.value.exception.args == ("missing",)


def test_an_exception_that_does_not_pickle_still_reports(box: Session) -> None:
    def unpicklable() -> None:
        error = RuntimeError("holds a generator")
        error.payload = (i for i in range(2))  # type: ignore[attr-defined]
        raise error

    with pytest.raises(RemoteError) as info:
        box.call(unpicklable)
    assert info.value.exception is None
    assert info.value.remote_type == "RuntimeError" and "holds a generator" in info.value.remote_traceback


def test_render_traceback_for_ipython(box: Session) -> None:
    with pytest.raises(RemoteError) as info:
        box.call(failing_function, 1)
    lines = info.value._render_traceback_()
    assert lines[0].startswith("RemoteError (task")
    assert "return x // (scale - 10)" in "\n".join(lines)
    assert lines[-1] == "ZeroDivisionError: integer division or modulo by zero"
    assert not any("vastnb_worker" in line or "vastnb/offload" in line for line in lines)


def test_a_detached_tasks_traceback_too(box: Session) -> None:
    task = box.submit(failing_function, 2)
    with pytest.raises(RemoteError) as info:
        task.result()
    assert "return x // (scale - 10)" in info.value.remote_traceback


def test_session_is_usable_after_errors_and_system_exit(box: Session) -> None:
    import sys

    with pytest.raises(RemoteError) as info:
        box.call(sys.exit, 3)
    assert info.value.remote_type == "SystemExit"  # it does not end the worker
    for _ in range(3):
        with pytest.raises(RemoteError):
            box.call(failing_function, 0)
    assert box.call(lambda: "still here") == "still here"
