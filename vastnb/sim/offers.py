"""The offers of the simulated market: the catalogue, what can be rented now, search.

:class:`OffersMixin` is part of :class:`vastnb.sim.market.Market`; it works on the same
state, through the market's transactions.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from vastnb.sim.catalogue import generate_offers
from vastnb.sim.clusters import cluster_offers
from vastnb.sim.errors import SimError
from vastnb.sim.search import SearchError, search_offers

if TYPE_CHECKING:
    from vastnb.sim.market import SimConfig

__all__ = ["OffersMixin"]

State = dict[str, Any]


class OffersMixin:
    """The catalogue (generated from the seed), availability, search, and the offer
    races tests make happen. Needs the host class's ``config`` and ``_tx()``."""

    config: SimConfig
    _tx: Callable[[], contextlib.AbstractContextManager[tuple[State, float]]]

    @functools.cached_property
    def catalogue(self) -> list[dict[str, Any]]:
        """Every offer the market knows, rented or not (generated from the seed), the
        clusters' machines last."""
        return generate_offers(seed=self.config.seed, count=self.config.offers) + cluster_offers(self.config.seed)

    @functools.cached_property
    def _offer_index(self) -> dict[int, dict[str, Any]]:
        return {o["id"]: o for o in self.catalogue}

    @functools.cached_property
    def _machine_gpus(self) -> dict[int, int]:
        """GPUs per machine: its largest offer (smaller offers are slices of it)."""
        sizes: dict[int, int] = {}
        for o in self.catalogue:
            sizes[o["machine_id"]] = max(sizes.get(o["machine_id"], 0), o["num_gpus"])
        return sizes

    def _available(self, state: State) -> list[dict[str, Any]]:
        """Offers that can be rented now, with ``rented`` set where the caller rents."""
        used: dict[int, int] = {}
        for inst in state["instances"].values():
            used[inst["machine_id"]] = used.get(inst["machine_id"], 0) + inst["num_gpus"]
        taken = set(state["taken"])
        min_bids = state.get("min_bids", {})
        out = []
        for offer in self.catalogue:
            machine_used = used.get(offer["machine_id"], 0)
            if offer["id"] in taken or offer["num_gpus"] > self._machine_gpus[offer["machine_id"]] - machine_used:
                continue
            if str(offer["id"]) in min_bids:
                offer = {**offer, "min_bid": min_bids[str(offer["id"])]}
            out.append({**offer, "rented": True} if machine_used else offer)
        return out

    def search(self, body: Mapping[str, Any]) -> list[dict[str, Any]]:
        """``POST /bundles/``: the offers matching ``body``."""
        with self._tx() as (state, _):
            try:
                return search_offers(self._available(state), body)
            except SearchError as exc:
                raise SimError(400, "invalid_args", str(exc)) from None

    def take_offer(self, offer_id: int) -> None:
        """Someone else rents ``offer_id`` (the race between search and create)."""
        with self._tx() as (state, _):
            state["taken"].append(int(offer_id))

    def raise_min_bid(self, offer_id: int, factor: float = 2.0) -> None:
        """Demand for ``offer_id`` jumps: its minimum bid is multiplied by ``factor``, so
        a bid made from an earlier search is now too low (Vast's spot pitfall)."""
        with self._tx() as (state, _):
            offer = self._offer_index[int(offer_id)]
            bids = state.setdefault("min_bids", {})
            bids[str(offer_id)] = round(bids.get(str(offer_id), offer["min_bid"]) * factor, 4)
