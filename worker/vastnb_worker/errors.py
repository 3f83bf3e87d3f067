"""The root of vastnb's error tree, and the errors the worker tier raises itself.

They live here, in the worker package, so that code on the box (which never imports
vastnb) raises the same classes a notebook catches: ``vastnb.VastError`` *is*
``vastnb_worker.errors.VastError``. Messages say what happened and what to do; they never
carry credentials.
"""

from __future__ import annotations

from typing import Optional

__all__ = ["VastError", "CheckpointError", "CheckpointCorruptError", "StorageError"]


class VastError(Exception):
    """Root of every error vastnb raises."""

    def _render_traceback_(self) -> list[str]:
        """What IPython shows: the message, which says what to do, not vastnb's internals."""
        return [f"{type(self).__name__}: {self}"]


class CheckpointError(VastError):
    """A checkpoint could not be saved or loaded. ``step`` is its training step, when
    one checkpoint is concerned."""

    def __init__(self, message: str, *, step: Optional[int] = None) -> None:
        super().__init__(message)
        self.step = step


class CheckpointCorruptError(CheckpointError):
    """A checkpoint's objects do not match its manifest (size or sha256): it was changed
    or only partly written after the manifest. ``load_latest`` skips such checkpoints
    with a warning; asking for one by its step raises this."""


class StorageError(CheckpointError):
    """The checkpoint store refused an operation or could not be reached.

    ``url`` is the store, ``bucket`` the bucket (None for a local folder), ``operation``
    what was being done (``upload``, ``list``...). ``retryable`` is False for what
    waiting will not fix: a missing bucket, refused permission, missing credentials.
    """

    def __init__(
        self,
        message: str,
        *,
        url: str,
        operation: str,
        bucket: Optional[str] = None,
        retryable: bool = True,
    ) -> None:
        super().__init__(message)
        self.url = url
        self.operation = operation
        self.bucket = bucket
        self.retryable = retryable
