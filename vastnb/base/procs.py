"""Process identity: whether a pid is still the process it was (Linux ``/proc``, else the
pid alone), and who runs this one. The state store uses it for sessions and the rented
instances' user, the simulator for its boxes."""

from __future__ import annotations

import getpass
import os
from pathlib import Path

__all__ = ["process_token", "alive", "login_name"]


def _stat(pid: int) -> list[str] | None:
    """The fields of ``/proc/<pid>/stat`` after the command name (which may hold spaces
    and parentheses): state first. None if no such process; [] if not readable."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except FileNotFoundError:
        return None
    except OSError:
        return []


def process_token(pid: int) -> str | None:
    """Something that tells this process from a later one with the same pid: its start
    time in clock ticks since boot (Linux). None if no such process (or not knowable)."""
    fields = _stat(pid)
    if fields is None:
        return None
    return fields[19] if fields else "?"


def alive(pid: int, token: str | None) -> bool:
    if Path("/proc/self/stat").exists():
        fields = _stat(pid)
        if fields is None:
            return False
        if not fields:  # it exists, but cannot be read: the token cannot be checked
            return token in (None, "?")
        # An exited process its parent has not reaped yet (a zombie) runs no more; under
        # a parent that never reaps, such as some containers' init, it never will.
        return (token is None or fields[19] == token) and fields[0] not in ("Z", "X")
    try:  # no /proc (macOS): the pid alone
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def login_name() -> str:
    """Who runs this process: the login name, or ``uid N`` where the system has none."""
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no such user in the passwd file, no LOGNAME/USER
        return f"uid {os.getuid()}"
