"""``MetricCurve``: a loss (or any metric) against the step, from what the training reports
(``vastnb_worker.report``) and from its checkpoints' metrics, drawn with bqplot.

bqplot's marks are widgets whose data are traits: a new point moves the line in place in the
browser, with no image drawn again. Without a widget frontend the curve is one line of text.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from traitlets import List, Unicode

from vastnb.front.widgets.base import View, describe

if TYPE_CHECKING:
    import ipywidgets
    import pandas as pd

__all__ = ["MetricCurve", "metric_names"]

#: Columns of the metrics and checkpoints DataFrames that are not metrics.
NOT_METRICS = frozenset({"step", "time", "rank", "attempt", "size", "id"})
COLORS = ("#1565c0", "#2e7d32", "#6a1b9a", "#ef6c00", "#00838f", "#ad1457")


def metric_names(*frames: pd.DataFrame) -> list[str]:
    """The numeric metric columns of ``frames``, in order of first appearance."""
    import pandas as pd

    names: list[str] = []
    for frame in frames:
        for column in frame.columns:
            if column not in NOT_METRICS and column not in names and pd.api.types.is_numeric_dtype(frame[column]):
                names.append(str(column))
    return names


class MetricCurve(View):
    """One metric against the step: a line per attempt of what was reported, a dot per
    checkpoint. ``read()`` returns (reported, checkpoints) DataFrames, as ``job.metrics()``
    (or ``box.metrics()``) and ``vast.checkpoints(url)`` do; :meth:`refresh` re-reads them."""

    title = Unicode(help="whose metrics: 'job exp1'")
    metric = Unicode(help="the metric drawn ('' when none was reported yet)")
    names = List(Unicode(), help="the metrics there are")
    summary = Unicode(help="the curve in words (its text form)")
    error = Unicode(help="the last read's failure; '' when none")

    def __init__(
        self, read: Callable[[], tuple[pd.DataFrame, pd.DataFrame]], *, title: str, rich: bool | None = None
    ) -> None:
        import pandas as pd

        self.read = read
        self.reported, self.saved = pd.DataFrame({"step": []}), pd.DataFrame({"step": []})
        super().__init__(rich, title=title)
        self.refresh()

    def refresh(self) -> None:
        try:
            reported, saved = self.read()
        except Exception as exc:  # noqa: BLE001 - shown on the view; the next poll tries again
            self.error = describe(exc)
            return
        self.reported, self.saved = reported, saved
        names = metric_names(reported, saved)
        with self.hold_trait_notifications():
            self.error, self.names = "", names
            if self.metric not in names:
                self.metric = names[0] if names else ""
            self.summary = self._describe()
        if self.rich:
            self._plot()  # the data changed even when no trait did

    def series(self) -> list[tuple[str, Any, Any]]:
        """(label, steps, values) of each reported line: one per attempt (or rank 0's only)."""
        frame = self.reported
        if not self.metric or self.metric not in frame.columns:
            return []
        frame = frame[frame[self.metric].notna()]
        if "rank" in frame.columns:
            frame = frame[frame["rank"].isna() | (frame["rank"] == 0)]
        if "attempt" not in frame.columns:
            return [("reported", frame["step"].to_numpy(), frame[self.metric].to_numpy())]
        return [
            (f"attempt {int(attempt)}", part["step"].to_numpy(), part[self.metric].to_numpy())
            for attempt, part in frame.groupby("attempt", sort=True)
        ]

    def checkpoints(self) -> tuple[Any, Any]:
        """(steps, values) of the checkpoints that carry the metric."""
        frame = self.saved
        if not self.metric or self.metric not in frame.columns:
            return [], []
        frame = frame[frame[self.metric].notna()]
        return frame["step"].to_numpy(), frame[self.metric].to_numpy()

    def _describe(self) -> str:
        if not self.metric:
            return f"{self.title}: no metrics yet (vastnb_worker.report(step, loss=...) sends them)"
        points = sum(len(steps) for _, steps, _ in self.series())
        last = ""
        if points:
            _, steps, values = self.series()[-1]
            last = f", last {values[-1]:.4g} at step {int(steps[-1])}"
        saved = len(self.checkpoints()[0])
        return f"{self.title}: {self.metric}, {points} reported points{last}, {saved} checkpoints"

    def __repr__(self) -> str:
        return self.summary + (f"\n  error: {self.error}" if self.error else "")

    def _build(self) -> ipywidgets.Box:
        import bqplot as bq
        import ipywidgets as w

        self._x, self._y = bq.LinearScale(), bq.LinearScale()
        self._lines: dict[str, bq.Lines] = {}
        self._dots = bq.Scatter(
            x=[], y=[], scales={"x": self._x, "y": self._y}, colors=["#e65100"], default_size=40, labels=["checkpoints"]
        )
        self._y_axis = bq.Axis(scale=self._y, side="left", label="", tick_format=".3g", label_offset="45px")
        self.figure = bq.Figure(
            marks=[self._dots],
            axes=[bq.Axis(scale=self._x, side="bottom", label="step"), self._y_axis],
            animation_duration=0,
            legend_location="top-right",
            fig_margin={"top": 20, "bottom": 40, "left": 60, "right": 20},
            layout=w.Layout(width="100%", height="320px"),
        )
        self._choose = w.Dropdown(description="metric", layout=w.Layout(width="260px"))
        self._choose.observe(lambda change: setattr(self, "metric", change["new"] or ""), names="value")
        self._summary, self._error = w.HTML(), w.HTML()
        return w.VBox([w.HBox([self._choose, self._summary]), self.figure, self._error])

    def _draw(self) -> None:
        import html

        if list(self._choose.options) != self.names:
            self._choose.options = self.names
        if self.metric and self._choose.value != self.metric:
            self._choose.value = self.metric
        self._summary.value = html.escape(self.summary)
        self._error.value = f"<span style='color:crimson'>{html.escape(self.error)}</span>" if self.error else ""
        self._plot()

    def _plot(self) -> None:
        import bqplot as bq

        marks = []
        for i, (label, steps, values) in enumerate(self.series()):
            line = self._lines.get(label)
            if line is None:  # kept and moved in place afterwards: a new point is a new trait value
                line = self._lines[label] = bq.Lines(
                    scales={"x": self._x, "y": self._y},
                    colors=[COLORS[i % len(COLORS)]],
                    labels=[label],
                    display_legend=True,
                )
            with line.hold_sync():
                line.x, line.y = steps, values
            marks.append(line)
        steps, values = self.checkpoints()
        with self._dots.hold_sync():
            self._dots.x, self._dots.y = steps, values
            self._dots.display_legend = len(steps) > 0
        self._y_axis.label = self.metric
        marks.append(self._dots)
        if list(self.figure.marks) != marks:
            self.figure.marks = marks
