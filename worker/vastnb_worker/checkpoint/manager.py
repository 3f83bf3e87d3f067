"""CheckpointManager: save often without stalling training, resume exactly, survive SIGTERM.

::

    ckpt = CheckpointManager("s3://bucket/runs/exp1", every_steps=500)
    state = ckpt.load_latest(model=model, optimizer=optimizer)      # None on a fresh run
    start = state.step + 1 if state else 0
    for step in range(start, total):
        ...
        ckpt.save(step, model=model, optimizer=optimizer, metrics={"loss": loss})
    ckpt.close()
"""

from __future__ import annotations

import os
import time
import warnings
from collections.abc import Mapping
from concurrent.futures import Future
from typing import Any, Optional, Union

from .. import job
from ..errors import CheckpointError
from . import rng
from .cache import Cache
from .loading import Checkpoint, load_from
from .manifest import MAX_MANIFEST_BYTES, CheckpointInfo, new_id
from .pipeline import Job, Writer
from .preemption import Preemption
from .reader import catalogue
from .sharded import Agreement, is_sharded, write_shards
from .snapshot import BufferPool, take_snapshot
from .stores import LocalStore, Store, open_store

__all__ = ["CheckpointManager"]

#: Default grace period after SIGTERM, in seconds: `docker stop` (how a box is stopped)
#: sends SIGKILL 10 s after SIGTERM; this leaves a margin.
GRACE = 8.0
_OBJECTS = ("model", "optimizer", "scheduler")


class CheckpointManager:
    """Saves training state to a store in the background and resumes from it.

    ``url``: (inside a job, default: the job's ``checkpoint=``) a folder path or ``file://`` URL (the default kind), ``s3://bucket/prefix``
    (AWS, or MinIO, R2... with ``endpoint_url=``), ``gs://bucket/prefix`` (GCS through its
    S3 endpoint), ``memory://name``, or a :class:`Store`. Other keyword arguments go to the
    store (``endpoint_url``, ``region_name``, ``client``...). S3 credentials come from
    boto3's usual chain (environment, ``AWS_PROFILE``, an instance role).

    ``every_steps`` / ``every_seconds``: which ``save()`` calls store a checkpoint: steps
    that are multiples of ``every_steps`` (never step 0), and/or once ``every_seconds``
    passed since the last one. With neither, every call saves.

    ``keep_last``: complete checkpoints kept (None: all); ``keep_every``: also keep those
    whose step is a multiple of it. ``max_in_flight``: checkpoints held in host memory
    while they upload; a ``save()`` beyond that waits. ``cache``: the local copy that lets a
    restart on this machine resume without downloading (True: under ``~/.cache``; a path;
    False: none). ``grace_seconds``: after SIGTERM, how long to finish uploads and write a
    final checkpoint before exiting. ``handle_sigterm=False`` leaves SIGTERM alone (it
    is only ever handled in the main thread). ``retries``: further attempts for an object
    whose upload failed, with backoff, before the checkpoint is reported failed.
    ``max_manifest_bytes``: a manifest in the store bigger than this (vastnb writes a few
    KiB) is refused unread, as a shared bucket may hold anything.

    In a distributed call (``box.options(nproc=...)``), only rank 0 saves (its state is
    every rank's under DDP) and every rank loads; ``every_rank=True`` makes each rank save.
    A model whose state is sharded (FSDP's ``fully_shard``, or any DTensor state) is saved
    and loaded with torch.distributed.checkpoint instead: every rank calls ``save()`` and
    ``load_latest()`` (both are collective), each writes its own shards, and a resume on
    another number of ranks reshards where DCP can.

    Close it (or use ``with``) so that the last checkpoint is waited for.
    """

    def __init__(
        self,
        url: Union[str, os.PathLike[str], Store, None] = None,
        *,
        every_steps: Optional[int] = None,
        every_seconds: Optional[float] = None,
        keep_last: Optional[int] = 3,
        keep_every: Optional[int] = None,
        max_in_flight: int = 2,
        cache: Union[bool, str] = True,
        grace_seconds: float = GRACE,
        handle_sigterm: bool = True,
        retries: int = 3,
        max_manifest_bytes: int = MAX_MANIFEST_BYTES,
        every_rank: bool = False,
        **store_options: Any,
    ) -> None:
        # In a distributed call (DDP: every rank holds the same state), rank 0 saves for all.
        self.quiet = not every_rank and int(os.environ.get("RANK", "0")) != 0
        if every_steps is not None and every_steps < 1:
            raise ValueError(f"every_steps must be at least 1, not {every_steps}")
        if url is None:
            url = _job_checkpoint()
        self.store = url if isinstance(url, Store) else open_store(url, **store_options)
        self.url = self.store.url
        self.every_steps = every_steps
        self.every_seconds = every_seconds
        self.max_manifest_bytes = max_manifest_bytes
        # In a distributed call each rank stages and caches its own files.
        mine = f"rank-{os.environ.get('RANK', '0')}" if int(os.environ.get("WORLD_SIZE", "1")) > 1 else ""
        if isinstance(self.store, LocalStore):  # write beside the store, then rename in: no copy
            self.cache = Cache(os.path.join(self.store.root, ".staging", mine), keep=0, move=True)
        elif cache:
            self.cache = Cache.for_store(self.url + mine, cache if isinstance(cache, str) else None, keep=1)
        else:
            self.cache = Cache.scratch()
        self._pool = BufferPool()
        self._writer = Writer(
            self.store,
            self.cache,
            self._pool,
            max_in_flight=max_in_flight,
            retries=retries,
            keep_last=keep_last,
            keep_every=keep_every,
        )
        self.preemption = Preemption(grace_seconds, install=handle_sigterm)
        self._last_step: Optional[int] = None
        self._last_time = time.monotonic()
        self._closed = False
        self._sharded: Optional[bool] = None  # known at the first save() given a model
        self._agreement: Optional[Agreement] = None  # made at the first sharded save()

    # Saving.

    def should_save(self, step: int) -> bool:
        """Whether ``save(step)`` would store a checkpoint now."""
        if self.preemption.requested:
            return True
        if step == self._last_step:
            return False
        by_steps = self.every_steps is not None and step > 0 and step % self.every_steps == 0
        by_time = self.every_seconds is not None and time.monotonic() - self._last_time >= self.every_seconds
        return by_steps or by_time or (self.every_steps is None and self.every_seconds is None)

    def save(
        self,
        step: int,
        *,
        model: Any = None,
        optimizer: Any = None,
        scheduler: Any = None,
        extras: Optional[Mapping[str, Any]] = None,
        metrics: Optional[Mapping[str, Any]] = None,
        force: bool = False,
    ) -> Optional[Future[CheckpointInfo]]:
        """Checkpoint ``step`` if it is due (or ``force``), and return at once.

        ``model``, ``optimizer`` and ``scheduler`` are objects with ``state_dict()``
        (torch modules, optimizers, LR schedulers). ``extras`` is plain data of your own:
        numbers, strings, lists, dicts, arrays, tensors (it works without torch). ``metrics``
        are numbers shown by ``vastnb.checkpoints()``. RNG states are saved too.

        The state is copied to host memory before this returns; writing and uploading go
        on in the background. Returns a Future of the stored :class:`CheckpointInfo`, or
        None when no checkpoint was due. Waits only when ``max_in_flight`` checkpoints are
        still uploading. Raises :class:`CheckpointError` if an earlier checkpoint failed.
        After SIGTERM, this saves a final checkpoint, waits for the uploads within the grace
        period and exits the process.
        """
        self._check_open()
        objects = dict(zip(_OBJECTS, (model, optimizer, scheduler)))
        if bad := [name for name, obj in objects.items() if obj is not None and not hasattr(obj, "state_dict")]:
            raise TypeError(f"{bad[0]} has no state_dict(): pass plain data as extras= instead")
        if self._sharded is None and model is not None:
            self._sharded = is_sharded(objects)
        if self._sharded:
            return self._save_sharded(step, objects, extras, metrics, force)
        preempted = self.preemption.requested
        if self.quiet:  # another rank saves; after SIGTERM this one just ends
            if preempted:
                self.preemption.finish()
            return None
        if not preempted:  # after SIGTERM, a final checkpoint matters more than an old failure
            self._raise_failure()
        if not (force or self.should_save(step)):
            return None
        started = time.time()
        future: Optional[Future[CheckpointInfo]] = None
        try:
            self._writer.reserve(step, timeout=self.preemption.remaining() if preempted else None)
        except CheckpointError:
            if not preempted:
                raise
            # No room before the deadline: the checkpoints in flight are what is left.
        else:
            job = self._snapshot(new_id(step), step, started, objects, extras, metrics)
            future = self._writer.submit(job)
        self._saved(step, preempted)
        return future

    def _save_sharded(
        self,
        step: int,
        objects: dict[str, Any],
        extras: Optional[Mapping[str, Any]],
        metrics: Optional[Mapping[str, Any]],
        force: bool,
    ) -> Optional[Future[CheckpointInfo]]:
        """``save()`` of sharded state: every rank decides together and writes its own
        shards with DCP; rank 0 adds the scheduler, extras and RNG states, and the manifest."""
        preempted = self.preemption.requested
        if not preempted:
            self._raise_failure()
        self._agreement = self._agreement or Agreement()
        rank, ranks = self._agreement.rank, self._agreement.world
        checkpoint_id, anyone = self._agreement.decide(force or self.should_save(step), preempted, lambda: new_id(step))
        if checkpoint_id is None:
            return None
        if anyone and not preempted:  # another rank was told to stop: all stop, after this checkpoint
            self.preemption.request()
            preempted = True
        started = time.time()
        self._writer.reserve(step)  # every rank takes part in the save below, so none gives up here
        try:
            files = write_shards(self._writer.stage(checkpoint_id), objects, rank)
        except BaseException:
            self._writer.release(checkpoint_id)
            raise
        if rank == 0:  # the plain state: scheduler, extras, RNG states
            job = self._snapshot(checkpoint_id, step, started, {"scheduler": objects["scheduler"]}, extras, metrics)
        else:
            job = Job(id=checkpoint_id, step=step, time=started, metrics={}, parts=[])
        job.files, job.rank, job.ranks = files, rank, ranks
        future = self._writer.submit(job)
        self._saved(step, preempted)
        return future

    def _saved(self, step: int, preempted: bool) -> None:  # after SIGTERM: the final one, then exit
        self._last_step, self._last_time = step, time.monotonic()
        if preempted:
            self._writer.flush(self.preemption.remaining())
            self.preemption.finish()

    def _snapshot(
        self,
        checkpoint_id: str,
        step: int,
        started: float,
        objects: Mapping[str, Any],
        extras: Optional[Mapping[str, Any]],
        metrics: Optional[Mapping[str, Any]],
    ) -> Job:
        """The checkpoint's state in host memory, in the slot reserved for it."""
        try:
            parts = [
                (name, take_snapshot(obj.state_dict(), self._pool, name))
                for name, obj in objects.items()
                if obj is not None
            ]
            state = take_snapshot(dict(extras or {}), self._pool, "extras")
        except BaseException:
            self._writer.release(checkpoint_id)  # refused (a bad step, not plain data): the slot is free again
            raise
        state.tree = {"step": step, "rng": rng.capture(), "extras": state.tree}  # RNG states are fresh plain data
        parts.append(("state", state))
        self._pool.fit([snap for _, snap in parts])
        return Job(id=checkpoint_id, step=step, time=started, metrics=_plain_metrics(metrics), parts=parts)

    def flush(self, timeout: Optional[float] = None) -> bool:
        """Wait until every checkpoint saved so far is stored (False on timeout). Raises
        :class:`CheckpointError` if one failed."""
        done = self._writer.flush(timeout)
        self._raise_failure()
        return done

    def close(self, timeout: Optional[float] = None) -> None:
        """Wait for the last uploads, then release threads, the SIGTERM handler and the
        store. Raises :class:`CheckpointError` if a checkpoint failed or (with
        ``timeout``) is still uploading."""
        if self._closed:
            return
        self._closed = True
        if self.preemption.requested:
            timeout = self.preemption.remaining() if timeout is None else min(timeout, self.preemption.remaining())
        done = self._writer.close(timeout)
        self._pool.clear()
        self.store.close()
        if self.preemption.requested:
            self.preemption.finish()
        self.preemption.uninstall()
        self._raise_failure()
        if not done:
            raise CheckpointError(
                f"checkpoints to {self.url} were still uploading after {timeout} s; the last complete one is the latest"
            )

    def __enter__(self) -> CheckpointManager:
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.close()

    # Loading.

    def checkpoints(self) -> list[CheckpointInfo]:
        """The complete checkpoints in the store, highest step first."""
        return catalogue(self.store, max_manifest_bytes=self.max_manifest_bytes)

    def load_latest(
        self,
        model: Any = None,
        optimizer: Any = None,
        scheduler: Any = None,
        *,
        map_location: Any = "cpu",
        restore_rng: bool = True,
    ) -> Optional[Checkpoint]:
        """Resume from the highest complete step: load its state into ``model``,
        ``optimizer`` and ``scheduler``, restore the RNG states, and return the
        :class:`Checkpoint` (``.step``, ``.extras``, ``.metrics``); None when the store holds
        no checkpoint. A checkpoint that does not check out (a refused manifest, objects that
        do not match it or do not decode) is skipped with a warning, never loaded, and the
        one before it is tried. Files come from the local cache when it has them."""
        found = self._load(None, model, optimizer, scheduler, map_location, restore_rng)
        if found is not None:
            self._last_step = found.step
            job.note_resumed(found.step)
        return found

    def load(
        self,
        step: int,
        model: Any = None,
        optimizer: Any = None,
        scheduler: Any = None,
        *,
        map_location: Any = "cpu",
        restore_rng: bool = True,
    ) -> Checkpoint:
        """Like :meth:`load_latest`, for the checkpoint of ``step``: raises
        :class:`CheckpointError` when there is none, :class:`CheckpointCorruptError` when
        its manifest is refused or its objects do not match it or do not decode."""
        found = self._load(step, model, optimizer, scheduler, map_location, restore_rng)
        assert found is not None
        return found

    def _load(
        self, step: Optional[int], model: Any, optimizer: Any, scheduler: Any, map_location: Any, restore_rng: bool
    ) -> Optional[Checkpoint]:
        self._check_open()
        objects = {"model": model, "optimizer": optimizer, "scheduler": scheduler}
        # A cache that keeps nothing (a scratch or staging folder) is never read from.
        return load_from(
            self.store,
            self.cache,
            objects,
            step=step,
            map_location=map_location,
            restore_rng=restore_rng,
            max_manifest_bytes=self.max_manifest_bytes,
        )

    def _raise_failure(self) -> None:
        failure, self._writer.failure = self._writer.failure, None
        if failure is not None:
            raise failure

    def _check_open(self) -> None:
        if self._closed:
            raise CheckpointError(f"this CheckpointManager for {self.url} is closed: make a new one")

    def __repr__(self) -> str:
        return f"CheckpointManager({self.url!r}, every_steps={self.every_steps}, every_seconds={self.every_seconds})"


def _plain_metrics(metrics: Optional[Mapping[str, Any]]) -> dict[str, Any]:
    """Metrics as JSON numbers (a tensor or numpy scalar becomes its value)."""
    plain: dict[str, Any] = {}
    for key, value in (metrics or {}).items():
        if hasattr(value, "item"):
            value = value.item()
        if not isinstance(value, (int, float, str, bool, type(None))):
            warnings.warn(f"metric {key!r} is a {type(value).__name__}, stored as text", stacklevel=3)
            value = str(value)
        plain[str(key)] = value
    return plain


def _job_checkpoint() -> str:
    """The checkpoint URL of the job this code runs as; outside a job, a clear error."""
    current = job.context()
    if current is None:
        raise CheckpointError(
            "CheckpointManager() needs a URL outside a job: pass one, as in "
            'CheckpointManager("s3://bucket/runs/exp1"). Inside vast.submit(..., checkpoint=URL) it takes the job\'s.'
        )
    if current.checkpoint is None:
        raise CheckpointError(
            f"job {current.name!r} was submitted without checkpoint=, so CheckpointManager() has no URL: "
            "pass one here, or submit the job with checkpoint=URL."
        )
    return current.checkpoint
