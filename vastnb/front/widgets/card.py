"""``StatusCard``: a box's state and spend, with Stop, Start and Destroy buttons."""

from __future__ import annotations

import html
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from traitlets import Bool, Float, Int, Unicode

from vastnb.errors import InstanceGoneError
from vastnb.front.widgets.base import View

if TYPE_CHECKING:
    import ipywidgets

    from vastnb.lifecycle.box import Box
    from vastnb.market.records import Instance

__all__ = ["StatusCard"]


class StatusCard(View):
    """A box at a glance: state, GPU, $/h, uptime and cost so far, with Stop, Start
    (when stopped) and Destroy buttons that call ``box.stop()``, ``box.start()`` and
    ``box.down()``. After a click the card refreshes; an error shows on the card.
    ``rich=None`` draws widgets in a notebook; elsewhere its repr is one summary line.
    """

    name = Unicode(help="the box's name")
    instance_id = Int(help="the Vast instance id")
    state = Unicode("unknown", help="running, loading, stopped, ... or destroyed")
    gpu = Unicode(help="'1x RTX 4090'")
    price = Float(None, allow_none=True, help="$/h as the market reports it")
    uptime_mins = Float(None, allow_none=True, help="minutes running; None when not running")
    cost = Float(None, allow_none=True, help="dollars charged so far")
    simulated = Bool(False, help="the box is on the simulated market")
    busy = Unicode(help="the click in progress: 'stopping', 'starting', 'destroying'; '' when idle")
    error = Unicode(help="the last error, 'Type: message'; '' when none")
    note = Unicode(help="what the last Refresh click found: 'no change at 13:45:02', 'updated at ...'")

    def __init__(self, box: Box, *, rich: bool | None = None) -> None:
        self.box = box
        super().__init__(rich, name=box.name, instance_id=box.id, price=box.price_per_hour, simulated=box.simulated)
        self.refresh()

    def refresh(self) -> None:
        """Re-read the box from the market. An error shows on the card rather than raise."""
        try:
            try:
                info = None if self.box.status == "destroyed" else self.box.info()
            except InstanceGoneError:  # destroyed between the two calls
                info = None
            cost = self.box.cost()
        except Exception as exc:  # noqa: BLE001 - a display must not lose it: it shows on the card
            self.error = f"{type(exc).__name__}: {exc}"
            return
        self.apply(info, cost)

    def apply(self, info: Instance | None, cost: float | None) -> None:
        """Show the instance as the market reported it (None: gone) and its cost so far."""
        with self.hold_trait_notifications():
            self.cost, self.error = cost, ""
            self.state = info.actual_status.value if info is not None else "destroyed"
            uptime = info.raw.get("uptime_mins") if info is not None else None
            self.uptime_mins = float(uptime) if uptime is not None else None
            if info is not None:
                self.gpu, self.price = f"{info.num_gpus}x {info.gpu_name}", info.dph_total

    def _act(self, doing: str, action: Callable[[], object]) -> None:
        # A button's callback: an exception raised here would end up in the kernel's log,
        # not under the cell, so it is shown on the card instead.
        with self.hold_trait_notifications():
            self.error, self.busy = "", doing
        failure = ""
        try:
            action()
        except Exception as exc:  # noqa: BLE001 - a click's failure is shown on the card (see above)
            failure = f"{type(exc).__name__}: {exc}"
        finally:
            self.busy = ""
        self.refresh()
        if failure:  # what the click met matters more than the refresh after it
            self.error = failure

    def refresh_clicked(self) -> None:
        """Refresh, and say what it found, so that a click that changed nothing is seen."""
        before = self.summary()
        self._act("refreshing", lambda: None)
        self.note = f"{'no change' if self.summary() == before else 'updated'} at {time.strftime('%H:%M:%S')}"

    def figures(self) -> list[str]:
        """GPU, $/h, uptime and cost so far, as the card shows them."""
        price = f"${self.price:.3f}/h" if self.price is not None else "$?/h"
        uptime = f"{self.uptime_mins:.1f} min" if self.uptime_mins is not None else "-"
        cost = f"${self.cost:.4f}" if self.cost is not None else "$?"
        return [self.gpu or "?", price, f"uptime {uptime}", f"cost so far {cost}"]

    def summary(self) -> str:
        """``exp1 #20000000: running, 1x RTX 4090, $0.205/h, uptime 0.3 min, cost so far $0.0012``."""
        busy = f" ({self.busy}...)" if self.busy else ""
        mark = " (SIMULATED)" if self.simulated else ""
        return f"{self.name} #{self.instance_id}: {self.state}{busy}, {', '.join(self.figures())}{mark}"

    def __repr__(self) -> str:
        lines = self.error.strip().splitlines()
        return self.summary() + (f"\n  error: {lines[0]}" if lines else "")

    def _build(self) -> ipywidgets.Box:
        import ipywidgets as w

        self._summary, self._error = w.HTML(), w.HTML()
        self.stop_button = w.Button(
            description="Stop", icon="pause", tooltip="Stop: GPU billing stops, the disk stays (billed)"
        )
        self.start_button = w.Button(description="Start", icon="play", tooltip="Start again: the worker starts fresh")
        self.destroy_button = w.Button(
            description="Destroy",
            icon="trash",
            button_style="danger",
            tooltip="Destroy: billing stops for good, the disk is gone",
        )
        self.refresh_button = w.Button(description="Refresh", icon="refresh")
        self.stop_button.on_click(lambda _b: self._act("stopping", self.box.stop))
        self.start_button.on_click(lambda _b: self._act("starting", self.box.start))
        self.destroy_button.on_click(lambda _b: self._act("destroying", self.box.down))
        self.refresh_button.on_click(lambda _b: self.refresh_clicked())
        buttons = w.HBox([self.stop_button, self.start_button, self.destroy_button, self.refresh_button])
        return w.VBox([self._summary, buttons, self._error])

    def _draw(self) -> None:
        gone, busy = self.state == "destroyed", bool(self.busy)
        self.stop_button.disabled = busy or gone or self.state == "stopped"
        self.start_button.disabled = busy
        self.start_button.layout.display = None if self.state == "stopped" else "none"
        self.destroy_button.disabled = busy or gone
        self.refresh_button.disabled = busy
        self._summary.value = self.summary_html()
        self._error.value = self.error_html()

    def summary_html(self) -> str:
        """Name, id and state on a line, the figures below."""
        color = {"running": "green", "stopped": "darkorange", "destroyed": "gray"}.get(self.state, "#1565c0")
        state = html.escape(self.state + (f" ({self.busy}...)" if self.busy else ""))
        badge = " <span style='color:crimson'>SIMULATED</span>" if self.simulated else ""
        return (
            f"<b>{html.escape(self.name)}</b> #{self.instance_id} <span style='color:{color}'>● {state}</span>"
            f"{badge}<br>{' · '.join(html.escape(f) for f in self.figures())}"
            + (f" <span style='color:gray'>· {html.escape(self.note)}</span>" if self.note else "")
        )

    def error_html(self) -> str:
        return f"<pre style='color:crimson;white-space:pre-wrap'>{html.escape(self.error)}</pre>" if self.error else ""

    def html(self) -> str:
        return f"<div>{self.summary_html()}</div>{self.error_html()}"
