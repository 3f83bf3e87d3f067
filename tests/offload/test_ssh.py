"""What only the SSH transport has: host keys pinned per box, retries while a new box's key
propagates, connection reuse. Against a real OpenSSH sshd on 127.0.0.1."""

from __future__ import annotations

import subprocess
import threading
from pathlib import Path

import pytest
from sshd import SSHServer, _keygen

from vastnb.errors import HostKeyError, TransportError

from .conftest import Boxes


def test_first_connection_pins_the_host_key(sshd: SSHServer, boxes: Boxes, tmp_path: Path) -> None:
    session = boxes.session(boxes.transport("ssh", sshd))
    assert session.call(lambda: "hello") == "hello"
    assert (tmp_path / "known_hosts").read_text() == sshd.known_hosts_line + "\n"
    session.restart_worker()


def test_a_changed_host_key_is_refused(fresh_sshd: SSHServer, boxes: Boxes, tmp_path: Path) -> None:
    first = boxes.session(boxes.transport("ssh", fresh_sshd))
    assert first.call(lambda: 1) == 1
    first.restart_worker()
    pinned = (tmp_path / "known_hosts").read_text()

    fresh_sshd.rotate_host_key()  # the box was rebuilt, or someone is in the middle
    fresh_sshd.drop_connections()  # its old connections went with it
    session = boxes.session(boxes.transport("ssh", fresh_sshd))
    with pytest.raises(HostKeyError) as info:
        session.call(lambda: 2)
    message = str(info.value)
    assert "different SSH host key" in message and "refuses it" in message
    assert f"ssh-keygen -R '[127.0.0.1]:{fresh_sshd.port}' -f {tmp_path / 'known_hosts'}" in message
    assert (tmp_path / "known_hosts").read_text() == pinned  # the new key was not recorded

    # Following the hint: the new key is then trusted on first use.
    subprocess.run(
        ["ssh-keygen", "-R", f"[127.0.0.1]:{fresh_sshd.port}", "-f", str(tmp_path / "known_hosts")],
        check=True,
        capture_output=True,
    )
    assert session.call(lambda: 3) == 3
    session.restart_worker()


def test_connects_once_a_new_key_propagates(sshd: SSHServer, boxes: Boxes, tmp_path: Path) -> None:
    key = tmp_path / "new_key"
    _keygen(key)
    transport = boxes.transport("ssh", sshd, identity=key)
    session = boxes.session(transport, connect_timeout=20)
    authorizer = threading.Timer(1.5, sshd.authorize, (key.with_suffix(".pub").read_text(),))
    authorizer.start()
    try:
        assert session.call(lambda: "in") == "in"  # refused at first, then let in
    finally:
        authorizer.cancel()
    session.restart_worker()


def test_a_key_that_never_propagates_is_a_clear_error(sshd: SSHServer, boxes: Boxes, tmp_path: Path) -> None:
    key = tmp_path / "unknown_key"
    _keygen(key)
    session = boxes.session(boxes.transport("ssh", sshd, identity=key), connect_timeout=1)
    with pytest.raises(TransportError, match="refused vastnb's SSH key") as info:
        session.call(int)
    assert str(key) in str(info.value)


def test_connections_share_one_ssh_connection(sshd: SSHServer, boxes: Boxes) -> None:
    transport = boxes.transport("ssh", sshd)
    box = boxes.session(transport)
    box.call(int)
    master = ["ssh", *transport.ssh_options(), "-O", "check", f"{sshd.user}@{sshd.host}"]  # type: ignore[attr-defined]
    check = subprocess.run(master, capture_output=True, text=True)
    assert check.returncode == 0, check.stderr  # a master runs; later connections reuse it
    box.close()
    assert box.call(lambda: "reused") == "reused"
    box.restart_worker()
