"""The background half of a checkpoint: write, hash, upload, then the manifest.

One thread takes checkpoints in order. For each, it writes every part to a file in the
cache, hashes it and hands it to the uploaders, so part *n + 1* is written while part *n*
uploads (and S3 uploads each big part as concurrent multipart). When every object is
stored, it writes the manifest, which makes the checkpoint exist, then applies retention.

At most ``max_in_flight`` checkpoints are queued or being written: ``submit()`` waits for a
free slot, so nothing is ever dropped. Each object is retried with backoff; a checkpoint
that still fails gets no manifest, is reported with a warning at once, and is raised to
the training loop by the manager's next call.
"""

from __future__ import annotations

import collections
import json
import os
import queue
import threading
import time
import warnings
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any, Callable, Optional, TypeVar

from ..errors import CheckpointError, StorageError
from .cache import Cache
from .codec import SUFFIX, codec_of, write_part
from .manifest import (
    MAX_MARKER_BYTES,
    CheckpointInfo,
    Part,
    expired,
    file_sha256,
    folder_step,
    manifest_key,
    marker_key,
    parts_from_marker,
    step_of,
    versions,
)
from .reader import CheckpointWarning
from .snapshot import BufferPool, Snapshot
from .stores import Store

__all__ = ["Job", "Writer"]

#: Objects uploaded side by side (each one is multipart, with its own concurrency).
UPLOADERS = 2
#: How long rank 0 waits for the other ranks' shards of a sharded checkpoint, in seconds.
PEER_WAIT = 900.0

T = TypeVar("T")


@dataclass
class Job:
    """A checkpoint whose state is in host memory, waiting to be stored; ``files`` are
    parts already written (a sharded checkpoint's shards: name, codec, path in the cache).
    Of a sharded checkpoint every rank stores its own parts; ``ranks`` is how many there
    are, and rank 0 writes the manifest once the others' markers say they are stored."""

    id: str
    step: int
    time: float
    metrics: dict[str, Any]
    parts: list[tuple[str, Snapshot]]
    files: list[tuple[str, str, str]] = field(default_factory=list)
    rank: int = 0
    ranks: int = 1
    future: Future[CheckpointInfo] = field(default_factory=Future)


class Writer:
    """Stores checkpoints in the background; see the module's docstring."""

    def __init__(
        self,
        store: Store,
        cache: Cache,
        pool: BufferPool,
        *,
        max_in_flight: int = 2,
        retries: int = 3,
        keep_last: Optional[int] = 3,
        keep_every: Optional[int] = None,
    ) -> None:
        if max_in_flight < 1:
            raise ValueError(f"max_in_flight must be at least 1, not {max_in_flight}")
        self.store, self.cache, self.pool = store, cache, pool
        self.retries, self.keep_last, self.keep_every = retries, keep_last, keep_every
        self.failure: Optional[CheckpointError] = None
        self._cached: collections.deque[str] = collections.deque(maxlen=max(cache.keep, 1))
        self._slots = threading.BoundedSemaphore(max_in_flight)
        self._jobs: queue.Queue[Optional[Job]] = queue.Queue()
        self._uploads: queue.Queue[Optional[tuple[Future[None], str, str]]] = queue.Queue()
        self._idle = threading.Condition()
        self._in_flight: list[str] = []  # ids submitted and not yet stored or failed
        self._thread = threading.Thread(
            target=_serve, args=(self._jobs, self._run_job), name="vastnb-checkpoint", daemon=True
        )
        self._thread.start()
        # Daemon threads: an upload that hangs must never keep a preempted process alive.
        self._uploaders = [
            threading.Thread(target=_serve, args=(self._uploads, self._upload), daemon=True, name=f"vastnb-upload-{i}")
            for i in range(UPLOADERS)
        ]
        for thread in self._uploaders:
            thread.start()

    def reserve(self, step: int, timeout: Optional[float] = None) -> None:
        """Wait for a free slot, before the snapshot is taken, so that at most
        ``max_in_flight`` snapshots are ever in memory. After ``timeout`` seconds:
        :class:`CheckpointError`. The slot goes to :meth:`submit`, or back by :meth:`release`."""
        if not self._slots.acquire(timeout=None if timeout is None else max(timeout, 0.0)):
            raise CheckpointError(f"no room to save step {step}: earlier checkpoints are still uploading", step=step)

    def stage(self, checkpoint_id: str) -> str:
        """The cache folder to write ``checkpoint_id``'s files into before it is submitted
        (DCP's shards), held from pruning until the job is done; :meth:`release` gives
        the slot back (and the folder up) if it is never submitted."""
        with self._idle:
            self._in_flight.append(checkpoint_id)
        return self.cache.folder(checkpoint_id)

    def release(self, staged: Optional[str] = None) -> None:
        """Give back a slot reserved for a checkpoint that will not be submitted."""
        with self._idle:
            if staged in self._in_flight:
                self._in_flight.remove(staged)
                self._idle.notify_all()
        self._slots.release()

    def submit(self, job: Job) -> Future[CheckpointInfo]:
        """Queue ``job`` in the slot :meth:`reserve` gave."""
        with self._idle:
            if job.id not in self._in_flight:  # staged already
                self._in_flight.append(job.id)
        self._jobs.put(job)
        return job.future

    def flush(self, timeout: Optional[float] = None) -> bool:
        """Wait until every submitted checkpoint is stored or failed; False on timeout."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._idle:
            while self._in_flight:
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    return False
                self._idle.wait(left)
        return True

    def close(self, timeout: Optional[float] = None) -> bool:
        """Flush, then stop the threads. False if checkpoints were still uploading."""
        done = self.flush(timeout)
        if done:
            self._prune_cache()
            self.cache.remove_if_empty()
        self._jobs.put(None)
        for _ in self._uploaders:
            self._uploads.put(None)
        return done

    # The writing thread.

    def _run_job(self, job: Job) -> None:
        try:
            info = self._store(job)
        except BaseException as exc:  # noqa: BLE001 - every failure is reported, none dies with the thread
            self._fail(job, exc)
        else:
            job.future.set_result(info)  # stored: retention is housekeeping, after
            if not job.rank:  # one rank keeps the store tidy
                self._tidy()
        finally:
            for _, snapshot in job.parts:  # a failed job's buffers still go back
                self._give_back(snapshot)
            with self._idle:
                self._in_flight.remove(job.id)
                self._idle.notify_all()
            self._slots.release()

    def _give_back(self, snapshot: Snapshot) -> None:
        self.pool.give(snapshot.buffers)
        snapshot.buffers = []

    def _store(self, job: Job) -> CheckpointInfo:
        folder = self.cache.folder(job.id)
        parts: list[Part] = []
        uploads: list[Future[None]] = []
        for name, snapshot in job.parts:
            codec = codec_of(snapshot)
            path = os.path.join(folder, name + SUFFIX[codec])
            write_part(snapshot, path)
            self._give_back(snapshot)  # written: the host copy can serve the next save
            parts.append(self._send(job, name, codec, path, uploads))
        for name, codec, path in job.files:
            parts.append(self._send(job, name, codec, path, uploads))
        # Wait for all, so that no upload still reads a file when a failure removes them.
        errors = [upload.exception() for upload in uploads]
        for error in errors:
            if error is not None:
                raise error  # the first failure fails the checkpoint: it gets no manifest
        if job.rank:  # rank 0 writes the manifest: say what this rank stored
            body = json.dumps([vars(part) for part in parts]).encode()
            self._retry(f"shards of rank {job.rank}", lambda: self.store.put_bytes(marker_key(job.id, job.rank), body))
        else:
            parts += self._peers(job)
        info = CheckpointInfo(
            id=job.id,
            step=job.step,
            time=job.time,
            metrics=job.metrics,
            parts=tuple(parts),
            versions=versions(),
            url=self.store.url,
        )
        if not job.rank:
            self._retry(f"manifest of step {job.step}", lambda: self.store.put_bytes(info.manifest_key, info.to_json()))
        self._cached.append(info.id)
        return info

    def _send(self, job: Job, name: str, codec: str, path: str, uploads: list[Future[None]]) -> Part:
        """Queue the upload of a part's file; the part, hashed."""
        key = f"{job.id}/{name}{SUFFIX[codec]}"
        upload: Future[None] = Future()
        if self.cache.move:  # the store takes the file away: hash it first
            size, digest = file_sha256(path)
            self._uploads.put((upload, key, path))
        else:  # hash while it uploads (the manifest needs the hash, the upload does not)
            self._uploads.put((upload, key, path))
            size, digest = file_sha256(path)
        uploads.append(upload)
        return Part(name=name, key=key, size=size, sha256=digest, codec=codec)

    def _peers(self, job: Job) -> list[Part]:
        """The parts the other ranks of a sharded checkpoint stored, once each has said so."""
        parts: list[Part] = []
        deadline = time.monotonic() + PEER_WAIT
        for rank in range(1, job.ranks):
            while True:
                try:
                    data = self.store.get_bytes_capped(marker_key(job.id, rank), MAX_MARKER_BYTES)
                    break
                except FileNotFoundError:
                    if time.monotonic() > deadline:
                        raise CheckpointError(
                            f"rank {rank} did not store its shards of step {job.step} within {PEER_WAIT:.0f} s",
                            step=job.step,
                        ) from None
                    time.sleep(0.2)
            parts += parts_from_marker(data, job.id, rank)
        return parts

    def _upload(self, item: tuple[Future[None], str, str]) -> None:
        upload, key, path = item
        try:
            self._retry(key, lambda: self.store.put_file(key, path, move=self.cache.move))
        except BaseException as exc:  # noqa: BLE001 - the upload's future carries every failure
            upload.set_exception(exc)
        else:
            upload.set_result(None)

    def _retry(self, what: str, action: Callable[[], None]) -> None:
        for attempt in range(self.retries + 1):
            try:
                action()
                return
            except StorageError as exc:
                if not exc.retryable or attempt == self.retries:
                    raise
            except OSError:
                if attempt == self.retries:
                    raise
            time.sleep(min(2.0**attempt, 30.0))  # 1, 2, 4... seconds

    def _tidy(self) -> None:
        try:
            self._retain()
        except Exception as exc:  # noqa: BLE001 - the checkpoint is stored; only old ones were not deleted
            warnings.warn(
                f"retention in {self.store.url} failed, older checkpoints were kept: {exc}",
                CheckpointWarning,
                stacklevel=1,
            )

    def _retain(self) -> None:
        """Delete what retention does not keep (manifest first: the checkpoint stops
        existing before its objects go), the data of uploads that never got a manifest
        (a crash) up to the newest complete step, and the cache's older checkpoints."""
        ids = [found for found in map(step_of, self.store.list()) if found]
        for old in expired(ids, self.keep_last, self.keep_every):
            self.store.delete(manifest_key(old))
            self.store.delete_folder(old)
        newest = max((step for _, step in ids), default=-1)
        complete = {cid for cid, _ in ids}
        with self._idle:
            busy = set(self._in_flight)
        for folder in self.store.folders():
            step = folder_step(folder)
            # Up to the newest complete step, a folder without a manifest (and not this
            # writer's) was left by a crash; one above it may be another process's upload.
            if step is not None and step <= newest and folder not in complete and folder not in busy:
                self.store.delete_folder(folder)
        self._prune_cache()

    def _prune_cache(self, failed: Optional[str] = None) -> None:
        with self._idle:
            keep = (list(self._cached) if self.cache.keep else []) + [i for i in self._in_flight if i != failed]
        self.cache.prune(keep)

    def _fail(self, job: Job, exc: BaseException) -> None:
        message = f"checkpoint of step {job.step} was not saved: {exc}"
        failure = CheckpointError(message, step=job.step)
        failure.__cause__ = exc
        warnings.warn(message, CheckpointWarning, stacklevel=1)  # shown at once, wherever the loop is
        self._prune_cache(failed=job.id)
        self.failure = failure
        job.future.set_exception(failure)


def _serve(items: queue.Queue[Optional[T]], handle: Callable[[T], None]) -> None:
    """A thread's loop: handle each item until None comes."""
    while True:
        item = items.get()
        if item is None:
            return
        handle(item)
