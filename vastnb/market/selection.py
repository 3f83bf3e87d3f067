"""From a GPU profile to the offer to rent.

The profile becomes a search query with the official CLI's semantics. The server's
filter is not trusted: every returned offer is checked again against the profile, at
the price vastnb will actually pay (the bid, for interruptible rentals, plus disk).
The cheapest wins; ties go to the more reliable host, then to more DLPerf per dollar.
When nothing fits, :func:`explain` says which constraint removed how many offers and
what the cheapest near-miss costs.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from vastnb.market.query import DEFAULT_FILTERS, Query
from vastnb.market.records import Offer
from vastnb.profiles.profile import Profile

__all__ = [
    "Candidate",
    "Constraint",
    "NoMatchReport",
    "profile_query",
    "cluster_query",
    "cheapest_cluster",
    "broad_query",
    "rank",
    "explain",
]

SEARCH_LIMIT = 500  # enough to see the whole cheap end of any one GPU model


@dataclass(frozen=True)
class Candidate:
    """An offer that satisfies a profile, with what renting it will cost."""

    offer: Offer
    price: float  # $/h: on-demand price or bid, plus disk
    bid: float | None  # the bid to send, for interruptible rentals


@dataclass(frozen=True)
class Constraint:
    """One requirement of a profile, checked on an offer at a price."""

    name: str
    test: Callable[[Offer, float], bool]
    hardware: bool = False  # what the job needs to run at all (GPU model, count)


def _price(profile: Profile, offer: Offer) -> tuple[float, float | None]:
    """What renting ``offer`` under ``profile`` costs per hour, and the bid to send."""
    if profile.interruptible:
        bid = profile.bid_price(offer.min_bid) if offer.min_bid > 0 else None
        if bid is None:
            return float("inf"), None
        return offer.price(disk_gb=profile.disk_gb, bid=bid), bid
    # The server prices dph_total with our allocated_storage; our own sum guards against
    # a server that ignored it. Take the higher: never under-estimate a user's spend.
    return max(offer.dph_total, offer.price(disk_gb=profile.disk_gb)), None


def constraints(profile: Profile) -> list[Constraint]:
    """Everything ``profile`` requires of an offer, each with a name for the report."""
    models = {g.casefold() for g in profile.gpu_names}
    checks = [
        Constraint(f"GPU model {', '.join(profile.gpu_names)}", lambda o, p: o.gpu_name.casefold() in models, True),
        Constraint(f"{profile.num_gpus} GPU(s)", lambda o, p: o.num_gpus == profile.num_gpus, True),
        Constraint(f"price <= ${profile.max_price_per_hour:.2f}/h", lambda o, p: p <= profile.max_price_per_hour),
        Constraint(
            f"reliability >= {profile.min_reliability:g}", lambda o, p: o.reliability >= profile.min_reliability
        ),
        Constraint(f"disk >= {profile.disk_gb:g} GB free", lambda o, p: o.disk_space >= profile.disk_gb),
    ]
    if profile.interruptible:
        # A bid below min_bid still creates (and bills) a stopped instance: never send one.
        checks.append(
            Constraint(
                "bid >= the offer's min_bid", lambda o, p: o.min_bid > 0 and profile.bid_price(o.min_bid) >= o.min_bid
            )
        )
    if profile.min_gpu_ram_gb is not None:
        ram = profile.min_gpu_ram_gb
        checks.append(Constraint(f"GPU RAM >= {ram:g} GB", lambda o, p: o.gpu_ram_mb >= ram * 1000))
    if profile.min_cuda is not None:
        cuda = profile.min_cuda
        checks.append(Constraint(f"CUDA >= {cuda:g}", lambda o, p: o.cuda_max_good >= cuda))
    if profile.countries:
        countries = set(profile.countries)
        checks.append(Constraint(f"country in {', '.join(profile.countries)}", lambda o, p: o.country in countries))
    if profile.verified_only:
        checks.append(Constraint("verified host", lambda o, p: o.verified))
    if profile.direct_ssh:
        checks.append(Constraint("direct SSH port", lambda o, p: o.direct_port_count >= 1))
    if profile.cluster_id is not None:
        cluster = profile.cluster_id
        checks.append(Constraint(f"in cluster {cluster}", lambda o, p: o.cluster_id == cluster, True))
    return checks


def _market_query(profile: Profile) -> Query:
    query: Query = {k: dict(v) for k, v in DEFAULT_FILTERS.items()}
    if not profile.verified_only:
        del query["verified"]
    query["type"] = "bid" if profile.interruptible else "on-demand"
    query["allocated_storage"] = profile.disk_gb
    query["order"] = [["dph_total", "asc"]]
    query["limit"] = SEARCH_LIMIT
    return query


def profile_query(profile: Profile) -> Query:
    """The ``/bundles/`` body for ``profile``; numbers as strings, as the CLI sends them."""
    query = _market_query(profile)
    query["gpu_name"] = {"in": list(profile.gpu_names)}
    query["num_gpus"] = {"eq": str(profile.num_gpus)}
    query["reliability"] = {"gte": str(profile.min_reliability)}
    query["disk_space"] = {"gte": str(profile.disk_gb)}
    if not profile.interruptible:
        query["dph_total"] = {"lte": str(profile.max_price_per_hour)}
    if profile.min_gpu_ram_gb is not None:
        query["gpu_ram"] = {"gte": profile.min_gpu_ram_gb * 1000}
    if profile.min_cuda is not None:
        # cuda_max_good alone hides some H100/H200 hosts; sending compute_cap too fixes it.
        query["cuda_max_good"] = {"gte": str(profile.min_cuda)}
        query["compute_cap"] = {"gte": "600"}
    if profile.countries:
        query["geolocation"] = {"in": list(profile.countries)}
    if profile.direct_ssh:
        query["direct_port_count"] = {"gte": "1"}
    if profile.cluster_id is not None:
        query["cluster_id"] = {"eq": profile.cluster_id}
    return query


def cluster_query(profile: Profile) -> Query:
    """The ``/bundles/`` body for ``profile``'s offers that are in a physical cluster."""
    query = profile_query(profile)
    query["cluster_id"] = {"neq": None}
    return query


def cheapest_cluster(candidates: Iterable[Candidate], nodes: int) -> tuple[int, float] | None:
    """The cluster whose ``nodes`` cheapest machines cost least together, and that price
    ($/h); None if no cluster has ``nodes`` machines among ``candidates``."""
    by_cluster: dict[int, dict[int, float]] = {}
    for c in candidates:  # one price per machine: its cheapest offer
        if c.offer.cluster_id is not None:
            machines = by_cluster.setdefault(c.offer.cluster_id, {})
            machines[c.offer.machine_id] = min(c.price, machines.get(c.offer.machine_id, c.price))
    totals = [
        (sum(sorted(prices.values())[:nodes]), cluster)
        for cluster, prices in by_cluster.items()
        if len(prices) >= nodes
    ]
    return None if not totals else (min(totals)[1], round(min(totals)[0], 6))


def broad_query(profile: Profile) -> Query:
    """Everything rentable at the profile's pricing type: the ground for a no-match report."""
    query = _market_query(profile)
    query["limit"] = 3000
    return query


def rank(profile: Profile, offers: Iterable[Offer]) -> list[Candidate]:
    """The offers that satisfy ``profile``, cheapest first (then reliability, DLPerf/$)."""
    checks = constraints(profile)
    found = []
    for offer in offers:
        price, bid = _price(profile, offer)
        if all(c.test(offer, price) for c in checks):
            found.append(Candidate(offer, round(price, 6), bid))
    found.sort(key=lambda c: (c.price, -c.offer.reliability, -c.offer.dlperf_per_dphtotal, c.offer.id))
    return found


@dataclass(frozen=True)
class NoMatchReport:
    """Why no offer fits: offers seen, offers each constraint removes, the best near-miss."""

    profile: Profile
    seen: int
    removed: tuple[tuple[str, int], ...]
    near_miss: Candidate | None
    near_miss_fails: str | None

    def __str__(self) -> str:
        p = self.profile
        lines = [
            f"No offer matches profile {p.name!r} ({p.num_gpus}x {'/'.join(p.gpu_names)}, "
            f"<= ${p.max_price_per_hour:.2f}/h, reliability >= {p.min_reliability:g}) "
            f"among {self.seen} rentable offers:"
        ]
        lines += [f"  {name:<36} rules out {count}" for name, count in self.removed if count]
        if self.near_miss is not None:
            o = self.near_miss.offer
            lines.append(
                f"Cheapest near-miss: offer {o.id} ({o.num_gpus}x {o.gpu_name}, {o.country or '??'}, "
                f"reliability {o.reliability:.3f}) at ${self.near_miss.price:.3f}/h, which fails only "
                f"'{self.near_miss_fails}'."
            )
        lines.append(f"Relax a constraint in {p.source or 'your profile'}, or choose another profile.")
        return "\n".join(lines)


def explain(profile: Profile, offers: Sequence[Offer]) -> NoMatchReport:
    """Why none of ``offers`` satisfies ``profile``."""
    checks = constraints(profile)
    removed = dict.fromkeys((c.name for c in checks), 0)
    # The best near-miss fails one constraint only; one with the right hardware (failing
    # on price or reliability, say) beats a cheaper one with the wrong GPU count.
    best: tuple[tuple[bool, float], Candidate, str] | None = None
    for offer in offers:
        price, bid = _price(profile, offer)
        failed = [c for c in checks if not c.test(offer, price)]
        for check in failed:
            removed[check.name] += 1
        if len(failed) == 1 and price < float("inf"):
            key = (failed[0].hardware, price)
            if best is None or key < best[0]:
                best = (key, Candidate(offer, round(price, 6), bid), failed[0].name)
    return NoMatchReport(
        profile=profile,
        seen=len(offers),
        removed=tuple(removed.items()),
        near_miss=best[1] if best else None,
        near_miss_fails=best[2] if best else None,
    )
