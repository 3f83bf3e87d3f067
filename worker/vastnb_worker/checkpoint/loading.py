"""Loading: pick the newest checkpoint that checks out, put its state back.

Also the functions a notebook uses without a manager: :func:`load_latest` and
:func:`list_checkpoints`, given a store's URL.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import Any, Dict, Iterable, List, Mapping, Optional

from ..errors import CheckpointCorruptError, CheckpointError
from . import rng
from .cache import Cache
from .manifest import CheckpointInfo
from .reader import CheckpointWarning, candidates, catalogue, read
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
    extras: Dict[str, Any] = field(default_factory=dict)
    states: Dict[str, Any] = field(default_factory=dict)

    @property
    def metrics(self) -> Dict[str, Any]:
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
) -> Optional[Checkpoint]:
    """Load the newest sound checkpoint (or the one of ``step``) into ``objects`` (name ->
    object with ``load_state_dict``, or None). See :meth:`CheckpointManager.load_latest`."""
    infos: Iterable[CheckpointInfo] = candidates(store, step)
    if step is not None:
        infos = list(infos)
        if not infos:
            raise CheckpointError(f"{store.url} holds no complete checkpoint of step {step}", step=step)
    for info in infos:
        try:
            states = read(store, info, cache, map_location=map_location)
        except CheckpointCorruptError as exc:
            if step is not None:
                raise
            warnings.warn(f"skipping the checkpoint of step {info.step} ({info.id}): {exc}", CheckpointWarning,
                          stacklevel=4)  # fmt: skip
            continue
        return _apply(info, states, objects, restore_rng)
    return None


def _apply(info: CheckpointInfo, states: Dict[str, Any], objects: Mapping[str, Any], restore_rng: bool) -> Checkpoint:
    for name, obj in objects.items():
        if obj is None:
            continue
        if name not in states:
            raise CheckpointError(f"the checkpoint of step {info.step} in {info.url} holds no {name} state "
                                  f"(it holds {', '.join(sorted(states))}): do not pass {name}= to load it",
                                  step=info.step)  # fmt: skip
        obj.load_state_dict(states.pop(name))
    state = states.pop("state", {})
    if restore_rng and state.get("rng"):
        rng.restore(state["rng"])
    return Checkpoint(step=info.step, info=info, extras=state.get("extras", {}), states=states)


def load_latest(
    url: str,
    model: Any = None,
    optimizer: Any = None,
    scheduler: Any = None,
    *,
    map_location: Any = "cpu",
    restore_rng: bool = False,
    **store_options: Any,
) -> Optional[Checkpoint]:
    """Load the newest complete, verified checkpoint at ``url`` (see
    :class:`CheckpointManager` for URLs and ``store_options``) into ``model``,
    ``optimizer`` and ``scheduler``, without a manager: from a notebook, to look at or use
    a run's latest state. RNG states are left alone unless ``restore_rng``. Returns None
    when there is no checkpoint."""
    store = open_store(url, **store_options)
    try:
        objects = {"model": model, "optimizer": optimizer, "scheduler": scheduler}
        return load_from(store, None, objects, map_location=map_location, restore_rng=restore_rng)
    finally:
        store.close()


def list_checkpoints(url: str, **store_options: Any) -> List[CheckpointInfo]:
    """The complete checkpoints at ``url``, highest step first (manifests only: nothing
    is downloaded or verified)."""
    store = open_store(url, **store_options)
    try:
        return catalogue(store)
    finally:
        store.close()
