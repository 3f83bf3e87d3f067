"""Work started detached keeps running without a connection, and is reattached by id, from a
new session too, with everything it printed meanwhile."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from vastnb.errors import RemoteError
from vastnb.offload import CellResult, RemoteTask, Session, Transport

from .conftest import Boxes


def wait_for(box: Session, task: int, state: str, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if {t["task"]: t["state"] for t in box.tasks()}.get(task) == state:
            return
        time.sleep(0.02)
    raise AssertionError(f"task {task} never became {state}: {box.tasks()}")


def countdown(n: int, flag: str) -> str:
    import os

    print("start", flush=True)
    deadline = time.monotonic() + 20
    while not os.path.exists(flag) and time.monotonic() < deadline:
        time.sleep(0.01)
    for i in range(n, 0, -1):
        print(i, flush=True)
    return "liftoff"


def test_submit_returns_at_once_and_reattaches_from_a_new_session(
    box: Session, transport: Transport, boxes: Boxes, tmp_path: Path
) -> None:
    flag = tmp_path / "go"
    box.call(int)  # connected: what follows measures submit alone
    started = time.monotonic()
    task = box.submit(countdown, 3, str(flag))
    assert time.monotonic() - started < 1.0
    assert isinstance(task, RemoteTask) and task.id > 0
    wait_for(box, task.id, "running")
    info = next(t for t in box.tasks() if t["task"] == task.id)
    assert info["detached"] is True and info["kind"] == "call"
    assert box.outputs == []  # type: ignore[attr-defined]  # a detached task streams only when attached
    box.close()

    flag.touch()  # it finishes while no session is connected
    again = boxes.session(transport)
    wait_for(again, task.id, "done")
    assert again.attach(task.id) == "liftoff"
    assert again.outputs == [("stdout", "start\n"), ("stdout", "3\n"), ("stdout", "2\n"), ("stdout", "1\n")]  # type: ignore[attr-defined]
    assert again.attach(task.id) == "liftoff"  # a detached task's result can be fetched again


def test_attach_while_it_runs_streams_the_past_then_the_rest(box: Session, tmp_path: Path) -> None:
    flag = tmp_path / "go"
    task = box.submit(countdown, 2, str(flag))
    wait_for(box, task.id, "running")
    record = box.on_output

    def on_output(stream: str, text: str) -> None:
        record(stream, text)
        if text == "start\n":
            flag.touch()  # the past came first; the rest is produced after it

    box.on_output = on_output
    assert task.result() == "liftoff"
    assert box.outputs.text() == "start\n2\n1\n"  # type: ignore[attr-defined]


def test_submit_cell_with_pull_reattached_from_a_new_session(
    box: Session, transport: Transport, boxes: Boxes, tmp_path: Path
) -> None:
    flag = tmp_path / "go"
    box.run_cell("base = 10")
    task = box.submit_cell(
        f"import os, time\nprint('training', flush=True)\nwhile not os.path.exists({str(flag)!r}):\n"
        "    time.sleep(0.01)\nloss = base / 4\nprint('done')\n'finished'",
        pull=["loss"],
    )
    wait_for(box, task.id, "running")
    box.close()
    flag.touch()
    again = boxes.session(transport)
    result = again.attach(task.id)
    assert isinstance(result, CellResult)
    assert result == {"loss": 2.5} and result.value == "finished"
    assert again.outputs.text() == "training\ndone\n"  # type: ignore[attr-defined]
    assert again.run_cell("loss").value == 2.5  # the cell ran in the box's namespace
    cell = RemoteTask(again, task.id, cell=True).result()
    assert cell == {"loss": 2.5} and cell.value == "finished"


def test_detached_failure_is_raised_on_attach(box: Session) -> None:
    def fails() -> None:
        print("about to fail")
        raise ValueError("bad input")

    task = box.submit(fails)
    with pytest.raises(RemoteError) as info:
        task.result()
    assert info.value.remote_type == "ValueError" and info.value.task == task.id
    assert box.outputs == [("stdout", "about to fail\n")]  # type: ignore[attr-defined]
    assert task.state() == "failed"


def test_tasks_run_one_at_a_time_in_order(box: Session) -> None:
    first = box.submit(time.sleep, 0.3)
    assert box.call(lambda: "after") == "after"
    assert first.state() == "done"
    assert any("waits for task(s)" in text for stream, text in box.outputs if stream == "stderr")  # type: ignore[attr-defined]


def test_attach_to_an_unknown_task(box: Session) -> None:
    with pytest.raises(RemoteError) as info:
        box.attach(9999)
    assert "no task 9999" in str(info.value)
