"""Checkpoints from the notebook: list a run's checkpoints, load its latest state.

The classes are the worker's own (``vastnb_worker.checkpoint``), so a training function
shipped to a box and the notebook that started it use one implementation::

    vastnb.checkpoints("s3://bucket/runs/exp1")            # DataFrame: step, time, size, metrics
    state = vastnb.load_latest("s3://bucket/runs/exp1", model=model)
"""

from __future__ import annotations

from typing import Any

import pandas as pd

from vastnb_worker.checkpoint import Checkpoint, CheckpointInfo, CheckpointManager, list_checkpoints, load_latest

__all__ = ["checkpoints", "CheckpointManager", "Checkpoint", "CheckpointInfo", "load_latest"]

_COLUMNS = ("step", "time", "size", "id")


def checkpoints(url: str, **store_options: Any) -> pd.DataFrame:
    """The complete checkpoints at ``url``, one row each, sorted by step: ``step``,
    ``time`` (UTC, when it was saved), ``size`` (bytes), a column per metric, and ``id``
    (its name in the store). ``url`` and ``store_options`` are as for
    :class:`CheckpointManager` (a folder, ``s3://bucket/prefix`` with ``endpoint_url=``...).
    Only manifests are read: nothing is downloaded or verified."""
    rows = []
    for info in list_checkpoints(url, **store_options):
        row: dict[str, Any] = {
            "step": info.step,
            "time": pd.Timestamp(info.time, unit="s", tz="UTC"),
            "size": info.size,
        }
        for name, value in info.metrics.items():
            row[f"metric_{name}" if name in _COLUMNS else name] = value  # never hide a fixed column
        row["id"] = info.id
        rows.append(row)
    if not rows:
        return pd.DataFrame(
            {
                "step": pd.Series(dtype="int64"),
                "time": pd.Series(dtype="datetime64[ns, UTC]"),
                "size": pd.Series(dtype="int64"),
                "id": pd.Series(dtype="object"),
            }
        )
    frame = pd.DataFrame(rows).sort_values("step", kind="stable").reset_index(drop=True)
    # The id last, after the metrics, which are what people read.
    return frame[[c for c in frame.columns if c != "id"] + ["id"]]
