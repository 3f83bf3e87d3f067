"""``vastnb.Client``: the entry point a notebook or script holds.

It picks the backend (``vast`` with an API key, else the built-in ``sim``), loads the
GPU profiles, and answers with pandas DataFrames. Figures from the simulator are
marked as simulated wherever they are shown.
"""

from __future__ import annotations

import dataclasses
import os
import secrets
import time
from collections.abc import Sequence
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

from vastnb.backends import open_backend
from vastnb.backends.base import Backend, BoxOptions
from vastnb.base.config import find_api_key, vastnb_home
from vastnb.costs.mixin import CostsMixin
from vastnb.errors import ConfigError, InstanceGoneError, NoOffersError
from vastnb.jobs.controller import ControllerSettings
from vastnb.jobs.mixin import JobsMixin
from vastnb.lifecycle.box import Box
from vastnb.lifecycle.fleet import Fleet, FleetEntry, parse_label
from vastnb.lifecycle.group import BoxGroup, check_nodes, launch_group
from vastnb.lifecycle.launch import LaunchPolicy, Progress
from vastnb.lifecycle.store import StateStore
from vastnb.market.query import looks_like_query, parse_order, parse_query
from vastnb.market.records import Offer
from vastnb.market.retry import RetryPolicy
from vastnb.market.selection import Candidate, broad_query, explain, profile_query, rank
from vastnb.profiles.budgets import Budget
from vastnb.profiles.profile import Profile, get_profile, load_profiles

if TYPE_CHECKING:
    import httpx
    import pandas as pd

    from vastnb.front.widgets.dashboard import Dashboard
    from vastnb.sim import SimConfig, Simulator

__all__ = ["Client"]

SIM_MARK = "SIMULATED"
INSTANCE_COLUMNS = (
    "id",
    "name",
    "profile",
    "gpu",
    "state",
    "price_per_hour",
    "uptime_hours",
    "cost",
    "owner",
    "keep",
    "team",
    "project",
)


class Client(CostsMixin, JobsMixin):
    """A connection to a GPU marketplace: Vast.ai, or the simulated one.

    ``backend`` is ``"vast"`` or ``"sim"``; by default ``VASTNB_BACKEND``, else
    ``"vast"`` when an API key is found (argument, ``VAST_API_KEY``, or the Vast CLI's
    key file) and ``"sim"`` otherwise. ``profiles`` is a profile file or folder.
    ``transport`` replaces the network for the ``vast`` backend (tests use it).
    ``box`` says how boxes are reached and guarded (:class:`BoxOptions`); ``launch_policy``
    bounds launches (attempts, deadlines per phase). ``sim_config`` tunes the simulated
    market (its delays, for instance) when the backend is ``sim``. ``controller`` says how
    the job controller started from here polls, recovers and when it exits.
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
        box: BoxOptions | None = None,
        launch_policy: LaunchPolicy | None = None,
        sim_config: SimConfig | None = None,
        controller: ControllerSettings | None = None,
    ) -> None:
        self._closed = False
        key = find_api_key(api_key)
        self.backend = backend or os.environ.get("VASTNB_BACKEND") or ("vast" if key else "sim")
        self.home = Path(home) if home else vastnb_home()
        self._profiles_path = profiles
        self._profiles: dict[str, Profile] | None = None
        self._budgets: list[Budget] | None = None
        #: The backend boundary: the market's API, how boxes are reached and how they end
        #: themselves (see :mod:`vastnb.backends`).
        self.provider: Backend = open_backend(
            self.backend,
            key=key,
            home=self.home,
            url=url,
            transport=transport,
            retry=retry,
            box=box,
            sim_config=sim_config,
        )
        self.api = self.provider.api
        self._launch_policy = launch_policy
        self._key = key
        #: How the job controller started from this client works (its timing, limits).
        self.controller_settings = controller or ControllerSettings(idle_exit_s=600.0)

    def __repr__(self) -> str:
        return f"Client(backend={self.backend!r}, url={self.api.base_url!r})"

    @property
    def simulated(self) -> bool:
        """True when every price and figure comes from the simulated marketplace."""
        return self.provider.simulated

    @property
    def sim(self) -> Simulator | None:
        """The embedded simulator (to move its clock or inject faults), on the sim backend."""
        return self.provider.simulator

    @property
    def closed(self) -> bool:
        """True once :meth:`close` ran (live views stop following this client then)."""
        return self._closed

    def close(self) -> None:
        """End this client: its session's boxes are destroyed (kept ones are listed)."""
        self._closed = True
        if "fleet" in self.__dict__:
            self.fleet.close()
        self._close_costs()
        self.provider.close()

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

    # -- instances ----------------------------------------------------------------------

    @cached_property
    def fleet(self) -> Fleet:
        """The instances this client launches and manages (the state store behind them)."""
        store = StateStore(self.home / "state.db")
        return self._hold_budgets(Fleet(self.provider, store, policy=self._launch_policy, select=self.select))

    def launch(
        self,
        profile: str | Profile,
        *,
        name: str | None = None,
        interruptible: bool | None = None,
        bid: str | float | None = None,
        keep: bool = False,
        progress: Progress | None = None,
        team: str | None = None,
        project: str | None = None,
    ) -> Box:
        """Rent the cheapest offer that fits ``profile`` and return its box, its worker
        ready. ``interruptible=True`` rents at a ``bid`` ("min", "min+10%" or $/h).
        ``keep=True`` leaves it running when this Python process exits; otherwise it is
        destroyed then. ``progress`` is called with each :class:`~vastnb.lifecycle.launch.LaunchEvent`.
        ``team`` and ``project`` (default: the profile's) say whose budget it spends: a launch
        whose worst case breaks one is refused (:class:`~vastnb.errors.BudgetError`).
        Use it as ``with vast.launch(...) as box:`` to destroy it when the block ends."""
        chosen = profile if isinstance(profile, Profile) else self.profile(profile)
        chosen = chosen.rented_as(interruptible=interruptible, bid=bid).charged_to(team, project)
        self._check_budgets(chosen, "this launch")
        box = self.fleet.launch(chosen, name=name, keep=keep, progress=progress)
        self._enforce_budgets_of(chosen)
        return box

    def launch_group(
        self,
        profile: str | Profile,
        *,
        nodes: int,
        name: str | None = None,
        keep: bool = False,
        team: str | None = None,
        project: str | None = None,
    ) -> BoxGroup:
        """Rent ``nodes`` boxes of ``profile`` for one multi-node run (``group.options(nproc=
        "gpu").run(train)``), on one overlay network of one physical cluster so that they
        reach each other on every port: launched together, and if any cannot be, every one
        launched is destroyed (and the network deleted) before the error is raised. With no
        cluster to hold them, nothing is rented (see :mod:`vastnb.lifecycle.group`)."""
        check_nodes(nodes)
        chosen = (profile if isinstance(profile, Profile) else self.profile(profile)).charged_to(team, project)
        name = name or f"{chosen.name}-group-{secrets.token_hex(2)}"
        if nodes == 1:
            return BoxGroup([self.launch(chosen, name=f"{name}-0", keep=keep)])
        # The worst case of the whole group against each budget, before anything is rented.
        together = dataclasses.replace(chosen, max_price_per_hour=chosen.max_price_per_hour * nodes)
        self._check_budgets(together, f"this group of {nodes}")
        group = launch_group(self.fleet, chosen, nodes, name, keep=keep)
        self._enforce_budgets_of(chosen)
        return group

    def attach(self, ref: str | int) -> Box:
        """The box called ``ref`` (a name or instance id), launched earlier, perhaps by
        another kernel; this session now owns it."""
        return self.fleet.attach(ref)

    def instances(self) -> pd.DataFrame:
        """vastnb's instances on the account: name, profile, GPU, state, $/h, uptime,
        cost so far and owner ("this session", another live session, "kept", "orphan")."""
        return self._instances_frame(self.fleet.entries())

    def orphans(self) -> pd.DataFrame:
        """Instances no live session owns (their kernel died without destroying them)."""
        return self._instances_frame(self.fleet.orphans())

    def down(self, ref: str | int, *, cancel_job: bool = False) -> bool:
        """Destroy the instance called ``ref`` (name or id). False if already gone. A box
        that runs an active job is refused (its controller would only replace it) unless
        ``cancel_job``: then the job is cancelled and its boxes destroyed."""
        try:
            rental = self.fleet.resolve(ref)
        except InstanceGoneError:
            if isinstance(ref, int) or str(ref).isdigit():
                return self.fleet.destroy(int(ref))  # an id the store never saw
            raise
        job = self._jobs.owner_of([rental.id]).get(rental.id)
        if job is not None:
            if not cancel_job:
                raise ConfigError(
                    f"instance {rental.id} ({rental.name}) runs job {job!r}: its controller would replace it. "
                    f"Cancel the job (`vastnb cancel {job}`, or down --cancel-job) to end both."
                )
            self.job(job).cancel()
            return True
        return self.fleet.destroy(rental.id)

    def down_all(self) -> list[int]:
        """Cancel every queued or active job, then destroy every vastnb instance on the
        account; the ids destroyed. Every one is tried: a
        :class:`~vastnb.errors.TeardownError` after the last names those that failed."""
        self._jobs.cancel_active()
        return self.fleet.destroy_every([e.instance.id for e in self.fleet.entries()], "destroyed")

    def down_orphans(self) -> list[int]:
        """Destroy every orphan; the ids destroyed. Every one is tried, as in :meth:`down_all`."""
        return self.fleet.destroy_every([e.instance.id for e in self.fleet.orphans()], "orphan destroyed")

    def _controller_file(self) -> dict[str, Any]:
        """What a controller started from here runs with (``vastnb controller run --settings``)."""
        sim = self.provider.simulator
        return {
            "backend": self.backend,
            "url": None if sim is not None else self.api.base_url,
            "home": str(self.home),
            "profiles": str(self._profiles_path) if self._profiles_path else None,
            "sim_config": dataclasses.asdict(sim.market.config) if sim is not None else None,
            "launch_policy": dataclasses.asdict(self.fleet.policy),
            "box": dataclasses.asdict(self.provider.box),
            "controller": self.controller_settings.to_dict(),
        }

    def _controller_env(self) -> dict[str, str]:
        return {"VAST_API_KEY": self._key.reveal()} if self._key is not None and self.backend == "vast" else {}

    def dashboard(self, job: str | None = None, *, checkpoints: str | None = None) -> Dashboard:
        """Boxes, jobs, checkpoints and metrics, and spend against budgets, in one live widget.

        In a notebook it is the same widget for every call; ``job`` (a name) or ``checkpoints``
        (a URL) chooses whose checkpoints and metrics it draws, by default the latest job's.
        Elsewhere (a terminal, nbval) it is its text as of now."""
        from vastnb.front.widgets.dashboard import dashboard

        return dashboard(self, job=job, checkpoints=checkpoints)

    def checkpoints(self, url: str, **store_options: Any) -> pd.DataFrame:
        """The complete checkpoints saved under ``url`` (a folder or ``s3://bucket/prefix``),
        one row each: step, time, size and metrics. See :class:`vastnb.CheckpointManager`."""
        from vastnb.storage.checkpoints import checkpoints

        return checkpoints(url, **store_options)

    def _instances_frame(self, entries: list[FleetEntry]) -> pd.DataFrame:
        since = min((e.instance.start_date or time.time() for e in entries), default=time.time())
        costs = self.fleet.api.charged_by_instance(since - 3600) if entries else {}
        rows = []
        for e in entries:
            i, s = e.instance, e.rental
            uptime = i.raw.get("uptime_mins")
            rows.append(
                {
                    "id": i.id,
                    "name": s.name if s else (parse_label(i.label) or ("",))[0],
                    "profile": s.profile if s else None,
                    "gpu": f"{i.num_gpus}x {i.gpu_name}",
                    "state": i.actual_status.value,
                    "price_per_hour": round(i.dph_total, 4),
                    "uptime_hours": round(uptime / 60, 3) if uptime is not None else None,
                    "cost": round(costs.get(i.id, 0.0), 4),
                    "owner": e.owner,
                    "keep": bool(s and s.keep),
                    "team": s.team if s else None,
                    "project": s.project if s else None,
                }
            )
        return self._frame(rows, index="id", columns=INSTANCE_COLUMNS)

    def _frame(
        self, rows: Sequence[dict[str, Any]], *, index: str, market: bool = True, columns: Sequence[str] | None = None
    ) -> pd.DataFrame:
        import pandas as pd

        frame = pd.DataFrame(list(rows), columns=list(columns) if columns else None)
        if not frame.empty or columns:
            frame = frame.set_index(index)
        return self._market_frame(frame, market=market)

    def _market_frame(self, frame: pd.DataFrame, *, market: bool = True) -> pd.DataFrame:
        """Market figures from the simulator say so in the table's corner (the columns'
        name), in print and in notebooks alike."""
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
