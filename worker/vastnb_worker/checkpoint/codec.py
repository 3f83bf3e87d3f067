"""Writing a snapshot to a file, and reading it back without ever running code from it.

Two codecs, chosen per part by what it holds:

- ``torch``: ``torch.save``, read with ``torch.load(weights_only=True, mmap=True)``, so a
  checkpoint can hold only tensors and plain data, and big tensors are mapped from the file
  rather than read into fresh memory.
- ``pickle``: plain Python data (and numpy arrays), for state without torch. It is read
  with an unpickler that refuses every class outside a short list of data types, which is
  what makes ``pickle`` safe here; torch is never imported for it.
"""

from __future__ import annotations

import contextlib
import pickle
from typing import Any, List, Optional

from ..errors import CheckpointCorruptError, CheckpointError
from .snapshot import Snapshot

__all__ = ["codec_of", "write_part", "read_part", "SUFFIX"]

#: The file name suffix of each codec's objects.
SUFFIX = {"torch": ".pt", "pickle": ".pkl"}

# What a plain-data pickle may name: containers and numpy's array and scalar rebuilders.
_ALLOWED = {
    ("builtins", "set"), ("builtins", "frozenset"), ("builtins", "complex"), ("collections", "OrderedDict"),
    ("numpy", "ndarray"), ("numpy", "dtype"),
    ("numpy._core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "scalar"),
    ("numpy.core.multiarray", "_reconstruct"), ("numpy.core.multiarray", "scalar"),
}  # fmt: skip


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
        # safe_globals (torch >= 2.5) lets numpy arrays through the weights-only loader.
        allow = getattr(torch.serialization, "safe_globals", None)
        with allow(_numpy_globals()) if allow else contextlib.nullcontext():
            try:
                return torch.load(path, map_location=map_location, weights_only=True, mmap=True)
            except pickle.UnpicklingError as exc:
                raise CheckpointCorruptError(f"{where} holds more than tensors and plain data; it is not "
                                             f"loaded, as that could run code: {exc}") from exc  # fmt: skip
    if codec == "pickle":
        with open(path, "rb") as file:
            return _PlainUnpickler(file, where).load()
    raise CheckpointError(f"{where} was written with codec {codec!r}, which this vastnb does not know: upgrade vastnb")


class _PlainUnpickler(pickle.Unpickler):
    def __init__(self, file: Any, where: str) -> None:
        super().__init__(file)
        self.where = where

    def find_class(self, module: str, name: str) -> Any:
        dtype_class = module == "numpy.dtypes" and name.endswith("DType")
        if (module, name) not in _ALLOWED and not dtype_class:
            raise CheckpointCorruptError(f"{self.where} names {module}.{name}, which is not plain data; it is "
                                         "not loaded, as that could run code")  # fmt: skip
        return super().find_class(module, name)


def _numpy_globals() -> List[Any]:
    """numpy's array and scalar rebuilders, for torch's weights-only loader; [] without numpy."""
    try:
        import numpy
    except ImportError:
        return []
    core: Optional[Any] = getattr(numpy, "_core", None) or getattr(numpy, "core", None)
    multiarray = getattr(core, "multiarray", None)
    found: List[Any] = [numpy.ndarray, numpy.dtype]
    found += [getattr(multiarray, n) for n in ("_reconstruct", "scalar") if hasattr(multiarray, n)]
    dtypes = getattr(numpy, "dtypes", None)
    found += [getattr(dtypes, n) for n in dir(dtypes) if n.endswith("DType")] if dtypes else []
    return found
