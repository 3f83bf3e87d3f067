"""Per-second billing as Vast does it, on the simulated clock.

- GPU: the instance's $/h (on-demand ``dph_base``, or the bid) for every second it is
  ``running`` (or ``frozen``); nothing while loading, stopped or offline.
- Disk: ``disk_gb * storage_cost / 720`` $/h for every second the instance exists and is
  not offline, stopped included, from creation on.
- Bandwidth: ``inet_up_cost`` / ``inet_down_cost`` $ per GB moved, in any state.

Each instance keeps a ledger of constant-rate segments, so a charge report can be cut
at any window, as ``GET /charges/`` is.
"""

from __future__ import annotations

from typing import Any

__all__ = ["GPU_BILLED", "rates", "accrue", "record_traffic", "charges_between", "charge_record", "total_cost"]

Instance = dict[str, Any]

GPU_BILLED = frozenset({"running", "frozen"})
HOURS_PER_MONTH = 720  # Vast's storage_cost is $/GB/month of 30 days


def rates(inst: Instance) -> tuple[float, float]:
    """($/h for the GPUs, $/h for the disk) in the instance's current state."""
    status = inst["actual_status"]
    if status == "offline":
        return 0.0, 0.0
    gpu = inst["gpu_dph"] if status in GPU_BILLED else 0.0
    return gpu, inst["disk_gb"] * inst["storage_cost"] / HOURS_PER_MONTH


def accrue(inst: Instance, t0: float, t1: float) -> float:
    """Bill ``inst`` from ``t0`` to ``t1`` at its current rates; the dollars charged."""
    if t1 <= t0:
        return 0.0
    gpu, disk = rates(inst)
    ledger: list[list[float]] = inst["ledger"]
    last = ledger[-1] if ledger else None
    if last and last[1] == t0 and last[2] == gpu and last[3] == disk:
        last[1] = t1
    else:
        ledger.append([t0, t1, gpu, disk])
    return (gpu + disk) * (t1 - t0) / 3600


def record_traffic(inst: Instance, when: float, up_gb: float, down_gb: float) -> float:
    """Bill bytes moved; the dollars charged."""
    inst["traffic"].append([when, up_gb, down_gb])
    return up_gb * inst["inet_up_cost"] + down_gb * inst["inet_down_cost"]


def charges_between(inst: Instance, start: float, end: float) -> dict[str, float]:
    """Dollars per item type (gpu, disk, bwu, bwd) and GPU hours, over [start, end]."""
    out = {"gpu": 0.0, "disk": 0.0, "bwu": 0.0, "bwd": 0.0, "gpu_hours": 0.0}
    for t0, t1, gpu, disk in inst["ledger"]:
        hours = max(0.0, min(t1, end) - max(t0, start)) / 3600
        out["gpu"] += gpu * hours
        out["disk"] += disk * hours
        if gpu:
            out["gpu_hours"] += hours
    for when, up_gb, down_gb in inst["traffic"]:
        if start <= when <= end:
            out["bwu"] += up_gb * inst["inet_up_cost"]
            out["bwd"] += down_gb * inst["inet_down_cost"]
    return out


def total_cost(inst: Instance) -> float:
    """Everything ``inst`` has cost so far."""
    items = charges_between(inst, float("-inf"), float("inf"))
    return items["gpu"] + items["disk"] + items["bwu"] + items["bwd"]


def charge_record(inst: Instance, start: float, end: float) -> dict[str, Any] | None:
    """``inst``'s line in ``GET /charges/`` over [start, end]; None if it cost nothing."""
    items = charges_between(inst, start, end)
    amount = items["gpu"] + items["disk"] + items["bwu"] + items["bwd"]
    if amount <= 0:
        return None
    return {
        "start": start,
        "end": end,
        "type": "instance",
        "source": f"instance-{inst['id']}",
        "description": f"Instance {inst['id']} Charges",
        "amount": round(amount, 6),
        "metadata": {"label": inst.get("label"), "template_id": None},
        "items": [
            {"type": "gpu", "description": f"{items['gpu_hours']:.3f} hours of GPU", "amount": round(items["gpu"], 6)},
            {"type": "disk", "description": "disk storage", "amount": round(items["disk"], 6)},
            {"type": "bwu", "description": "upload bandwidth", "amount": round(items["bwu"], 6)},
            {"type": "bwd", "description": "download bandwidth", "amount": round(items["bwd"], 6)},
        ],
    }
