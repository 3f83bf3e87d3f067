"""Notebook cells sent to a box: a CELL task's payload and what comes back."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from vastnb.offload.sourcemap import SOURCES

__all__ = ["CELL_NAME", "CellResult", "cell_payload"]

CELL_NAME = 'File "<cell>"'  # how a traceback names a cell run through the API


def cell_payload(source: str, push: Mapping[str, Any] | None, pull: Iterable[str], name: str) -> tuple[Any, ...]:
    """A CELL task's payload; the cell's source is recorded under ``name`` for tracebacks."""
    return source, dict(push or {}), list(pull), SOURCES.name_source(name, source.splitlines(True))


class CellResult(dict[str, Any]):
    """The names a cell pulled back, as a dict, and ``value``: its last expression."""

    value: Any = None
