"""``LaunchProgress``: a launch's steps, live, each with its elapsed time."""

from __future__ import annotations

import html
from dataclasses import dataclass
from typing import TYPE_CHECKING

from traitlets import Bool, Instance as InstanceOf, List, Unicode

from vastnb.front.widgets.base import View, describe, shown, static_html
from vastnb.lifecycle.launch import LaunchEvent

if TYPE_CHECKING:
    import ipywidgets
    from IPython.display import DisplayHandle

    from vastnb.lifecycle.box import Box

__all__ = ["LaunchProgress", "Row", "STEPS"]

#: The steps of one launch attempt, in order, as the view names them.
STEPS = {
    "offer": "offer chosen",
    "created": "created",
    "loading": "loading",
    "running": "running",
    "connecting": "SSH",
    "ready": "worker ready",
}
MARKS = {"done": "✓", "active": "▸", "pending": "○", "retry": "↻", "cleanup": "−", "failed": "✗", "note": "•"}
COLORS = {
    "done": "green",
    "active": "#1565c0",
    "pending": "gray",
    "retry": "darkorange",
    "cleanup": "gray",
    "failed": "crimson",
    "note": "gray",
}


@dataclass(frozen=True)
class Row:
    """One line of a launch view. ``mark`` is a key of :data:`MARKS`."""

    mark: str
    label: str
    elapsed: float | None = None
    detail: str = ""

    def text(self) -> str:
        # Labels are padded (they never vary); what follows them is never padded, so a
        # sanitize regex that rewrites "4.1s" leaves the rest of the line unchanged.
        when = f" {self.elapsed:.1f}s" if self.elapsed is not None else ""
        return f"  {MARKS[self.mark]} {self.label:<12}{when}  {self.detail}".rstrip()

    def html(self) -> str:
        """The row as one line of HTML: mark, label and time in aligned columns, then the detail."""
        color = COLORS[self.mark]
        when = f"{self.elapsed:.1f}s" if self.elapsed is not None else ""
        detail = f"<span style='color:#555'>{html.escape(self.detail)}</span>" if self.detail else ""
        return (
            f"<span style='display:inline-block;width:1.4em;text-align:center;font-weight:bold;color:{color}'>"
            f"{MARKS[self.mark]}</span><span style='display:inline-block;min-width:7.5em;color:{color}'>"
            f"{html.escape(self.label)}</span><code style='display:inline-block;min-width:4em;background:none'>"
            f"{when}</code>{detail}"
        )


def _detail(event: LaunchEvent) -> str:
    candidate = event.candidate
    if event.stage == "offer" and candidate is not None:
        o = candidate.offer
        bid = f", bid ${candidate.bid:.4f}/h" if candidate.bid is not None else ""
        return f"{o.num_gpus}x {o.gpu_name}, ${candidate.price:.3f}/h{bid}, {o.country or '??'}, reliability {o.reliability:.3f}"
    if event.stage in STEPS:  # the id once it exists, and again when ready: not on every row
        return f"#{event.instance_id}" if event.stage in ("created", "ready") and event.instance_id is not None else ""
    return event.message  # retries and cleanups: the reason is the point


class LaunchProgress(View):
    """A launch's live progress; pass it as ``progress=`` to :meth:`vastnb.Client.launch`.

    Each :class:`~vastnb.lifecycle.launch.LaunchEvent` becomes a row: offer chosen (GPU, $/h,
    country, reliability) -> created -> loading -> running -> SSH -> worker ready, each
    with its elapsed time, and retries and cleanups as extra rows. Call :meth:`finish`
    when ``launch()`` returns or raises. ``rich=None`` draws widgets in a notebook and
    prints a line per event elsewhere (as the ``vastnb launch`` command does).
    """

    profile = Unicode(help="the profile being launched")
    events = List(InstanceOf(LaunchEvent), help="every event so far, in order")
    state = Unicode("starting", help="starting, launching, ready or failed")
    outcome = Unicode(help="'name #id' when ready; the error's type and first line when failed")
    simulated = Bool(False, help="the launch is on the simulated market")

    def __init__(self, profile: str, *, rich: bool | None = None, simulated: bool = False) -> None:
        super().__init__(rich, profile=profile, simulated=simulated)
        self._handle: DisplayHandle | None = None  # the live widget's output: finish() empties it

    def __call__(self, event: LaunchEvent) -> None:
        """Record one launch event (the progress callback)."""
        with self.hold_trait_notifications():
            self.events = [*self.events, event]
            self.state = "launching"
        if not self.rich:
            event.print()

    def finish(self, box: Box | None = None, error: BaseException | None = None) -> None:
        """Mark the end: ready with ``box``, or failed with ``error``."""
        with self.hold_trait_notifications():
            if error is not None:
                self.state, self.outcome = "failed", describe(error)
            else:
                self.state, self.outcome = "ready", f"{box.name} #{box.id}" if box is not None else ""
            self.simulated = self.simulated or bool(box is not None and box.simulated)
        if not self.rich and error is not None:
            LaunchEvent("failed", self.outcome, self.elapsed or 0.0).print()
        if self._handle is not None and self.widget is not None:
            from IPython.display import display

            # The live view makes way for a record of how the launch ended: what a saved
            # notebook keeps, and what GitHub, nbval and an untrusted viewer show. The live
            # view's output is emptied too (by its display id), so a notebook reopened
            # without its kernel shows no dead widget there ("model not found").
            self.widget.layout.display = "none"
            self._handle.update({"text/plain": ""}, raw=True)
            display(self.record(), raw=True)

    def display(self) -> None:
        """Show the live widget under the current cell; in text mode nothing, since each
        event prints its line as it comes. The widget's own text fallback is empty: a
        launch in progress is no state to keep, and :meth:`finish` adds the record."""
        if self.widget is not None:
            from IPython.display import display

            bundle = {**self.widget._repr_mimebundle_(), "text/plain": ""}
            self._handle = display(bundle, raw=True, display_id=True)
            shown(self, self._handle)

    def ended(self, note: str) -> dict[str, str] | None:
        """At the kernel's exit, a launch still going becomes its record so far; one that
        ended already has its record below."""
        if self.state in ("ready", "failed"):
            return None
        return super().ended(note)

    def html(self) -> str:
        return f"<b>{html.escape(self.headline())}</b>{self._rows_html()}"

    def record(self) -> dict[str, str]:
        """The view as static text and HTML: the launch's record once it ended."""
        return {"text/plain": repr(self), "text/html": static_html(self.html())}

    def _rows_html(self) -> str:
        return "<div style='line-height:1.6'>" + "".join(f"<div>{row.html()}</div>" for row in self.rows()) + "</div>"

    @property
    def elapsed(self) -> float | None:
        """Seconds from ``launch()`` to its latest event; None before the first."""
        return self.events[-1].elapsed if self.events else None

    @property
    def stages(self) -> list[str]:
        """The stages seen so far, in order."""
        return [e.stage for e in self.events]

    def rows(self) -> list[Row]:
        """What the view lists: each event, then the current attempt's steps to come."""
        rows, order, reached = [], list(STEPS), -1
        for e in self.events:
            if e.stage in STEPS:
                reached = order.index(e.stage)
                rows.append(Row("done", STEPS[e.stage], e.elapsed, _detail(e)))
            else:  # a retry or cleanup ends the attempt: the next one starts with an offer
                reached = -1
                rows.append(Row(e.stage if e.stage in MARKS else "note", e.stage, e.elapsed, _detail(e)))
        if self.state == "failed":
            return [*rows, Row("failed", "failed", None, self.outcome)]
        if self.state == "ready":
            return rows
        return rows + [Row("active" if i == 0 else "pending", STEPS[s]) for i, s in enumerate(order[reached + 1 :])]

    def headline(self) -> str:
        """``Launch of dev-test: ready in 4.1s: exp1 #20000000 (SIMULATED)``."""
        when = f" in {self.elapsed:.1f}s" if self.elapsed is not None and self.state in ("ready", "failed") else ""
        what = f": {self.outcome}" if self.state == "ready" and self.outcome else ""
        return f"Launch of {self.profile}: {self.state}{when}{what}{' (SIMULATED)' if self.simulated else ''}"

    def __repr__(self) -> str:
        return "\n".join([self.headline(), *(row.text() for row in self.rows())])

    def _build(self) -> ipywidgets.Box:
        import ipywidgets as w

        self._header, self._lines = w.HTML(), w.HTML()
        return w.VBox([self._header, self._lines])

    def _draw(self) -> None:
        self._header.value = f"<b>{html.escape(self.headline())}</b>"
        self._lines.value = self._rows_html()
