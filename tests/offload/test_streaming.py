"""What the remote code prints arrives here, in order and live, whatever writes it."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

from vastnb.offload import Session


def test_prints_arrive_in_order(box: Session) -> None:
    def chatty(n: int) -> int:
        for i in range(n):
            print(f"line {i}")
        return n

    assert box.call(chatty, 200) == 200
    assert box.outputs == [("stdout", f"line {i}\n") for i in range(200)]


def test_reports_are_taken_out_of_the_output_as_they_come(box: Session) -> None:
    def train(steps: int) -> str:
        from vastnb_worker import report

        for step in range(steps):
            print(f"step {step}")
            report(step, loss=1.0 / (step + 1))
        print("\x1evastnb-metrics {'step': 1}")  # a box may print anything: not a report
        return "done"

    assert box.call(train, 3) == "done"
    assert box.outputs == [("stdout", f"step {i}\n") for i in range(3)]
    frame = box.metrics.frame()
    assert frame["step"].tolist() == [0, 1, 2]
    assert frame["loss"].tolist() == [1.0, 0.5, 1.0 / 3]
    assert frame["time"].is_monotonic_increasing and box.metrics.rejected == 1


def test_stdout_and_stderr_interleave_in_order(box: Session) -> None:
    def both() -> None:
        for i in range(20):
            print(f"out {i}")
            print(f"err {i}", file=sys.stderr)
        sys.stdout.write("no newline at the end")

    box.call(both)
    expected = []
    for i in range(20):
        expected += [("stdout", f"out {i}\n"), ("stderr", f"err {i}\n")]
    assert box.outputs == [*expected, ("stdout", "no newline at the end")]


def test_output_arrives_while_the_call_runs(box: Session, tmp_path: Path) -> None:
    """The box prints, then waits for a file that this side creates only once it has seen
    the line: the call can only succeed if the line arrived before the call ended. (Both
    transports reach a worker on this machine, so the file is visible to both sides.)"""
    flag = tmp_path / "seen"

    def wait_for_reply(path: str) -> bool:
        print("ready", flush=True)
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            if os.path.exists(path):
                print("done")
                return True
            time.sleep(0.01)
        return False

    seen_at: list[float] = []

    def on_output(stream: str, text: str) -> None:
        box.outputs.append((stream, text))  # type: ignore[attr-defined]
        if text == "ready\n":
            seen_at.append(time.monotonic())
            flag.touch()

    box.on_output = on_output
    assert box.call(wait_for_reply, str(flag)) is True
    assert box.outputs == [("stdout", "ready\n"), ("stdout", "done\n")]
    assert seen_at


def test_output_written_below_python_arrives(box: Session) -> None:
    """A subprocess writes to the worker's file descriptors 1 and 2, not to sys.stdout."""
    code = box.call(os.system, "echo from-a-shell; echo to-stderr >&2; printf no-newline")
    assert code == 0
    assert sorted(box.outputs) == [("stderr", "to-stderr\n"), ("stdout", "from-a-shell\n"), ("stdout", "no-newline")]
    box.outputs.clear()  # type: ignore[attr-defined]
    box.call(print, "next")  # nothing of the last task leaks into the next one
    assert box.outputs == [("stdout", "next\n")]


def test_output_below_python_is_never_lost(box: Session) -> None:
    """The last bytes a subprocess writes arrive before the task's result, every time; raw
    bytes on file descriptor 1 are output too, and cannot corrupt the stream."""
    for i in range(12):
        box.outputs.clear()  # type: ignore[attr-defined]
        box.call(os.system, f"echo {i}; echo e{i} >&2")
        assert sorted(box.outputs) == [("stderr", f"e{i}\n"), ("stdout", f"{i}\n")]
    box.outputs.clear()  # type: ignore[attr-defined]
    box.call(lambda: os.write(1, b"\x00\x01 raw bytes on fd 1\n" * 3))
    assert box.outputs == [("stdout", "\x00\x01 raw bytes on fd 1\n" * 3)]
    assert box.call(lambda: 2 + 2) == 4


def test_carriage_return_progress_arrives(box: Session) -> None:
    def progress() -> None:
        for pct in (0, 50, 100):
            print(f"\rprogress {pct:3d}%", end="", flush=True)
        print()

    box.call(progress)
    assert box.outputs.text("stdout") == "\rprogress   0%\rprogress  50%\rprogress 100%\n"  # type: ignore[attr-defined]
    # Each update is shown as it comes, not held back until the newline.
    chunks = [t for _, t in box.outputs]  # type: ignore[attr-defined]
    assert any("progress   0%" in t and "100" not in t for t in chunks)
