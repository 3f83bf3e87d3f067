"""Folders and files that hold secrets: the user's alone.

vastnb keeps keys under ``VASTNB_HOME`` (the state store holds each instance's own key,
the simulator's state its account key), its SSH key pair in the user's config folder, and
OpenSSH control sockets (live, authenticated connections to boxes) in a folder under the
temp folder. Each such folder is made mode 0700 and each such file 0600 (written with
``vastnb_worker.files.write_private``). A folder that
exists but belongs to another user, or that others may write to, is refused: whoever
controls it could read the keys, or put their own socket where vastnb's would be.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from vastnb.errors import ConfigError

__all__ = ["private_folder"]


def private_folder(path: Path, *, what: str) -> Path:
    """``path``, made if needed, checked to be the user's own and closed to others (an
    existing folder of the user's is tightened to 0700). ``what`` names it in errors."""
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    info = path.stat()
    if not stat.S_ISDIR(info.st_mode):
        raise ConfigError(f"{what} {path} is not a folder: move it away, or point vastnb elsewhere.")
    if info.st_uid != os.getuid():
        raise ConfigError(
            f"{what} {path} belongs to another user (uid {info.st_uid}), who could read the keys vastnb keeps "
            "there: use a folder of your own (VASTNB_HOME sets vastnb's; TMPDIR the temp folder's)."
        )
    if info.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        raise ConfigError(
            f"{what} {path} can be written by other users (mode {stat.S_IMODE(info.st_mode):o}), who could swap "
            f"what vastnb keeps there: `chmod 700 {path}`, or use a folder of your own."
        )
    if info.st_mode & 0o077:
        os.chmod(path, 0o700)
    return path
