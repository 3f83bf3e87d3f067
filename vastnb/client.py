"""``vastnb.Client``: the entry point a notebook or script holds.

It picks the backend (``vast`` with an API key, else the built-in ``sim``), loads the
GPU profiles, and answers with pandas DataFrames. Figures from the simulator are
marked as simulated wherever they are shown.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import httpx
import pandas as pd

from .api import VastAPI
from .config import find_api_key, vastnb_home
from .errors import ConfigError, NoOffersError
from .profiles import Profile, get_profile, load_profiles
from .query import looks_like_query, parse_order, parse_query
from .records import Offer
from .retry import RetryPolicy
from .secret import Secret
from .selection import Candidate, broad_query, explain, profile_query, rank

__all__ = ["Client", "BACKENDS"]

BACKENDS = ("vast", "sim")
SIM_URL = "http://sim.vastnb.invalid"  # never resolved: the in-process transport answers
SIM_MARK = "SIMULATED"


class Client:
    """A connection to a GPU marketplace: Vast.ai, or the simulated one.

    ``backend`` is ``"vast"`` or ``"sim"``; by default ``VASTNB_BACKEND``, else
    ``"vast"`` when an API key is found (argument, ``VAST_API_KEY``, or the Vast CLI's
    key file) and ``"sim"`` otherwise. ``profiles`` is a profile file or folder.
    ``transport`` replaces the network for the ``vast`` backend (tests use it).
    """

    def __init__(
        self,
        api_key: str | None = None,
        *,
        backend: str | None = None,
        url: str | None = None,
        profiles: str | os.PathLike[str] | None = None,
        home: str | os.PathLike[str] | None = None,
        transport: httpx.BaseTransport | None = None,
        retry: RetryPolicy | None = None,
    ) -> None:
        key = find_api_key(api_key)
        backend = backend or os.environ.get("VASTNB_BACKEND") or ("vast" if key else "sim")
        if backend not in BACKENDS:
            raise ConfigError(f"backend must be one of {', '.join(BACKENDS)}, not {backend!r} (check VASTNB_BACKEND).")
        self.backend = backend
        self.home = Path(home) if home else vastnb_home()
        self._profiles_path = profiles
        self._profiles: dict[str, Profile] | None = None
        self.sim = None
        if backend == "sim":
            from .sim import Simulator

            self.sim = Simulator(self.home)
            key, url, transport = Secret(self.sim.market.api_key), SIM_URL, self.sim.transport()
        elif key is None:
            raise ConfigError(
                "The vast backend needs an API key: pass api_key=..., set VAST_API_KEY, or run "
                "`vastai set api-key`. Without one, use backend='sim' to try everything on the simulator."
            )
        self.api = VastAPI(key, base_url=url, transport=transport, retry=retry)

    def __repr__(self) -> str:
        return f"Client(backend={self.backend!r}, url={self.api.base_url!r})"

    @property
    def simulated(self) -> bool:
        """True when every price and figure comes from the simulated marketplace."""
        return self.backend == "sim"

    def close(self) -> None:
        self.api.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- profiles -----------------------------------------------------------------------

    def _loaded_profiles(self) -> dict[str, Profile]:
        if self._profiles is None:
            self._profiles = load_profiles(self._profiles_path)
        return self._profiles

    def profile(self, name: str) -> Profile:
        """The GPU profile called ``name``."""
        return get_profile(name, self._loaded_profiles())

    def profiles(self) -> pd.DataFrame:
        """The GPU profiles, one row each."""
        return self._frame([p.as_row() for p in self._loaded_profiles().values()], index="name", market=False)

    # -- offers -------------------------------------------------------------------------

    def select(self, profile: str | Profile) -> list[Candidate]:
        """Offers that satisfy ``profile``, cheapest first; the first is what
        ``launch`` rents. Raises :class:`NoOffersError`, with the reason, if none do."""
        profile = profile if isinstance(profile, Profile) else self.profile(profile)
        found = rank(profile, self.api.search_offers(profile_query(profile)))
        if not found:
            report = explain(profile, self.api.search_offers(broad_query(profile)))
            raise NoOffersError(str(report), report=report)
        return found

    def offers(self, spec: str, *, limit: int | None = 20, order: str | None = None) -> pd.DataFrame:
        """Offers for a profile name, or for a query in the Vast CLI's syntax
        (``"gpu_name=RTX_4090 num_gpus>=1 dph<0.5"``), cheapest first."""
        spec = spec.strip()
        if looks_like_query(spec):
            query = parse_query(spec)
            query["order"] = parse_order(order) if order else [["dph_total", "asc"]]
            query["limit"] = limit or 3000
            rows = [_offer_row(o, o.dph_total, None) for o in self.api.search_offers(query)]
        else:
            rows = [_offer_row(c.offer, c.price, c.bid) for c in self.select(spec)]
        return self._frame(rows[:limit] if limit else rows, index="id")

    def _frame(self, rows: Sequence[dict[str, Any]], *, index: str, market: bool = True) -> pd.DataFrame:
        frame = pd.DataFrame(list(rows))
        if not frame.empty:
            frame = frame.set_index(index)
        # Market figures from the simulator say so in the table's corner (the columns'
        # name), in print and in notebooks alike.
        frame.columns.name = SIM_MARK if market and self.simulated else None
        frame.attrs["simulated"] = market and self.simulated
        return frame


def _offer_row(offer: Offer, price: float, bid: float | None) -> dict[str, Any]:
    return {
        "id": offer.id,
        "gpu": offer.gpu_name,
        "num_gpus": offer.num_gpus,
        "price_per_hour": round(price, 4),
        "bid": round(bid, 4) if bid is not None else None,
        "reliability": round(offer.reliability, 4),
        "gpu_ram_gb": round(offer.gpu_ram_mb / 1000, 1),
        "dlperf_per_dollar": round(offer.dlperf_per_dphtotal, 1),
        "cuda": offer.cuda_max_good,
        "country": offer.country,
        "direct_ports": offer.direct_port_count,
        "disk_gb": offer.disk_space,
        "machine_id": offer.machine_id,
    }
