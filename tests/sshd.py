"""The tests' sshd: :class:`vastnb.sim.sshd.SSHServer` (a real OpenSSH ``sshd`` on 127.0.0.1),
with openssh-server installed first where it is missing (root and apt-get), and a test
skipped where it cannot be (failed in CI, so SSH coverage never silently vanishes)."""

from __future__ import annotations

import fcntl
import functools
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from vastnb.sim import sshd

HOST = sshd.HOST


def _unavailable(reason: str) -> None:
    """Skip the test, or fail it in CI (``CI=true``) so SSH coverage never silently vanishes."""
    if os.environ.get("CI", "").strip().lower() in ("1", "true", "yes"):
        pytest.fail(f"sshd unavailable in CI: {reason}", pytrace=False)
    pytest.skip(f"sshd unavailable: {reason}")


@functools.cache
def _installed() -> str | None:
    path = os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/usr/local/sbin", "/sbin"])
    if not shutil.which("sshd", path=path) and os.geteuid() == 0 and shutil.which("apt-get"):
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        install = ["apt-get", "install", "-y", "-q", "--no-install-recommends", "openssh-server"]
        with open("/tmp/vastnb-sshd-install.lock", "w") as lock:  # one installer at a time
            fcntl.flock(lock, fcntl.LOCK_EX)
            for update in (False, True):  # apt-get update only if a plain install fails
                if shutil.which("sshd", path=path):
                    break
                if update:
                    subprocess.run(["apt-get", "update", "-q"], env=env, capture_output=True)
                subprocess.run(install, env=env, capture_output=True)
    return shutil.which("sshd", path=path)


def ensure_openssh_server() -> str:
    """The absolute path of ``sshd``, installing openssh-server with apt if it is missing
    (root only). Skips the calling test if that is impossible (fails it in CI)."""
    path = _installed()
    if path is None:
        _unavailable("no sshd, and openssh-server cannot be installed (needs root and apt-get)")
    assert path is not None
    if os.geteuid() == 0:  # sshd as root needs its privilege separation directory
        os.makedirs("/run/sshd", mode=0o755, exist_ok=True)
    return os.path.abspath(path)


_keygen = sshd.keygen


class SSHServer(sshd.SSHServer):
    """A private sshd on 127.0.0.1, openssh-server installed first if need be."""

    def __init__(self, workdir: Path, *, port: int | None = None) -> None:
        super().__init__(workdir, port=port, binary=ensure_openssh_server())
