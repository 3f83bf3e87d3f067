"""torch.distributed.checkpoint's metadata as JSON that is safe to read from a bucket.

DCP keeps a checkpoint's metadata (which tensor chunks and objects there are, and where
each one lies in which shard file) in a ``.metadata`` pickle, and its FileSystemReader
unpickles it: a forged one runs code. vastnb stores that metadata as JSON instead, written
from the pickle its own ``dcp.save`` just made, and rebuilds the metadata objects from
checked fields only: known dtypes, bounded lists of non-negative integers, and shard file
names that the checkpoint's manifest lists (and checksums).
"""

from __future__ import annotations

import json
import pickle
import re
from collections.abc import Collection
from typing import Any

__all__ = ["to_json", "from_json", "SHARD_FILE", "MAX_ENTRIES"]

#: The name DCP's FileSystemWriter gives a rank's shard file: ``__<rank>_<n>.distcp``.
SHARD_FILE = re.compile(r"__(\d{1,7})_(\d{1,7})\.distcp")
#: The most state-dict entries (and storage entries) the metadata may list.
MAX_ENTRIES = 1_000_000
_MAX_DIMS = 64
_MAX_INT = 2**62
_FQN = 4096  # the longest fully qualified name accepted
_FORMAT = "vastnb-dcp-metadata"
_MEMORY_FORMATS = ("contiguous_format", "channels_last", "channels_last_3d", "preserve_format")
_DTYPES = (
    "float64 float32 float16 bfloat16 complex64 complex128 int64 int32 int16 int8 uint8 bool "
    "float8_e4m3fn float8_e5m2 float8_e4m3fnuz float8_e5m2fnuz uint16 uint32 uint64"
).split()


def to_json(pickled: bytes) -> bytes:
    """The JSON form of the ``.metadata`` pickle that this process's own ``dcp.save`` wrote."""
    metadata = pickle.loads(pickled)
    entries: dict[str, Any] = {}
    for fqn, item in metadata.state_dict_metadata.items():
        if hasattr(item, "chunks"):
            props = item.properties
            entries[fqn] = {
                "dtype": str(props.dtype).removeprefix("torch."),
                "requires_grad": bool(props.requires_grad),
                "memory_format": str(props.memory_format).removeprefix("torch."),
                "size": list(item.size),
                "chunks": [[list(c.offsets), list(c.sizes)] for c in item.chunks],
            }
        else:
            entries[fqn] = "bytes"
    storage = [
        [
            index.fqn,
            None if index.offset is None else list(index.offset),
            index.index,
            info.relative_path,
            info.offset,
            info.length,
        ]
        for index, info in metadata.storage_data.items()
    ]
    if any(getattr(info, "transform_descriptors", None) for info in metadata.storage_data.values()):
        raise ValueError("DCP wrote transformed (compressed) shards, which vastnb does not store yet")
    planner = metadata.planner_data if isinstance(metadata.planner_data, dict) else {}
    body = {
        "format": _FORMAT,
        "version": metadata.version,
        "entries": entries,
        "storage": storage,
        "paths": {fqn: list(path) for fqn, path in planner.items()},
    }
    return json.dumps(body, separators=(",", ":")).encode()


def from_json(data: bytes, files: Collection[str]) -> Any:
    """DCP ``Metadata`` rebuilt from :func:`to_json`'s form, every field checked; shard
    files must be among ``files`` (the manifest's). Raises ValueError saying what is wrong."""
    import torch
    from torch.distributed.checkpoint.filesystem import _StorageInfo
    from torch.distributed.checkpoint.metadata import (
        BytesStorageMetadata,
        ChunkStorageMetadata,
        Metadata,
        MetadataIndex,
        StorageMeta,
        TensorProperties,
        TensorStorageMetadata,
    )

    body = json.loads(data)
    if not isinstance(body, dict) or body.get("format") != _FORMAT:
        raise ValueError(f"not {_FORMAT} JSON")
    entries, storage, paths = body.get("entries"), body.get("storage"), body.get("paths")
    if not isinstance(entries, dict) or not isinstance(storage, list) or not isinstance(paths, dict):
        raise ValueError("entries, storage and paths must be an object, a list and an object")
    if max(len(entries), len(storage), len(paths)) > MAX_ENTRIES:
        raise ValueError(f"more than {MAX_ENTRIES} entries")
    version = body.get("version")
    if version is not None and not (isinstance(version, str) and len(version) < 32):
        raise ValueError("version must be a short string")

    def size(value: Any, what: str) -> torch.Size:
        if not isinstance(value, list) or len(value) > _MAX_DIMS or not all(_count(v) for v in value):
            raise ValueError(f"{what} must be a list of at most {_MAX_DIMS} non-negative integers")
        return torch.Size(value)

    state: dict[str, Any] = {}
    for fqn, entry in entries.items():
        _check_fqn(fqn)
        if entry == "bytes":
            state[fqn] = BytesStorageMetadata()
            continue
        if not isinstance(entry, dict):
            raise ValueError(f"entry {fqn[:80]!r} is neither 'bytes' nor a tensor")
        dtype, memory = entry.get("dtype"), entry.get("memory_format")
        if dtype not in _DTYPES or not isinstance(getattr(torch, dtype, None), torch.dtype):
            raise ValueError(f"entry {fqn[:80]!r} has dtype {str(dtype)[:40]!r}, not one of torch's")
        if memory not in _MEMORY_FORMATS or not isinstance(entry.get("requires_grad"), bool):
            raise ValueError(f"entry {fqn[:80]!r} has a bad memory_format or requires_grad")
        chunks = entry.get("chunks")
        if not isinstance(chunks, list) or len(chunks) > MAX_ENTRIES:
            raise ValueError(f"entry {fqn[:80]!r} has no list of chunks")
        full = size(entry.get("size"), f"the size of {fqn[:80]!r}")
        pieces = []
        for chunk in chunks:
            if not isinstance(chunk, list) or len(chunk) != 2:
                raise ValueError(f"a chunk of {fqn[:80]!r} is not [offsets, sizes]")
            offsets, sizes = size(chunk[0], "chunk offsets"), size(chunk[1], "chunk sizes")
            if not len(offsets) == len(sizes) == len(full) or any(o + s > f for o, s, f in zip(offsets, sizes, full)):
                raise ValueError(f"a chunk of {fqn[:80]!r} lies outside its tensor")
            pieces.append(ChunkStorageMetadata(offsets=offsets, sizes=sizes))
        props = TensorProperties(
            dtype=getattr(torch, dtype), requires_grad=entry["requires_grad"], memory_format=getattr(torch, memory)
        )
        state[fqn] = TensorStorageMetadata(properties=props, size=full, chunks=pieces)

    located: dict[Any, Any] = {}
    for row in storage:
        if not isinstance(row, list) or len(row) != 6:
            raise ValueError("a storage entry is not [fqn, offset, index, file, offset, length]")
        fqn, offset, index, file, start, length = row
        _check_fqn(fqn)
        if fqn not in state:
            raise ValueError(f"storage for {fqn[:80]!r}, which no entry names")
        if not isinstance(file, str) or not SHARD_FILE.fullmatch(file) or file not in files:
            raise ValueError(f"storage in {str(file)[:80]!r}, which is not a shard file of this checkpoint")
        if not (_count(start) and _count(length)) or not (index is None or _count(index)):
            raise ValueError(f"storage for {fqn[:80]!r} has a bad offset, length or index")
        key = MetadataIndex(fqn=fqn, offset=None if offset is None else size(offset, "an offset"), index=index)
        located[key] = _StorageInfo(relative_path=file, offset=start, length=length)

    planner: dict[str, tuple[Any, ...]] = {}
    for fqn, path in paths.items():
        _check_fqn(fqn)
        if not isinstance(path, list) or len(path) > _MAX_DIMS or not all(_step(p) for p in path):
            raise ValueError(f"the path of {fqn[:80]!r} is not a list of names and indexes")
        planner[fqn] = tuple(path)
    return Metadata(
        state_dict_metadata=state,
        planner_data=planner,
        storage_data=located,
        storage_meta=StorageMeta(),
        version=version,
    )


def _count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value < _MAX_INT


def _step(value: Any) -> bool:
    return _count(value) or (isinstance(value, str) and len(value) <= _FQN)


def _check_fqn(fqn: Any) -> None:
    if not isinstance(fqn, str) or not 0 < len(fqn) <= _FQN:
        raise ValueError(f"{str(fqn)[:80]!r} is not a state-dict name")
