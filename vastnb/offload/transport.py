"""How a worker process is reached: the argv of a process whose stdin/stdout are the
session's byte stream. Local and SSH are one code path; only the argv differs.

- local: ``python -I -c BOOTSTRAP ...`` on this machine (the sim backend's boxes);
- SSH: ``ssh [options] user@host -- python3 -I -c BOOTSTRAP ...`` with OpenSSH, which
  users already have and configure: connection reuse (ControlMaster), an AEAD cipher,
  BatchMode, keepalives and a per-box known_hosts file (trust on first use).
"""

from __future__ import annotations

import base64
import shlex
import subprocess
import sys
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path

from vastnb.errors import HostKeyError, TransportError
from vastnb.offload.zipapp import bootstrap_source

__all__ = ["Transport", "LocalTransport", "SSHTransport"]


class Transport(ABC):
    """Where a worker runs and how to start a process there."""

    #: Failures worth retrying while a new box settles (its SSH key still propagating).
    retry_patterns: tuple[str, ...] = ()

    @abstractmethod
    def argv(self, boot_args: list[str]) -> list[str]:
        """The command that runs the bootstrap with ``boot_args`` where the worker lives."""

    @abstractmethod
    def describe(self) -> str:
        """Where, for messages: ``root@1.2.3.4:22`` or ``local /path``."""

    def env(self) -> dict[str, str] | None:
        """The environment of the process :meth:`argv` starts; None: this process's."""
        return None

    def close_master(self) -> None:  # noqa: B027 - optional: most transports keep no connection
        """End any connection kept open for later sessions (the box is going away)."""

    def failure(self, returncode: int | None, stderr: str) -> TransportError:
        """The error for a process that died before the session started."""
        tail = stderr.strip()[-800:]
        if returncode == 127 or "python3: command not found" in stderr or "python3: not found" in stderr:
            return TransportError(
                f"{self.describe()} has no python3: the worker needs Python 3.9 or newer on the box. "
                "Rent with an image that has it (any pytorch/pytorch image does)."
            )
        return TransportError(
            f"could not start the worker on {self.describe()} (exit {returncode}): {tail or 'no output'}"
        )


@dataclass
class LocalTransport(Transport):
    """A worker on this machine, its files under ``home``; started with ``environment``
    as its whole environment (None: this process's)."""

    home: Path
    workdir: Path | None = None
    python: str = sys.executable
    environment: dict[str, str] | None = None

    def argv(self, boot_args: list[str]) -> list[str]:
        extra = ["--workdir", str(self.workdir)] if self.workdir else []
        return [self.python, "-I", "-c", bootstrap_source(), str(self.home), *boot_args, *extra]

    def env(self) -> dict[str, str] | None:
        return None if self.environment is None else dict(self.environment)

    def describe(self) -> str:
        return f"local worker in {self.home}"


@dataclass
class SSHTransport(Transport):
    """A worker on ``user@host:port`` over OpenSSH.

    ``known_hosts`` is this box's own file: its key is recorded on first connection and
    a different key later is refused. ``control_dir`` holds the ControlMaster socket that
    lets every connection after the first skip the SSH handshake.
    """

    host: str
    port: int = 22
    user: str = "root"
    identity: Path | None = None
    known_hosts: Path | None = None
    control_dir: Path | None = None
    home: str = "~/.cache/vastnb"
    workdir: str | None = None
    python: str = "python3"
    connect_timeout: int = 15
    options: list[str] = field(default_factory=list)

    retry_patterns = ("Permission denied", "Connection refused", "Connection reset", "Connection closed")

    def ssh_options(self) -> list[str]:
        opts = {
            "BatchMode": "yes",  # never prompt: a notebook cell has no terminal
            "ConnectTimeout": str(self.connect_timeout),
            "ServerAliveInterval": "15",
            "ServerAliveCountMax": "4",
            "StrictHostKeyChecking": "accept-new",  # trust on first use, refuse a change
            "Ciphers": "aes128-gcm@openssh.com,chacha20-poly1305@openssh.com,aes256-gcm@openssh.com,aes128-ctr",
            "Compression": "no",
            "LogLevel": "ERROR",
        }
        if self.known_hosts is not None:
            opts["UserKnownHostsFile"] = str(self.known_hosts)
            opts["GlobalKnownHostsFile"] = "/dev/null"
        if self.identity is not None:
            opts["IdentitiesOnly"] = "yes"
        if self.control_dir is not None:
            opts.update(ControlMaster="auto", ControlPath=str(self.control_dir / "%C"), ControlPersist="300")
        argv = [f"-o{k}={v}" for k, v in opts.items()]
        if self.identity is not None:
            argv += ["-i", str(self.identity)]
        return [*argv, *self.options, "-p", str(self.port), "-T"]

    def argv(self, boot_args: list[str]) -> list[str]:
        # The remote side is a shell command line: the bootstrap travels base64-encoded.
        script = base64.b64encode(bootstrap_source().encode()).decode()
        code = f"import base64;exec(compile(base64.b64decode('{script}'),'vastnb-bootstrap','exec'))"
        extra = ["--workdir", self.workdir] if self.workdir else []
        remote = [self.python, "-I", "-c", code, self.home, *boot_args, *extra]
        return ["ssh", *self.ssh_options(), f"{self.user}@{self.host}", "--", shlex.join(remote)]

    def describe(self) -> str:
        return f"{self.user}@{self.host}:{self.port}"

    def close_master(self) -> None:
        """End the shared ControlMaster connection now (else it lingers ControlPersist
        seconds): for a box that is stopped or destroyed."""
        if self.control_dir is None:
            return
        subprocess.run(
            ["ssh", *self.ssh_options(), "-O", "exit", f"{self.user}@{self.host}"],
            capture_output=True,
            timeout=15,
            check=False,
        )

    def failure(self, returncode: int | None, stderr: str) -> TransportError:
        if "REMOTE HOST IDENTIFICATION HAS CHANGED" in stderr or "Host key verification failed" in stderr:
            return HostKeyError(
                f"{self.describe()} presented a different SSH host key than the one recorded at the first "
                f"connection (in {self.known_hosts}). vastnb refuses it: the box may have been rebuilt, or "
                "someone may be in the middle. If you know the box was re-created, remove the old key with "
                f"`ssh-keygen -R '[{self.host}]:{self.port}' -f {self.known_hosts}` and connect again."
            )
        if "Permission denied" in stderr:
            return TransportError(
                f"{self.describe()} refused vastnb's SSH key ({self.identity}). A new box can take a minute "
                "to receive it; if this persists, register the key on the instance (POST /instances/{id}/ssh/)."
            )
        return super().failure(returncode, stderr)
