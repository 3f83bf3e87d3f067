"""Control calls (``Session.control``: vastnb's own calls, such as arming the watchdog or
installing storage credentials) are answered beside the user's work, never behind it,
and are never tasks: no id, not listed, not attachable. A frame of a kind the worker
does not take gets an error answer, and the connection goes on.

A user's function blocks on an event in the box's worker process, which only a control
call sets: were control calls queued behind tasks, the blocked one would give up first
and say so (no sleeps, no timing assertions).
"""

from __future__ import annotations

import os
import sys
import threading
import time
import types
from pathlib import Path
from typing import Any

import pytest

from vastnb.errors import RemoteError
from vastnb.offload import Session, Transport
from vastnb.offload.connection import Connection
from vastnb_worker import watchdog
from vastnb_worker.protocol import Frame, Kind

from .conftest import Boxes, worker_home

GIVE_UP = 120.0  # a blocked task gives up after this: only a control call that never came lets it


def gate() -> Any:
    """Two events shared by everything the box's worker runs (each test has its own worker)."""
    shared = sys.modules.get("vastnb_test_gate")
    if shared is None:
        fresh = types.ModuleType("vastnb_test_gate")
        fresh.started, fresh.release = threading.Event(), threading.Event()  # type: ignore[attr-defined]
        shared = sys.modules.setdefault("vastnb_test_gate", fresh)
    return shared


def blocked() -> str:
    """The user's work: runs until a control call releases it."""
    gate().started.set()
    return "released" if gate().release.wait(GIVE_UP) else "never released"


def started() -> bool:
    """A control call: True once the user's work runs (it waits for it)."""
    return bool(gate().started.wait(GIVE_UP))


def release() -> str:
    """A control call: lets the user's work end."""
    if not gate().started.wait(GIVE_UP):
        return "the task never started"
    gate().release.set()
    return "released it"


def noisy() -> str:
    print("printed by a control call")
    return "noisy"


def fails() -> None:
    raise ValueError("a control call failed")


def test_a_control_call_completes_while_a_call_blocks(box: Session, transport: Transport) -> None:
    task = box.submit(blocked)
    assert box.control(started) is True
    assert box.control(noisy) == "noisy"
    assert box.control(release) == "released it"  # queued behind `blocked`, it would come too late
    assert task.result() == "released"
    assert box.outputs == []  # type: ignore[attr-defined]  # not the running task's output...
    assert "printed by a control call" in (Path(worker_home(transport)) / "daemon.log").read_text()  # ...the log's


def test_a_control_call_completes_while_a_cell_runs(box: Session, boxes: Boxes, transport: Transport) -> None:
    cell = "gate().started.set()\noutcome = 'released' if gate().release.wait(GIVE_UP) else 'never released'\n"
    outcome: dict[str, Any] = {}

    def run() -> None:
        try:
            outcome["cell"] = box.run_cell(cell, push={"gate": gate, "GIVE_UP": GIVE_UP}, pull=["outcome"])
        except BaseException as exc:  # noqa: BLE001 - reported by the assertion below
            outcome["error"] = exc

    runner = threading.Thread(target=run)
    runner.start()
    other = boxes.session(transport)  # another notebook, or vastnb's own thread
    try:
        assert other.control(started) is True
        assert [(t["task"], t["state"]) for t in other.tasks()] == [(1, "running")]
        assert other.control(watchdog.status)["armed"] is False  # one of vastnb's own control calls
        assert other.ping() > 0
    finally:
        assert other.control(release) == "released it"
        runner.join(GIVE_UP)
    assert "error" not in outcome, outcome.get("error")
    assert outcome["cell"]["outcome"] == "released"


def test_control_calls_are_no_tasks(box: Session) -> None:
    assert box.control(dict, a=1) == {"a": 1}
    assert box.control(os.getpid) == box.connect().hello["pid"]  # the daemon itself runs them
    with pytest.raises(RemoteError, match="a control call failed") as info:
        box.control(fails)
    assert info.value.remote_type == "ValueError" and info.value.task is None
    assert box.tasks() == []
    for task in (1, 2, 3):
        with pytest.raises(RemoteError, match=f"no task {task} on this box"):
            box.attach(task)
    first = box.submit(lambda: "first")
    assert first.id == 1 and first.result() == "first"
    assert box.control(str, 2) == "2"
    assert box.call(lambda: "second") == "second"
    assert [t["task"] for t in box.tasks()] == [1, 2]


def answer(connection: Connection) -> Frame:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        frame = connection.next(timeout=0.5)
        if frame is not None:
            return frame
    raise AssertionError("the worker did not answer")


@pytest.mark.parametrize(
    ("kind", "named"),
    [(99, "unknown kind 99"), (int(Kind.RESULT), "RESULT (21)"), (int(Kind.HELLO), "HELLO (1)")],
    ids=["a kind of no protocol", "a worker's kind", "a second HELLO"],
)
def test_a_kind_the_worker_does_not_take_gets_an_error_answer(box: Session, kind: int, named: str) -> None:
    connection = box.connect()
    connection.send(kind, 7, {"some": "meta"}, b"a body", [bytearray(5000)])  # type: ignore[arg-type]
    frame = answer(connection)
    assert (frame.kind, frame.task) == (Kind.ERROR, 7)
    assert frame.meta["type"] == "ProtocolError" and frame.meta["kind"] == kind
    assert f"does not take {named} frames" in frame.meta["message"]
    assert box.connect() is connection  # the same connection goes on
    assert box.call(lambda: "still serving") == "still serving"
    assert box.tasks()[0]["task"] == 1  # and the refused frame was no task
