"""Writing a snapshot to a file, and reading it back without ever running code from it.

Two codecs, chosen per part by what it holds:

- ``torch``: ``torch.save``, read with ``torch.load(weights_only=True, mmap=True)``, so a
  checkpoint can hold only tensors and plain data, and big tensors are mapped from the file
  rather than read into fresh memory.
- ``pickle``: plain Python data (and numpy arrays), for state without torch. It is read
  with ``vastnb_worker.safepickle``, which rebuilds plain data and plain-dtype arrays
  from checked arguments and refuses everything else: what makes ``pickle`` safe here;
  torch is never imported for it.
"""

from __future__ import annotations

import contextlib
import pickle
from typing import Any

from ..errors import CheckpointCorruptError, CheckpointError
from ..safepickle import Refused, SafeUnpickler, numpy_substitutes, settled
from .snapshot import Snapshot

__all__ = ["codec_of", "write_part", "read_part", "SUFFIX"]

#: The file name suffix of each codec's objects.
#: ``dcp`` and ``dcp-metadata`` are a sharded checkpoint's shard files and its DCP
#: metadata (see ``sharded.py``): never read here.
SUFFIX = {"torch": ".pt", "pickle": ".pkl", "dcp": ".distcp", "dcp-metadata": ".json"}


def codec_of(snapshot: Snapshot) -> str:
    """The codec :func:`write_part` writes ``snapshot`` with."""
    return "torch" if snapshot.uses_torch else "pickle"


def write_part(snapshot: Snapshot, path: str) -> str:
    """Write ``snapshot`` to ``path``; returns the codec used (:func:`codec_of`)."""
    snapshot.wait_copies()
    codec = codec_of(snapshot)
    if codec == "torch":
        import torch

        torch.save(snapshot.tree, path)
    else:
        with open(path, "wb") as file:
            # Protocol 4 reads on Python 3.8+, whatever Python loads it.
            pickle.dump(snapshot.tree, file, protocol=4)
    return codec


def read_part(path: str, codec: str, *, map_location: Any = None, where: str = "") -> Any:
    """Read a part written by :func:`write_part`. Data that is not plain raises
    :class:`CheckpointCorruptError` (checksums matched, so it was written that way)."""
    if codec == "torch":
        try:
            import torch
        except ImportError as exc:
            raise CheckpointError(f"{where} holds torch tensors: install torch to load it") from exc
        # safe_globals (torch >= 2.5) lets numpy arrays through the weights-only loader,
        # rebuilt by our checked stand-ins under numpy's names, never by numpy from the
        # file's dtype state (a forged one crashes the process).
        allow = getattr(torch.serialization, "safe_globals", None)
        with allow(numpy_substitutes()) if allow else contextlib.nullcontext():
            try:
                return settled(torch.load(path, map_location=map_location, weights_only=True, mmap=True))
            except (pickle.UnpicklingError, Refused) as exc:
                raise CheckpointCorruptError(
                    f"{where} holds more than tensors and plain data; it is not loaded, as that could run code: {exc}"
                ) from exc
    if codec == "pickle":
        with open(path, "rb") as file:
            try:
                return SafeUnpickler(file).load()
            except Refused as exc:
                raise CheckpointCorruptError(
                    f"{where} holds {exc}; it is not loaded, as that could run code or crash this process"
                ) from None
    raise CheckpointError(f"{where} was written with codec {codec!r}, which this vastnb does not know: upgrade vastnb")
