"""The notebook's view of a run's checkpoints: ``vastnb.storage.checkpoints.checkpoints(url)``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

from vastnb import CheckpointManager
from vastnb.storage.checkpoints import checkpoints
from vastnb_worker.checkpoint import list_checkpoints


def test_the_dataframe_lists_step_time_size_and_metrics_sorted_by_step(where: tuple[str, dict[str, Any]]) -> None:
    url, options = where
    with CheckpointManager(url, keep_last=None, **options) as ckpt:
        for step in (30, 10, 20):  # saved out of order: the frame is sorted by step anyway
            ckpt.save(step, extras={"n": step}, metrics={"loss": 1.0 / step, "lr": 0.1, "step": "clash"})
    frame = checkpoints(url, **options)
    assert list(frame.columns) == ["step", "time", "size", "loss", "lr", "metric_step", "id"]
    assert frame["step"].tolist() == [10, 20, 30]
    assert frame["loss"].tolist() == [0.1, 0.05, 1.0 / 30]
    assert str(frame["time"].dt.tz) == "UTC"
    assert (frame["time"] > pd.Timestamp.now(tz="UTC") - pd.Timedelta(minutes=5)).all()
    sizes = {info.id: info.size for info in list_checkpoints(url, **options)}
    assert frame.set_index("id")["size"].to_dict() == sizes


def test_an_empty_or_missing_folder_gives_an_empty_frame(tmp_path: Path) -> None:
    frame = checkpoints(str(tmp_path / "nothing-here"))
    assert frame.empty and list(frame.columns) == ["step", "time", "size", "id"]
    assert not (tmp_path / "nothing-here").exists()  # looking creates nothing
