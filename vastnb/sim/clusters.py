"""Physical clusters on the simulated market: hosts whose identical machines share a LAN,
listed with a ``cluster_id`` as Vast lists them, for groups of nodes on an overlay network.

Vast's clusters are datacenter hosts' 8-GPU machines, so the simulator's are copies of such
machines from a catalogue of its own (so the main catalogue, and every price in it, stays as
it was), each copy re-priced a little above the market's cheapest, as interconnected hosts
are, and given a cluster's host, id and reliability.
"""

from __future__ import annotations

import random
from typing import Any

from vastnb.sim.catalogue import DEFAULT_STORAGE_GB, apply_pricing, generate_offers

__all__ = ["CLUSTERS", "cluster_offers"]

#: (GPU model, machines, $/GPU/h range): the simulated market's clusters.
CLUSTERS: tuple[tuple[str, int, tuple[float, float]], ...] = (
    ("H100 SXM", 4, (0.978, 0.994)),
    ("A100 SXM4", 3, (1.05, 1.25)),
    ("H200", 2, (2.0, 2.4)),
)
_FIRST_CLUSTER, _FIRST_HOST, _FIRST_MACHINE, _FIRST_OFFER = 7_001, 990_001, 95_001, 29_500_001


def cluster_offers(seed: int) -> list[dict[str, Any]]:
    """Every offer of every cluster (all slices of each machine), ids of their own."""
    rng = random.Random(f"clusters-{seed}")
    donors = generate_offers(seed=seed + 1_000_003, count=600)
    offers: list[dict[str, Any]] = []
    machine_id, offer_id = _FIRST_MACHINE, _FIRST_OFFER
    for index, (gpu, machines, (low, high)) in enumerate(CLUSTERS):
        whole = next((o for o in donors if o["gpu_name"] == gpu and o["num_gpus"] == 8 and o["gpu_frac"] == 1), None)
        if whole is None:
            continue
        slices = [o for o in donors if o["machine_id"] == whole["machine_id"]]
        for _ in range(machines):
            per_gpu = round(rng.uniform(low, high), 3)
            reliability = round(rng.uniform(0.992, 0.998), 4)
            for donor in slices:
                s = donor["num_gpus"]
                offer = {
                    **donor,
                    "id": offer_id,
                    "ask_contract_id": offer_id,
                    "bundle_id": offer_id - 9_000_000,
                    "machine_id": machine_id,
                    "host_id": _FIRST_HOST + index,
                    "cluster_id": _FIRST_CLUSTER + index,
                    "hosting_type": 1,
                    "verified": True,
                    "verification": "verified",
                    "reliability": reliability,
                    "reliability2": reliability,
                    "dph_base": round(per_gpu * s, 6),
                    "min_bid": round(donor["min_bid"] * per_gpu * s / donor["dph_base"], 4),
                    "vram_costperhour": round(per_gpu / (donor["gpu_ram"] / 1024), 6),
                }
                apply_pricing(offer, disk_gb=DEFAULT_STORAGE_GB, bid=False)
                offer["score"] = round(offer["dlperf_per_dphtotal"] * reliability**8, 3)
                offers.append(offer)
                offer_id += 1
            machine_id += 1
    return offers
