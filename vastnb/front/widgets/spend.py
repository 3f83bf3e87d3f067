"""``SpendView``: each budget's month so far, as a bar against its limit with its alert
thresholds and the month-end projected at the current burn rate."""

from __future__ import annotations

import html
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from traitlets import List, Unicode

from vastnb.front.widgets.base import Column, View, describe
from vastnb.front.widgets.table import TableView

if TYPE_CHECKING:
    import ipywidgets
    import pandas as pd

    from vastnb.client import Client

__all__ = ["SpendView", "Standing", "CostView", "spend_view"]


@dataclass(frozen=True)
class Standing:
    """One budget this month, as the view shows it."""

    name: str  # "nlp", "vision/detector"
    limit: float
    spent: float
    projected: float
    thresholds: tuple[float, ...]  # fractions of the limit that raise an alert
    alert: str  # "80% reached", or ""

    @property
    def share(self) -> float:
        return self.spent / self.limit if self.limit > 0 else math.inf

    def text(self) -> str:
        marks = "/".join(f"{t:.0%}" for t in self.thresholds)
        alert = f", {self.alert}" if self.alert else ""
        return (
            f"{self.name}: ${self.spent:.2f} of ${self.limit:.2f} ({self.share:.0%}), "
            f"month-end ${self.projected:.2f} at this rate, alerts at {marks}{alert}"
        )


def standings(budgets: pd.DataFrame, thresholds: Callable[[str, str | None], Sequence[float]]) -> list[Standing]:
    """The rows of ``vast.budgets()`` as :class:`Standing` (``thresholds(team, project)``
    gives a budget's alert fractions)."""
    import pandas as pd

    out = []
    for row in budgets.itertuples(index=False):
        project = None if pd.isna(row.project) else str(row.project)
        out.append(
            Standing(
                name=str(row.team) + (f"/{project}" if project else ""),
                limit=float(row.monthly_limit_usd),
                spent=float(row.spent_usd),
                projected=float(row.projected_usd),
                thresholds=tuple(thresholds(str(row.team), project)),
                alert="" if pd.isna(row.alert) else str(row.alert),
            )
        )
    return out


def spend_view(client: Client, *, rich: bool | None = None) -> SpendView:
    """Each budget of ``client`` this month against its limit, as ``vast.budgets()`` has them."""

    def read() -> list[Standing]:
        entries = {(b.team, b.project): b.alert_thresholds for b in client.budget_entries()}
        return standings(client.budgets(), lambda team, project: entries.get((team, project), ()))

    return SpendView(read, rich=rich)


class SpendView(View):
    """Spend against every budget: a bar per budget (green, amber past its first alert,
    red at its limit), its thresholds and projected month-end in words."""

    lines = List(Unicode(), help="one line per budget (the text form)")
    error = Unicode(help="the last read's failure; '' when none")

    def __init__(self, read: Callable[[], list[Standing]], *, rich: bool | None = None) -> None:
        self.read = read
        self.standings: list[Standing] = []
        super().__init__(rich)
        self.refresh()

    def refresh(self) -> None:
        try:
            found = self.read()
        except Exception as exc:  # noqa: BLE001 - shown on the view; the next poll tries again
            self.error = describe(exc)
            return
        self.standings = found
        with self.hold_trait_notifications():
            self.error, self.lines = "", [s.text() for s in found]

    def __repr__(self) -> str:
        body = "\n".join(f"  {line}" for line in self.lines) or "  no budgets (budgets.yaml beside the profiles)"
        return "spend this month:\n" + body + (f"\n  error: {self.error}" if self.error else "")

    def _build(self) -> ipywidgets.Box:
        import ipywidgets as w

        self._rows, self._error = w.VBox(), w.HTML()
        self._bars: list[tuple[w.HBox, w.HTML, w.FloatProgress, w.HTML]] = []  # made once, kept
        return w.VBox([self._rows, self._error])

    def _draw(self) -> None:
        import ipywidgets as w

        while len(self._bars) < len(self.standings):
            name, bar, words = w.HTML(layout=w.Layout(width="140px")), w.FloatProgress(min=0, max=100), w.HTML()
            self._bars.append((w.HBox([name, bar, words]), name, bar, words))
        rows = []
        for standing, (row, name, bar, words) in zip(self.standings, self._bars, strict=False):
            first = min(standing.thresholds, default=1.0)
            style = "danger" if standing.share >= 1 else "warning" if standing.share >= first else "success"
            name.value = f"<b>{html.escape(standing.name)}</b>"
            bar.value, bar.bar_style = min(standing.share, 1.0) * 100, style
            words.value = html.escape(standing.text().split(": ", 1)[1])
            rows.append(row)
        self._rows.children = rows or [w.HTML("<i>no budgets (budgets.yaml beside the profiles)</i>")]
        self._error.value = f"<span style='color:crimson'>{html.escape(self.error)}</span>" if self.error else ""


class CostView(Column):
    """``%vast cost`` in a notebook: spend against every budget over a cost report (what
    ``read()`` returns, as ``vast.costs(...)`` does), both kept current."""

    def __init__(self, client: Client, read: Callable[[], pd.DataFrame], *, title: str, rich: bool | None = None):
        self.spend = spend_view(client, rich=rich)
        self.report = TableView(read, title=title, empty="nothing spent in this window", rich=rich)
        super().__init__([self.spend, self.report], rich)
