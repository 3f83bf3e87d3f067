"""The relay: what each connection runs on the box.

It gives its stdin/stdout (the SSH channel, or a local pipe) to the box's worker
daemon, starting the daemon first if none is running. When the connection drops, only
the relay dies; the daemon and the work it runs carry on.
"""

from __future__ import annotations

import fcntl
import os
import socket
import sys
import time

from .protocol import widen

__all__ = ["relay", "SOCKET_NAME", "PID_NAME", "remove_pid"]

# Every connection runs a relay: it imports as little as it can (not the daemon).
SOCKET_NAME = "worker.sock"  # relative to the worker's home, which is the daemon's cwd at bind time
PID_NAME = "daemon.pid"  # in the home: the daemon's pid, a process-group leader (the sim kills the group)

START_TIMEOUT = 20.0
#: The relay's exit status when the daemon ended without letting the connection go:
#: killed (out of memory?) or crashed, rather than the connection dropping.
WORKER_DIED = 75


def remove_pid(home: str) -> None:
    """Remove the pid file, if it is still ours (a successor may have written its own)."""
    path = os.path.join(home, PID_NAME)
    try:
        with open(path) as f:
            if f.read().strip() == str(os.getpid()):
                os.unlink(path)
    except (OSError, ValueError):
        pass


def _connect(home: str) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    cwd = os.getcwd()
    os.chdir(home)  # connect by a relative name, as the daemon bound it
    try:
        sock.connect(SOCKET_NAME)
    except OSError:
        sock.close()
        raise
    finally:
        os.chdir(cwd)
    return sock


def _start_daemon(home: str, daemon_argv: list[str]) -> socket.socket:
    """Connect to the daemon, starting it first if needed; one starter at a time."""
    with open(os.path.join(home, "daemon.lock"), "a+") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            return _connect(home)
        except OSError:
            pass
        import subprocess

        with open(os.path.join(home, "daemon.log"), "ab") as log:  # the daemon keeps its own copy
            # A new session: no SIGHUP when the SSH connection that started it goes away.
            subprocess.Popen(
                daemon_argv, stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True, close_fds=True
            )
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            try:
                return _connect(home)
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"the worker daemon did not start; see {home}/daemon.log") from None
                time.sleep(0.02)


def relay(home: str, daemon_argv: list[str]) -> None:
    """Hand stdin/stdout to the daemon, then wait while it serves them.

    The descriptors travel over the Unix socket (SCM_RIGHTS), so the daemon reads and
    writes the connection itself: no byte is copied through this process. It stays
    alive because the connection's lifetime is ours (sshd ends the session when we
    exit), and it tells the daemon, by exiting, that the connection is gone.
    """
    sock = _start_daemon(home, daemon_argv)
    for end in (0, 1):
        widen(end)
    socket.send_fds(sock, [b"F"], [0, 1])
    try:
        goodbye = sock.recv(1)  # returns when the daemon is done with this connection
    except OSError:
        goodbye = b""
    if not goodbye:  # no word from the daemon: it is gone
        sys.stderr.write(f"vastnb: the worker daemon ended; see {home}/daemon.log\n")
        sys.exit(WORKER_DIED)
    sys.exit(0)
