"""The wire between the orchestrator and a worker: versioned frames over a byte stream.

A frame is a fixed header, a small JSON ``meta`` mapping (safe to read anywhere), a
pickled ``body`` and the body's out-of-band buffers (pickle protocol 5). Large arrays
and tensors travel as those raw buffers, written with one ``writev`` and read with
``readinto`` into their final memory: pickling, not the link, is the bottleneck, so the
bytes are never copied into the pickle.

Header: kind (1 byte), task id (4), meta length (4), buffer count (4), body length (8),
then one 8-byte length per buffer. Both sides use this module; it needs only the
standard library (cloudpickle is imported by whoever encodes functions).
"""

from __future__ import annotations

import collections
import enum
import functools
import io
import json
import mmap
import os
import pickle
import struct
import sys
import threading
import types
from collections.abc import Sequence
from typing import Any, Callable, ClassVar, NamedTuple, Optional

from .tables import table_reducer

__all__ = [
    "PROTOCOL_VERSION",
    "Kind",
    "Frame",
    "Channel",
    "ChannelClosed",
    "BadFrame",
    "FrameTooLarge",
    "UnknownKind",
    "MAX_FRAME",
    "widen",
    "encode",
    "decode",
    "versions",
    "check_versions",
]

#: Bump on any change to the frame layout or to the meaning of a kind or meta key.
PROTOCOL_VERSION = 3  # 3: CONTROL calls outside the task queue, and their answers

_HEADER = struct.Struct("!BIIIQ")
_LENGTH = struct.Struct("!Q")
_MAX_META = 16 * 1024 * 1024
#: The most bytes (body and buffers together) one frame may carry by default: generous for
#: real results (a model's weights), a bound for a peer that claims terabytes.
MAX_FRAME = 64 << 30
#: The most out-of-band buffers one frame may carry.
MAX_BUFFERS = 1 << 16
_MMAP_FROM = 1 << 20  # a corrupt header must not make us allocate gigabytes


class Kind(enum.IntEnum):
    HELLO = 1  # client -> worker: versions; worker -> client: versions and health
    REFUSED = 2  # worker -> client: the handshake failed; meta says why and how to fix it
    CALL = 10  # client -> worker: run fn(*args, **kwargs); body = (fn, args, kwargs)
    CELL = 11  # client -> worker: run cell source in the namespace; body = (source, push, pull)
    # client -> worker: vastnb's own call (arm the watchdog, install credentials), run at once
    # on a thread of its own, never in the task queue: no task id (task 0), never listed nor
    # attachable. meta: control (the client's request id); body = (fn, args, kwargs)
    CONTROL = 12
    OUTPUT = 20  # worker -> client: one chunk of a task's stdout/stderr (meta: stream, text)
    RESULT = 21  # worker -> client: the task's value (body)
    # worker -> client: the task raised (meta: type, message, frames, exception; see tracebacks.py);
    # also the answer to a frame of a kind the worker does not take (type ProtocolError; meta: kind)
    ERROR = 22
    ACCEPTED = 23  # worker -> client: a detached task is running (meta: task)
    CONTROL_RESULT = 24  # worker -> client: a CONTROL call's value (body; meta: control)
    CONTROL_ERROR = 25  # worker -> client: a CONTROL call raised (meta: control, and ERROR's keys)
    INTERRUPT = 30  # client -> worker: interrupt task ``id``
    PING = 31
    PONG = 32
    ATTACH = 40  # client -> worker: stream task ``id`` from the start, then its outcome
    TASKS = 41  # client -> worker: list tasks; worker -> client: the list (meta)
    BYE = 50  # either side: closing on purpose


def widen(fd: int) -> None:
    """Give a pipe (1 MiB) or socket (4 MiB) a big kernel buffer: large payloads then
    move in a few hundred system calls, not thousands. Best effort."""
    import fcntl
    import socket
    import stat

    try:
        mode = os.fstat(fd).st_mode
        if stat.S_ISFIFO(mode):
            fcntl.fcntl(fd, getattr(fcntl, "F_SETPIPE_SZ", 1031), 1 << 20)
        elif stat.S_ISSOCK(mode):
            sock = socket.socket(fileno=os.dup(fd))
            for option in (socket.SO_SNDBUF, socket.SO_RCVBUF):
                sock.setsockopt(socket.SOL_SOCKET, option, 4 << 20)
            sock.close()
    except OSError:
        pass


class Frame(NamedTuple):
    kind: Kind
    task: int
    meta: dict
    body: bytes
    buffers: list[Any]  # bytearray, or mmap for big ones: writable, so arrays rebuild on them


class ChannelClosed(EOFError):
    """The other side went away (EOF, or a reset) before a whole frame arrived."""


class BadFrame(ChannelClosed):
    """The other side sent something that is not a frame: the stream is given up."""


class FrameTooLarge(BadFrame):
    """The other side announced a frame over this channel's limit; nothing of it was read."""


class UnknownKind(BadFrame):
    """A whole, well-formed frame of a kind this side does not know (the other side speaks
    another protocol). It was read to its end, so the stream is still in step: a reader
    may answer it and go on (the worker does), or give the stream up as a BadFrame."""

    def __init__(self, kind: int, task: int) -> None:
        super().__init__(f"a frame of unknown kind {kind} arrived (task {task})")
        self.kind = kind
        self.task = task


class Channel:
    """Frames over a pair of file descriptors (pipes or a socket), one code path.

    Writes from several threads are serialised; reads are for one thread.
    """

    def __init__(self, read_fd: int, write_fd: int, *, max_frame: int = MAX_FRAME) -> None:
        self.read_fd = read_fd
        self.write_fd = write_fd
        self.max_frame = max_frame
        for fd in {read_fd, write_fd}:
            widen(fd)
        self._reader = io.BufferedReader(io.FileIO(read_fd, "rb", closefd=False), buffer_size=1 << 16)
        self._write_lock = threading.Lock()

    def send(
        self,
        kind: Kind,
        task: int = 0,
        meta: Optional[dict] = None,
        body: bytes = b"",
        buffers: Sequence[Any] = (),
    ) -> None:
        """Write one frame. ``buffers`` are bytes-like objects, sent without a copy."""
        meta_bytes = json.dumps(meta or {}, separators=(",", ":")).encode()
        views = [memoryview(b).cast("B") for b in buffers]
        parts: list[Any] = [_HEADER.pack(int(kind), task, len(meta_bytes), len(views), len(body))]
        parts.extend(_LENGTH.pack(v.nbytes) for v in views)
        parts.extend((meta_bytes, body))
        parts.extend(views)
        with self._write_lock:
            _writev_all(self.write_fd, [p for p in parts if len(p)])

    def receive(self) -> Frame:
        """Read one frame; raises :class:`ChannelClosed` at EOF."""
        kind, task, meta_len, count, body_len = _HEADER.unpack(self._read_exact(_HEADER.size))
        if meta_len > _MAX_META or count > MAX_BUFFERS:
            raise BadFrame(
                f"corrupt frame header (meta of {meta_len} bytes, {count} buffers): the stream is out of sync"
            )
        lengths = [_LENGTH.unpack(self._read_exact(8))[0] for _ in range(count)]
        size = body_len + sum(lengths)
        if size > self.max_frame:
            raise FrameTooLarge(
                f"a frame of {size:,} bytes was announced, over the limit of {self.max_frame:,}; "
                "if results this big are expected, raise the session's max_frame_bytes"
            )
        try:
            meta = json.loads(bytes(self._read_exact(meta_len))) if meta_len else {}
        except (ValueError, RecursionError) as exc:  # not JSON, too deeply nested
            raise BadFrame(f"a malformed frame arrived ({type(exc).__name__}): the stream is given up") from None
        if not isinstance(meta, dict):
            raise BadFrame("a malformed frame arrived (its meta is not a mapping): the stream is given up")
        body = bytes(self._read_exact(body_len)) if body_len else b""
        buffers = [self._read_exact(n) for n in lengths]
        try:
            frame_kind = Kind(kind)
        except ValueError:  # read to its end first: the stream stays in step
            raise UnknownKind(kind, task) from None
        return Frame(frame_kind, task, meta, body, buffers)

    def _read_exact(self, size: int) -> Any:
        # Big buffers land in an anonymous mapping: its pages are zero until touched, so
        # unlike bytearray(n) nothing is cleared first (that alone halved throughput).
        buf: Any = mmap.mmap(-1, size) if size >= _MMAP_FROM else bytearray(size)
        view = memoryview(buf)
        got = 0
        while got < size:
            try:
                n = self._reader.readinto(view[got:])
            except (ConnectionResetError, BrokenPipeError, OSError) as exc:
                raise ChannelClosed(str(exc)) from None
            if not n:
                raise ChannelClosed("the other side closed the connection")
            got += n
        return buf

    def close(self) -> None:
        for fd in {self.read_fd, self.write_fd}:
            try:
                os.close(fd)
            except OSError:
                pass


def _writev_all(fd: int, parts: list[Any]) -> None:
    """``os.writev`` until every byte is out (a pipe takes at most 64 KiB at a time)."""
    views = [memoryview(p).cast("B") for p in parts]
    while views:
        try:
            written = os.writev(fd, views[:1024])  # IOV_MAX
        except (BrokenPipeError, ConnectionResetError) as exc:
            raise ChannelClosed(str(exc)) from None
        while written and views:
            if written >= views[0].nbytes:
                written -= views[0].nbytes
                views.pop(0)
            else:
                views[0] = views[0][written:]
                written = 0


# -- bodies ------------------------------------------------------------------------------------


def _tensor_reducer() -> Optional[Callable[[Any], Any]]:
    """A reducer that sends CPU copies of torch tensors as numpy arrays, so their bytes go
    out of band too (torch pickles storages in-band). Only when torch is already loaded."""
    torch = sys.modules.get("torch")
    if torch is None:
        return None

    def reduce(obj: Any) -> Any:
        if type(obj) is not torch.Tensor or obj.is_sparse or obj.layout != torch.strided:
            return NotImplemented
        tensor = obj.detach().to("cpu").contiguous()
        dtype = str(tensor.dtype).replace("torch.", "")
        if dtype == "bfloat16":  # numpy has no bfloat16: ship the bits as int16
            tensor = tensor.view(torch.int16)
        return _rebuild_tensor, (tensor.numpy(), dtype, obj.requires_grad, str(obj.device))

    return reduce


def _rebuild_tensor(array: Any, dtype: str, requires_grad: bool, device: str) -> Any:
    import torch

    tensor = torch.from_numpy(array)
    if dtype == "bfloat16":
        tensor = tensor.view(torch.bfloat16)
    if device != "cpu" and _device_available(torch, device):
        tensor = tensor.to(device)
    return tensor.requires_grad_(requires_grad) if tensor.is_floating_point() else tensor


def _device_available(torch: Any, device: str) -> bool:
    if device.startswith("cuda"):
        return bool(torch.cuda.is_available())
    return device.startswith("mps") and bool(getattr(torch.backends, "mps", None) and torch.backends.mps.is_available())


def encode(obj: Any, *, code_filename: Optional[Callable[[types.CodeType], str]] = None) -> tuple[bytes, list[Any]]:
    """Pickle ``obj`` with cloudpickle (functions and classes by value), protocol 5; big
    contiguous buffers (numpy arrays, tensors) come back separately, uncopied. Tensors
    and pandas objects travel as plain arrays and columns (``tables.py``).

    ``code_filename``, if given, names each code object that travels: the code is rebuilt
    with that ``co_filename`` (whatever the installed cloudpickle put there), so frames
    running it can be traced back to the sender's own record of its source."""
    import cloudpickle

    buffers: list[Any] = []

    def out_of_band(buffer: pickle.PickleBuffer) -> bool:
        try:
            view = buffer.raw()
        except BufferError:  # not contiguous: leave it in the pickle
            return True
        if view.nbytes < 4096:  # small ones cost less in-band than as a frame part
            return True
        buffers.append(view)
        return False

    stream = io.BytesIO()
    pickler_class = (
        cloudpickle.CloudPickler if code_filename is None else _code_naming_pickler(cloudpickle, code_filename)
    )
    pickler = pickler_class(stream, protocol=5, buffer_callback=out_of_band)
    reducers = [r for r in (_tensor_reducer(), table_reducer()) if r is not None]
    if reducers:
        base = pickler.reducer_override

        def reducer_override(obj: Any) -> Any:
            for reducer in reducers:
                reduced = reducer(obj)
                if reduced is not NotImplemented:
                    return reduced
            return base(obj)

        pickler.reducer_override = reducer_override
    pickler.dump(obj)
    return stream.getvalue(), buffers


@functools.lru_cache(maxsize=8)
def _code_naming_pickler(cloudpickle: Any, code_filename: Callable[[types.CodeType], str]) -> Any:
    """cloudpickle's pickler, with code objects reduced by cloudpickle and then renamed
    (cloudpickle 3.1.3 and later name every shipped code object "<dynamic-code>")."""
    base_table = cloudpickle.CloudPickler.dispatch_table
    reduce_code = base_table[types.CodeType]

    def reduce(code: types.CodeType) -> Any:
        rebuild, args = reduce_code(code)
        return _named_code, (rebuild, args, code_filename(code))

    class CodeNamingPickler(cloudpickle.CloudPickler):
        dispatch_table: ClassVar[collections.ChainMap[Any, Any]] = collections.ChainMap(
            {types.CodeType: reduce}, base_table
        )

    return CodeNamingPickler


def _named_code(rebuild: Callable[..., types.CodeType], args: tuple[Any, ...], filename: str) -> types.CodeType:
    return rebuild(*args).replace(co_filename=filename)


def decode(body: bytes, buffers: Sequence[Any] = ()) -> Any:
    """Unpickle what :func:`encode` made. Trusts the sender: see the orchestrator's
    result policy for what comes back from a rented box."""
    return pickle.loads(body, buffers=buffers)


# -- the handshake -----------------------------------------------------------------------------


def versions(worker_version: str) -> dict:
    """What each side states in HELLO; every item must match for a session to start."""
    import cloudpickle

    return {
        "protocol": PROTOCOL_VERSION,
        "python": f"{sys.version_info.major}.{sys.version_info.minor}",
        "cloudpickle": cloudpickle.__version__,
        "worker": worker_version,
    }


_FIXES = {
    "protocol": "update vastnb on both sides to the same release (the box gets the notebook's worker on the next connection)",
    "python": "functions pickled by cloudpickle only load on the same Python minor version: run the notebook "
    "on Python {box}, or rent with an image whose python3 is {notebook}",
    "cloudpickle": "the worker ships the notebook's cloudpickle; a different one means a stale worker is running "
    "on the box: restart it (box.restart_worker())",
    "worker": "a worker from another vastnb release is running on the box: restart it (box.restart_worker())",
}


def check_versions(notebook: dict, box: dict) -> Optional[tuple[str, str]]:
    """None if the two sides can talk, else (the first item that differs, a message that
    names both sides' values and the fix)."""
    for key in ("protocol", "python", "cloudpickle", "worker"):
        ours, theirs = notebook.get(key), box.get(key)
        if str(ours) != str(theirs):
            fix = _FIXES[key].format(notebook=ours, box=theirs)
            return key, f"{key} mismatch: the notebook has {ours}, the box has {theirs}; {fix}."
    return None
