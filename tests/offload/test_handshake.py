"""The handshake refuses what cannot work, saying why and what to do; a stale worker steps
aside. The bootstrap ships the worker once per box and explains a box without python3."""

from __future__ import annotations

import hashlib
import io
import os
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pytest

from vastnb.errors import HandshakeError, TransportError
from vastnb.offload import LocalTransport, Session, SSHTransport, Transport
from vastnb.offload.connection import Connection
from vastnb.offload.zipapp import worker_zipapp
from vastnb_worker import __version__, protocol
from vastnb_worker.protocol import Channel, Kind

from .conftest import Boxes, daemon_pids

THIS_PYTHON = f"{sys.version_info.major}.{sys.version_info.minor}"


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return Path(f"/proc/{pid}/stat").exists() and Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] != "Z"


def test_a_different_python_is_refused_with_both_versions_and_the_fix(box: Session, transport: Transport) -> None:
    box.call(int)  # the box's worker runs
    with pytest.raises(HandshakeError) as info:
        Connection.open(transport, {**box.versions, "python": "3.8"}, timeout=10)
    message = str(info.value)
    assert "python mismatch" in message
    assert "the notebook has 3.8" in message and f"the box has {THIS_PYTHON}" in message
    assert f"run the notebook on Python {THIS_PYTHON}" in message
    assert transport.describe() in message
    assert box.call(lambda: "unharmed") == "unharmed"  # the worker keeps serving its own clients


@pytest.mark.parametrize("theirs", [protocol.PROTOCOL_VERSION - 1, 999], ids=["the previous protocol", "a future one"])
def test_a_different_protocol_is_refused(box: Session, transport: Transport, boxes: Boxes, theirs: int) -> None:
    assert protocol.PROTOCOL_VERSION == 3  # control calls outside the task queue
    old_pid = box.call(os.getpid)
    box_has = f"the box has {protocol.PROTOCOL_VERSION}"
    with pytest.raises(
        HandshakeError, match=f"protocol mismatch: the notebook has {theirs}, {box_has}; update vastnb"
    ) as info:
        Connection.open(transport, {**box.versions, "protocol": theirs}, timeout=10)
    # Idle, a worker of another protocol steps aside: the notebook's own worker comes next.
    assert info.value.restarting is True  # type: ignore[attr-defined]
    assert boxes.session(transport).call(os.getpid) != old_pid


def test_a_busy_worker_of_another_protocol_keeps_its_work(box: Session, transport: Transport) -> None:
    task = box.submit(time.sleep, 30)
    with pytest.raises(HandshakeError, match="protocol mismatch") as info:
        Connection.open(transport, {**box.versions, "protocol": protocol.PROTOCOL_VERSION - 1}, timeout=10)
    assert info.value.restarting is False  # type: ignore[attr-defined]
    assert f"task(s) {task.id}" in str(info.value)
    assert task.state() == "running"
    task.interrupt()


def start_stale_worker(transport: Transport) -> int:
    """Start a worker on the box that states another release (another zipapp digest), as
    one left behind by an older vastnb would; its pid."""
    current, _ = worker_zipapp()
    with zipfile.ZipFile(buffer := io.BytesIO(current), "a") as archive:
        archive.comment = b"an older release"  # other bytes, the same code
    data = buffer.getvalue()
    stale = hashlib.sha256(data).hexdigest()
    lib = Path(str(transport.home)) / "lib"
    lib.mkdir(parents=True, exist_ok=True)
    (lib / f"{stale}.pyz").write_bytes(data)  # the bootstrap finds it cached: HAVE
    process = subprocess.Popen(transport.argv([stale, str(len(data))]), stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    assert process.stdin is not None and process.stdout is not None
    try:
        assert process.stdout.readline() == b"HAVE\n"
        channel = Channel(process.stdout.fileno(), process.stdin.fileno())
        from vastnb_worker import protocol

        channel.send(Kind.HELLO, meta={"versions": protocol.versions(f"{__version__}+{stale[:12]}")})
        hello = channel.receive()
        assert hello.kind == Kind.HELLO, hello.meta
        return int(hello.meta["pid"])
    finally:
        process.stdin.close()
        process.stdout.close()
        process.terminate()
        process.wait()


def test_a_stale_idle_worker_steps_aside(box: Session, transport: Transport) -> None:
    stale_pid = start_stale_worker(transport)
    assert alive(stale_pid)
    assert box.call(os.getpid) != stale_pid  # refused by the stale worker, then served by a new one
    deadline = time.monotonic() + 5
    while alive(stale_pid) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert not alive(stale_pid)
    assert len(daemon_pids(str(transport.home), ("daemon",))) == 1


def test_a_call_sent_behind_a_refused_hello_runs_once_on_the_next_worker(
    box: Session, transport: Transport, tmp_path: Path
) -> None:
    # The first call of a connection travels right behind HELLO, before the answer: the stale
    # worker refuses the session without reading it, and the session sends it again.
    start_stale_worker(transport)
    marks = tmp_path / "marks"
    box.call(lambda path: Path(path).open("a").write(f"{os.getpid()}\n"), str(marks))
    assert marks.read_text().splitlines() == [str(box.connect().hello["pid"])]


def test_a_stale_worker_tells_the_session_it_restarts(box: Session, transport: Transport, boxes: Boxes) -> None:
    old_pid = box.call(os.getpid)
    with pytest.raises(HandshakeError) as info:
        Connection.open(transport, {**box.versions, "worker": "0.0.1+0123456789ab"}, timeout=10)
    assert info.value.restarting is True  # type: ignore[attr-defined]
    assert "worker mismatch" in str(info.value) and "0.0.1+0123456789ab" in str(info.value)
    assert boxes.session(transport).call(os.getpid) != old_pid  # the next session gets a fresh worker


def test_a_busy_stale_worker_keeps_its_work(box: Session, transport: Transport) -> None:
    task = box.submit(time.sleep, 30)
    with pytest.raises(HandshakeError) as info:
        Connection.open(transport, {**box.versions, "worker": "0.0.1+0123456789ab"}, timeout=10)
    assert info.value.restarting is False  # type: ignore[attr-defined]
    assert f"task(s) {task.id}" in str(info.value) and "connect again" in str(info.value)
    assert task.state() == "running"
    task.interrupt()


# -- bootstrap ---------------------------------------------------------------------------------


def test_the_worker_is_shipped_once_and_cached_by_content(box: Session, transport: Transport) -> None:
    data, digest = worker_zipapp()
    cached = Path(str(transport.home)) / "lib" / f"{digest}.pyz"
    assert not cached.exists()
    box.call(int)  # cold cache: the zipapp travels
    assert cached.read_bytes() == data and hashlib.sha256(cached.read_bytes()).hexdigest() == digest
    first = cached.stat()
    box.restart_worker()
    time.sleep(0.05)  # a rewrite would show in the timestamps
    assert box.call(lambda: "warm") == "warm"  # a new worker, from the cached zipapp
    again = cached.stat()
    assert (again.st_ino, again.st_mtime_ns) == (first.st_ino, first.st_mtime_ns)
    assert sorted(p.name for p in cached.parent.iterdir()) == [cached.name]


def test_a_cached_worker_that_was_changed_is_shipped_again_not_run(box: Session, transport: Transport) -> None:
    data, digest = worker_zipapp()
    cached = Path(str(transport.home)) / "lib" / f"{digest}.pyz"
    cached.parent.mkdir(parents=True)
    with zipfile.ZipFile(cached, "w") as archive:  # a worker someone on the box replaced
        archive.writestr("__main__.py", "import sys; sys.exit('the tampered worker ran')\n")
    assert box.call(lambda: "the real worker") == "the real worker"
    assert cached.read_bytes() == data


def test_the_box_needs_nothing_installed(boxes: Boxes, link: str, request: pytest.FixtureRequest) -> None:
    """The system python3, without cloudpickle or vastnb: the zipapp brings what it needs."""
    system = "/usr/bin/python3"
    probe = subprocess.run([system, "-I", "-c", "import cloudpickle"], capture_output=True)
    if (
        probe.returncode == 0
        or subprocess.run(
            [system, "-c", "import sys; print('%d.%d' % sys.version_info[:2])"], capture_output=True, text=True
        ).stdout.strip()
        != THIS_PYTHON
    ):
        pytest.skip("needs a system python3 of this minor version without cloudpickle")
    server = request.getfixturevalue("sshd") if link == "ssh" else None
    transport = boxes.transport(link, server, python=system)
    session = boxes.session(transport)
    assert session.call(lambda: __import__("sys").executable) == system
    assert session.health["python"].startswith(THIS_PYTHON)
    session.restart_worker()


def missing_python(link: str, boxes: Boxes, request: pytest.FixtureRequest) -> Transport:
    if link == "local":
        return boxes.transport("local", python="/nonexistent/python3")
    return boxes.transport("ssh", request.getfixturevalue("sshd"), python="python3-missing")


def test_a_box_without_python3_is_a_clear_error(boxes: Boxes, link: str, request: pytest.FixtureRequest) -> None:
    session = boxes.session(missing_python(link, boxes, request))
    with pytest.raises(TransportError) as info:
        session.call(int)
    message = str(info.value)
    assert "has no python3" in message and "Python 3.9 or newer" in message
    assert session.transport.describe() in message


def test_a_too_old_python3_is_a_clear_error(
    boxes: Boxes, link: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    old = tmp_path / "python3.6"
    old.write_text("#!/bin/sh\necho 'OLD 3.6'\nexit 3\n")  # what the bootstrap says on a python3 < 3.9
    old.chmod(0o755)
    server = request.getfixturevalue("sshd") if link == "ssh" else None
    session = boxes.session(boxes.transport(link, server, python=str(old)))
    with pytest.raises(TransportError, match=r"python3 on .* is 3\.6; the worker needs Python 3\.9 or newer"):
        session.call(int)


def test_transports_are_one_code_path() -> None:
    local = LocalTransport(Path("/box"))
    ssh = SSHTransport("203.0.113.7", port=2222, python="python3")
    assert local.argv(["d", "1"])[:3] == [sys.executable, "-I", "-c"] and local.argv(["d", "1"])[-3:] == [
        "/box",
        "d",
        "1",
    ]
    argv = ssh.argv(["d", "1"])
    assert argv[0] == "ssh" and "-oBatchMode=yes" in argv and "root@203.0.113.7" in argv
    assert argv[-1].startswith("python3 -I -c ") and argv[-1].endswith(" '~/.cache/vastnb' d 1")


# -- the box's report --------------------------------------------------------------------------

SLOW_SMI = """#!/bin/sh
while [ ! -e {gate} ]; do sleep 0.05; done
case "$1" in
  --query-gpu=*) echo "0, NVIDIA A100-SXM4-80GB, 81920, 1, 0, 31" ;;
  *) echo "| NVIDIA-SMI 550.54.15   Driver Version: 550.54.15   CUDA Version: 12.4 |" ;;
esac
"""


@pytest.mark.skipif(os.name != "posix", reason="the fake nvidia-smi is a shell script")
def test_the_worker_answers_before_nvidia_smi_and_the_report_comes_when_asked(boxes: Boxes, tmp_path: Path) -> None:
    gate, tools = tmp_path / "gate", tmp_path / "bin"
    tools.mkdir()
    (tools / "nvidia-smi").write_text(SLOW_SMI.format(gate=gate))
    (tools / "nvidia-smi").chmod(0o755)
    environment = {**os.environ, "PATH": f"{tools}{os.pathsep}{os.environ['PATH']}"}
    session = boxes.session(boxes.transport("local", environment=environment))
    # nvidia-smi hangs until the gate opens: the session is served all the same, and its
    # HELLO says the report is not made yet.
    assert session.call(os.getpid) == session.connect().hello["pid"]
    assert session.connect().hello["health"] is None
    gate.touch()
    report = session.health  # asked of the worker, which waits for its report
    assert [gpu["name"] for gpu in report["gpus"]] == ["NVIDIA A100-SXM4-80GB"]
    assert (report["cuda_driver"], report["python"][:4]) == ("550.54.15", THIS_PYTHON[:4])
    session.restart_worker()
