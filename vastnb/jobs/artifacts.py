"""What a job leaves behind under ``VASTNB_HOME/jobs/<id>/``: every attempt's output, and
its result or its error, so that ``job.result()`` and ``job.logs()`` work after the box
is gone and from any process.

The result is kept as the box sent it (a pickle and its out-of-band buffers) and decoded
only when asked, by the safe policy unless the job trusts its boxes. Files are written
whole and renamed in (a reader never sees half of one), readable by the user only.
"""

from __future__ import annotations

import json
import os
import re
import struct
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from vastnb.base.private import private_folder
from vastnb.errors import ConfigError
from vastnb_worker.files import write_private
from vastnb_worker.metrics import Metric, MetricReader

__all__ = ["JobFiles", "pack", "unpack"]

_COUNT = struct.Struct("!I")
_LENGTH = struct.Struct("!Q")
_LOG = re.compile(r"attempt-(\d+)\.log\Z")
MAX_LOG_BYTES = 64 << 20  # one attempt's output kept, at most


def pack(body: bytes, buffers: Sequence[Any]) -> bytes:
    """A pickle and its out-of-band buffers as one blob (a job's payload, its result)."""
    parts = [bytes(body), *(bytes(memoryview(b)) for b in buffers)]
    return _COUNT.pack(len(parts)) + b"".join(_LENGTH.pack(len(p)) for p in parts) + b"".join(parts)


def unpack(blob: bytes) -> tuple[bytes, list[bytearray]]:
    """:func:`pack`'s blob back as (body, buffers); a blob that does not add up is refused."""
    view = memoryview(blob)
    try:
        (count,) = _COUNT.unpack_from(view, 0)
        lengths = [_LENGTH.unpack_from(view, _COUNT.size + i * _LENGTH.size)[0] for i in range(count)]
    except struct.error:
        raise ConfigError("a job's stored payload or result is damaged (its header is cut short)") from None
    start = _COUNT.size + count * _LENGTH.size
    if count < 1 or start + sum(lengths) != len(blob):
        raise ConfigError("a job's stored payload or result is damaged (its parts do not add up)")
    parts = []
    for length in lengths:
        parts.append(view[start : start + length])
        start += length
    return bytes(parts[0]), [bytearray(p) for p in parts[1:]]


class JobFiles:
    """The files of job ``job_id`` under ``home``."""

    def __init__(self, home: Path, job_id: int) -> None:
        self.folder = Path(home) / "jobs" / str(int(job_id))
        # Per attempt: how far its log was read for metrics, the reader, what it found.
        self._read: dict[int, tuple[int, MetricReader, list[Metric]]] = {}

    def _ready(self) -> Path:
        private_folder(self.folder.parent, what="vastnb's job files")
        self.folder.mkdir(mode=0o700, exist_ok=True)
        return self.folder

    # -- output -----------------------------------------------------------------------------

    def log_path(self, attempt: int) -> Path:
        return self.folder / f"attempt-{int(attempt)}.log"

    def start_log(self, attempt: int, header: str) -> None:
        """Begin attempt ``attempt``'s output afresh (a re-attach streams it from the start)."""
        write_private(str(self._ready() / f"attempt-{int(attempt)}.log"), header, sync=False)

    def append(self, attempt: int, text: str) -> None:
        """Add to an attempt's output, up to :data:`MAX_LOG_BYTES` (a box may print without end)."""
        path = self.log_path(attempt)
        size = path.stat().st_size if path.exists() else 0
        if size >= MAX_LOG_BYTES:
            return
        if size + len(text) >= MAX_LOG_BYTES:
            text = (
                text[: MAX_LOG_BYTES - size] + f"\n[vastnb] output cut at {MAX_LOG_BYTES >> 20} MiB for this attempt\n"
            )
        with open(path, "a", encoding="utf-8", errors="replace") as f:
            f.write(text)

    def attempts(self) -> list[int]:
        """The attempts that left output, in order."""
        if not self.folder.is_dir():
            return []
        return sorted(int(m.group(1)) for p in self.folder.iterdir() if (m := _LOG.match(p.name)))

    def logs(self) -> str:
        """Every attempt's output, each after its header line."""
        return "".join(self.log_path(a).read_text(encoding="utf-8", errors="replace") for a in self.attempts())

    def metrics(self) -> list[tuple[int, Metric]]:
        """What each attempt reported (``vastnb_worker.report``: marked lines of its output),
        as (attempt, metric); each call reads on from where the last one stopped."""
        for attempt in self.attempts():
            path = self.log_path(attempt)
            offset, reader, found = self._read.get(attempt, (0, MetricReader(), []))
            size = path.stat().st_size
            if size < offset:  # written afresh (a controller re-attached): read from the start
                offset, reader, found = 0, MetricReader(), []
            with open(path, "rb") as f:
                f.seek(offset)
                data = f.read(size - offset)
            whole = data.rfind(b"\n") + 1  # whole lines only: a cut UTF-8 character waits too
            found.extend(reader.feed(data[:whole].decode("utf-8", errors="replace"))[1])
            self._read[attempt] = (offset + whole, reader, found)
        return [(attempt, metric) for attempt in sorted(self._read) for metric in self._read[attempt][2]]

    def tail(self, lines: int, max_bytes: int = 64 << 10) -> str:
        """The last ``lines`` lines of the latest attempt's output (read from at most its last
        ``max_bytes``), metrics lines taken out."""
        attempts = self.attempts()
        if not attempts:
            return ""
        path = self.log_path(attempts[-1])
        with open(path, "rb") as f:
            f.seek(max(0, path.stat().st_size - max_bytes))
            data = f.read()
        shown = MetricReader().feed(data.decode("utf-8", errors="replace"))[0]
        return "".join(shown.splitlines(keepends=True)[-lines:])

    # -- outcome ----------------------------------------------------------------------------

    def save_result(self, body: bytes, buffers: Sequence[Any]) -> None:
        _write_bytes(self._ready() / "result.bin", pack(body, buffers))

    def result(self) -> tuple[bytes, list[bytearray]] | None:
        path = self.folder / "result.bin"
        return unpack(path.read_bytes()) if path.exists() else None

    def save_error(self, meta: dict[str, Any], body: bytes) -> None:
        """The box's report of the failure (its frames as data) and the pickled exception."""
        write_private(str(self._ready() / "error.json"), json.dumps(meta), sync=False)
        _write_bytes(self.folder / "error.bin", body)

    def error(self) -> tuple[dict[str, Any], bytes] | None:
        path = self.folder / "error.json"
        if not path.exists():
            return None
        meta = json.loads(path.read_text())
        body_path = self.folder / "error.bin"
        return (meta if isinstance(meta, dict) else {}), body_path.read_bytes() if body_path.exists() else b""

    def publish(self, url: str) -> list[str]:
        """Copy the output, result and error next to the job's checkpoints (``url``), under
        ``job/``, with this machine's credentials for the store; the keys written."""
        from vastnb_worker.checkpoint.stores import open_store

        store = open_store(url)
        written = []
        for key, path in (("job/logs.txt", None), ("job/result.bin", "result.bin"), ("job/error.json", "error.json")):
            if path is None:
                data = self.logs().encode()
            elif (self.folder / path).exists():
                data = (self.folder / path).read_bytes()
            else:
                continue
            store.put_bytes(key, data)
            written.append(key)
        return written


def _write_bytes(path: Path, data: bytes) -> None:
    partial = path.with_name(f"{path.name}.{os.getpid()}.partial")
    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    os.replace(partial, path)
