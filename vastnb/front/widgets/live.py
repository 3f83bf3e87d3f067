"""One live card per box in this kernel, and the one poller that keeps every card current.

Every view of a box (``%vast launch``, ``%vast status``, ``LiveBoxes.card(box)`` shown twice)
is a view of the same :class:`~vastnb.front.widgets.card.StatusCard`, so they agree with each
other by construction. What changes a box anywhere reaches its card through the poller:

- the state store, read every ``store_every`` seconds (a local read, no market call): a stop or
  destroy from this kernel (another card's button, ``%vast down``, ``box.down()``, a budget),
  from the ``vastnb`` command, another kernel or the job controller, all of which record it
  there;
- the market, every ``market_every`` seconds (one instance list and one charges call for all
  cards, not one per card): what no vastnb process recorded (the box's own watchdog destroying
  it, a preemption), uptime, price and cost.

Other live views (the dashboard's jobs, checkpoints, curve and spend) ask the same poller to
call them at their own pace (:meth:`LiveBoxes.follow`). The poller runs only while a card of a
box that is not destroyed, or a followed view, exists, and while its client is open; a
destroyed card is final. Budgets are not its business: they hold in the controller and on the
box whatever is displayed.
"""

from __future__ import annotations

import contextlib
import itertools
import threading
import time
import weakref
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

from vastnb.front.widgets.card import StatusCard

if TYPE_CHECKING:
    from vastnb.client import Client
    from vastnb.lifecycle.box import Box

__all__ = ["LiveBoxes", "live_boxes"]

V = TypeVar("V")
STORE_EVERY = 1.0  # seconds between reads of the state store
MARKET_EVERY = 15.0  # seconds between reads of the market


class LiveBoxes:
    """The live views of one client in this kernel: its boxes' cards, and the views that
    follow its poller (see the module doc)."""

    def __init__(self, client: Client, *, store_every: float = STORE_EVERY, market_every: float = MARKET_EVERY) -> None:
        self.client, self.store_every, self.market_every = client, store_every, market_every
        self.cards: dict[int, StatusCard] = {}
        self._recorded: dict[int, str] = {}  # each box's state in the store, as last read
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self._followers: dict[int, tuple[float, Callable[[], None]]] = {}
        self._due: dict[int, float] = {}
        self._keys = itertools.count(1)
        self._views: dict[str, Any] = {}

    def card(self, box: Box, *, rich: bool | None = None) -> StatusCard:
        """The card of ``box``: the same one for every call, so every view of it agrees
        (re-read from the market when asked for again)."""
        with self._lock:
            card = self.cards.get(box.id)
            fresh = card is None or (rich is not None and card.rich != rich)
            if fresh:
                self._recorded[box.id] = self._store_state(box.id)  # what the card is read against
                card = self.cards[box.id] = StatusCard(box, rich=rich)
            self._start()
        assert card is not None
        if not fresh and not card.busy:  # asked for again (%vast status): figures as of now
            card.refresh()
        return card

    def follow(self, every: float, refresh: Callable[[], None]) -> Callable[[], None]:
        """Call ``refresh()`` about every ``every`` seconds from the poller (a failure is
        tried again next time), until the returned function is called."""
        key = next(self._keys)
        with self._lock:
            self._followers[key], self._due[key] = (every, refresh), 0.0
            self._start()

        def stop() -> None:
            with self._lock:
                self._followers.pop(key, None)
                self._due.pop(key, None)

        return stop

    def shared(self, key: str, make: Callable[[], V]) -> V:
        """The one view called ``key`` in this kernel (``make()`` on first use), so that every
        display of it (``%vast jobs`` run twice, ``vast.dashboard()`` again) is the same view."""
        with self._lock:
            found = self._views.get(key)
        if found is None:
            made = make()  # outside the lock: making a view may ask to be followed
            with self._lock:
                found = self._views.setdefault(key, made)
        return found

    def forget(self, view: Any) -> None:
        """``view`` is shared no more: the next ask for its key makes a new one."""
        with self._lock:
            self._views = {key: found for key, found in self._views.items() if found is not view}

    def _start(self) -> None:
        # Under self._lock.
        if self._thread is None or not self._thread.is_alive():
            self._thread = threading.Thread(target=self._run, name="vastnb-live-boxes", daemon=True)
            self._thread.start()

    def live(self) -> list[StatusCard]:
        """The cards still followed: those of boxes not destroyed."""
        with self._lock:
            return [c for c in self.cards.values() if c.state != "destroyed"]

    def poll_store(self) -> None:
        """Each card whose box changed state in the state store since the last read: re-read
        from the market."""
        for card in self.live():
            recorded = self._store_state(card.instance_id)
            if recorded != self._recorded.get(card.instance_id):
                self._recorded[card.instance_id] = recorded
                if not card.busy:  # a click in progress refreshes its card when done
                    card.refresh()

    def _store_state(self, instance_id: int) -> str:
        rental = self.client.fleet.rental(instance_id)
        return "destroyed" if rental is None or not rental.live else rental.state.value

    def poll_market(self) -> None:
        """Every followed card from one instance list and one charges call."""
        cards = self.live()
        if not cards:
            return
        api = self.client.fleet.api
        instances = {i.id: i for i in api.list_instances()}
        charged = api.charged_by_instance(min(c.box.rental.created_at for c in cards) - 3600)
        for card in cards:
            if not card.busy:  # a click in progress refreshes its card when done
                card.apply(instances.get(card.instance_id), charged.get(card.instance_id, 0.0))

    def wake(self) -> None:
        """Read the market now rather than at the next turn."""
        self._wake.set()

    def _still_needed(self) -> bool:
        """Whether the poller goes on; when not, it is forgotten in the same breath, so that
        a card or view added meanwhile starts a new one (never one that is ending)."""
        with self._lock:
            live = any(card.state != "destroyed" for card in self.cards.values())
            if not self.client.closed and (live or self._followers):
                return True
            self._thread = None
            return False

    def _run(self) -> None:
        waited = 0.0
        while self._still_needed():
            woken = self._wake.wait(self.store_every)
            self._wake.clear()
            waited += self.store_every
            # A display must never take the kernel down: a failed read is tried again next turn.
            with contextlib.suppress(Exception):
                if woken or waited >= self.market_every:
                    waited = 0.0
                    self.poll_market()
                else:
                    self.poll_store()
            now = time.monotonic()
            with self._lock:
                due = [(k, f) for k, (every, f) in self._followers.items() if self._due.get(k, 0.0) <= now]
                for key, _ in due:
                    self._due[key] = now + self._followers[key][0]
            for _, refresh in due:
                with contextlib.suppress(Exception):
                    refresh()


_BY_CLIENT: weakref.WeakKeyDictionary[Client, LiveBoxes] = weakref.WeakKeyDictionary()


def live_boxes(client: Client) -> LiveBoxes:
    """The live cards of ``client``'s boxes in this kernel."""
    found = _BY_CLIENT.get(client)
    if found is None:
        found = _BY_CLIENT[client] = LiveBoxes(client)
    return found
