"""A hostile worker at the protocol level: a box whose operator replaced vastnb's worker
with a program that speaks the real wire (the bootstrap's answer, the handshake, frames)
and answers every call with crafted frames. The notebook must stay up and unharmed:
bounded memory, no code run, no local file printed, a clear error each time.
"""

from __future__ import annotations

import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path

import pytest

from vastnb.errors import ConnectionLostError, RemoteError, UnsafeResultError
from vastnb.offload import Session, Transport, safe

#: The fake worker: it answers the bootstrap as a box that has the worker cached, mirrors
#: the notebook's versions in its HELLO, then answers each task with the scenario's frames.
FAKE = textwrap.dedent("""
    import json, os, pickle, struct, sys
    from vastnb_worker.protocol import Channel, Kind
    scenario = sys.argv[1]
    os.write(1, b"HAVE\\n")
    channel = Channel(0, 1)
    hello = channel.receive()
    channel.send(Kind.HELLO, meta={"versions": hello.meta["versions"], "health": {}, "pid": os.getpid()})
    request = channel.receive()
    if scenario == "huge":  # a header announcing a terabyte body, then nothing
        os.write(1, struct.pack("!BIIIQ", int(Kind.RESULT), 1, 0, 0, 1 << 40))
    elif scenario == "deep":  # meta nested a million deep
        meta = b"[" * 1_000_000 + b"]" * 1_000_000
        os.write(1, struct.pack("!BIIIQ", int(Kind.RESULT), 1, len(meta), 0, 0) + meta)
    elif scenario == "code":  # a result whose unpickling would run a command
        channel.send(Kind.RESULT, 1, {}, b"cos\\nsystem\\n(S'echo pwned > PWNED'\\ntR.")
    elif scenario == "traceback":  # a traceback naming the user's secrets and escaping the terminal
        frames = [{"file": sys.argv[2], "line": 1, "name": "steal"}, {"code": "f" * 16, "line": 1, "name": "x\\x1b[2J"}]
        channel.send(Kind.ERROR, 1, {"type": "Exception", "message": "boom", "frames": frames, "exception": "Exception: boom\\n"})
    elif scenario == "flood":  # an error whose type and message are megabytes of terminal escapes
        channel.send(Kind.ERROR, 1, {"type": "\x1b[2J" * 100_000, "message": "\x1b]0;pwned\x07" * 200_000})
    elif scenario == "garbage":  # not even a frame
        os.write(1, bytes(range(256)) * 16)
    sys.stdin.read()
""")


@dataclass
class FakeBox(Transport):
    """A 'box' whose worker is :data:`FAKE` playing ``scenario``."""

    scenario: str
    extra: str = ""

    def argv(self, boot_args: list[str]) -> list[str]:
        return [sys.executable, "-c", FAKE, self.scenario, self.extra]

    def describe(self) -> str:
        return f"a hostile box ({self.scenario})"


def session(scenario: str, extra: str = "") -> Session:
    return Session(FakeBox(scenario, extra), results=safe, connect_timeout=20, max_frame_bytes=1 << 30)


def test_a_frame_announcing_a_terabyte_ends_the_connection_unread() -> None:
    with session("huge") as box, pytest.raises(ConnectionLostError, match="over the limit of 1,073,741,824"):
        box.call(int)


def test_a_meta_nested_a_million_deep_ends_the_connection_not_the_notebook() -> None:
    with session("deep") as box, pytest.raises(ConnectionLostError, match="malformed frame"):
        box.call(int)


def test_garbage_instead_of_frames_is_a_lost_connection() -> None:
    with session("garbage") as box, pytest.raises(ConnectionLostError, match="corrupt frame header"):
        box.call(int)


def test_a_result_that_would_run_code_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    with session("code") as box, pytest.raises(UnsafeResultError, match=r"posix.system|os.system"):
        box.call(int)
    assert not (tmp_path / "PWNED").exists()


def test_a_traceback_cannot_print_a_local_file_or_escape_the_terminal(tmp_path: Path) -> None:
    secret = tmp_path / "credentials"
    secret.write_text("aws_secret_access_key = hunter2\n")
    with session("traceback", str(secret)) as box, pytest.raises(RemoteError) as info:
        box.call(int)
    shown = str(info.value) + "\n".join(info.value._render_traceback_())
    assert "hunter2" not in shown and "\x1b" not in shown


def test_an_error_flooded_with_escapes_is_bounded_and_inert() -> None:
    with session("flood") as box, pytest.raises(RemoteError) as info:
        box.call(int)
    error = info.value
    assert len(error.remote_type) <= 500 and len(error.remote_message) <= 20_000
    assert "\x1b" not in str(error) and "\x07" not in str(error)
