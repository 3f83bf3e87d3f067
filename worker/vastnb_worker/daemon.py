"""The worker daemon: one per box, serving every connection over a Unix socket.

It outlives the SSH connections that reach it (each runs a small relay), so work keeps
running when a connection drops and can be reattached by task id. It runs tasks one at
a time in its main thread, where Ctrl-C from a client lands as a real SIGINT, so even
a blocking call is interrupted.

Each connection has a thread that reads its frames and dispatches them through one
table, :attr:`Daemon.HANDLERS` (kind -> handler). Only CALL and CELL reach the user's
task queue and get task ids. Everything else is control, answered without waiting for
the running task: PING, TASKS, ATTACH, INTERRUPT and BYE on the connection's thread,
and CONTROL (vastnb's own calls: arming the watchdog, installing storage credentials)
on a short-lived thread of its own, so it never waits behind a cell, never shows in
the task list and can never be attached. A control function runs outside the main
thread: it must not rely on signals, and what it prints goes to the daemon's log. A
frame of a kind the daemon does not take is answered with an ERROR frame.
"""

from __future__ import annotations

import itertools
import os
import queue
import signal
import socket
import sys
import threading
import time
from typing import Any, Callable, ClassVar, Optional

from . import __version__, health, protocol, watchdog
from .files import write_private
from .link import Guard, Link, watch_relay
from .output import Forwarder, flush_streams
from .protocol import Channel, ChannelClosed, Frame, Kind
from .relay import PID_NAME, SOCKET_NAME, remove_pid
from .tasks import Task, TaskStream, error_outcome, execute, failure, result_outcome

__all__ = ["Daemon", "SOCKET_NAME", "serve"]

KEEP_TASKS = 50  # finished tasks kept for reattach, newest first

#: Set in a thread that runs a control call: output written there is not the running task's.
_in_control = threading.local()


#: A kind's handler: answers ``frame`` on the link; False ends the connection.
Handler = Callable[["Daemon", Link, Frame], bool]


class Daemon:
    """Tasks, the namespace they share, and the connections that watch them."""

    def __init__(self, home: str, digest: str, *, idle_exit: float) -> None:
        self.home = home
        self.socket_path = os.path.join(home, SOCKET_NAME)
        self.versions = protocol.versions(f"{__version__}+{digest[:12]}")
        self.idle_exit = idle_exit
        self.namespace: dict[str, Any] = {"__name__": "__main__", "__builtins__": __builtins__}
        self.tasks: dict[int, Task] = {}
        self.queue: queue.Queue[Task] = queue.Queue()
        self.current: Optional[Task] = None
        self.connections = 0
        self.last_activity = time.monotonic()
        self.last_contact = time.monotonic()  # a connection opened or closed: the watchdog's silence clock
        self._ids = itertools.count(1)
        self._lock = threading.Lock()
        self._in_user_code = False
        self.forwarders: list[Forwarder] = []  # set by serve(): fds 1 and 2 -> the task
        health.measure_in_background(self.home)

    # -- the main thread: run tasks ---------------------------------------------------------

    def run_tasks(self) -> None:
        while True:
            try:
                task = self.queue.get(timeout=30)
            except queue.Empty:
                if self._should_exit():
                    return
                continue
            self._run(task)

    def _run(self, task: Task) -> None:
        try:
            try:
                with self._lock:
                    if task.state == "cancelled":  # while it waited to be picked up
                        return
                    task.state, task.started = "running", time.time()
                    self.current = task
                    self._in_user_code = True  # Ctrl-C lands from here on (see _on_sigint)
                value = execute(task, self.namespace)
            finally:
                self._in_user_code = False  # and is ignored from here on
            flush_streams(self.forwarders)
            state, outcome = "done", result_outcome(value, cell=task.request.kind == Kind.CELL)
        except KeyboardInterrupt as exc:
            flush_streams(self.forwarders)
            state, outcome = "interrupted", error_outcome(exc)
        except BaseException as exc:  # noqa: BLE001 - SystemExit in user code must not end the worker
            flush_streams(self.forwarders)
            state, outcome = "failed", error_outcome(exc)
        with self._lock:
            self.current = None
        task.request = task.request._replace(body=b"", buffers=[])  # arguments can be big
        task.finish(state, outcome)
        self.last_activity = time.monotonic()
        self._prune()

    def on_sigint(self, signum: int, frame: Any) -> None:
        """Ctrl-C from a client: a KeyboardInterrupt in the task's code. One that arrives
        after that code ended is dropped: raised in the worker's own code, it would end
        the worker, or cost a finished task its result."""
        if self._in_user_code:
            raise KeyboardInterrupt

    def interrupt(self, task_id: int) -> None:
        """Interrupt a running task (SIGINT in the main thread), or cancel a queued one."""
        with self._lock:
            task = self.tasks.get(task_id)
            if task is None:
                return
            if task is self.current:
                if self._in_user_code:
                    signal.pthread_kill(threading.main_thread().ident or 0, signal.SIGINT)
                return
            if task.state != "queued":
                return
            task.state = "cancelled"
        task.finish("cancelled", error_outcome(KeyboardInterrupt("cancelled before it started")))

    def _prune(self) -> None:
        with self._lock:
            finished = [t for t in self.tasks.values() if t.outcome is not None]
            for old in finished[:-KEEP_TASKS]:
                del self.tasks[old.id]

    def _should_exit(self) -> bool:
        if not os.path.exists(self.socket_path):
            return True  # our home was removed: nobody can reach us any more
        idle = self.connections == 0 and self.queue.empty() and self.current is None and not watchdog.holds_daemon()
        return idle and time.monotonic() - self.last_activity > self.idle_exit

    # -- connection threads -----------------------------------------------------------------

    def serve_connection(self, conn: socket.socket) -> None:
        """Serve the stdin/stdout a relay hands over (SCM_RIGHTS) until either closes."""
        try:
            _, fds, _, _ = socket.recv_fds(conn, 1, 2)
        except OSError:
            fds = []
        if len(fds) != 2:
            conn.close()
            return
        for fd in fds:  # a process the user's code starts must not hold the connection open
            os.set_inheritable(fd, False)
        channel = Channel(fds[0], fds[1])
        guard = Guard()
        threading.Thread(target=watch_relay, args=(conn, channel, guard), daemon=True).start()
        with self._lock:
            self.connections += 1
            self.last_contact = time.monotonic()

        def listener(kind: Kind, task: int, meta: dict, body: bytes, buffers: list[Any]) -> None:
            # Once the relay is gone its pipes lead to /dev/null: a frame sent then, or
            # while they were being swapped, reached nobody (a result must not count as
            # delivered, or it is lost).
            if guard.released:
                raise ChannelClosed("the connection's relay is gone")
            channel.send(kind, task, meta, body, buffers)
            if guard.released:
                raise ChannelClosed("the connection's relay is gone")

        link = Link(channel, listener)
        try:
            if self._handshake(channel):
                while self._handle(link, self._receive(link)):
                    pass
        except ChannelClosed:
            pass
        finally:
            link.close()  # no control call's answer from here on
            for task in link.watched:
                task.unsubscribe(listener)
            with self._lock:
                self.connections -= 1
                self.last_contact = time.monotonic()
            self.last_activity = time.monotonic()
            with guard.lock:
                guard.closed = True
                channel.close()
            try:
                conn.sendall(b".")  # goodbye: the relay exits saying the connection ended, not the worker
                conn.shutdown(socket.SHUT_RDWR)  # the relay's cue to exit (and the watcher's)
            except OSError:
                pass
            conn.close()

    def _handshake(self, channel: Channel) -> bool:
        hello = channel.receive()
        if hello.kind != Kind.HELLO:
            channel.send(Kind.REFUSED, meta={"message": "expected HELLO first: this is a vastnb worker"})
            return False
        problem = protocol.check_versions(hello.meta.get("versions", {}), self.versions)
        if problem:
            busy = self.current is not None or not self.queue.empty()
            # A stale worker from another vastnb release (another protocol, worker or
            # cloudpickle) steps aside when idle: the client's next connection starts
            # its own. Busy, it keeps its work. (Another Python: a new worker would not help.)
            stale = problem[0] in ("protocol", "worker", "cloudpickle")
            restarting = stale and not busy
            message = problem[1]
            if stale and busy:  # restart_worker() cannot reach it either: say what will work
                with self._lock:
                    work = ", ".join(str(t.id) for t in self.tasks.values() if t.state in ("queued", "running"))
                message = (
                    f"{message.split('; ', 1)[0]}; that worker, from another vastnb release, is busy with "
                    f"task(s) {work} and keeps them: it steps aside once they end, so connect again then."
                )
            channel.send(
                Kind.REFUSED,
                meta={"message": message, "versions": self.versions, "busy": busy, "restarting": restarting},
            )
            if restarting:
                remove_pid(self.home)
                os._exit(0)
            return False
        # Not waiting for the report (None until measured): the session asks for it when wanted.
        meta = {"versions": self.versions, "health": health.measured(timeout=0.0), "pid": os.getpid()}
        channel.send(Kind.HELLO, meta=meta)
        return True

    def _receive(self, link: Link) -> Frame:
        """The connection's next frame; one of a kind unknown here is answered and skipped."""
        while True:
            try:
                return link.channel.receive()
            except protocol.UnknownKind as exc:
                self._refuse_kind(link, exc.kind, exc.task)

    def _handle(self, link: Link, frame: Frame) -> bool:
        """Dispatch one frame through :attr:`HANDLERS`; False ends the connection."""
        handler = self.HANDLERS.get(frame.kind)
        if handler is None:
            self._refuse_kind(link, int(frame.kind), frame.task, frame.kind.name)
            return True
        return handler(self, link, frame)

    def _refuse_kind(self, link: Link, kind: int, task: int, name: str = "") -> None:
        """The answer to a frame this worker does not take: an ERROR frame, never a crash."""
        what = f"{name} ({kind})" if name else f"unknown kind {kind}"
        error, meta, body, buffers = failure(
            "ProtocolError",
            f"this worker (protocol {protocol.PROTOCOL_VERSION}) does not take {what} frames from a "
            "client; is the notebook's vastnb another release than the box's worker?",
        )
        link.send(error, task, {**meta, "kind": kind}, body, buffers)

    # -- the handlers: one per kind a client may send ---------------------------------------

    def _on_task(self, link: Link, frame: Frame) -> bool:
        """CALL and CELL: the user's work, queued for the main thread under a new task id."""
        detached = bool(frame.meta.get("detach"))
        with self._lock:
            task = Task(next(self._ids), frame, detached=detached)
            self.tasks[task.id] = task
            ahead = [t.id for t in self.tasks.values() if t.state in ("queued", "running") and t is not task]
        if detached or ahead:
            # An attached task needs no receipt: its frames carry its id. (One frame
            # fewer per call is a fifth of a no-op call's time.)
            link.send(Kind.ACCEPTED, task.id, {"task": task.id, "queued_behind": ahead})
        if not detached:
            task.subscribe(link.listener)
            link.watched.append(task)
        self.queue.put(task)
        return True

    def _on_control(self, link: Link, frame: Frame) -> bool:
        """CONTROL: vastnb's own call, run now on a thread of its own, beside any task."""
        threading.Thread(target=self._run_control, args=(link, frame), name="vastnb-control", daemon=True).start()
        return True

    def _run_control(self, link: Link, frame: Frame) -> None:
        _in_control.active = True  # what it prints goes to the log (see output_task)
        try:
            fn, args, kwargs = protocol.decode(frame.body, frame.buffers)
            outcome = result_outcome(fn(*args, **kwargs))
        except BaseException as exc:  # noqa: BLE001 - a SystemExit must not end the worker
            outcome = error_outcome(exc)
        self.last_activity = time.monotonic()
        kind = Kind.CONTROL_RESULT if outcome[0] == Kind.RESULT else Kind.CONTROL_ERROR
        try:
            link.answer(kind, 0, {**outcome[1], "control": frame.meta.get("control")}, outcome[2], outcome[3])
        except (ChannelClosed, OSError):
            pass  # the connection went: nobody waits for this answer

    def _on_attach(self, link: Link, frame: Frame) -> bool:
        task = self.tasks.get(frame.task)
        if task is None:
            refusal = failure(
                "KeyError", f"no task {frame.task} on this box (finished tasks are kept for the last {KEEP_TASKS})"
            )
            link.send(refusal[0], frame.task, refusal[1])
        else:
            task.subscribe(link.listener)
            link.watched.append(task)
        return True

    def _on_interrupt(self, link: Link, frame: Frame) -> bool:
        # Task 0: this connection's latest attached task (Ctrl-C before any frame of it).
        self.interrupt(frame.task or (link.watched[-1].id if link.watched else 0))
        return True

    def _on_ping(self, link: Link, frame: Frame) -> bool:
        link.send(Kind.PONG, frame.task, frame.meta)
        return True

    def _on_tasks(self, link: Link, frame: Frame) -> bool:
        with self._lock:
            listing = [t.describe() for t in self.tasks.values()]
        link.send(Kind.TASKS, 0, {"tasks": listing})
        return True

    def _on_bye(self, link: Link, frame: Frame) -> bool:
        if frame.meta.get("shutdown"):
            try:
                link.send(Kind.BYE)
            except (ChannelClosed, OSError):
                pass  # the client may be gone already: it asked, the worker ends all the same
            remove_pid(self.home)
            os._exit(0)  # the whole worker: the client asked for a fresh one
        return False

    #: The one place a kind a client sends is dispatched. Any other kind (HELLO after the
    #: handshake, a worker's own kinds, one from another protocol) gets an ERROR frame.
    HANDLERS: ClassVar[dict[Kind, Handler]] = {
        Kind.CALL: _on_task,
        Kind.CELL: _on_task,
        Kind.CONTROL: _on_control,
        Kind.ATTACH: _on_attach,
        Kind.INTERRUPT: _on_interrupt,
        Kind.PING: _on_ping,
        Kind.TASKS: _on_tasks,
        Kind.BYE: _on_bye,
    }

    def output_task(self) -> Optional[Task]:
        """The task that output written now belongs to: the running one, unless written
        by a control call's thread (then the daemon's log)."""
        return None if getattr(_in_control, "active", False) else self.current


def serve(home: str, digest: str, *, workdir: Optional[str] = None, idle_exit: float = 12 * 3600) -> None:
    """Run the daemon for ``home`` until told to stop or left idle for ``idle_exit`` s.
    Tasks run in ``workdir`` (default: ``home``)."""
    os.chdir(home)  # bind by a relative name: socket paths are limited to ~100 bytes
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    if os.path.exists(SOCKET_NAME):
        os.unlink(SOCKET_NAME)  # the relay holds the start lock: no live daemon owns it
    listener.bind(SOCKET_NAME)
    listener.listen(64)
    daemon = Daemon(home, digest, idle_exit=idle_exit)
    write_private(PID_NAME, f"{os.getpid()}\n")
    # Started in the background, SIGINT may be ignored: tasks need it for Ctrl-C.
    signal.signal(signal.SIGINT, daemon.on_sigint)
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    current = daemon.output_task
    log = os.fdopen(os.dup(2), "w", buffering=1)  # the daemon's own log (daemon.log)
    # Output written below Python (a subprocess, a C extension) reaches the task too.
    daemon.forwarders = [Forwarder(fd, name, current, log) for fd, name in ((1, "stdout"), (2, "stderr"))]
    sys.stdout = TaskStream("stdout", current, log)
    sys.stderr = TaskStream("stderr", current, log)
    # Re-armed from its saved configuration, if any: a restart must not disarm the box.
    watchdog.start(home, lambda: (daemon.connections, daemon.last_contact), log)

    def accept() -> None:
        while True:
            conn, _ = listener.accept()
            threading.Thread(target=daemon.serve_connection, args=(conn,), daemon=True).start()

    threading.Thread(target=accept, daemon=True).start()
    if workdir:
        os.makedirs(workdir, exist_ok=True)
        os.chdir(workdir)
    try:
        daemon.run_tasks()
    finally:
        remove_pid(home)
