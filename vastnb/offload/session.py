"""A session with a box's worker: run functions and cells there as if here.

Output streams back live, line by line; an exception there is raised here as a
:class:`~vastnb.errors.RemoteError` with the box's traceback; Ctrl-C interrupts the
remote code and leaves the session usable; a dropped connection is reopened on the
next call. Work can also be started detached and reattached later by task id.

vastnb's own calls (arming the watchdog, installing storage credentials) go through
:meth:`Session.control`: answered by the worker beside the user's tasks, never behind
them, and never one of them (no task id, not listed, not attachable).
"""

from __future__ import annotations

import itertools
import os
import time
import warnings
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, Literal, overload

from vastnb.errors import ConnectionLostError, HandshakeError, TransportError
from vastnb.offload.cells import CELL_NAME, CellResult, cell_payload
from vastnb.offload.connection import Connection
from vastnb.offload.control import REPLIES, control_reply
from vastnb.offload.localmods import ship_local_modules
from vastnb.offload.output import MetricLog, Output, print_output
from vastnb.offload.results import RemoteTask, ResultPolicy, raise_remote, safe, trusted
from vastnb.offload.sourcemap import SOURCES
from vastnb.offload.transport import Transport
from vastnb.offload.zipapp import worker_zipapp
from vastnb_worker import __version__ as worker_version, protocol
from vastnb_worker.health import measured
from vastnb_worker.protocol import Frame, Kind

__all__ = ["Session", "encode_task"]

INTERRUPT_GRACE = 10.0  # seconds the box gets to stop after Ctrl-C before we stop waiting
RECONNECT_TIMEOUT = 10.0  # seconds to try to reach the box again after a drop, to name a task


def encode_task(payload: Any) -> tuple[bytes, list[Any]]:
    """A CALL's ``(fn, args, kwargs)`` or a CELL's payload, as a task's body and buffers:
    local modules by value, code named for this process's source map."""
    ship_local_modules()
    return protocol.encode(payload, code_filename=SOURCES.name_code)


class Session:
    """Runs work on one box. Connects lazily, and again after a dropped connection."""

    def __init__(
        self,
        transport: Transport,
        *,
        on_output: Output = print_output,
        results: ResultPolicy = trusted,
        connect_timeout: float = 120.0,
        max_frame_bytes: int = protocol.MAX_FRAME,
        metrics: MetricLog | None = None,
    ) -> None:
        self.transport = transport
        self.on_output = on_output
        self.metrics = metrics if metrics is not None else MetricLog()  # what tasks report, out of their output
        self.results = results
        self.connect_timeout = connect_timeout
        self.max_frame_bytes = max_frame_bytes  # the biggest result (or output chunk) taken from the box
        self._connection: Connection | None = None
        self._worker_pid: int | None = None
        self._tag = f"{os.getpid()}.{id(self):x}"  # names this session's attached tasks
        self._tags = itertools.count(1)
        self._controls = itertools.count(1)  # control requests' ids, for their answers
        _, digest = worker_zipapp()
        self.versions = protocol.versions(f"{worker_version}+{digest[:12]}")

    def __repr__(self) -> str:
        state = "connected" if self._connection and self._connection.usable() else "idle"
        return f"<Session {self.transport.describe()} ({state})>"

    # -- connecting ---------------------------------------------------------------------

    def connect(self, *, timeout: float | None = None, first: Callable[[Connection], None] | None = None) -> Connection:
        """The live connection, opened (or reopened) as needed, trying for ``timeout`` s
        (default: the session's ``connect_timeout``). ``first(connection)`` sends a task on
        it: on a new connection right behind HELLO (see :meth:`Connection.open`)."""
        if self._connection is not None and self._connection.usable():
            if first is not None:
                first(self._connection)
            return self._connection
        if self._connection is not None:
            self._connection.close()

        def open_connection() -> Connection:
            return Connection.open(
                self.transport,
                self.versions,
                timeout=timeout or self.connect_timeout,
                max_frame=self.max_frame_bytes,
                first=first,
            )

        try:
            connection = open_connection()
        except HandshakeError as exc:
            if not getattr(exc, "restarting", False):
                raise
            # A stale worker from another release stepped aside (reading nothing after HELLO,
            # so a first task is sent again): the next one is ours.
            connection = open_connection()
        pid = connection.hello.get("pid")
        if self._worker_pid is not None and pid != self._worker_pid:
            warnings.warn(
                f"the worker on {self.transport.describe()} restarted: names defined by earlier cells are gone",
                stacklevel=3,
            )
        self._worker_pid = pid
        self._connection = connection
        return connection

    @property
    def health(self) -> dict[str, Any]:
        """The box's report, made as its worker started: Python, cloudpickle, torch, CUDA,
        GPUs, memory, disk. (A worker answers HELLO without waiting for nvidia-smi; until
        then, the report is asked for.)"""
        reported = self.connect().hello.get("health")
        if reported is None:
            reported = self.control(measured)
        return dict(reported or {})

    def close(self) -> None:
        if self._connection is not None:
            self._connection.close()
            self._connection = None

    def __enter__(self) -> Session:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- running work -------------------------------------------------------------------

    def call(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Any:
        """``fn(*args, **kwargs)`` on the box; its value here."""
        return self.invoke(fn, args, kwargs)

    @overload
    def invoke(
        self,
        fn: Callable[..., Any],
        args: Iterable[Any] = (),
        kwargs: Mapping[str, Any] | None = None,
        *,
        results: ResultPolicy | None = None,
        detach: Literal[False] = False,
    ) -> Any: ...

    @overload
    def invoke(
        self,
        fn: Callable[..., Any],
        args: Iterable[Any] = (),
        kwargs: Mapping[str, Any] | None = None,
        *,
        results: ResultPolicy | None = None,
        detach: Literal[True],
    ) -> RemoteTask: ...

    def invoke(
        self,
        fn: Callable[..., Any],
        args: Iterable[Any] = (),
        kwargs: Mapping[str, Any] | None = None,
        *,
        results: ResultPolicy | None = None,
        detach: bool = False,
    ) -> Any:
        """``fn(*args, **kwargs)`` with the call's settings apart from its arguments (so
        none of ``fn``'s own can be taken): its value decoded with ``results`` (default:
        the session's policy), or with ``detach``, a :class:`RemoteTask` at once."""
        payload = (fn, tuple(args), dict(kwargs or {}))
        if detach:
            return RemoteTask(self, self._submit(Kind.CALL, payload, detach=True)[1], results=results)
        return self._wait(*self._submit(Kind.CALL, payload, detach=False), results=results)

    def control(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Any:
        """A call vastnb makes for itself (arming the box's watchdog, installing storage
        credentials): ``fn(*args, **kwargs)`` on the box, not as a task. The worker runs
        it at once on a thread of its own, beside whatever task is running: it never
        waits behind a cell, gets no task id, is never listed by :meth:`tasks` nor
        reachable by :meth:`attach`. So ``fn`` must not rely on signals (nor Ctrl-C:
        interrupting only stops the wait here), and what it prints goes to the worker's
        log. Its result is plain data, decoded with the safe policy whatever the
        session's, so that no box can run code here before the user has sent it anything."""
        body, buffers = encode_task((fn, args, kwargs))
        connection = self.connect()
        request = next(self._controls)
        connection.send(Kind.CONTROL, 0, {"control": request}, body, buffers)
        try:
            frame = control_reply(connection, request, getattr(fn, "__qualname__", repr(fn)), self.transport.describe())
        except ConnectionLostError:
            self._abandon()
            raise
        if frame.kind == Kind.CONTROL_ERROR:
            raise_remote(frame, safe, None)
        return safe(frame.body, frame.buffers)

    def run_cell(
        self,
        source: str,
        *,
        push: Mapping[str, Any] | None = None,
        pull: Iterable[str] = (),
        name: str = CELL_NAME,
        results: ResultPolicy | None = None,
    ) -> CellResult:
        """Run cell ``source`` in the box's namespace, after setting the ``push`` names.
        Returns the ``pull`` names as a dict, with ``.value`` the last expression's value.
        ``name`` is how a traceback names the cell (the ``%%vast run`` magic: ``Cell In[3]``);
        ``results`` decodes what comes back (default: the session's policy)."""
        return self._wait(
            *self._submit(Kind.CELL, cell_payload(source, push, pull, name), detach=False), results=results
        )

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> RemoteTask:
        """Start ``fn`` detached: it keeps running if the connection drops. Returns at once."""
        return self.invoke(fn, args, kwargs, detach=True)

    def submit_cell(
        self,
        source: str,
        *,
        push: Mapping[str, Any] | None = None,
        pull: Iterable[str] = (),
        name: str = CELL_NAME,
        results: ResultPolicy | None = None,
    ) -> RemoteTask:
        """Start a cell detached; see :meth:`run_cell`."""
        task = self._submit(Kind.CELL, cell_payload(source, push, pull, name), detach=True)[1]
        return RemoteTask(self, task, cell=True, results=results)

    def attach(self, task_id: int, *, results: ResultPolicy | None = None) -> Any:
        """Stream a task's output from its start, then return its value (or raise): for
        a cell, a :class:`CellResult`. ``results`` as in :meth:`invoke`."""
        connection = self.connect()
        connection.send(Kind.ATTACH, task_id)
        return self._wait(connection, task_id, results=results)

    def tasks(self) -> list[dict[str, Any]]:
        """Every task the box remembers: id, kind, state, detached, times."""
        connection = self.connect()
        connection.send(Kind.TASKS)
        return list(self._expect(connection, Kind.TASKS).meta["tasks"])

    def ping(self) -> float:
        """Seconds for one round trip to the worker."""
        connection = self.connect()
        start = time.perf_counter()
        connection.send(Kind.PING)
        self._expect(connection, Kind.PONG)
        return time.perf_counter() - start

    def interrupt(self, task_id: int) -> None:
        """Interrupt a task running on the box (or cancel it, if still queued)."""
        self.connect().send(Kind.INTERRUPT, task_id)

    def restart_worker(self) -> None:
        """Stop the box's worker (its namespace and tasks go); the next call starts afresh."""
        connection = self.connect()
        connection.send(Kind.BYE, meta={"shutdown": True})
        try:
            self._expect(connection, Kind.BYE, timeout=10)
        except ConnectionLostError:
            pass
        self.close()
        self._worker_pid = None

    # -- plumbing -----------------------------------------------------------------------

    def _submit(self, kind: Kind, payload: Any, *, detach: bool) -> tuple[Connection, int, str]:
        """Send a task: the connection it went on, its id once the box has it (0 for an
        attached task: the id comes with its first frame, see :meth:`_wait`) and its tag,
        by which the box can name it if that frame never comes."""
        body, buffers = encode_task(payload)
        tag = f"{self._tag}.{next(self._tags)}"
        connection = self.connect(first=lambda c: c.send(kind, 0, {"detach": detach, "tag": tag}, body, buffers))
        if not detach:
            return connection, 0, tag
        return connection, self._expect(connection, Kind.ACCEPTED).task, tag

    def send_encoded(
        self, kind: Kind, body: bytes, buffers: Sequence[Any], *, tag: str, meta: Mapping[str, Any]
    ) -> int:
        """Start a task encoded earlier (by :func:`encode_task`, perhaps in another
        process: a job's), detached, with ``meta`` beside it; its id on the box."""
        connection = self.connect(
            first=lambda c: c.send(kind, 0, {**meta, "detach": True, "tag": tag}, body, list(buffers))
        )
        return self._expect(connection, Kind.ACCEPTED).task

    def _find(self, tag: str) -> int | None:
        """The id of the task sent with ``tag``, asked of the box on a new connection (the
        old one dropped before the task's first frame): 0 if the box never got it, None
        if the box is out of reach."""
        try:
            self.connect(timeout=RECONNECT_TIMEOUT)
            return next((int(t["task"]) for t in self.tasks() if t.get("tag") == tag), 0)
        except TransportError:
            return None

    def _abandon(self) -> None:
        """Stop listening to a task that still runs: a fresh connection next time, so its
        late frames cannot be taken for the next task's."""
        self.close()

    def _expect(self, connection: Connection, kind: Kind, timeout: float = 60.0) -> Frame:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            frame = connection.next(timeout=0.2)
            if frame is not None and frame.kind == kind:
                return frame
        raise ConnectionLostError(
            f"no {kind.name} from the worker on {self.transport.describe()} within {timeout:.0f} s"
        )

    def _show(self, task: int, frame: Frame) -> None:
        if frame.kind == Kind.ACCEPTED:
            ahead = ", ".join(map(str, frame.meta.get("queued_behind") or []))
            self.on_output("stderr", f"[vastnb] task {task} waits for task(s) {ahead} to finish on the box\n")
        else:
            stream, text = str(frame.meta.get("stream", "stdout")), str(frame.meta.get("text", ""))
            if shown := self.metrics.take(stream, text):
                self.on_output(stream, shown)

    def _wait(self, connection: Connection, task: int, tag: str = "", *, results: ResultPolicy | None = None) -> Any:
        """Stream ``task``'s output from ``connection`` until its outcome; Ctrl-C interrupts
        it on the box. ``task`` 0 is the attached task just sent: the first frame tells its id.
        Its value is decoded with ``results`` (default: the session's policy)."""
        results = results or self.results
        interrupted_at: float | None = None
        while True:
            try:
                frame = connection.next(timeout=0.5)
                if frame is not None and frame.kind in REPLIES:
                    continue  # a control call's late answer (its wait was interrupted): no task's
                if frame is not None and task == 0:
                    task = frame.task
                if frame is not None and frame.task == task and frame.kind in (Kind.OUTPUT, Kind.ACCEPTED):
                    # Shown inside the try: in a notebook, Ctrl-C often lands while output
                    # is being displayed, and must reach the box from there too.
                    self._show(task, frame)
                    continue
            except ConnectionLostError:
                if connection.lost_because:  # the box sent what is not a frame: nothing to reattach to
                    self._abandon()
                    raise ConnectionLostError(
                        f"{self.transport.describe()} sent something vastnb does not accept, and the connection was "
                        f"closed: {connection.lost_because}. The next call reconnects.",
                    ) from None
                if connection.worker_died():
                    raise ConnectionLostError(
                        f"the worker on {self.transport.describe()} ended while task {task or '(just sent)'} ran: "
                        "it was killed (out of memory?) or crashed; daemon.log in its folder on the box may say "
                        "more. Its tasks and the names cells defined are gone; the next call starts a new worker.",
                    ) from None
                found = self._find(tag) if task == 0 and tag else task
                if found == 0:
                    raise ConnectionLostError(
                        f"the connection to {self.transport.describe()} dropped before the task reached the box: "
                        "nothing of it runs there. Run it again (the session reconnects by itself).",
                    ) from None
                if found is None:
                    raise ConnectionLostError(
                        f"the connection to {self.transport.describe()} dropped before the task's first answer, "
                        "and the box cannot be reached to ask for its id. It may be running there: once the box "
                        "is reachable, session.tasks() lists its tasks and session.attach(id) reattaches.",
                    ) from None
                task = found
                raise ConnectionLostError(
                    f"the connection to {self.transport.describe()} dropped while task {task} was running. "
                    f"The task keeps running on the box: session.attach({task}) streams its output and "
                    "returns its result (the session reconnects by itself).",
                    task=task,
                ) from None
            except KeyboardInterrupt:
                if interrupted_at is not None:
                    self._abandon()
                    raise KeyboardInterrupt(
                        f"stopped waiting; task {task} may still run on the box (attach({task}))"
                    ) from None
                connection.send(Kind.INTERRUPT, task)
                interrupted_at = time.monotonic()
                continue
            if frame is None:
                if interrupted_at is not None and time.monotonic() - interrupted_at > INTERRUPT_GRACE:
                    self._abandon()
                    raise KeyboardInterrupt(
                        f"task {task} did not stop within {INTERRUPT_GRACE:.0f} s; it may still run on the box"
                    )
                continue
            if frame.task != task:
                continue
            if frame.kind == Kind.RESULT:
                value = results(frame.body, frame.buffers)
                if frame.meta.get("cell"):
                    value, pulled = CellResult(value["pull"]), value
                    value.value = pulled["value"]
                return value
            elif frame.kind == Kind.ERROR:
                raise_remote(frame, results, task)
