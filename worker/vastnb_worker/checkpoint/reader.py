"""Finding and reading checkpoints: only complete ones, only when every checksum matches.

``catalogue()`` lists the checkpoints whose manifests exist, highest step first. ``read()``
fetches one checkpoint's objects (from the store's own folder, the local cache, or a
download), checks each against the size and sha256 in its manifest, and decodes them. The
caller skips a checkpoint that fails the check and tries the next one.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import warnings
from typing import Any, Dict, Iterator, List, Optional

from ..errors import CheckpointCorruptError, CheckpointError
from .cache import Cache
from .codec import read_part
from .manifest import CheckpointInfo, file_sha256, step_of
from .stores import Store

__all__ = ["catalogue", "candidates", "read", "CheckpointWarning"]


class CheckpointWarning(UserWarning):
    """A checkpoint was skipped (corrupt, incomplete) or could not be saved."""


def catalogue(store: Store) -> List[CheckpointInfo]:
    """The complete checkpoints in ``store``, highest step first. A manifest that cannot be
    parsed is skipped with a warning."""
    return list(candidates(store))


def candidates(store: Store, step: Optional[int] = None) -> Iterator[CheckpointInfo]:
    """Like :func:`catalogue` (or only ``step``'s), reading each manifest only when the
    caller gets that far: resuming a long run reads one or two, not thousands."""
    by_step: Dict[int, List[str]] = {}
    for name in store.list():
        found = step_of(name)
        if found is not None and step in (None, found[1]):
            by_step.setdefault(found[1], []).append(name)
    for number in sorted(by_step, reverse=True):
        infos = [info for info in map(lambda name: _manifest(store, name), by_step[number]) if info]
        yield from sorted(infos, key=lambda info: info.time, reverse=True)  # a step saved twice: the later first


def _manifest(store: Store, name: str) -> Optional[CheckpointInfo]:
    try:
        return CheckpointInfo.from_json(store.get_bytes(name), url=store.url)
    except FileNotFoundError:  # deleted by retention since the listing
        return None
    except CheckpointError as exc:
        warnings.warn(f"skipping {store.url}/{name}: {exc}", CheckpointWarning, stacklevel=4)
        return None


def read(store: Store, info: CheckpointInfo, cache: Optional[Cache], *, map_location: Any = None) -> Dict[str, Any]:
    """Every part of ``info``, decoded, by name. Raises :class:`CheckpointCorruptError`
    when an object is missing or does not match the manifest."""
    keeper = cache if cache is not None and cache.keep else None  # one that keeps nothing is not read
    scratch: Optional[str] = None
    try:
        states: Dict[str, Any] = {}
        for part in info.parts:
            where = f"{info.url}/{part.key}"
            path = _local(store, part.key)
            verified = False
            if path is None and keeper is not None:
                path = keeper.holds(info.id, part)  # checks size and sha256
                verified = path is not None
            if path is None:  # download, to the cache when it keeps files, else to a scratch folder
                if keeper is not None:
                    keeper.folder(info.id)
                    target = keeper.path(info.id, part)
                else:
                    scratch = scratch or tempfile.mkdtemp(prefix="vastnb-load-")
                    target = os.path.join(scratch, os.path.basename(part.key))
                path = _download(store, part.key, target, where)
            size, digest = (part.size, part.sha256) if verified else file_sha256(path)
            if (size, digest) != (part.size, part.sha256):
                raise CheckpointCorruptError(f"{where} does not match its manifest (size {size}, expected "
                                             f"{part.size}; sha256 {digest[:12]}..., expected {part.sha256[:12]}...)",
                                             step=info.step)  # fmt: skip
            states[part.name] = read_part(path, part.codec, map_location=map_location, where=where)
        return states
    finally:
        if scratch:  # tensors read with mmap keep their pages: removing the file is safe on POSIX
            shutil.rmtree(scratch, ignore_errors=True)


def _local(store: Store, key: str) -> Optional[str]:
    try:
        return store.local_path(key)
    except FileNotFoundError as exc:
        raise CheckpointCorruptError(f"{store.url}/{key} is missing although its manifest lists it") from exc


def _download(store: Store, key: str, path: str, where: str) -> str:
    partial = path + ".partial"
    try:
        store.get_file(key, partial)
    except FileNotFoundError as exc:
        raise CheckpointCorruptError(f"{where} is missing although its manifest lists it") from exc
    os.replace(partial, path)
    return path
