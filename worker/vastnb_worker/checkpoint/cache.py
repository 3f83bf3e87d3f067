"""The local copy of recent checkpoints, on the box's own disk.

Every checkpoint is first written here and uploaded from here; the latest ones stay, so a
process restarted on the same machine resumes from local files (after checking their
sha256 against the manifest in the store) instead of downloading them. For a local-folder
store the "cache" is a staging folder inside the store: files are renamed into place, and
nothing is kept twice.

Checkpoint ids and file names come from manifests, which a shared bucket may forge: every
path is checked to be a file directly in a checkpoint's folder directly under the cache's
root, links resolved, before anything is written there.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from collections.abc import Iterable
from typing import Optional

from ..errors import CheckpointCorruptError
from .manifest import Part, file_sha256, folder_step

__all__ = ["Cache", "default_cache_root"]


def default_cache_root() -> str:
    """``$XDG_CACHE_HOME/vastnb/checkpoints``, or ``~/.cache/vastnb/checkpoints``."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "vastnb", "checkpoints")


class Cache:
    """Checkpoint files under ``root``, one folder per checkpoint id. ``keep`` is how many
    finished checkpoints stay (0: each is removed once stored). ``move`` says the store may
    take the files instead of copying them."""

    def __init__(self, root: str, *, keep: int, move: bool = False) -> None:
        self.root = root
        self.keep = keep
        self.move = move

    @classmethod
    def for_store(cls, store_url: str, root: Optional[str], keep: int) -> Cache:
        """A cache for the store at ``store_url``: a folder of its own under ``root``
        (default :func:`default_cache_root`), so stores never share files."""
        name = hashlib.sha256(store_url.encode()).hexdigest()[:16]
        return cls(os.path.join(root or default_cache_root(), name), keep=keep)

    @classmethod
    def scratch(cls) -> Cache:
        """A private temporary folder that keeps nothing."""
        return cls(tempfile.mkdtemp(prefix="vastnb-ckpt-"), keep=0)

    def folder(self, checkpoint_id: str) -> str:
        """The folder of ``checkpoint_id``'s files, made if need be."""
        path = self._inside(checkpoint_id)
        os.makedirs(path, exist_ok=True)
        return path

    def path(self, checkpoint_id: str, part: Part) -> str:
        """Where ``part`` of ``checkpoint_id`` is cached."""
        name = os.path.basename(part.key)
        if not name or name.startswith("."):  # "", ".", "..", or a name hidden like the partial files
            raise self._refused(os.path.join(checkpoint_id, name))
        return os.path.join(self._inside(checkpoint_id), name)

    def _inside(self, checkpoint_id: str) -> str:
        """``root/checkpoint_id``, once sure it is a checkpoint's folder directly in the
        cache's root, links resolved (a manifest's id is never trusted with a path)."""
        if folder_step(checkpoint_id) is None:
            raise self._refused(checkpoint_id)
        path = os.path.join(self.root, checkpoint_id)
        real = os.path.realpath(path)
        if os.path.dirname(real) != os.path.realpath(self.root) or os.path.basename(real) != checkpoint_id:
            raise self._refused(checkpoint_id)
        return path

    def _refused(self, name: str) -> CheckpointCorruptError:
        return CheckpointCorruptError(
            f"refused to write {name!r:.100} in the checkpoint cache {self.root}: it is not "
            "a file in a checkpoint's folder there, so the checkpoint that names it is not "
            "loaded"
        )

    def holds(self, checkpoint_id: str, part: Part) -> Optional[str]:
        """The cached file for ``part`` when its size and sha256 match, else None."""
        path = self.path(checkpoint_id, part)
        try:
            if os.path.getsize(path) != part.size:
                return None
        except OSError:
            return None
        return path if file_sha256(path, part.size + 1) == (part.size, part.sha256) else None

    def prune(self, keep_ids: Iterable[str]) -> None:
        """Remove every checkpoint folder except those of ``keep_ids``."""
        keep = set(keep_ids)
        try:
            entries = list(os.scandir(self.root))
        except FileNotFoundError:
            return
        for entry in entries:
            if entry.is_dir() and entry.name.startswith("ckpt-") and entry.name not in keep:
                shutil.rmtree(entry.path, ignore_errors=True)

    def remove_if_empty(self) -> None:
        """Remove the cache's folder when nothing is left in it."""
        try:
            os.rmdir(self.root)
        except OSError:  # not empty, or already gone
            pass
