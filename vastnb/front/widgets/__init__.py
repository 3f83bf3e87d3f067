"""What a notebook shows of a launch and of a box: ipywidgets in a notebook, text elsewhere.

:class:`LaunchProgress` is a launch's progress callback: it lists each
:class:`~vastnb.lifecycle.launch.LaunchEvent` with its elapsed time. :class:`StatusCard` shows a
box (state, GPU, $/h, uptime, cost so far) with Stop, Start and Destroy buttons; there is one
card per box in a kernel (:func:`live_boxes`), kept current by one poller, so every view of a
box agrees, whoever stopped or destroyed it.

Both keep their state in traits and decide nothing: they show what ``launch()`` emits
and what the Box says, and a button makes one Box call. Their ``text/plain`` form is
what nbval compares in stored notebooks, so it is stable, and each volatile value has
one form a sanitize regex can match: ``4.1s``, ``$0.205/h``, ``$0.0012``, ``#20000000``,
``0.3 min``.
"""

from __future__ import annotations

from vastnb.front.widgets.base import rich_frontend
from vastnb.front.widgets.card import StatusCard
from vastnb.front.widgets.live import LiveBoxes, live_boxes
from vastnb.front.widgets.progress import LaunchProgress

__all__ = ["LaunchProgress", "LiveBoxes", "StatusCard", "live_boxes", "rich_frontend"]
