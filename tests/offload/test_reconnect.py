"""A dropped connection is a clear error; the work goes on on the box; the session reconnects,
and a task is reattached by id with all the output it produced, meanwhile included.

The connection is dropped by killing its process: the relay for the local transport, the
``ssh`` client for SSH (its ControlMaster, and the box, live on).
"""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path

import pytest

from vastnb.errors import ConnectionLostError, RemoteError
from vastnb.offload import Session


def ticker(n: int, pause: float, flag: str = "") -> str:
    """Prints ``n`` ticks, ``pause`` s apart; with ``flag``, first waits for that file."""
    print("tick 0", flush=True)
    deadline = time.monotonic() + 20
    while flag and not os.path.exists(flag) and time.monotonic() < deadline:
        time.sleep(0.01)
    for i in range(1, n):
        time.sleep(pause)
        print(f"tick {i}", flush=True)
    return f"{n} ticks"


def ticks(n: int) -> list[tuple[str, str]]:
    return [("stdout", f"tick {i}\n") for i in range(n)]


def drop_on(box: Session, text: str) -> threading.Event:
    """Kill the connection's process as soon as ``text`` is printed by the box."""
    dropped = threading.Event()
    record = box.on_output

    def on_output(stream: str, chunk: str) -> None:
        record(stream, chunk)
        if chunk == text and not dropped.is_set():
            dropped.set()
            assert box._connection is not None
            box._connection.process.kill()

    box.on_output = on_output
    return dropped


def test_drop_during_a_call_then_attach(box: Session, tmp_path: Path) -> None:
    box.run_cell("marker = 'set before the drop'")
    flag = tmp_path / "go"
    drop_on(box, "tick 0\n")
    with pytest.raises(ConnectionLostError) as info:
        box.call(ticker, 4, 0.05, str(flag))
    error = info.value
    assert error.task is not None
    assert f"task {error.task}" in str(error) and f"attach({error.task})" in str(error)
    assert box.outputs == ticks(1)  # type: ignore[attr-defined]
    flag.touch()  # the box carries on meanwhile

    box.outputs.clear()  # type: ignore[attr-defined]
    assert box.attach(error.task) == "4 ticks"  # reconnects by itself
    assert box.outputs == ticks(4)  # type: ignore[attr-defined]  # from the start
    assert box.run_cell("marker").value == "set before the drop"  # the namespace survived


def test_a_task_that_ends_while_disconnected_keeps_its_result(box: Session, tmp_path: Path) -> None:
    flag = tmp_path / "go"
    drop_on(box, "tick 0\n")
    with pytest.raises(ConnectionLostError) as info:
        box.call(ticker, 2, 0.0, str(flag))
    flag.touch()
    task = info.value.task
    assert task is not None
    time.sleep(0.3)  # it ends while nobody is connected
    box.outputs.clear()  # type: ignore[attr-defined]
    assert box.attach(task) == "2 ticks"
    assert box.outputs == ticks(2)  # type: ignore[attr-defined]


def test_drop_while_waiting_on_a_detached_task(box: Session) -> None:
    task = box.submit(ticker, 6, 0.1)
    drop_on(box, "tick 1\n")
    with pytest.raises(ConnectionLostError) as info:
        task.result()
    assert info.value.task == task.id
    box.outputs.clear()  # type: ignore[attr-defined]
    assert box.attach(task.id) == "6 ticks"
    assert box.outputs == ticks(6)  # type: ignore[attr-defined]


def test_next_call_after_a_drop_reconnects(box: Session) -> None:
    assert box.call(lambda: 1) == 1
    assert box._connection is not None
    box._connection.process.kill()
    box._connection.process.wait()
    assert box.call(lambda: 2) == 2
    assert box.ping() < 1.0


def test_user_subprocesses_do_not_hold_the_connection_open(box: Session) -> None:
    """A background process started by the user's code must not keep a dropped (or closed)
    connection alive: the session would then never learn that it dropped."""
    box.call(lambda: __import__("os").system("sleep 20 &"))
    flag = threading.Event()
    drop_on(box, "tick 0\n")
    started = time.monotonic()
    with pytest.raises(ConnectionLostError):
        box.call(ticker, 2, 5.0)
    assert time.monotonic() - started < 4
    flag.set()


def test_drop_before_the_first_frame_still_names_the_task(box: Session) -> None:
    """A call that prints nothing: the id of an attached task comes with its first frame,
    so the session asks the box for it when the connection drops before that."""
    box.call(int)
    assert box._connection is not None
    killer = threading.Timer(0.3, box._connection.process.kill)
    killer.start()
    try:
        with pytest.raises(ConnectionLostError) as info:
            box.call(lambda: time.sleep(1.0) or "slept")
    finally:
        killer.cancel()
    task = info.value.task
    assert task is not None and task > 0 and f"attach({task})" in str(info.value)
    assert box.attach(task) == "slept"


def test_cell_reattached_by_id_is_a_cell_result(box: Session, tmp_path: Path) -> None:
    flag = tmp_path / "go"
    drop_on(box, "waiting\n")
    source = f"import os, time\nprint('waiting', flush=True)\nwhile not os.path.exists({str(flag)!r}):\n    time.sleep(0.01)\nanswer = 42\nanswer - 1"
    with pytest.raises(ConnectionLostError) as info:
        box.run_cell(source, pull=["answer"])
    flag.touch()
    assert info.value.task is not None
    result = box.attach(info.value.task)
    assert result == {"answer": 42} and result.value == 41


def test_a_worker_killed_mid_task_is_reported_as_such(box: Session) -> None:
    """The worker itself ending (the kernel's OOM killer, a crash) is no dropped connection:
    there is nothing to reattach to, and the error says so."""
    pid = box.call(os.getpid)
    box.run_cell("defined = 1")
    killer = threading.Timer(0.3, os.kill, (pid, signal.SIGKILL))
    killer.start()
    try:
        with pytest.raises(ConnectionLostError) as info:
            box.call(time.sleep, 10)
    finally:
        killer.cancel()
    message = str(info.value)
    assert "worker" in message and "ended while task" in message and "killed (out of memory?) or crashed" in message
    assert "keeps running" not in message and info.value.task is None
    with pytest.warns(UserWarning, match="restarted: names defined by earlier cells are gone"):
        assert box.call(os.getpid) != pid  # a new worker
    with pytest.raises(RemoteError, match="NameError"):
        box.run_cell("defined")


def test_user_code_ending_the_worker_process(box: Session) -> None:
    box.call(int)
    with pytest.raises(ConnectionLostError, match="ended while task"):
        box.call(os._exit, 3)
    with pytest.warns(UserWarning):
        assert box.call(lambda: "back") == "back"


def test_a_closed_connection_reads_nothing_more_before_its_pipe_is_closed(box: Session) -> None:
    """Its frames thread has ended before its descriptor is closed: a number closed under a
    reading thread is reused by the next connection's pipe, whose bytes that thread would take
    (the next relay's first line: the next connect then waits for ever)."""
    first = box.connect()
    assert box.call(sum, [1, 2]) == 3
    reader = first._reader
    assert reader is not None and reader.is_alive()
    box.close()
    assert not reader.is_alive() and first.process.stdout is not None and first.process.stdout.closed
    for _ in range(5):  # the next connections get the freed numbers, and work
        box.connect()
        assert box.call(sum, [2, 2]) == 4
        box.close()
