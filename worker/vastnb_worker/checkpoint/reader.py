"""Finding and reading checkpoints: only complete ones, only when every checksum matches.

``catalogue()`` lists the checkpoints whose manifests exist, highest step first. ``read()``
fetches one checkpoint's objects through a ``Fetcher`` (from the store's own folder, the local cache, or a
download), checks each against the size and sha256 in its manifest, and decodes them. The
caller skips a checkpoint that fails the check and tries the next one.

The store may be shared, or written by someone hostile, so nothing read from it is trusted
further than it was checked: a manifest is read up to a size cap and checked field by field
(see ``manifest.py``); an object is read no further than the size its manifest states, and
a download enters the cache only once its size and sha256 match; an object that matches but
does not decode is corrupt like one that does not match.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import warnings
from collections.abc import Iterator
from typing import Any, Optional, Union

from ..errors import CheckpointCorruptError, CheckpointError, StorageError
from .cache import Cache
from .codec import SUFFIX, read_part
from .dcpmeta import from_json
from .manifest import MAX_MANIFEST_BYTES, CheckpointInfo, Part, file_sha256, step_of
from .stores import ObjectSizeError, Store

__all__ = ["catalogue", "candidates", "read", "Fetcher", "Candidate", "CheckpointWarning"]

#: What :func:`candidates` yields: a checkpoint to try, or the error that says why a
#: manifest in the store was refused.
Candidate = Union[CheckpointInfo, CheckpointError]


class CheckpointWarning(UserWarning):
    """A checkpoint was skipped (corrupt, incomplete) or could not be saved."""


def catalogue(store: Store, *, max_manifest_bytes: int = MAX_MANIFEST_BYTES) -> list[CheckpointInfo]:
    """The complete checkpoints in ``store``, highest step first. A manifest that is
    refused (unreadable, too big, from a newer vastnb) is skipped with a warning."""
    found: list[CheckpointInfo] = []
    for candidate in candidates(store, max_manifest_bytes=max_manifest_bytes):
        if isinstance(candidate, CheckpointInfo):
            found.append(candidate)
        else:
            warnings.warn(
                f"skipping the checkpoint of step {candidate.step}: {candidate}", CheckpointWarning, stacklevel=3
            )
    return found


def candidates(
    store: Store, step: Optional[int] = None, *, max_manifest_bytes: int = MAX_MANIFEST_BYTES
) -> Iterator[Candidate]:
    """Like :func:`catalogue` (or only ``step``'s), reading each manifest only when the
    caller gets that far: resuming a long run reads one or two, not thousands. Each step's
    checkpoints come newest first, then the manifests of that step that were refused, as
    the error that says why."""
    by_step: dict[int, list[str]] = {}
    for name in store.list():
        found = step_of(name)
        if found is not None and step in (None, found[1]):
            by_step.setdefault(found[1], []).append(name)
    for number in sorted(by_step, reverse=True):
        found_here = [_manifest(store, name, number, max_manifest_bytes) for name in by_step[number]]
        infos = [c for c in found_here if isinstance(c, CheckpointInfo)]
        yield from sorted(infos, key=lambda info: info.time, reverse=True)  # a step saved twice: the later first
        yield from (c for c in found_here if isinstance(c, CheckpointError))


def _manifest(store: Store, name: str, step: int, limit: int) -> Optional[Candidate]:
    """The manifest ``name``, parsed and checked; the error that refuses it; or None when it
    is gone (deleted by retention since the listing)."""
    try:
        return CheckpointInfo.from_json(store.get_bytes_capped(name, limit), url=store.url, name=name)
    except FileNotFoundError:
        return None
    except ObjectSizeError as exc:
        size = f"more than {limit} bytes" if exc.found is None else f"{exc.found} bytes"
        return CheckpointCorruptError(
            f"checkpoint manifest {store.url}/{name} holds {size}, and a manifest may hold "
            f"{limit} (vastnb writes a few KiB), so it is refused unread: delete it if you "
            "do not know where it came from, or pass a larger max_manifest_bytes= to read "
            "it",
            step=step,
        )
    except StorageError:  # the store failed, not this checkpoint: an older one is no answer
        raise
    except CheckpointError as exc:
        return exc


class Fetcher:
    """Local copies of one checkpoint's parts, each checked against the manifest: the
    store's own file (a local store), the cache's, or a download (into the cache when it
    keeps checkpoints, else a scratch folder removed by :meth:`close`). Every part of a
    checkpoint lands in one folder."""

    def __init__(self, store: Store, info: CheckpointInfo, cache: Optional[Cache]) -> None:
        self.store, self.info = store, info
        self.keeper = cache if cache is not None and cache.keep else None  # one that keeps nothing is not read
        self.scratch: Optional[str] = None
        self.folder = ""  # where the parts fetched so far are

    def get(self, part: Part) -> str:
        """The local, checked path of ``part``."""
        info = self.info
        where = f"{info.url}/{part.key}"
        path = _local(self.store, part.key, where, info.step)
        if path is not None:
            _verify(path, part, where, info.step)
        elif self.keeper is not None:
            path = self.keeper.holds(info.id, part)  # checks size and sha256
            if path is None:
                self.keeper.folder(info.id)
                path = _download(self.store, part, self.keeper.path(info.id, part), where, info.step)
        else:
            self.scratch = self.scratch or tempfile.mkdtemp(prefix="vastnb-load-")
            path = _download(self.store, part, os.path.join(self.scratch, os.path.basename(part.key)), where, info.step)
        self.folder = os.path.dirname(path)
        return path

    def decode(self, part: Part, map_location: Any = None) -> Any:
        """``part``, fetched and decoded."""
        where = f"{self.info.url}/{part.key}"
        return _decode(self.get(part), part, where, self.info.step, map_location, self.info)

    def close(self) -> None:
        if self.scratch:  # tensors read with mmap keep their pages: removing the file is safe on POSIX
            shutil.rmtree(self.scratch, ignore_errors=True)


def read(fetcher: Fetcher, *, map_location: Any = None) -> dict[str, Any]:
    """Every part of the fetcher's checkpoint, decoded, by name; not the shard files of a
    sharded one, which its DCP load fetches as its plan needs them. Raises
    :class:`CheckpointCorruptError` when an object is missing, does not match the manifest,
    or does not decode."""
    states = {part.name: fetcher.decode(part, map_location) for part in fetcher.info.parts if part.codec != "dcp"}
    _check_state(states, fetcher.info)
    return states


def _local(store: Store, key: str, where: str, step: int) -> Optional[str]:
    try:
        return store.local_path(key)
    except FileNotFoundError as exc:
        raise CheckpointCorruptError(f"{where} is missing although its manifest lists it", step=step) from exc


def _download(store: Store, part: Part, path: str, where: str, step: int) -> str:
    """Download ``part`` to ``path``, reading no further than its stated size: the file
    lands at ``path`` only once its size and sha256 match the manifest."""
    fd, partial = tempfile.mkstemp(prefix=".partial-", dir=os.path.dirname(path))
    os.close(fd)
    try:
        store.get_file_sized(part.key, partial, part.size)
        _verify(partial, part, where, step)
        os.replace(partial, path)
    except FileNotFoundError as exc:
        raise CheckpointCorruptError(f"{where} is missing although its manifest lists it", step=step) from exc
    except ObjectSizeError as exc:
        raise _size_mismatch(part, where, step, exc.found) from exc
    finally:
        if os.path.exists(partial):
            os.unlink(partial)
    return path


def _verify(path: str, part: Part, where: str, step: int) -> None:
    """Raise :class:`CheckpointCorruptError` unless the file at ``path`` has ``part``'s size
    and sha256; the size is checked first, and no byte past it is ever read."""
    found = os.stat(path).st_size
    if found != part.size:
        raise _size_mismatch(part, where, step, found)
    size, digest = file_sha256(path, part.size + 1)
    if (size, digest) != (part.size, part.sha256):
        raise CheckpointCorruptError(
            f"{where} does not match its manifest (size {size}, expected {part.size}; "
            f"sha256 {digest[:12]}..., expected {part.sha256[:12]}...): it was changed, or "
            "only partly written, after its manifest",
            step=step,
        )


def _size_mismatch(part: Part, where: str, step: int, found: Optional[int]) -> CheckpointCorruptError:
    size = f"more than {part.size} bytes" if found is None else f"{found} bytes"
    return CheckpointCorruptError(
        f"{where} does not match its manifest: it holds {size}, the manifest states "
        f"{part.size}; it was changed, or only partly written, after its manifest",
        step=step,
    )


def _decode(path: str, part: Part, where: str, step: int, map_location: Any, info: CheckpointInfo) -> Any:
    try:
        if part.codec == "dcp-metadata":
            shards = {p.name + SUFFIX["dcp"] for p in info.parts if p.codec == "dcp"}
            with open(path, "rb") as file:
                return from_json(file.read(), shards)
        return read_part(path, part.codec, map_location=map_location, where=where)
    except (CheckpointError, OSError):  # refused by the codec (corrupt), no torch here, a failing disk
        raise
    except ImportError as exc:  # this machine's fault, not the checkpoint's: an older one would fail alike
        raise CheckpointError(
            f"{where} needs the module {exc.name or exc}, which this Python cannot import: install "
            "(or upgrade) it where you load the checkpoint",
            step=step,
        ) from exc
    except Exception as exc:  # its checksum matched: written that way, by something other than vastnb
        detail = f"{type(exc).__name__}: {exc}"
        raise CheckpointCorruptError(
            f"{where} matches its manifest but is not {part.codec} data that vastnb can "
            f"read ({detail:.200}): something other than vastnb wrote it, so it is not "
            "loaded",
            step=step,
        ) from exc


def _check_state(states: dict[str, Any], info: CheckpointInfo) -> None:
    """The ``state`` part, when there is one, must be what vastnb saves: a dict, with dicts
    as its extras and RNG states."""
    state = states.get("state", {})
    if isinstance(state, dict) and all(isinstance(state.get(k, {}), dict) for k in ("extras", "rng")):
        return
    raise CheckpointCorruptError(
        f"the state saved with step {info.step} in {info.url} ({info.id}) is not what vastnb "
        "saves (a dict, with a dict of extras and one of RNG states): something other than "
        "vastnb wrote it, so it is not loaded",
        step=info.step,
    )
