"""What a checkpoint is in the store: data objects, then a manifest that makes it exist.

Layout under the store's root, for the checkpoint of step 500::

    ckpt-000000000500-1f2e3d4c/model.pt        data objects, written first
    ckpt-000000000500-1f2e3d4c/optimizer.pt
    ckpt-000000000500-1f2e3d4c/state.pkl
    ckpt-000000000500-1f2e3d4c.json            the manifest, written last

The manifest (JSON) lists the step, the wall time, the metrics, library versions, and the
size and sha256 of every data object. A checkpoint exists only once its manifest does, and
it is used only while every object matches its manifest. The random suffix makes every
save a new name, so a run that saves the same step twice (after a resume, say) never
writes into a checkpoint that already exists. Steps are zero-padded so that names sort by
step; the order of checkpoints never depends on clocks.

A bucket may be shared, or written by someone hostile: a manifest is read only up to
:data:`MAX_MANIFEST_BYTES`, and every field is checked (type, range, and that each key is
the one vastnb would write) before anything uses it.
"""

from __future__ import annotations

import hashlib
import json
import math
import platform
import re
import sys
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Optional

from ..errors import CheckpointCorruptError, CheckpointError
from .codec import SUFFIX

if TYPE_CHECKING:
    from typing import TypeGuard  # Python 3.10: for mypy only, the box may run 3.9

__all__ = [
    "Part",
    "CheckpointInfo",
    "new_id",
    "manifest_key",
    "step_of",
    "folder_step",
    "file_sha256",
    "versions",
    "expired",
    "MAX_MANIFEST_BYTES",
    "MAX_PARTS",
    "MAX_PART_BYTES",
    "MAX_MARKER_BYTES",
    "marker_key",
    "parts_from_marker",
]

FORMAT = "vastnb-checkpoint"
VERSION = 1
_ID = r"ckpt-(\d{12})-[0-9a-f]{8}"
_NAME = re.compile(rf"({_ID})\.json")
_FOLDER = re.compile(_ID)

#: The most bytes of a manifest that are read (vastnb writes a few KiB): a bigger one is refused unread.
MAX_MANIFEST_BYTES = 16 << 20
#: The most data objects a manifest may list (vastnb writes at most four, and a sharded
#: checkpoint one shard file per rank besides).
MAX_PARTS = 4096
#: The most bytes of a rank's marker in a sharded checkpoint's folder.
MAX_MARKER_BYTES = 1 << 20
#: The most bytes a manifest may state for one data object: 1 PiB.
MAX_PART_BYTES = 1 << 50
_PART_NAME = re.compile(r"[A-Za-z0-9_]{1,64}")
_CODEC = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.+-]{0,63}")
_SHA256 = re.compile(r"[0-9a-f]{64}")
_LATEST_TIME = 2.0**33  # a Unix time in the year 2242


@dataclass(frozen=True)
class Part:
    """One data object of a checkpoint: ``name`` (``model``, ``optimizer``...), its
    ``key`` in the store, its ``size`` in bytes, its ``sha256``, and the ``codec`` that
    reads it (``torch``: ``torch.load(weights_only=True)``; ``pickle``: plain data only)."""

    name: str
    key: str
    size: int
    sha256: str
    codec: str


@dataclass(frozen=True)
class CheckpointInfo:
    """A complete checkpoint, as its manifest describes it. ``time`` is the Unix time of
    the ``save()`` call, ``size`` the bytes of all its objects, ``url`` its store."""

    id: str
    step: int
    time: float
    metrics: dict[str, Any] = field(default_factory=dict)
    parts: tuple[Part, ...] = ()
    versions: dict[str, str] = field(default_factory=dict)
    url: str = ""

    @property
    def size(self) -> int:
        """Bytes of all the checkpoint's objects."""
        return sum(p.size for p in self.parts)

    @property
    def manifest_key(self) -> str:
        """The manifest's key in the store."""
        return manifest_key(self.id)

    def to_json(self) -> bytes:
        """The manifest, as stored."""
        body = {
            "format": FORMAT,
            "version": VERSION,
            "id": self.id,
            "step": self.step,
            "time": self.time,
            "size": self.size,
            "metrics": self.metrics,
            "versions": self.versions,
            "parts": [vars(p) for p in self.parts],
        }
        return json.dumps(body, indent=1, sort_keys=True, default=_plain).encode()

    @classmethod
    def from_json(cls, data: bytes, *, url: str = "", name: Optional[str] = None) -> CheckpointInfo:
        """Parse a manifest, read from ``name`` in the store at ``url``. One that is malformed,
        or says anything vastnb would not write, raises :class:`CheckpointCorruptError`; one
        written by a newer vastnb, :class:`CheckpointError`."""
        where = f"{url}/{name}" if url and name else name or url or "the store"
        found = step_of(name) if name else None
        step = found[1] if found else None
        try:
            body = json.loads(data)
            if not isinstance(body, dict) or body.get("format") != FORMAT:
                raise ValueError(f"not a {FORMAT} manifest")
            version = body.get("version")
            if not _is_int(version) or version < 1:
                raise ValueError(f"version {_shown(version)} is not a manifest version")
            if version > VERSION:
                raise _Newer(f"manifest version {_shown(version)}, this one reads {VERSION}")
            _check(body, name)
            parts = tuple(Part(**{k: p[k] for k in _PART_FIELDS}) for p in body["parts"])
            return cls(
                id=body["id"],
                step=body["step"],
                time=float(body["time"]),
                metrics=body.get("metrics", {}),
                parts=parts,
                versions=body.get("versions", {}),
                url=url,
            )
        except _Newer as exc:
            raise CheckpointError(
                f"checkpoint manifest {where} was written by a newer vastnb ({exc}): upgrade vastnb where you load it.",
                step=step,
            ) from None
        except Exception as exc:  # bad JSON, missing, mistyped or out-of-range fields
            raise CheckpointCorruptError(
                f"unreadable checkpoint manifest {where}: {exc}. vastnb never writes such a "
                "manifest (it was changed, or put there by someone else), so nothing it "
                "names is read: delete it if you do not know where it came from",
                step=step,
            ) from exc


class _Newer(ValueError):
    """What a manifest holds is for a newer vastnb: said as such, not as corruption."""


_PART_FIELDS = ("name", "key", "size", "sha256", "codec")


def _check(body: dict[str, Any], name: Optional[str]) -> None:
    """Raise ValueError, saying what is wrong, unless every field of the manifest ``body``
    (read from ``name``) is what vastnb writes: nothing in it is used before this."""
    checkpoint_id = body.get("id")
    if not isinstance(checkpoint_id, str) or (match := _FOLDER.fullmatch(checkpoint_id)) is None:
        raise ValueError(f"id {_shown(checkpoint_id)} is not a checkpoint name (ckpt-<12 digits>-<8 hex digits>)")
    if name is not None and name != manifest_key(checkpoint_id):
        raise ValueError(f"it names checkpoint {checkpoint_id}, not the one of its own name")
    step = body.get("step")
    if not _is_int(step) or step != int(match.group(1)):
        raise ValueError(f"step {_shown(step)} is not the step in its id {checkpoint_id}")
    time = body.get("time")
    if not _is_number(time) or not 0 <= time <= _LATEST_TIME:
        raise ValueError(f"time {_shown(time)} is not a Unix time")
    metrics = body.get("metrics", {})
    if not isinstance(metrics, dict) or not all(isinstance(v, (int, float, str, type(None))) for v in metrics.values()):
        raise ValueError("metrics must map names to numbers, strings or null")
    found_versions = body.get("versions", {})
    if not isinstance(found_versions, dict) or not all(isinstance(v, str) for v in found_versions.values()):
        raise ValueError("versions must map names to strings")
    parts = body.get("parts")
    if not isinstance(parts, list) or not 1 <= len(parts) <= MAX_PARTS:
        raise ValueError(f"parts must be a list of 1 to {MAX_PARTS} objects")
    names = [_check_part(part, checkpoint_id) for part in parts]
    if len(set(names)) != len(names):
        raise ValueError("two parts have the same name")
    if "size" in body and body["size"] != sum(part["size"] for part in parts):
        raise ValueError(f"size {_shown(body['size'])} is not the sum of its parts' sizes")


def _check_part(part: Any, checkpoint_id: str) -> str:
    """The name of one entry of a manifest's parts, once checked (see :func:`_check`)."""
    if not isinstance(part, dict):
        raise ValueError(f"part {_shown(part)} is not an object")
    name, key, size, sha256, codec = (part.get(k) for k in _PART_FIELDS)
    if not isinstance(name, str) or not _PART_NAME.fullmatch(name):
        raise ValueError(f"part name {_shown(name)} is not 1 to 64 letters, digits or _")
    if not isinstance(codec, str) or not _CODEC.fullmatch(codec):
        raise ValueError(f"part {name} has codec {_shown(codec)}, not a codec name")
    if codec not in SUFFIX:
        raise _Newer(f"part {name} has codec {codec!r}; this one reads {', '.join(SUFFIX)}")
    expected = f"{checkpoint_id}/{name}{SUFFIX[codec]}"
    if key != expected:
        raise ValueError(f"part {name} has key {_shown(key)}, not {expected!r}, where vastnb puts it")
    if not _is_int(size) or not 0 <= size <= MAX_PART_BYTES:
        raise ValueError(f"part {name} has size {_shown(size)}, not a number of bytes from 0 to {MAX_PART_BYTES}")
    if not isinstance(sha256, str) or not _SHA256.fullmatch(sha256):
        raise ValueError(f"part {name} has sha256 {_shown(sha256)}, not 64 lowercase hex digits")
    return name


def _is_int(value: Any) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> TypeGuard[float]:
    return _is_int(value) or (isinstance(value, float) and math.isfinite(value))


def _shown(value: Any) -> str:
    """A value from a manifest, for a message: its repr, cut short (it may be anything)."""
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def marker_key(checkpoint_id: str, rank: int) -> str:
    """Where rank ``rank`` (not 0) of a sharded checkpoint says which shards it stored."""
    return f"{checkpoint_id}/rank-{rank}.json"


def parts_from_marker(data: bytes, checkpoint_id: str, rank: int) -> list[Part]:
    """The shard parts listed by rank ``rank``'s marker, each checked as a manifest's are
    and named as that rank's DCP shard files (``__<rank>_<n>``)."""
    try:
        found = json.loads(data)
        if not isinstance(found, list) or len(found) > MAX_PARTS:
            raise ValueError(f"not a list of at most {MAX_PARTS} parts")
        for part in found:
            name = _check_part(part, checkpoint_id)
            if part["codec"] != "dcp" or not re.fullmatch(rf"__{rank}_\d{{1,7}}", name):
                raise ValueError(f"part {name} is not a shard file of rank {rank}")
        return [Part(**{k: p[k] for k in _PART_FIELDS}) for p in found]
    except (ValueError, _Newer) as exc:
        raise CheckpointError(
            f"the marker of rank {rank} in {checkpoint_id} is not what vastnb writes: {exc}"
        ) from None


def new_id(step: int) -> str:
    """A fresh checkpoint name for ``step``."""
    if step < 0 or step >= 10**12:
        raise ValueError(f"step must be between 0 and 10**12 - 1, not {step}")
    return f"ckpt-{step:012d}-{uuid.uuid4().hex[:8]}"


def manifest_key(checkpoint_id: str) -> str:
    """The manifest's key for a checkpoint id: beside the folder of its objects."""
    return checkpoint_id + ".json"


def folder_step(name: str) -> Optional[int]:
    """The step of a checkpoint's data folder name, None for any other name."""
    match = _FOLDER.fullmatch(name)
    return int(match.group(1)) if match else None


def step_of(name: str) -> Optional[tuple[str, int]]:
    """``(id, step)`` for a manifest's object name, None for any other name."""
    match = _NAME.fullmatch(name)
    return (match.group(1), int(match.group(2))) if match else None


def file_sha256(path: str, limit: Optional[int] = None) -> tuple[int, str]:
    """``(size, sha256 hex)`` of a file, read in big blocks (hashlib lets go of the GIL);
    of its first ``limit`` bytes only, when it holds more."""
    digest = hashlib.sha256()
    size = 0
    buffer = bytearray(8 << 20)
    view = memoryview(buffer)
    with open(path, "rb", buffering=0) as file:
        while limit is None or size < limit:
            n = file.readinto(buffer if limit is None else view[: min(len(buffer), limit - size)])
            if not n:
                break
            digest.update(view[:n])
            size += n
    return size, digest.hexdigest()


def versions() -> dict[str, str]:
    """Versions that matter to whoever loads the checkpoint (torch and numpy only when
    the process already uses them: they are never imported for this)."""
    from .. import __version__

    found = {"python": platform.python_version(), "vastnb_worker": __version__}
    for name in ("torch", "numpy"):
        module = sys.modules.get(name)
        if module is not None and getattr(module, "__version__", None):
            found[name] = str(module.__version__)
    return found


def expired(checkpoints: Iterable[tuple[str, int]], keep_last: Optional[int], keep_every: Optional[int]) -> list[str]:
    """Ids of the checkpoints that retention deletes, from ``(id, step)`` pairs: all but
    the ``keep_last`` highest steps and those whose step is a multiple of ``keep_every``.
    ``keep_last=None`` keeps everything."""
    if keep_last is None:
        return []
    ordered = sorted(checkpoints, key=lambda c: (c[1], c[0]), reverse=True)
    return [cid for cid, step in ordered[keep_last:] if not (keep_every and step % keep_every == 0)]


def _plain(value: Any) -> Any:
    """Metrics often hold numpy or torch scalars: store their plain value."""
    if hasattr(value, "item"):
        return value.item()
    return str(value)
