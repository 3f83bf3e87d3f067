"""How long offer selection takes on 10,000 offers, against sorting them with pandas.

Run: ``python bench/offers.py``. Both sides start from the same list of offer dicts as
the API returns them. vastnb's side parses them into records and ranks them against a
profile (every constraint re-checked, priced at what renting would cost); the baseline
builds a DataFrame and sorts it by ``dph_total``, nothing checked. Figures are ratios
to the baseline, measured in the same run, median of several repeats.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable

import pandas as pd

from vastnb.market.records import Offer
from vastnb.market.selection import rank
from vastnb.profiles.profile import load_profiles
from vastnb.sim.catalogue import generate_offers

COUNT = 10_000
REPEATS = 7


def median_seconds(work: Callable[[], object]) -> float:
    times = []
    for _ in range(REPEATS):
        start = time.perf_counter()
        work()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    raw = generate_offers(seed=1, count=COUNT)
    offers = [Offer.from_api(o) for o in raw]
    profiles = load_profiles()

    baseline = median_seconds(lambda: pd.DataFrame(raw).sort_values("dph_total"))
    print(f"{COUNT} offers; baseline = pd.DataFrame(offers).sort_values('dph_total'): {baseline * 1000:.1f} ms")
    print(f"{'what':<44} {'ms':>8} {'x baseline':>11}")
    parse = median_seconds(lambda: [Offer.from_api(o) for o in raw])
    print(f"{'parse into Offer records':<44} {parse * 1000:8.1f} {parse / baseline:11.2f}")
    for name, profile in profiles.items():
        seconds = median_seconds(lambda p=profile: rank(p, offers))
        matched = len(rank(profile, offers))
        label = f"rank for {name} ({matched} match)"
        print(f"{label:<44} {seconds * 1000:8.1f} {seconds / baseline:11.2f}")
    end_to_end = median_seconds(lambda: rank(profiles["dev-test"], [Offer.from_api(o) for o in raw]))
    print(f"{'parse + rank, dev-test (what offers() does)':<44} {end_to_end * 1000:8.1f} {end_to_end / baseline:11.2f}")


if __name__ == "__main__":
    main()
