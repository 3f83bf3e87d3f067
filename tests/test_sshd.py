"""The sshd fixture itself, checked with the real OpenSSH client (``/usr/bin/ssh``)."""

from __future__ import annotations

import os
import socket
import subprocess
import time
from pathlib import Path

import pytest
from sshd import SSHServer, _keygen, _unavailable


def run(argv: list[str], data: bytes = b"", timeout: float = 30) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(argv, input=data, capture_output=True, timeout=timeout)


def with_key(args: list[str], key: Path) -> list[str]:
    """``ssh_args`` with another identity file."""
    args = list(args)
    args[args.index("-i") + 1] = str(key)
    return args


def test_echo_hello(sshd: SSHServer, tmp_path: Path) -> None:
    result = run(sshd.ssh_args(tmp_path / "known_hosts") + ["echo", "hello"])
    assert (result.returncode, result.stdout, result.stderr) == (0, b"hello\n", b"")
    assert sshd.host == "127.0.0.1" and sshd.user
    # accept-new recorded exactly this server's host key, under its non-22 port
    assert (tmp_path / "known_hosts").read_text() == sshd.known_hosts_line + "\n"


def test_config_is_loopback_only_and_keys_private(sshd: SSHServer) -> None:
    config = sshd.config.read_text().splitlines()
    assert "ListenAddress 127.0.0.1" in config and f"Port {sshd.port}" in config
    assert not any(line.startswith(("AcceptEnv", "SetEnv")) for line in config)
    assert sshd.client_key.stat().st_mode & 0o777 == 0o600
    assert sshd.client_public_key.startswith("ssh-ed25519 ")
    assert sshd.host_public_key.startswith("ssh-ed25519 ")


def test_unknown_key_refused_until_authorized(sshd: SSHServer, tmp_path: Path) -> None:
    key = tmp_path / "other_ed25519"
    _keygen(key)
    args = with_key(sshd.ssh_args(tmp_path / "known_hosts"), key)
    refused = run(args + ["true"])
    assert refused.returncode == 255
    assert b"Permission denied" in refused.stderr
    sshd.authorize(key.with_suffix(".pub").read_text())
    assert run(args + ["echo", "in"]).stdout == b"in\n"


def test_changed_host_key_refused(fresh_sshd: SSHServer, tmp_path: Path) -> None:
    known_hosts = tmp_path / "known_hosts"
    args = fresh_sshd.ssh_args(known_hosts)
    assert run(args + ["true"]).returncode == 0
    old_key, port = fresh_sshd.host_public_key, fresh_sshd.port
    fresh_sshd.rotate_host_key()
    assert fresh_sshd.port == port and fresh_sshd.host_public_key != old_key
    refused = run(args + ["echo", "should-not-run"])
    assert refused.returncode != 0
    assert b"REMOTE HOST IDENTIFICATION HAS CHANGED" in refused.stderr
    assert b"should-not-run" not in refused.stdout
    # a client that has never seen the server takes the new key
    assert run(fresh_sshd.ssh_args(tmp_path / "new_known_hosts") + ["true"]).returncode == 0


def test_cat_echoes_one_mib_exactly(sshd: SSHServer, tmp_path: Path) -> None:
    data = os.urandom(1 << 20)
    result = run(sshd.ssh_args(tmp_path / "known_hosts") + ["cat"], data)
    assert result.returncode == 0, result.stderr
    assert result.stdout == data


def test_stop_ends_the_process_and_the_port(fresh_sshd: SSHServer) -> None:
    pid, port = fresh_sshd.pid, fresh_sshd.port
    assert pid is not None
    os.kill(pid, 0)  # running
    fresh_sshd.stop()
    assert fresh_sshd.pid is None
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port), timeout=2).close()
    fresh_sshd.stop()  # idempotent


def test_drop_connections_ends_open_sessions(fresh_sshd: SSHServer, tmp_path: Path) -> None:
    argv = fresh_sshd.ssh_args(tmp_path / "known_hosts") + ["echo", "up;", "sleep", "60"]
    client = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        assert client.stdout is not None and client.stdout.readline() == b"up\n"
        fresh_sshd.drop_connections()
        assert client.wait(timeout=10) != 0
    finally:
        client.kill()
        client.wait()


def test_start_is_quick_and_context_manager_stops(tmp_path: Path) -> None:
    server = SSHServer(tmp_path / "srv")
    started = time.monotonic()
    with server:
        assert time.monotonic() - started < 10
        pid = server.pid
        assert pid is not None
    assert server.pid is None
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)


def test_unavailable_skips_locally_and_fails_in_ci(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match="no sshd"):
        _unavailable("no sshd")
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="no sshd"):
        _unavailable("no sshd")


def test_start_failure_raises_with_the_log(tmp_path: Path) -> None:
    with socket.socket() as taken:  # the port is already in use: sshd cannot bind it
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        server = SSHServer(tmp_path / "srv", port=taken.getsockname()[1])
        with pytest.raises(RuntimeError, match="exited with") as error:
            server.start()
    assert "Bind to port" in str(error.value) or "Cannot bind" in str(error.value)
    assert server.pid is None
