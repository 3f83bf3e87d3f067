"""What a box's tasks print, here: shown (:func:`print_output` by default), with the metrics
they report (``vastnb_worker.report``) taken out of it.

A :class:`MetricLog` belongs to a box and outlives its sessions (a stop and start, a
reconnect): each session hands every output chunk to :meth:`MetricLog.take`, which keeps the
points and gives back the text to print. :func:`metric_frame` makes the DataFrame that
``box.metrics()`` and ``job.metrics()`` return.
"""

from __future__ import annotations

import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any

from vastnb_worker.metrics import Metric, MetricReader

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["Output", "print_output", "MetricLog", "metric_frame"]

#: Where a task's output goes: ``on_output(stream, text)``.
Output = Callable[[str, str], None]
MAX_POINTS = 100_000  # reports kept per box, the oldest dropped first


def print_output(stream: str, text: str) -> None:
    """The default output sink: the box's stdout here to stdout, its stderr to stderr."""
    target = sys.stderr if stream == "stderr" else sys.stdout
    target.write(text)
    target.flush()


class MetricLog:
    """What a box's tasks reported, in arrival order (at most ``limit`` reports)."""

    def __init__(self, limit: int = MAX_POINTS) -> None:
        self._points: deque[tuple[float, Metric]] = deque(maxlen=limit)
        self._readers: dict[str, MetricReader] = {}
        self._lock = threading.Lock()
        self._listeners: list[Callable[[float, Metric], None]] = []

    def take(self, stream: str, text: str) -> str:
        """Keep the metrics in one chunk of a task's ``stream``; the rest, to be shown."""
        with self._lock:
            reader = self._readers.setdefault(stream, MetricReader())
            shown, found = reader.feed(text)
            now = time.time()
            self._points.extend((now, metric) for metric in found)
            listeners = list(self._listeners) if found else []
        for listener in listeners:
            for metric in found:
                listener(now, metric)
        return shown

    def listen(self, listener: Callable[[float, Metric], None]) -> None:
        """Call ``listener(time, metric)`` for each report from now on (the dashboard's curve)."""
        with self._lock:
            self._listeners.append(listener)

    @property
    def rejected(self) -> int:
        """Marked lines that were not a valid report, dropped."""
        with self._lock:
            return sum(r.rejected for r in self._readers.values())

    def points(self) -> list[tuple[float, Metric]]:
        with self._lock:
            return list(self._points)

    def frame(self) -> pd.DataFrame:
        """``step``, ``time`` (UTC, when it arrived), ``rank`` and a column per metric."""
        return metric_frame(({"time": at}, metric) for at, metric in self.points())


def metric_frame(rows: Iterable[tuple[Mapping[str, Any], Metric]]) -> pd.DataFrame:
    """One row per report: its ``extra`` columns (attempt, time...), ``step``, ``rank``
    (distributed runs only) and a column per metric name, in order of first appearance."""
    import pandas as pd

    records = []
    for extra, metric in rows:
        record: dict[str, Any] = {**extra, "step": metric.step}
        if metric.rank is not None:
            record["rank"] = metric.rank
        record.update(metric.values)
        records.append(record)
    frame = pd.DataFrame.from_records(records) if records else pd.DataFrame({"step": pd.Series(dtype="int64")})
    if "time" in frame.columns:
        frame["time"] = pd.to_datetime(frame["time"], unit="s", utc=True)
    return frame
