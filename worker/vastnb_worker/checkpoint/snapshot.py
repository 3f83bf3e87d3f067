"""The only part of a checkpoint that training waits for: a copy of its state in host memory.

``save()`` walks each state tree (a ``state_dict()``, extras) and copies every tensor and
array, so training may change the originals at once. Tensors on a GPU are copied into
pinned host buffers without waiting: the copies are queued on the current CUDA stream,
before any later kernel that changes the parameters, and the background thread waits for
them. Host buffers are reused from one checkpoint to the next, so after the first save a
snapshot writes into memory that is already mapped (fresh memory costs ~1 GB/s here).

Only plain data may be saved: numbers, strings, bytes, None, lists, tuples, dicts, sets,
arrays, tensors (and torch dtypes, devices and sizes). Anything else is refused here, at
``save()``, because it could not be loaded safely later.
"""

from __future__ import annotations

import sys
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

from ..errors import CheckpointError

__all__ = ["BufferPool", "Snapshot", "take_snapshot"]

_PLAIN = (type(None), bool, int, float, complex, str, bytes)


@dataclass
class Snapshot:
    """One state tree copied to host memory. ``uses_torch`` says it holds torch objects
    (and must be written with torch); ``buffers`` are pool buffers to give back once it is
    written; ``events`` are CUDA events to wait for before reading the copies."""

    tree: Any
    uses_torch: bool = False
    buffers: list[Any] = field(default_factory=list)
    events: list[Any] = field(default_factory=list)

    def wait_copies(self) -> None:
        """Wait until the queued GPU-to-host copies are done."""
        for event in self.events:
            event.synchronize()
        self.events = []


class BufferPool:
    """Host buffers given back by written snapshots, taken again by the next ones. It
    keeps at most as many bytes as the largest snapshot so far, so memory stays bounded."""

    def __init__(self) -> None:
        self._free: dict[tuple[Any, ...], list[Any]] = {}
        self._lock = threading.Lock()
        self._bytes = 0
        self.limit = 0

    def fit(self, snapshots: list[Snapshot]) -> None:
        """Let the pool keep the buffers of ``snapshots`` (one checkpoint's), when they are
        the largest checkpoint so far."""
        self.limit = max(self.limit, sum(_nbytes(b) for snap in snapshots for b in snap.buffers))

    def take(self, tensor: Any) -> Any:
        """An uninitialised host tensor with the shape and dtype of ``tensor``, pinned when
        ``tensor`` is on a GPU (pinned memory is what lets the copy run asynchronously)."""
        pinned = tensor.device.type == "cuda"
        key = (tuple(tensor.shape), tensor.dtype, pinned)
        with self._lock:
            free = self._free.get(key)
            if free:
                buffer = free.pop()
                self._bytes -= _nbytes(buffer)
                return buffer
        import torch

        return torch.empty(tensor.shape, dtype=tensor.dtype, device="cpu", pin_memory=pinned)

    def give(self, buffers: list[Any]) -> None:
        """Return buffers that nothing reads any more."""
        with self._lock:
            for buffer in buffers:
                size = _nbytes(buffer)
                if self._bytes + size <= self.limit:
                    self._free.setdefault((tuple(buffer.shape), buffer.dtype, buffer.is_pinned()), []).append(buffer)
                    self._bytes += size

    def clear(self) -> None:
        with self._lock:
            self._free.clear()
            self._bytes = 0


def take_snapshot(tree: Any, pool: BufferPool, where: str) -> Snapshot:
    """Copy ``tree`` to host memory. ``where`` names it in errors (``model``, ``extras``)."""
    snap = Snapshot(tree=None)
    devices: dict[Any, None] = {}
    memo: dict[int, Any] = {}  # a tensor met twice (tied weights) is copied once, stays shared
    torch: Any = sys.modules.get("torch")  # never imported here: a tree without tensors needs no torch

    def copy(value: Any, path: str) -> Any:
        if isinstance(value, _PLAIN):
            return value
        if id(value) in memo:
            return memo[id(value)]
        if isinstance(value, dict):
            # An OrderedDict for any dict that carries torch's _metadata: a plain dict takes
            # no attributes.
            out = OrderedDict() if isinstance(value, OrderedDict) or hasattr(value, "_metadata") else {}
            for key, item in value.items():
                if not isinstance(key, _PLAIN):
                    raise _refuse(key, f"{path} key", where)
                out[key] = copy(item, f"{path}[{key!r}]")
            if hasattr(value, "_metadata"):  # a module's state_dict keeps its layout versions here
                # An attribute torch sets on the OrderedDict instance, which no dict type declares.
                out._metadata = copy(value._metadata, path + "._metadata")  # type: ignore[attr-defined]
            result: Any = out
        elif type(value) in (list, tuple, set, frozenset):  # not subclasses: namedtuples need their class
            items = [copy(item, f"{path}[{i}]") for i, item in enumerate(value)]
            result = items if type(value) is list else type(value)(items)
        elif torch is not None and isinstance(value, torch.Tensor):
            result = _copy_tensor(torch, value, pool, snap, devices)
        elif torch is not None and isinstance(value, (torch.dtype, torch.device, torch.Size)):
            snap.uses_torch = True
            return value
        elif type(value).__module__ == "numpy" and hasattr(value, "dtype"):
            if getattr(value.dtype, "hasobject", False):
                raise _refuse(value, path, where)
            result = value.copy()  # arrays and numpy scalars
        else:
            raise _refuse(value, path, where)
        memo[id(value)] = result
        return result

    snap.tree = copy(tree, where)
    for device in devices:  # any: torch is imported
        with torch.cuda.device(device):
            event = torch.cuda.Event()
            event.record()  # after the copies queued on this device's current stream
            snap.events.append(event)
    return snap


def _copy_tensor(torch: Any, tensor: Any, pool: BufferPool, snap: Snapshot, devices: dict[Any, None]) -> Any:
    snap.uses_torch = True
    tensor = tensor.detach()
    if tensor.layout != torch.strided or tensor.is_quantized or tensor.device.type not in ("cpu", "cuda"):
        return tensor.to("cpu", copy=True)  # sparse, quantized, other devices: plain copy, not pooled
    buffer = pool.take(tensor)
    if tensor.device.type == "cuda":
        buffer.copy_(tensor, non_blocking=True)
        devices[tensor.device] = None
    else:
        buffer.copy_(tensor)
    snap.buffers.append(buffer)
    return buffer


def _nbytes(tensor: Any) -> int:
    return tensor.numel() * tensor.element_size()


def _refuse(value: Any, path: str, where: str) -> CheckpointError:
    kind = f"{type(value).__module__}.{type(value).__qualname__}"
    return CheckpointError(
        f"cannot checkpoint {path}: it holds a {kind}. Checkpoints keep plain data (numbers, "
        "strings, lists, dicts, arrays, tensors) so that loading them can never run code; "
        f"convert it to plain data before saving it in {where}."
    )
