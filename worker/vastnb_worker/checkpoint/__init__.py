"""Checkpoints: saved in the background, atomic, verified, resumable, SIGTERM-safe.

On the box: ``from vastnb_worker.checkpoint import CheckpointManager``; in a notebook the
same class is ``vastnb.CheckpointManager``. torch, numpy and boto3 are imported only when a
checkpoint needs them.
"""

from __future__ import annotations

from .loading import Checkpoint, list_checkpoints, load_latest
from .manager import CheckpointManager
from .manifest import CheckpointInfo, Part
from .reader import CheckpointWarning
from .stores import LocalStore, MemoryStore, Store, open_store

__all__ = [
    "CheckpointManager",
    "Checkpoint",
    "CheckpointInfo",
    "CheckpointWarning",
    "Part",
    "load_latest",
    "list_checkpoints",
    "Store",
    "LocalStore",
    "MemoryStore",
    "open_store",
]
