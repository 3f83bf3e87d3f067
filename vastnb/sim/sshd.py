"""A real OpenSSH ``sshd`` on 127.0.0.1 that simulated instances point at: ``vastnb sim serve
--ssh`` (and the tests) run one so that a client of the served simulator reaches its boxes by
the real SSH path, as on Vast. Each ``SSHServer`` has its own folder, host key, client key,
authorized_keys, config and log, and runs in the foreground (``sshd -D``) so its owner holds
its pid. Nothing of ``/etc/ssh`` or ``~/.ssh`` is used or changed; it listens on loopback only.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

from vastnb.errors import ConfigError

__all__ = ["SSHServer", "find_sshd", "keygen", "HOST"]

HOST = "127.0.0.1"
START_TIMEOUT = 10.0


def find_sshd() -> str | None:
    """The absolute path of OpenSSH's ``sshd`` (often outside a user's PATH), or None."""
    path = os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/usr/local/sbin", "/sbin"])
    found = shutil.which("sshd", path=path)
    return os.path.abspath(found) if found else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def keygen(path: Path) -> None:
    for p in (path, path.with_suffix(".pub")):
        p.unlink(missing_ok=True)
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "vastnb-sim", "-f", str(path)],
        check=True,
        capture_output=True,
    )
    path.chmod(0o600)


class SSHServer:
    """One private sshd on 127.0.0.1. ``with SSHServer(dir) as server:`` starts and stops it."""

    host = HOST

    def __init__(self, workdir: Path, *, port: int | None = None, binary: str | None = None) -> None:
        found = binary or find_sshd()
        if found is None:
            raise ConfigError("no OpenSSH sshd on this machine: install openssh-server (apt install openssh-server)")
        self.binary = found
        self.workdir = Path(workdir).absolute()
        self.workdir.mkdir(parents=True, exist_ok=True)
        if any(c.isspace() or c in '%"' for c in str(self.workdir)):
            raise ConfigError(f"sshd_config needs a plain path, without spaces or quotes: {self.workdir}")
        self.port = port or _free_port()
        self.user = pwd.getpwuid(os.getuid()).pw_name
        self.host_key = self.workdir / "host_ed25519"
        self.client_key = self.workdir / "client_ed25519"
        self.authorized_keys = self.workdir / "authorized_keys"
        self.config = self.workdir / "sshd_config"
        self.log_path = self.workdir / "sshd.log"
        self._proc: subprocess.Popen[bytes] | None = None
        keygen(self.host_key)
        keygen(self.client_key)
        self.authorized_keys.write_text(self.client_public_key + "\n")
        self.log_path.touch()
        self._write_config()

    def _write_config(self) -> None:
        lines = [
            f"ListenAddress {HOST}",
            f"Port {self.port}",
            f"HostKey {self.host_key}",
            f"AuthorizedKeysFile {self.authorized_keys}",
            f"PidFile {self.workdir / 'sshd.pid'}",
            "StrictModes no",
            "UsePAM no",
            "PasswordAuthentication no",
            "KbdInteractiveAuthentication no",
            "PubkeyAuthentication yes",
            "PermitRootLogin prohibit-password",
            "LogLevel VERBOSE",
            "MaxSessions 50",
            "MaxStartups 50:30:100",
            "AllowTcpForwarding yes",
            "AllowStreamLocalForwarding yes",
            "ClientAliveInterval 0",
            "PrintMotd no",
            "PrintLastLog no",
            "X11Forwarding no",
            "Subsystem sftp internal-sftp",
        ]
        # OpenSSH >= 9.8 blocks sources after failed logins (tests fail some on purpose);
        # older ones have neither the penalties nor the option.
        for extra in (["PerSourcePenalties no"], []):
            self.config.write_text("\n".join(lines + extra) + "\n")
            check = subprocess.run([self.binary, "-t", "-f", self.config], capture_output=True, text=True)
            if check.returncode == 0:
                return
        raise RuntimeError(f"sshd -t rejected {self.config}: {check.stderr.strip()}")

    @property
    def client_public_key(self) -> str:
        return self.client_key.with_suffix(".pub").read_text().strip()

    @property
    def host_public_key(self) -> str:
        return self.host_key.with_suffix(".pub").read_text().strip()

    @property
    def known_hosts_line(self) -> str:
        """This server's line for a known_hosts file, as ``ssh`` writes it for a non-22 port."""
        return f"[{HOST}]:{self.port} " + " ".join(self.host_public_key.split()[:2])

    def authorize(self, public_key_text: str) -> None:
        """Accept logins with this public key too (sshd rereads the file on every login)."""
        with self.authorized_keys.open("a") as f:
            f.write(public_key_text.strip() + "\n")

    def rotate_host_key(self) -> None:
        """Restart on the same port with a brand-new host key."""
        self.stop()
        keygen(self.host_key)
        self.start()

    @property
    def pid(self) -> int | None:
        """The listening sshd's pid while it runs."""
        return self._proc.pid if self._proc else None

    def log_tail(self, chars: int = 3000) -> str:
        return self.log_path.read_text(errors="replace")[-chars:]

    def start(self) -> SSHServer:
        if self._proc is not None:
            return self
        with self.log_path.open("ab") as log:
            self._proc = subprocess.Popen(
                [self.binary, "-D", "-e", "-f", str(self.config)], stdin=subprocess.DEVNULL, stdout=log, stderr=log
            )
        deadline = time.monotonic() + START_TIMEOUT
        while self._proc.poll() is None and time.monotonic() < deadline:
            with contextlib.suppress(OSError), socket.create_connection((HOST, self.port), timeout=1) as s:
                if s.recv(64).startswith(b"SSH-"):  # our sshd's banner, not something else's
                    return self
            time.sleep(0.02)
        code = self._proc.poll()
        self.stop()
        why = f"exited with {code}" if code is not None else f"not answering after {START_TIMEOUT}s"
        raise RuntimeError(f"sshd on {HOST}:{self.port} {why}; its log ends:\n{self.log_tail()}")

    def drop_connections(self) -> None:
        """Kill the per-connection sshd processes (open sessions, ControlMaster links);
        ``stop()`` alone leaves them running, as a real sshd restart does."""
        for stat in Path("/proc").glob("[0-9]*/stat") if self._proc else ():
            try:  # field 4 of /proc/PID/stat, after the ")" closing the name, is the parent pid
                if self._proc and int(stat.read_text().rsplit(")", 1)[1].split()[1]) == self._proc.pid:
                    os.kill(int(stat.parent.name), signal.SIGTERM)
            except (OSError, ValueError, IndexError):
                pass  # gone meanwhile

    def stop(self) -> None:
        """Terminate the listening sshd by pid and wait for it to exit."""
        proc, self._proc = self._proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

    def ssh_args(self, known_hosts: Path) -> list[str]:
        """An ``ssh`` argv prefix for this server; append the remote command."""
        return [
            "ssh",
            "-F",
            "/dev/null",
            "-p",
            str(self.port),
            "-i",
            str(self.client_key),
            "-o",
            "IdentitiesOnly=yes",
            "-o",
            "BatchMode=yes",
            "-o",
            f"UserKnownHostsFile={known_hosts}",
            "-o",
            "StrictHostKeyChecking=accept-new",
            "-o",
            "LogLevel=ERROR",
            f"{self.user}@{HOST}",
        ]

    def __enter__(self) -> SSHServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
