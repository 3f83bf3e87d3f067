"""A seeded, realistic catalogue of Vast offers, shaped exactly like ``/bundles/`` results.

Each offer is a plain dict with Vast's field names and units (as its search answers): ``gpu_ram`` in
MB per GPU, ``cpu_ram`` in MB for the whole machine, ``storage_cost`` in $/GB/month,
``inet_*_cost`` in $/GB, ``duration`` in seconds. Machines are generated one after another and
the list is cut at ``count``, so a catalogue is a prefix of every larger one with the same seed.
"""

from __future__ import annotations

import itertools
import random
from collections.abc import Mapping
from typing import Any

from vastnb.base.gpus import GPU_NAMES

__all__ = ["DEFAULT_STORAGE_GB", "apply_pricing", "generate_offers", "offer_price"]

#: Disk GB that prices ``dph_total`` when a search names none (the official CLI's default).
DEFAULT_STORAGE_GB = 5.0
_HOURS_PER_MONTH = 720.0  # Vast prices storage per 30-day month: GB * $/GB/month / 720


def offer_price(offer: Mapping[str, Any], *, disk_gb: float, bid: bool) -> float:
    """Total $/h as Vast computes it: compute price (bid or on-demand) plus the disk."""
    compute = offer.get("min_bid") if bid else None
    if compute is None:
        compute = offer["dph_base"]
    return float(compute) + disk_gb * float(offer.get("storage_cost") or 0.0) / _HOURS_PER_MONTH


# name: (VRAM GB, compute_cap, mem GB/s, fp32 TFLOPS, DLPerf, $/GPU/h low, high, weight, kind,
#        PCIe gen, watts). Weights are per machine, so 8-GPU kinds list fewer machines.
_GPUS: dict[str, tuple[float, int, int, float, float, float, float, float, str, int, int]] = {
    "GTX 1080 Ti": (11, 610, 484, 11.3, 9, 0.04, 0.12, 1.0, "consumer", 3, 250),
    "RTX 3060": (12, 860, 360, 12.7, 10, 0.05, 0.12, 3.0, "consumer", 4, 170),
    "RTX 3070": (8, 860, 448, 20.3, 15, 0.06, 0.13, 2.0, "consumer", 4, 220),
    "RTX 3080": (10, 860, 760, 29.8, 22, 0.08, 0.18, 3.0, "consumer", 4, 320),
    "RTX 3090": (24, 860, 936, 35.6, 28, 0.12, 0.30, 12.0, "consumer", 4, 350),
    "RTX 4060 Ti": (16, 890, 288, 22.1, 16, 0.08, 0.16, 2.0, "consumer", 4, 165),
    "RTX 4070": (12, 890, 504, 29.1, 22, 0.10, 0.20, 2.0, "consumer", 4, 200),
    "RTX 4080": (16, 890, 717, 48.7, 38, 0.15, 0.35, 3.0, "consumer", 4, 320),
    "RTX 4090": (24, 890, 1008, 82.6, 60, 0.20, 0.60, 16.0, "consumer", 4, 450),
    "RTX 5090": (32, 1200, 1792, 104.8, 85, 0.45, 0.95, 8.0, "consumer", 5, 575),
    "RTX A4000": (16, 860, 448, 19.2, 15, 0.10, 0.22, 2.0, "workstation", 4, 140),
    "RTX A5000": (24, 860, 768, 27.8, 22, 0.15, 0.35, 3.0, "workstation", 4, 230),
    "RTX A6000": (48, 860, 768, 38.7, 30, 0.35, 0.70, 4.0, "workstation", 4, 300),
    "RTX 6000Ada": (48, 890, 960, 91.1, 65, 0.60, 1.10, 3.0, "workstation", 4, 300),
    "RTX PRO 6000 WS": (96, 1200, 1792, 125.0, 95, 0.90, 1.60, 3.0, "workstation", 5, 600),
    "RTX PRO 6000 S": (96, 1200, 1792, 120.0, 92, 0.90, 1.50, 1.0, "datacenter", 5, 600),
    "Q RTX 8000": (48, 750, 672, 16.3, 14, 0.15, 0.35, 1.0, "workstation", 3, 260),
    "Tesla T4": (16, 750, 320, 8.1, 7, 0.06, 0.15, 1.0, "datacenter", 3, 70),
    "Tesla V100": (32, 700, 900, 15.7, 20, 0.10, 0.35, 2.0, "datacenter", 3, 300),
    "A10": (24, 860, 600, 31.2, 22, 0.20, 0.45, 1.0, "datacenter", 4, 150),
    "A40": (48, 860, 696, 37.4, 30, 0.30, 0.60, 2.0, "datacenter", 4, 300),
    "L4": (24, 890, 300, 30.3, 18, 0.20, 0.45, 1.0, "datacenter", 4, 72),
    "L40": (48, 890, 864, 90.5, 55, 0.45, 0.95, 1.0, "datacenter", 4, 300),
    "L40S": (48, 890, 864, 91.6, 62, 0.50, 1.10, 3.0, "datacenter", 4, 350),
    "A100 PCIE": (80, 800, 1935, 19.5, 40, 0.70, 1.60, 3.0, "datacenter", 4, 300),
    "A100 SXM4": (80, 800, 2039, 19.5, 45, 0.80, 1.90, 3.0, "hpc", 4, 400),
    "A100X": (80, 800, 2039, 19.5, 42, 0.70, 1.50, 0.5, "datacenter", 4, 300),
    "H100 PCIE": (80, 900, 2000, 51.2, 80, 0.90, 2.20, 2.0, "datacenter", 5, 350),
    "H100 SXM": (80, 900, 3350, 66.9, 110, 0.95, 2.80, 4.0, "hpc", 5, 700),
    "H100 NVL": (94, 900, 3900, 60.0, 100, 1.20, 2.60, 1.5, "datacenter", 5, 400),
    "H200": (141, 900, 4800, 66.9, 125, 1.80, 3.80, 2.0, "hpc", 5, 700),
    "H200 NVL": (141, 900, 4800, 60.0, 115, 1.70, 3.40, 0.5, "datacenter", 5, 600),
    "B200": (180, 1000, 8000, 80.0, 220, 3.00, 5.50, 1.5, "hpc", 5, 1000),
}
assert set(_GPUS) <= set(GPU_NAMES), "catalogue names must be Vast spellings"

# kind: (machine sizes, their weights, P(datacenter host), P(each smaller slice is listed)).
_KINDS: dict[str, tuple[tuple[int, ...], tuple[float, ...], float, float]] = {
    "consumer": ((1, 2, 4, 8), (45, 25, 18, 12), 0.15, 0.5),
    "workstation": ((1, 2, 4, 8), (35, 25, 25, 15), 0.30, 0.6),
    "datacenter": ((1, 2, 4, 8), (20, 20, 30, 30), 0.70, 1.0),
    "hpc": ((1, 2, 4, 8), (3, 3, 6, 88), 0.90, 1.0),
}
_DRIVERS = (
    ("535.183.01", 12.2),
    ("545.29.06", 12.3),
    ("550.54.14", 12.4),
    ("550.127.05", 12.4),
    ("560.35.03", 12.6),
    ("565.57.01", 12.7),
    ("570.133.07", 12.8),
    ("575.64.03", 12.9),
    ("580.65.06", 13.0),
)
_DESKTOP_CPUS = (
    ("AMD Ryzen 9 5950X 16-Core Processor", 32, 3.4),
    ("AMD Ryzen 9 7950X 16-Core Processor", 32, 4.5),
    ("13th Gen Intel(R) Core(TM) i9-13900K", 32, 3.0),
    ("AMD Ryzen Threadripper PRO 5975WX 32-Cores", 64, 3.6),
)
_SERVER_CPUS = (
    ("AMD EPYC 7543 32-Core Processor", 128, 2.8),
    ("AMD EPYC 7763 64-Core Processor", 256, 2.45),
    ("AMD EPYC 9654 96-Core Processor", 384, 2.4),
    ("Intel(R) Xeon(R) Platinum 8480+", 224, 2.0),
    ("Intel(R) Xeon(R) Gold 6348 CPU @ 2.60GHz", 112, 2.6),
)
_MOBOS = (
    "ROG STRIX X570-E GAMING",
    "PRO B650-P WIFI",
    "WRX80E-SAGE SE WIFI",
    "H12DSG-O-CPU",
    "X13DEG-OAD",
    "G493-ZB3-AAP1",
)
_DISKS = (
    "Samsung SSD 990 PRO 2TB",
    "WD_BLACK SN850X 4000GB",
    "Micron_7450_MTFDKCC3T8TFR",
    "KIOXIA KCM61VUL3T20",
    "INTEL SSDPF2KX076T1",
)
_PLACES: dict[str, tuple[float, tuple[str, ...]]] = {
    "US": (30, ("California", "Texas", "Virginia", "Oregon", "Florida", "Illinois", "Utah")),
    "CA": (5, ("Quebec", "Ontario", "British Columbia")),
    "DE": (6, ("Frankfurt", "Nuremberg", "Berlin")),
    "NL": (4, ("Amsterdam", "Rotterdam")),
    "SE": (4, ("Stockholm", "Boden")),
    "FI": (3, ("Helsinki", "Kajaani")),
    "PL": (4, ("Warsaw", "Krakow")),
    "GB": (4, ("London", "Manchester")),
    "FR": (4, ("Paris", "Roubaix")),
    "NO": (2, ("Oslo", "Stavanger")),
    "JP": (3, ("Tokyo", "Osaka", "Yutakachō, Shinagawa District, Tokyo")),
    "KR": (3, ("Seoul",)),
    "TW": (3, ("Taipei", "Taichung")),
    "AU": (3, ("Sydney", "Melbourne")),
    "BR": (3, ("Sao Paulo",)),
    "ES": (2, ("Madrid",)),
    "CZ": (2, ("Prague",)),
    "RO": (2, ("Bucharest",)),
    "IN": (2, ("Mumbai",)),
    "SG": (2, ("Singapore",)),
    "IS": (1, ("Reykjavik",)),
    "BG": (1, ("Sofia",)),
}
_COUNTRIES = tuple(_PLACES)
_NETS = ("192.0.2", "198.51.100", "203.0.113")  # RFC 5737 documentation ranges only

# Planted machines at fixed early positions keep the reference profiles satisfiable for every
# seed and any count >= 200, and the decoys make them non-trivial: each fails by one criterion.
# position: (gpu, gpus, $/GPU low, high, reliability low, high, min_bid low, high or None).
_ANCHORS: dict[int, tuple[str, int, float, float, float, float, tuple[float, float] | None]] = {
    3: ("RTX 4090", 1, 0.200, 0.235, 0.905, 0.960, None),  # cheap, reliable enough
    5: ("A100 PCIE", 4, 0.800, 1.300, 0.982, 0.996, None),
    7: ("RTX 4090", 1, 0.210, 0.240, 0.955, 0.985, (0.085, 0.11)),  # cheap and bid-friendly
    9: ("A100 PCIE", 1, 0.750, 1.100, 0.930, 0.975, None),  # decoy: reliability < 0.98
    11: ("H100 SXM", 8, 0.950, 0.975, 0.991, 0.997, None),  # cheap reliable H100 host
    15: ("RTX 4090", 1, 0.260, 0.300, 0.960, 0.990, (0.105, 0.13)),  # bid-friendly only
    19: ("A100 SXM4", 8, 1.000, 1.400, 0.985, 0.995, None),
    23: ("H100 SXM", 8, 0.955, 0.980, 0.992, 0.998, None),
    27: ("RTX 4090", 1, 0.200, 0.240, 0.800, 0.890, None),  # decoy: unreliable
    31: ("H100 SXM", 8, 0.950, 0.980, 0.950, 0.985, None),  # decoy: reliability < 0.99
    35: ("H100 SXM", 8, 1.010, 1.050, 0.992, 0.997, None),  # decoy: x4 just over $4
    39: ("A100 PCIE", 1, 0.750, 1.200, 0.981, 0.995, None),
    43: ("RTX 4090", 1, 0.252, 0.270, 0.930, 0.970, None),  # decoy: just over $0.25
    47: ("RTX 4090", 1, 0.200, 0.240, 0.950, 0.985, (0.085, 0.12)),
}
_NVLINK = {"A100 SXM4": 600.0, "B200": 1800.0}  # GB/s on 8-GPU SXM boards; H100/H200: 900
_NAMES = tuple(_GPUS)
# Cumulative weights, computed once: random.choices would redo the sums on every draw.
_CUM_WEIGHTS = tuple(itertools.accumulate(spec[7] for spec in _GPUS.values()))
_CUM_COUNTRIES = tuple(itertools.accumulate(w for w, _ in _PLACES.values()))


def _reliability(rng: random.Random, datacenter: bool) -> float:
    # Most hosts sit just under 0.999; a tail of flaky hosts falls well below 0.90.
    if rng.random() < (0.06 if datacenter else 0.14):
        return round(rng.uniform(0.55, 0.90), 4)
    return round(0.999 - 0.099 * float(rng.random() ** (2.5 if datacenter else 1.6)), 4)


class _Hosts:
    """Hosts own several machines: one place, one IP and one hosting type shared by them."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.next_id = 100_000 + rng.randint(0, 9_999)
        self.pools: dict[int, list[dict[str, Any]]] = {0: [], 1: []}

    def pick(self, hosting_type: int) -> dict[str, Any]:
        rng, pool = self.rng, self.pools[hosting_type]
        if pool and rng.random() < 0.4:
            return rng.choice(pool[-30:])
        self.next_id += rng.randint(1, 500)
        country = rng.choices(_COUNTRIES, cum_weights=_CUM_COUNTRIES)[0]
        host = {
            "host_id": self.next_id,
            "geolocation": f"{rng.choice(_PLACES[country][1])}, {country}",
            "public_ipaddr": f"{rng.choice(_NETS)}.{rng.randint(1, 254)}",
            "static_ip": rng.random() < (0.9 if hosting_type else 0.5),
            "verified": rng.random() < (0.95 if hosting_type else 0.82),
        }
        pool.append(host)
        return host


def generate_offers(seed: int = 0, count: int = 600) -> list[dict[str, Any]]:
    """A deterministic list of ``count`` offer dicts; ids are unique and stable for ``seed``."""
    rng = random.Random(seed)
    hosts = _Hosts(rng)
    offers: list[dict[str, Any]] = []
    offer_id = 21_000_000 + rng.randint(0, 99_999)
    machine_id = 10_000 + rng.randint(0, 999)
    index = 0
    while len(offers) < count:
        anchor = _ANCHORS.get(index)
        index += 1
        machine_id += rng.randint(1, 9)
        name = anchor[0] if anchor else rng.choices(_NAMES, cum_weights=_CUM_WEIGHTS)[0]
        vram, cc, bw, tflops, dlp, lo, hi, _, kind, gen, watts = _GPUS[name]
        sizes, size_weights, p_dc, p_slice = _KINDS[kind]
        n = anchor[1] if anchor else rng.choices(sizes, size_weights)[0]
        hosting_type = 1 if (anchor and kind == "hpc") or rng.random() < p_dc else 0
        host = hosts.pick(hosting_type)
        if anchor:
            per_gpu = rng.uniform(anchor[2], anchor[3])
            reliability = round(rng.uniform(anchor[4], anchor[5]), 4)
            verified, storage_cost = True, round(rng.uniform(0.05, 0.15), 4)
        else:
            # Skewed towards the cheap end, as a competitive market is.
            per_gpu = rng.triangular(lo, hi, lo + 0.3 * (hi - lo))
            reliability = _reliability(rng, bool(hosting_type))
            verified, storage_cost = host["verified"], round(rng.triangular(0.04, 0.40, 0.12), 4)
        per_gpu = round(per_gpu, 3)
        bid_frac = rng.uniform(0.35, 0.70)
        blackwell = cc >= 1000  # Blackwell needs driver 570+ (CUDA 12.8)
        driver, cuda = rng.choice(_DRIVERS[6:] if blackwell else _DRIVERS)
        major, minor, patch = (int(part) for part in driver.split("."))
        cpu_name, cpu_cores, cpu_ghz = rng.choice(_SERVER_CPUS if n >= 4 or hosting_type else _DESKTOP_CPUS)
        pci_gen = gen if rng.random() < 0.8 else max(3, gen - 1)
        inet_down = rng.uniform(1000, 10000) if hosting_type else rng.uniform(100, 2500)
        inet_cost = 0.0 if rng.random() < 0.2 else rng.uniform(0.001, 0.02)
        machine = {
            "machine_id": machine_id,
            **{k: v for k, v in host.items() if k != "verified"},
            "gpu_name": name,
            "gpu_arch": "nvidia",
            "gpu_ram": int(vram * 1024),
            "gpu_mem_bw": round(bw * rng.uniform(0.85, 0.95), 1),
            "gpu_lanes": 16,
            "gpu_max_power": float(watts),
            "gpu_max_temp": float(rng.choice((83, 85, 87, 90))),
            "gpu_display_active": kind == "consumer" and rng.random() < 0.1,
            "compute_cap": cc,
            "cuda_max_good": cuda,
            "driver_version": driver,
            "driver_vers": major * 1_000_000 + minor * 1_000 + patch,
            "bw_nvlink": _NVLINK.get(name, 900.0) if kind == "hpc" and n == 8 else 0.0,
            "cpu_name": cpu_name,
            "cpu_arch": "amd64",
            "cpu_cores": cpu_cores,
            "cpu_ghz": cpu_ghz,
            "has_avx": 1,
            # System RAM follows VRAM: 1.5-4x per GPU, in whole 8 GB sticks (MB like Vast).
            "cpu_ram": n * int(vram * rng.choice((1.5, 2, 4)) / 8 + 1) * 8 * 1000,
            "disk_bw": round(rng.uniform(1000, 7000), 1),
            "disk_name": rng.choice(_DISKS),
            "inet_up": round(inet_down * rng.uniform(0.3, 1.0), 1),
            "inet_down": round(inet_down, 1),
            "inet_up_cost": round(inet_cost, 4),
            "inet_down_cost": round(inet_cost, 4),
            "internet_up_cost_per_tb": round(inet_cost * 1000, 2),
            "internet_down_cost_per_tb": round(inet_cost * 1000, 2),
            "direct_port_count": 0 if rng.random() < 0.08 else rng.choice((16, 32, 64, 200, 1000)),
            "pci_gen": float(pci_gen),
            "pcie_bw": round(rng.uniform(*{3: (9, 12.5), 4: (17, 25), 5: (35, 52)}[pci_gen]), 1),
            "mobo_name": rng.choice(_MOBOS),
            "ubuntu_version": rng.choice(("22.04", "24.04")),
            "storage_cost": storage_cost,
            "credit_discount_max": round(rng.uniform(0.1, 0.4), 2),
            "reliability": reliability,
            "reliability2": reliability,
            "verification": "verified" if verified else "unverified",
            "verified": verified,
            "rentable": True,
            "rented": False,
            "external": False,
            "is_bid": False,
            "hosting_type": hosting_type,
            "vms_enabled": rng.random() < 0.3,
            "resource_type": "gpu",
            "cluster_id": None,
            "bundled_results": 0,
            "duration": float(rng.randint(2 * 86_400, 240 * 86_400)),
        }
        disk_total = rng.choice((1000, 2000, 4000) if n < 4 else (4000, 8000, 16000))
        # The whole machine first: a catalogue cut at ``count`` loses slices, never the whole.
        slices = [n] + [s for s in reversed(sizes) if s < n and rng.random() < p_slice]
        for s in slices:
            offer_id += rng.randint(1, 40)
            frac = s / n
            dph_base = round(per_gpu * s, 6)
            anchor_bid = anchor[6] if anchor else None
            min_bid = rng.uniform(*anchor_bid) if anchor_bid else dph_base * bid_frac
            dlperf = round(dlp * s**0.97 * rng.uniform(0.92, 1.04), 2)
            offer = {
                "id": offer_id,
                "ask_contract_id": offer_id,
                "bundle_id": offer_id - 9_000_000,
                **machine,
                "num_gpus": s,
                "gpu_frac": frac,
                "gpu_total_ram": int(vram * 1024) * s,
                "cpu_cores_effective": round(cpu_cores * frac, 1),
                "disk_space": round(disk_total * frac * rng.uniform(0.5, 0.95), 1),
                "dph_base": dph_base,
                "min_bid": round(min_bid, 4),
                "dlperf": dlperf,
                "total_flops": round(tflops * s, 2),
                "vram_costperhour": round(dph_base / (vram * s), 6),
            }
            apply_pricing(offer, disk_gb=DEFAULT_STORAGE_GB, bid=False)
            # Score: DLPerf per dollar, discounted hard for flaky hosts.
            offer["score"] = round(offer["dlperf_per_dphtotal"] * reliability**8, 3)
            offers.append(offer)
    return offers[:count]


def apply_pricing(offer: dict[str, Any], *, disk_gb: float, bid: bool) -> None:
    """Write every price-derived field of ``offer`` for ``disk_gb`` of storage, in place.

    ``search`` holds the price of the searched kind (bid or on-demand), ``instance`` always the
    on-demand one, as in Vast's results.
    """
    total = offer_price(offer, disk_gb=disk_gb, bid=bid)
    storage = disk_gb * float(offer.get("storage_cost") or 0.0) / _HOURS_PER_MONTH
    offer["dph_total"] = offer["discounted_dph_total"] = total
    offer["storage_total_cost"] = storage
    offer["dlperf_per_dphtotal"] = (offer.get("dlperf") or 0.0) / total if total else 0.0
    offer["flops_per_dphtotal"] = (offer.get("total_flops") or 0.0) / total if total else 0.0
    offer["is_bid"] = bid
    on_demand = offer_price(offer, disk_gb=disk_gb, bid=False)
    offer["search"] = _pricing_block(total - storage, storage, total)
    offer["instance"] = _pricing_block(on_demand - storage, storage, on_demand)


def _pricing_block(compute: float, storage: float, total: float) -> dict[str, float]:
    return {
        "gpuCostPerHour": compute,
        "diskHour": storage,
        "totalHour": total,
        "discountTotalHour": 0.0,
        "discountedTotalPerHour": total,
    }
