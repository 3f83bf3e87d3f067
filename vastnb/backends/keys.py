"""vastnb's own SSH key pair, and its registration on the Vast account.

One ed25519 pair, generated once with the user's ``ssh-keygen`` into the user config
folder. Vast installs an account's keys only on instances created *after* the key was
added (and overwrites keys a box appends to itself), so the key is registered through
the API before every create.
"""

from __future__ import annotations

import fcntl
import subprocess
from dataclasses import dataclass
from pathlib import Path

from vastnb.base.config import user_config_dir
from vastnb.base.private import private_folder
from vastnb.errors import ConfigError
from vastnb.market.api import VastAPI

__all__ = ["KeyPair", "ensure_keypair", "ensure_registered"]

KEY_NAME = "id_ed25519"


@dataclass(frozen=True)
class KeyPair:
    """The private key file and the public key line (``ssh-ed25519 AAAA... comment``)."""

    private: Path
    public: str

    @property
    def fingerprint_part(self) -> str:
        """The key material alone (type and base64), which is what identifies it."""
        return " ".join(self.public.split()[:2])


def ensure_keypair(folder: Path | None = None) -> KeyPair:
    """vastnb's key pair in ``folder`` (default: ``<user config dir>/ssh``), made on first use."""
    folder = folder or user_config_dir() / "ssh"
    private = folder / KEY_NAME
    public = folder / f"{KEY_NAME}.pub"
    if not private.exists() or not public.exists():
        private_folder(folder, what="vastnb's SSH key folder")
        # One maker at a time (a controller launches for several jobs at once; kernels too).
        with open(folder / ".lock", "a+") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            if not private.exists() or not public.exists():
                _make(folder, private, public)
    return KeyPair(private, public.read_text().strip())


def _make(folder: Path, private: Path, public: Path) -> None:
    for stale in (private, public):
        stale.unlink(missing_ok=True)  # half a pair (an interrupted run) is no pair
    try:
        subprocess.run(
            ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "vastnb", "-f", str(private)],
            check=True,
            capture_output=True,
            text=True,
            timeout=60,
        )
    except FileNotFoundError:
        raise ConfigError(
            "no `ssh-keygen` on this machine: install the OpenSSH client (vastnb connects to boxes with it)."
        ) from None
    except subprocess.CalledProcessError as exc:
        raise ConfigError(f"ssh-keygen could not create vastnb's key in {folder}: {exc.stderr.strip()}") from None


def ensure_registered(api: VastAPI, keys: KeyPair) -> bool:
    """Add the public key to the account unless it is there already. True if added."""
    mine = keys.fingerprint_part
    if any(" ".join(k.key.split()[:2]) == mine for k in api.ssh_keys()):
        return False
    api.add_ssh_key(keys.public)
    return True
