"""``TableView``: a DataFrame kept current (jobs, checkpoints), as an HTML table or as text."""

from __future__ import annotations

import html
from collections.abc import Callable
from typing import TYPE_CHECKING

from traitlets import Unicode

from vastnb.front.widgets.base import View, describe

if TYPE_CHECKING:
    import ipywidgets
    import pandas as pd

__all__ = ["TableView"]

MAX_ROWS = 50  # rows drawn; the DataFrame itself has them all


def _html(frame: pd.DataFrame) -> str:
    """A compact table: times to the second, numbers to 4 significant digits, one line a row."""
    import pandas as pd

    shown = frame.copy()
    shown.columns.name = None  # the SIMULATED mark: in the title instead
    for column in shown.columns:
        values = shown[column]
        if pd.api.types.is_datetime64_any_dtype(values):
            shown[column] = values.dt.strftime("%Y-%m-%d %H:%M:%S")
        elif pd.api.types.is_float_dtype(values) and values.dropna().apply(float.is_integer).all():
            shown[column] = values.astype("Int64").astype(str).replace("<NA>", "")  # an id or count through NaN
    table = shown.to_html(index=False, border=0, na_rep="", escape=True, float_format="{:.4g}".format)
    return table.replace("<table", "<table style='white-space:nowrap;font-size:0.9em'", 1)


class TableView(View):
    """What ``read()`` returns, re-read by :meth:`refresh` (the poller calls it): an HTML
    table in a notebook, the DataFrame's text elsewhere. A failed read shows under the table
    and leaves the last rows in place."""

    title = Unicode(help="what the table is: 'jobs', 'checkpoints of s3://...'")
    text = Unicode(help="the table as text (what nbval and a terminal see)")
    table = Unicode(help="the table as HTML")
    error = Unicode(help="the last read's failure, 'Type: message'; '' when none")

    def __init__(self, read: Callable[[], pd.DataFrame], *, title: str, empty: str, rich: bool | None = None) -> None:
        self.read, self.empty = read, empty
        self.frame: pd.DataFrame | None = None
        super().__init__(rich, title=title)
        self.refresh()

    def refresh(self) -> None:
        try:
            frame = self.read()
        except Exception as exc:  # noqa: BLE001 - a display must not lose it: it shows under the table
            self.error = describe(exc)
            return
        self.frame = frame
        with self.hold_trait_notifications():
            self.error = ""
            self.text = frame.to_string() if len(frame) else self.empty
            more = f"<br><i>{len(frame) - MAX_ROWS} more rows</i>" if len(frame) > MAX_ROWS else ""
            self.table = _html(frame.head(MAX_ROWS)) + more if len(frame) else ""

    def __repr__(self) -> str:
        return f"{self.title}:\n{self.text}" + (f"\n  error: {self.error}" if self.error else "")

    def html(self) -> str:
        error = f"<br><span style='color:crimson'>{html.escape(self.error)}</span>" if self.error else ""
        return f"<b>{html.escape(self.title)}</b><br>{self.table or html.escape(self.empty)}{error}"

    def _build(self) -> ipywidgets.Box:
        import ipywidgets as w

        self._head, self._table, self._error = w.HTML(), w.HTML(), w.HTML()
        return w.VBox([self._head, w.Box([self._table], layout=w.Layout(overflow="auto")), self._error])

    def _draw(self) -> None:
        simulated = self.frame is not None and self.frame.columns.name == "SIMULATED"
        mark = " <span style='color:crimson'>SIMULATED</span>" if simulated else ""
        self._head.value = f"<b>{html.escape(self.title)}</b>{mark}"
        self._table.value = self.table or f"<i>{html.escape(self.empty)}</i>"
        self._error.value = f"<span style='color:crimson'>{html.escape(self.error)}</span>" if self.error else ""
