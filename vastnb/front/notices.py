"""A job's warnings, as the fronts tell them: one line of their own, not a Python warning
pointing into vastnb's code."""

from __future__ import annotations

import contextlib
import sys
import warnings
from collections.abc import Iterator

from vastnb.errors import JobWarning

__all__ = ["told_as"]


@contextlib.contextmanager
def told_as(prefix: str) -> Iterator[None]:
    """Print each :class:`~vastnb.errors.JobWarning` raised in the block as ``prefix message``
    on stderr; other warnings go on as they were."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", JobWarning)
        yield
    for warning in caught:
        if issubclass(warning.category, JobWarning):
            print(f"{prefix} {warning.message}", file=sys.stderr)
        else:
            warnings.warn_explicit(warning.message, warning.category, warning.filename, warning.lineno)
