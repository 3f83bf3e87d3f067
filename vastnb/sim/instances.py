"""Simulated instances: how one is built from an offer, and how the API shows it.

The shape follows the real ``GET /instances/{id}/`` record, quirks included:
``extra_env`` as ``[key, value]`` pairs, ``ports`` with string HostPorts present only
while running, and addresses that carry stray whitespace.
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping
from typing import Any

from vastnb.sim import billing
from vastnb.sim.overlays import leave_overlays

__all__ = ["new_instance", "to_api"]

Instance = dict[str, Any]

# Fields copied from the offer onto the instance, as Vast does.
_FROM_OFFER = (
    "machine_id",
    "host_id",
    "num_gpus",
    "gpu_name",
    "gpu_arch",
    "gpu_ram",
    "gpu_total_ram",
    "gpu_mem_bw",
    "compute_cap",
    "cuda_max_good",
    "driver_version",
    "cpu_name",
    "cpu_arch",
    "cpu_cores",
    "cpu_cores_effective",
    "cpu_ram",
    "disk_bw",
    "inet_up",
    "inet_down",
    "inet_up_cost",
    "inet_down_cost",
    "pci_gen",
    "pcie_bw",
    "storage_cost",
    "dlperf",
    "total_flops",
    "reliability2",
    "geolocation",
    "static_ip",
    "verification",
    "min_bid",
    "hosting_type",
    "public_ipaddr",
    "direct_port_count",
    "cluster_id",
)


# Bookkeeping the simulator keeps on an instance that the real API does not show.
_INTERNAL = frozenset(
    {
        "ledger",
        "traffic",
        "events",
        "instance_api_key",
        "ssh_keys",
        "account_keys",
        "gpu_dph",
        "disk_gb",
        "image",
        "created_at",
        "started_at",
    }
)


def new_instance(
    offer: Mapping[str, Any],
    payload: Mapping[str, Any],
    *,
    instance_id: int,
    now: float,
    bid: float | None,
    outbid: bool,
    create_delay: float,
    load_delay: float,
) -> Instance:
    """A new instance on ``offer``; stopped at once when ``outbid`` (bid below min_bid)."""
    inst: Instance = {key: offer.get(key) for key in _FROM_OFFER}
    env = payload.get("env") or {}
    inst.update(
        id=instance_id,
        bundle_id=offer["id"],
        label=payload.get("label"),
        image=str(payload.get("image") or ""),
        image_args=list(payload.get("args") or []),
        image_runtype=str(payload.get("runtype") or "ssh"),
        extra_env=[[str(k), str(v)] for k, v in (env.items() if isinstance(env, Mapping) else [])],
        onstart=payload.get("onstart"),
        disk_gb=float(payload.get("disk") or 10.0),
        is_bid=bid is not None,
        gpu_dph=float(bid if bid is not None else offer["dph_base"]),
        instance_api_key=secrets.token_hex(32),
        created_at=now,
        started_at=None,
        ssh_idx=instance_id % 20 + 1,
        ssh_keys=[],
        ledger=[],
        traffic=[],
        events=[],
    )
    if outbid:
        inst.update(actual_status="stopped", intended_status="stopped", cur_state="stopped", next_state="stopped")
        inst["status_msg"] = f"outbid: bid ${bid:.4f}/h is below the minimum ${offer['min_bid']:.4f}/h"
    else:
        inst.update(actual_status=None, intended_status="running", cur_state="running", next_state="running")
        inst["status_msg"] = None
        inst["events"] = [[now + create_delay, "loading"], [now + create_delay + load_delay, "running"]]
    return inst


def to_api(inst: Instance, now: float, ssh_address: tuple[str, int] | None) -> dict[str, Any]:
    """The instance as the real API returns it."""
    out = {k: v for k, v in inst.items() if k not in _INTERNAL}
    disk_dph = inst["disk_gb"] * inst["storage_cost"] / billing.HOURS_PER_MONTH
    running = inst["actual_status"] == "running"
    host, port = ssh_address or (f"ssh{inst['ssh_idx']}.sim.vastnb.invalid", 20000 + inst["id"] % 40000)
    out.update(
        image_uuid=inst["image"],
        gpu_totalram=inst.get("gpu_total_ram"),  # sic: the instance record's spelling
        disk_space=inst["disk_gb"],
        dph_base=inst["gpu_dph"],
        dph_total=round(inst["gpu_dph"] + disk_dph, 6),
        storage_total_cost=round(disk_dph, 6),
        # Bandwidth billed so far, GB, up and down: the counters a ledger reads.
        inet_up_billed=round(sum(t[1] for t in inst["traffic"]), 9),
        inet_down_billed=round(sum(t[2] for t in inst["traffic"]), 9),
        start_date=inst["created_at"],
        duration=max(0.0, now - inst["created_at"]),
        uptime_mins=round((now - inst["started_at"]) / 60, 2) if running and inst["started_at"] else None,
        ssh_host=host,
        ssh_port=port,
        # The real API pads these with whitespace; clients must strip.
        public_ipaddr=(host if ssh_address else str(inst.get("public_ipaddr") or "")) + "\n",
        local_ipaddrs=f"10.{inst['id'] % 250}.{inst['ssh_idx']}.2 172.17.0.1 \n",
        ports={"22/tcp": [{"HostIp": "0.0.0.0", "HostPort": str(port)}]} if running else {},
        direct_port_start=port if running else -1,
        direct_port_end=port if running else -1,
    )
    return out


def retire(state: dict[str, Any], inst: Instance, when: float, *, by: str) -> None:
    """Remove a destroyed instance, keeping what ``/charges/`` still reports about it,
    and who destroyed it (``by``)."""
    state.setdefault("destroyed", {})[str(inst["id"])] = {
        "id": inst["id"],
        "label": inst["label"],
        "ledger": inst["ledger"],
        "traffic": inst["traffic"],
        "inet_up_cost": inst["inet_up_cost"],
        "inet_down_cost": inst["inet_down_cost"],
        "destroyed_at": when,
        "by": by,
    }
    del state["instances"][str(inst["id"])]
    leave_overlays(state, inst["id"])
