"""Loading: pick the newest checkpoint that checks out, put its state back.

Whatever is wrong with the newest checkpoint (a refused manifest, an object missing, of the
wrong size or checksum, or one that does not decode), the one before it is loaded, with a
warning that says why; asking for one step raises that reason instead. What is wrong with
this machine or the store (a StorageError, a module that is not installed, a failing disk)
stops the search and is raised: an older checkpoint is no answer to that, and going back
through all of them would end in None, a fresh start.

Also the functions a notebook uses without a manager: :func:`load_latest` and
:func:`list_checkpoints`, given a store's URL.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Optional

from ..errors import CheckpointCorruptError, CheckpointError
from . import rng
from .cache import Cache
from .codec import SUFFIX
from .manifest import MAX_MANIFEST_BYTES, CheckpointInfo
from .reader import CheckpointWarning, Fetcher, candidates, catalogue, read
from .sharded import METADATA_PART, SHARDED, load_shards
from .stores import Store, open_store

__all__ = ["Checkpoint", "load_from", "load_latest", "list_checkpoints"]


@dataclass(frozen=True)
class Checkpoint:
    """A loaded checkpoint. ``step`` is its training step, ``extras`` the plain data saved
    with it, ``metrics`` its metrics, ``info`` its manifest. ``states`` holds the saved
    state dicts that were not loaded into an object (``"model"``, ``"optimizer"``,
    ``"scheduler"``), for you to use as you like."""

    step: int
    info: CheckpointInfo
    extras: dict[str, Any] = field(default_factory=dict)
    states: dict[str, Any] = field(default_factory=dict)

    @property
    def metrics(self) -> dict[str, Any]:
        """The metrics given to the ``save()`` that made it."""
        return self.info.metrics

    @property
    def time(self) -> float:
        """Unix time of the ``save()`` call that made it."""
        return self.info.time

    def __repr__(self) -> str:
        return f"Checkpoint(step={self.step}, metrics={self.metrics}, url={self.info.url!r}, id={self.info.id!r})"


def load_from(
    store: Store,
    cache: Optional[Cache],
    objects: Mapping[str, Any],
    *,
    step: Optional[int] = None,
    map_location: Any = "cpu",
    restore_rng: bool = False,
    max_manifest_bytes: int = MAX_MANIFEST_BYTES,
) -> Optional[Checkpoint]:
    """Load the newest sound checkpoint (or the one of ``step``) into ``objects`` (name ->
    object with ``load_state_dict``, or None). See :meth:`CheckpointManager.load_latest`."""
    for candidate in candidates(store, step, max_manifest_bytes=max_manifest_bytes):
        if not isinstance(candidate, CheckpointInfo):  # its manifest was refused
            if step is not None:
                raise candidate
            _skip(f"the checkpoint of step {candidate.step}", candidate)
            continue
        fetcher = Fetcher(store, candidate, cache)
        try:
            try:
                states = read(fetcher, map_location=map_location)
            except CheckpointCorruptError as exc:
                if step is not None:
                    raise
                _skip(f"the checkpoint of step {candidate.step} ({candidate.id})", exc)
                continue
            return _apply(candidate, states, objects, restore_rng, fetcher)
        finally:
            fetcher.close()
    if step is not None:
        raise CheckpointError(f"{store.url} holds no complete checkpoint of step {step}", step=step)
    return None


def _skip(what: str, reason: CheckpointError) -> None:
    warnings.warn(f"skipping {what}: {reason}", CheckpointWarning, stacklevel=5)


def _apply(
    info: CheckpointInfo, states: dict[str, Any], objects: Mapping[str, Any], restore_rng: bool, fetcher: Fetcher
) -> Checkpoint:
    metadata = states.pop(METADATA_PART, None)  # a sharded checkpoint: model and optimizer are DCP's
    for name, obj in objects.items():
        if obj is None or (metadata is not None and name in SHARDED):
            continue
        if name not in states:
            raise CheckpointError(
                f"the checkpoint of step {info.step} in {info.url} holds no {name} state "
                f"(it holds {', '.join(sorted(states))}): do not pass {name}= to load it",
                step=info.step,
            )
        obj.load_state_dict(states.pop(name))
    if metadata is not None and any(objects.get(name) is not None for name in SHARDED):
        if objects.get("model") is None:
            raise CheckpointError(
                f"the checkpoint of step {info.step} in {info.url} is sharded: its optimizer state "
                "loads together with its model, so pass model= too",
                step=info.step,
            )
        shards = {part.name + SUFFIX["dcp"]: part for part in info.parts if part.codec == "dcp"}
        load_shards(metadata, fetcher.folder, lambda file: fetcher.get(shards[file]), objects)
    state = states.pop("state", {})
    if restore_rng and state.get("rng"):
        try:
            rng.restore(state["rng"])
        except Exception as exc:  # saved by another version of Python, numpy or torch, or not by vastnb
            raise CheckpointError(
                f"the random number generator states saved with step {info.step} in {info.url} "
                f"cannot be restored here ({type(exc).__name__}: {exc}): load it with "
                "restore_rng=False",
                step=info.step,
            ) from exc
    return Checkpoint(step=info.step, info=info, extras=state.get("extras", {}), states=states)


def load_latest(
    url: str,
    model: Any = None,
    optimizer: Any = None,
    scheduler: Any = None,
    *,
    map_location: Any = "cpu",
    restore_rng: bool = False,
    max_manifest_bytes: int = MAX_MANIFEST_BYTES,
    **store_options: Any,
) -> Optional[Checkpoint]:
    """Load the newest complete, verified checkpoint at ``url`` (see
    :class:`CheckpointManager` for URLs, ``max_manifest_bytes`` and ``store_options``)
    into ``model``, ``optimizer`` and ``scheduler``, without a manager: from a notebook, to
    look at or use a run's latest state. RNG states are left alone unless ``restore_rng``.
    Returns None when there is no checkpoint."""
    store = open_store(url, **store_options)
    try:
        objects = {"model": model, "optimizer": optimizer, "scheduler": scheduler}
        return load_from(
            store,
            None,
            objects,
            map_location=map_location,
            restore_rng=restore_rng,
            max_manifest_bytes=max_manifest_bytes,
        )
    finally:
        store.close()


def list_checkpoints(
    url: str, *, max_manifest_bytes: int = MAX_MANIFEST_BYTES, **store_options: Any
) -> list[CheckpointInfo]:
    """The complete checkpoints at ``url``, highest step first (manifests only: nothing
    is downloaded or verified; a manifest over ``max_manifest_bytes`` is skipped unread)."""
    store = open_store(url, **store_options)
    try:
        return catalogue(store, max_manifest_bytes=max_manifest_bytes)
    finally:
        store.close()
