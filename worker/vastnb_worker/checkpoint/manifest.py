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
"""

from __future__ import annotations

import hashlib
import json
import platform
import re
import sys
import uuid
from dataclasses import dataclass, field
from typing import Any, Dict, Iterable, List, Optional, Tuple

from ..errors import CheckpointError

__all__ = ["Part", "CheckpointInfo", "new_id", "manifest_key", "step_of", "folder_step", "file_sha256", "versions",
           "expired"]

FORMAT = "vastnb-checkpoint"
VERSION = 1
_ID = r"ckpt-(\d{12})-[0-9a-f]{8}"
_NAME = re.compile(rf"^({_ID})\.json$")
_FOLDER = re.compile(rf"^{_ID}$")


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
    metrics: Dict[str, Any] = field(default_factory=dict)
    parts: Tuple[Part, ...] = ()
    versions: Dict[str, str] = field(default_factory=dict)
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
        body = {"format": FORMAT, "version": VERSION, "id": self.id, "step": self.step, "time": self.time,
                "size": self.size, "metrics": self.metrics, "versions": self.versions,
                "parts": [vars(p) for p in self.parts]}  # fmt: skip
        return json.dumps(body, indent=1, sort_keys=True, default=_plain).encode()

    @classmethod
    def from_json(cls, data: bytes, *, url: str = "") -> "CheckpointInfo":
        """Parse a manifest. A malformed one raises :class:`CheckpointError`."""
        try:
            body = json.loads(data)
            if body.get("format") != FORMAT:
                raise ValueError(f"not a {FORMAT} manifest")
            if body.get("version", 0) > VERSION:
                raise CheckpointError(f"checkpoint {body.get('id')} was written by a newer vastnb (manifest "
                                      f"version {body['version']}, this one reads {VERSION}): upgrade vastnb "
                                      "where you load it.", step=body.get("step"))  # fmt: skip
            parts = tuple(Part(**{k: p[k] for k in ("name", "key", "size", "sha256", "codec")}) for p in body["parts"])
            return cls(id=body["id"], step=int(body["step"]), time=float(body["time"]), metrics=body.get("metrics", {}),
                       parts=parts, versions=body.get("versions", {}), url=url)  # fmt: skip
        except CheckpointError:
            raise
        except Exception as exc:  # bad JSON, missing or mistyped fields
            raise CheckpointError(f"unreadable checkpoint manifest in {url or 'the store'}: {exc}") from exc


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
    match = _FOLDER.match(name)
    return int(match.group(1)) if match else None


def step_of(name: str) -> Optional[Tuple[str, int]]:
    """``(id, step)`` for a manifest's object name, None for any other name."""
    match = _NAME.match(name)
    return (match.group(1), int(match.group(2))) if match else None


def file_sha256(path: str) -> Tuple[int, str]:
    """``(size, sha256 hex)`` of a file, read in big blocks (hashlib lets go of the GIL)."""
    digest = hashlib.sha256()
    size = 0
    buffer = bytearray(8 << 20)
    view = memoryview(buffer)
    with open(path, "rb", buffering=0) as file:
        while True:
            n = file.readinto(buffer)
            if not n:
                break
            digest.update(view[:n])
            size += n
    return size, digest.hexdigest()


def versions() -> Dict[str, str]:
    """Versions that matter to whoever loads the checkpoint (torch and numpy only when
    the process already uses them: they are never imported for this)."""
    from .. import __version__

    found = {"python": platform.python_version(), "vastnb_worker": __version__}
    for name in ("torch", "numpy"):
        module = sys.modules.get(name)
        if module is not None and getattr(module, "__version__", None):
            found[name] = str(module.__version__)
    return found


def expired(checkpoints: Iterable[Tuple[str, int]], keep_last: Optional[int], keep_every: Optional[int]) -> List[str]:
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
