"""``Dashboard`` (``%vast dashboard``, ``vast.dashboard()``): boxes, jobs, checkpoints, the
metric curve and spend against budgets, in one widget, kept current by the client's one poller.

Each tab is a view of its own (:class:`StatusCard`, :class:`TableView`, :class:`MetricCurve`,
:class:`SpendView`) that the magics also show alone; the dashboard only composes them, chooses
whose checkpoints and metrics are drawn (the selected job, or a checkpoint URL), and asks the
poller to re-read each at its own pace. Without a widget frontend it is their text, one section
after another.
"""

from __future__ import annotations

import html
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

from traitlets import Unicode

from vastnb.front.widgets.base import Column, View, rich_frontend
from vastnb.front.widgets.curve import MetricCurve
from vastnb.front.widgets.live import LiveBoxes, live_boxes
from vastnb.front.widgets.spend import spend_view
from vastnb.front.widgets.table import TableView

if TYPE_CHECKING:
    import ipywidgets
    import pandas as pd

    from vastnb.client import Client
    from vastnb.front.widgets.card import StatusCard
    from vastnb.jobs.job import Job

__all__ = [
    "Dashboard",
    "CheckpointsView",
    "Source",
    "source_of",
    "latest_job",
    "dashboard",
    "jobs_view",
    "spend_view",
    "live_view",
]

T = TypeVar("T")

#: Seconds between re-reads: the state store and job files are local; checkpoints are a
#: bucket listing; budgets ask the market for its charges.
JOBS_EVERY, CHECKPOINTS_EVERY, SPEND_EVERY = 2.0, 5.0, 15.0
LOG_LINES = 40  # the tail of the selected job's output shown


def dashboard(client: Client, *, job: str | None = None, checkpoints: str | None = None) -> Dashboard:
    """``vast.dashboard()``: in a notebook the kernel's one dashboard of ``client``, showing
    ``job``'s (or the ``checkpoints`` URL's) checkpoints and metrics; elsewhere its text now."""
    if not rich_frontend():
        return Dashboard(client, job=job, checkpoints=checkpoints, rich=False)
    board = live_boxes(client).shared("dashboard", lambda: Dashboard(client, job=job, checkpoints=checkpoints))
    board.choose(job=job, checkpoints=checkpoints)
    return board


def live_view(client: Client, key: str, make: Callable[[], T], every: float) -> T:
    """The kernel's one view ``key`` of ``client`` (made by ``make``), re-read by the client's
    poller every ``every`` seconds."""
    live = live_boxes(client)

    def made() -> T:
        view = make()
        live.follow(every, view.refresh)  # type: ignore[attr-defined]
        return view

    return live.shared(key, made)


def jobs_view(client: Client, *, rich: bool | None = None) -> TableView:
    """Every job of the client's market, as ``vast.jobs()`` has them."""
    return TableView(client.jobs, title="jobs", empty="no jobs yet: vast.submit(...) or %%vast job", rich=rich)


class Source:
    """Whose checkpoints and metrics are shown: a job (its checkpoint URL and what it
    reported) or a checkpoint URL alone."""

    def __init__(self, client: Client, job: str | None = None, url: str | None = None) -> None:
        self.client, self.job, self.url = client, job, url
        self._handle: Job | None = None
        self._handle_of: str | None = None  # the job name it was made for
        self.saved: pd.DataFrame | None = None  # the checkpoints as last listed

    def handle(self) -> Job | None:
        """The selected job's handle (kept: it reads the job's metrics as they grow)."""
        if not self.job:
            return None
        if self._handle is None or self._handle_of != self.job:
            self._handle, self._handle_of = self.client.job(self.job), self.job
        return self._handle

    @property
    def title(self) -> str:
        return f"job {self.job}" if self.job else (self.url or "no job yet")

    def checkpoint_url(self) -> str | None:
        handle = self.handle()
        return handle.record.checkpoint if handle is not None else self.url

    def checkpoints(self) -> pd.DataFrame:
        import pandas as pd

        url = self.checkpoint_url()
        self.saved = self.client.checkpoints(url) if url else pd.DataFrame({"step": pd.Series(dtype="int64")})
        return self.saved

    def metrics(self) -> tuple[pd.DataFrame, pd.DataFrame]:
        import pandas as pd

        handle = self.handle()
        reported = handle.metrics() if handle is not None else pd.DataFrame({"step": []})
        return reported, self.saved if self.saved is not None else self.checkpoints()


def source_of(client: Client, ref: str | None) -> Source:
    """What ``%vast checkpoints REF`` names: a checkpoint URL (``s3://...``, a folder) or a
    job's name; no ``ref``: the latest job."""
    if ref and ("://" in ref or ref.startswith(("/", ".", "~"))):
        return Source(client, None, ref)
    return Source(client, ref or latest_job(client), None)


def latest_job(client: Client) -> str | None:
    """The name of the job submitted last on ``client``'s market (None: no job yet)."""
    jobs = client.jobs()
    return str(jobs["name"].iloc[-1]) if len(jobs) else None


class CheckpointsView(Column):
    """A source's metric curve over its checkpoints (step, time, size, metrics), as
    ``%vast checkpoints`` shows it alone and the dashboard in a tab."""

    every = CHECKPOINTS_EVERY

    def __init__(self, source: Source, *, rich: bool | None = None) -> None:
        self.source = source
        # The table lists the checkpoints; the curve draws that listing (one listing a turn).
        self.table = TableView(
            source.checkpoints, title=f"checkpoints of {source.title}", empty="no checkpoints yet", rich=rich
        )
        self.curve = MetricCurve(source.metrics, title=source.title, rich=rich)
        super().__init__([self.curve, self.table], rich)

    def refresh(self) -> None:
        self.curve.title, self.table.title = self.source.title, f"checkpoints of {self.source.title}"
        self.table.refresh()  # first: the curve draws its listing
        self.curve.refresh()


class Dashboard(View):
    """Boxes, jobs, checkpoints and curve, and spend, live (see the module doc).
    ``job`` (a job's name) or ``checkpoints`` (a URL) chooses whose checkpoints and metrics
    are drawn; by default the latest job's."""

    job = Unicode(help="the job whose checkpoints, metrics and output are shown ('' for none)")

    def __init__(
        self,
        client: Client,
        *,
        job: str | None = None,
        checkpoints: str | None = None,
        rich: bool | None = None,
        live: LiveBoxes | None = None,
    ) -> None:
        self.client = client
        self.live = live or live_boxes(client)
        self.source = source_of(client, checkpoints or job)
        self.jobs = jobs_view(client, rich=rich)
        self.events = TableView(self._events, title="events", empty="no job selected", rich=rich)
        self.checkpoints = CheckpointsView(self.source, rich=rich)
        self.spend = spend_view(client, rich=rich)
        self.cards: list[StatusCard] = []
        self.log_tail = ""
        self._stops: list[Callable[[], None]] = []
        super().__init__(rich, job=self.source.job or "")
        self.find_boxes()
        self.read_log()
        if self.rich:  # text is printed once: nothing to keep current
            self._stops = [
                self.live.follow(JOBS_EVERY, self.find_boxes),
                self.live.follow(JOBS_EVERY, self.jobs.refresh),
                self.live.follow(JOBS_EVERY, self.events.refresh),
                self.live.follow(JOBS_EVERY, self.read_log),
                self.live.follow(CHECKPOINTS_EVERY, self.checkpoints.refresh),
                self.live.follow(SPEND_EVERY, self.spend.refresh),
            ]
        self.observe(self._chosen, names="job")

    def choose(self, *, job: str | None = None, checkpoints: str | None = None) -> None:
        """Draw ``job``'s checkpoints and metrics, or those at the ``checkpoints`` URL."""
        if checkpoints:
            self.source.url = checkpoints
            if not self.job:
                self._chosen({"new": ""})
            self.job = ""
        elif job:
            self.job = job

    def close(self) -> None:
        """Stop following. Each display of it becomes what it shows now, as static text and
        HTML (what a saved notebook keeps), and the next ``vast.dashboard()`` is a new one."""
        for stop in self._stops:
            stop()
        self.live.forget(self)
        self.end(f"closed at {time.strftime('%H:%M:%S')}: vast.dashboard() shows a live one")

    # -- what is read ----------------------------------------------------------------------

    def find_boxes(self) -> None:
        """A card for each live box of the market that is not a job's (a job's box shows in
        its job's row): a card once shown stays, destroyed or not."""
        from vastnb.lifecycle.box import Box

        fleet = self.client.fleet
        shown = {card.instance_id for card in self.cards}
        found = [r for r in fleet.store.instances(fleet.url) if r.job is None and r.id not in shown]
        if found:
            self.cards = self.cards + [self.live.card(Box(fleet, rental), rich=self.rich) for rental in found]
            if self.rich:
                self._draw_boxes()

    def _events(self) -> pd.DataFrame:
        import pandas as pd

        handle = self.source.handle()
        return handle.events().tail(12) if handle is not None else pd.DataFrame()

    def read_log(self) -> None:
        """The last lines the selected job printed (its metrics lines taken out)."""
        handle = self.source.handle()
        tail = handle.tail(LOG_LINES) if handle is not None else ""  # its latest attempt's, read from the end
        if tail != self.log_tail:
            self.log_tail = tail
            if self.rich:
                self._log.value = f"<pre style='max-height:16em;overflow:auto'>{html.escape(tail)}</pre>"

    def _chosen(self, change: dict[str, Any]) -> None:
        self.source.job = change["new"] or None
        for view in (self.events, self.checkpoints):
            view.refresh()
        self.read_log()

    # -- text ------------------------------------------------------------------------------

    def __repr__(self) -> str:
        mark = " (SIMULATED)" if self.client.simulated else ""
        boxes = "\n".join(f"  {card.summary()}" for card in self.cards) or "  no boxes"
        return "\n".join(
            (f"vastnb dashboard{mark}", "boxes:", boxes, repr(self.jobs), repr(self.checkpoints), repr(self.spend))
        )

    def html(self) -> str:
        mark = " <span style='color:crimson'>SIMULATED</span>" if self.client.simulated else ""
        boxes = "".join(f"<div style='margin:0.3em 0'>{card.html()}</div>" for card in self.cards) or "<i>no boxes</i>"
        sections = (boxes, self.jobs.html(), self.checkpoints.html(), self.spend.html())
        return f"<b>vastnb dashboard</b>{mark}" + "".join(f"<div style='margin-top:0.6em'>{s}</div>" for s in sections)

    # -- widgets ---------------------------------------------------------------------------

    def _build(self) -> ipywidgets.Box:
        import ipywidgets as w

        assert self.jobs.widget and self.events.widget and self.checkpoints.widget
        assert self.spend.widget
        self._boxes = w.VBox()
        self._pick = w.Dropdown(description="job", layout=w.Layout(width="320px"))
        self._pick.observe(lambda change: setattr(self, "job", change["new"] or ""), names="value")
        self._log = w.HTML()
        jobs_tab = w.VBox([self.jobs.widget, self._pick, self.events.widget, w.HTML("<b>output</b>"), self._log])
        self.tabs = w.Tab(children=[self._boxes, jobs_tab, self.checkpoints.widget, self.spend.widget])
        self.tabs.titles = ("Boxes", "Jobs", "Checkpoints", "Spend")
        self.jobs.observe(lambda _change: self._draw(), names="text")
        return w.VBox([self.tabs])

    def _draw(self) -> None:
        names = list(self.jobs.frame["name"]) if self.jobs.frame is not None and len(self.jobs.frame) else []
        names = list(dict.fromkeys(reversed(names)))  # the latest first, each name once
        if self.job and self.job not in names:
            names.insert(0, self.job)
        if list(self._pick.options) != names:
            self._pick.options = names
        if self._pick.value != (self.job or None):
            self._pick.value = self.job or None
        self._draw_boxes()

    def _draw_boxes(self) -> None:
        import ipywidgets as w

        widgets = [card.widget for card in self.cards if card.widget is not None]
        self._boxes.children = widgets or [w.HTML("<i>no boxes: %vast launch PROFILE</i>")]
