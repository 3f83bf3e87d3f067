"""The one writer of private files on the box and in the simulator: atomic, owner-only."""

from __future__ import annotations

import os
import secrets

__all__ = ["write_private"]


def write_private(path: str, text: str, *, sync: bool = True) -> None:
    """Write ``text`` to ``path`` atomically (temp file + rename), readable by its owner
    only; flushed to disk first unless ``sync`` is False (for what is rewritten often)."""
    folder, name = os.path.split(path)
    tmp = os.path.join(folder, f".{name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
            if sync:
                f.flush()
                os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
