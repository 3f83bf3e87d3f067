"""Ctrl-C in the notebook (a SIGINT to the kernel's main thread) interrupts the remote code."""

from __future__ import annotations

import contextlib
import os
import signal
import threading
import time
from collections.abc import Iterator

import pytest

from vastnb.offload import Session


@contextlib.contextmanager
def ctrl_c_after(*delays: float) -> Iterator[None]:
    """Send SIGINT to this process after each delay (seconds from now), as Ctrl-C in a kernel does."""
    timers = [threading.Timer(delay, os.kill, (os.getpid(), signal.SIGINT)) for delay in delays]
    for timer in timers:
        timer.start()
    try:
        yield
    finally:
        for timer in timers:
            timer.cancel()


def states(box: Session) -> dict[int, str]:
    return {info["task"]: info["state"] for info in box.tasks()}


def wait_for_state(box: Session, task: int, state: str, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while states(box).get(task) != state and time.monotonic() < deadline:
        time.sleep(0.02)
    assert states(box).get(task) == state


def test_interrupts_a_blocking_call(box: Session) -> None:
    def careful() -> None:
        try:
            time.sleep(30)
        finally:
            print("cleaned up")

    box.call(int)  # connected: the interrupt is not spent on starting the worker
    started = time.monotonic()
    with ctrl_c_after(0.3), pytest.raises(KeyboardInterrupt):
        box.call(careful)
    assert time.monotonic() - started < 3
    assert box.outputs == [("stdout", "cleaned up\n")]  # the box's cleanup code ran
    assert box.call(lambda: "usable") == "usable"
    assert "interrupted" in states(box).values()


def test_interrupts_a_busy_python_loop(box: Session) -> None:
    def spin() -> int:
        n, deadline = 0, time.monotonic() + 30
        while time.monotonic() < deadline:
            n += 1
        return n

    box.call(int)
    started = time.monotonic()
    with ctrl_c_after(0.3), pytest.raises(KeyboardInterrupt):
        box.call(spin)
    assert time.monotonic() - started < 3
    assert box.call(lambda: "usable") == "usable"


def test_interrupt_lands_in_the_cell_and_keeps_the_namespace(box: Session) -> None:
    box.run_cell("import time\nsteps = 0")
    with ctrl_c_after(0.3), pytest.raises(KeyboardInterrupt):
        box.run_cell("while True:\n    steps += 1\n    time.sleep(0.001)")
    assert box.run_cell("steps").value > 0


def test_a_second_ctrl_c_stops_waiting(box: Session) -> None:
    """Code that swallows the interrupt keeps running; a second Ctrl-C gives the notebook back."""

    def stubborn() -> None:
        for _ in range(2):
            with contextlib.suppress(KeyboardInterrupt):
                time.sleep(30)

    box.call(int)
    started = time.monotonic()
    with ctrl_c_after(0.3, 0.8), pytest.raises(KeyboardInterrupt, match="stopped waiting"):
        box.call(stubborn)
    assert time.monotonic() - started < 3
    running = [task for task, state in states(box).items() if state == "running"]
    assert len(running) == 1
    box.interrupt(running[0])  # its second sleep
    wait_for_state(box, running[0], "done")  # it swallowed both, and ended normally


def test_detached_tasks_can_be_interrupted_or_cancelled(box: Session) -> None:
    first = box.submit(time.sleep, 30)
    second = box.submit(lambda: "never runs")
    wait_for_state(box, first.id, "running")
    assert second.state() == "queued"
    second.interrupt()
    assert second.state() == "cancelled"
    first.interrupt()
    with pytest.raises(KeyboardInterrupt):
        first.result()
    assert first.state() == "interrupted"
    with pytest.raises(KeyboardInterrupt, match="cancelled"):
        second.result()
    assert box.call(lambda: 1) == 1


def test_ctrl_c_while_output_is_being_shown_interrupts_the_box(box: Session) -> None:
    """In a notebook, much of the waiting is spent showing output: Ctrl-C lands there too."""

    def chatty() -> None:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            print("working", flush=True)
            time.sleep(0.01)

    record = box.on_output

    def display(stream: str, text: str) -> None:
        record(stream, text)
        if len(box.outputs) == 3:  # type: ignore[attr-defined]
            os.kill(os.getpid(), signal.SIGINT)  # Ctrl-C while this line is being shown
            time.sleep(1)

    box.on_output = display
    box.call(int)
    with pytest.raises(KeyboardInterrupt):
        box.call(chatty)
    box.on_output = record
    task = max(states(box))
    wait_for_state(box, task, "interrupted", timeout=5)  # not still running on the box
    assert box.call(lambda: "usable") == "usable"
