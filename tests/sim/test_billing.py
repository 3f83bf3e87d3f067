"""Per-second billing as Vast charges it (docs.vast.ai, billing): GPU while running, disk from creation in
every state but offline, bandwidth per GB, the balance going down, and $0 stopping everything."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from vastnb.sim import Market, SimConfig, SimError

from .conftest import BOOT, CONFIG, one_gpu_offers, rent

HOUR = 3600.0


def items(market: Market, iid: int, start: float, end: float) -> dict[str, float]:
    """Dollars per item type for ``iid`` over [start, end] (zeros if it has no record)."""
    out = {"gpu": 0.0, "disk": 0.0, "bwu": 0.0, "bwd": 0.0, "amount": 0.0}
    for record in market.charges(start, end):
        if record["source"] == f"instance-{iid}":
            out.update({item["type"]: item["amount"] for item in record["items"]}, amount=record["amount"])
    return out


def disk_dph(inst: dict[str, Any]) -> float:
    return inst["disk_space"] * inst["storage_cost"] / 720


@pytest.fixture
def booted(market: Market) -> tuple[int, float]:
    """An instance run for one hour after boot: (id, created_at)."""
    iid = rent(market)
    market.advance(BOOT + HOUR)
    return iid, market.show(iid)["start_date"]


def test_no_gpu_charge_while_creating_or_loading(market: Market, booted: tuple[int, float]) -> None:
    iid, t0 = booted
    inst = market.show(iid)
    boot = items(market, iid, t0, t0 + BOOT)
    assert boot["gpu"] == 0
    assert boot["disk"] == pytest.approx(disk_dph(inst) * BOOT / HOUR, rel=1e-5, abs=2e-6)
    assert boot["disk"] > 0


def test_gpu_charge_while_running_at_dph_base(market: Market, booted: tuple[int, float]) -> None:
    iid, t0 = booted
    inst = market.show(iid)
    run = items(market, iid, t0 + BOOT, t0 + BOOT + HOUR)
    assert run["gpu"] == pytest.approx(inst["dph_base"], rel=1e-5, abs=2e-6)
    assert run["disk"] == pytest.approx(disk_dph(inst), rel=1e-5, abs=2e-6)
    assert run["amount"] == pytest.approx(run["gpu"] + run["disk"], abs=1e-5)
    assert inst["dph_total"] == pytest.approx(inst["dph_base"] + disk_dph(inst), rel=1e-5)
    # The balance went down by everything charged so far.
    total = items(market, iid, t0, market.now())["amount"]
    assert market.user()["balance"] == pytest.approx(CONFIG.starting_credit - total, abs=1e-4)
    assert market.user()["credit"] == market.user()["balance"]


def test_bid_instances_pay_their_bid(market: Market) -> None:
    offer = one_gpu_offers(market)[0]
    bid = round(offer["min_bid"] * 1.25, 4)
    iid = rent(market, offer, price=bid)
    market.advance(BOOT + HOUR)
    t0 = market.show(iid)["start_date"]
    assert items(market, iid, t0 + BOOT, t0 + BOOT + HOUR)["gpu"] == pytest.approx(bid, rel=1e-5, abs=2e-6)


def test_disk_keeps_billing_while_stopped_but_not_offline(market: Market) -> None:
    iid = rent(market)
    market.advance(BOOT + HOUR)
    inst = market.show(iid)
    t0 = inst["start_date"]
    market.set_state(iid, "stopped")
    t_stop = market.now()
    market.advance(2 * HOUR)
    stopped = items(market, iid, t_stop + 1, t_stop + 1 + HOUR)
    assert stopped["gpu"] == 0
    assert stopped["disk"] == pytest.approx(disk_dph(inst), rel=1e-5, abs=2e-6)

    market.set_status(iid, "offline")
    t_off = market.now()
    before = market.user()["balance"]
    market.advance(5 * HOUR)
    assert items(market, iid, t_off + 1, t_off + 4 * HOUR)["amount"] == 0
    assert market.user()["balance"] == pytest.approx(before, abs=1e-6)
    assert items(market, iid, t0, t_off)["amount"] > 0


@pytest.mark.parametrize("status", ["exited", "unknown"])
def test_exited_and_unknown_bill_disk_only(market: Market, status: str) -> None:
    iid = rent(market)
    market.advance(BOOT + 1)
    market.set_status(iid, status)
    t = market.now()
    market.advance(HOUR + 10)
    window = items(market, iid, t + 1, t + 1 + HOUR)
    assert window["gpu"] == 0 and window["disk"] == pytest.approx(disk_dph(market.show(iid)), rel=1e-5, abs=2e-6)


def test_bandwidth_is_billed_per_gb_in_any_state(market: Market) -> None:
    offers = [o for o in one_gpu_offers(market, 40) if o["inet_up_cost"] > 0 and o["inet_down_cost"] > 0]
    offer = offers[0]
    iid = rent(market, offer)
    before = market.user()["balance"]
    market.record_traffic(iid, up_bytes=2 * 10**9, down_bytes=10 * 10**9)  # while still creating
    t = market.now()
    charged = items(market, iid, t - 0.5, t + 0.5)
    assert charged["bwu"] == pytest.approx(2 * offer["inet_up_cost"])
    assert charged["bwd"] == pytest.approx(10 * offer["inet_down_cost"])
    expected = charged["bwu"] + charged["bwd"]
    assert before - market.user()["balance"] == pytest.approx(expected, abs=1e-4)
    with pytest.raises(SimError):
        market.record_traffic(123, up_bytes=1)


def test_balance_reaching_zero_stops_everything_at_that_moment(tmp_path: Path) -> None:
    credit = 1.0
    market = Market(tmp_path, SimConfig(starting_credit=credit, create_delay=10.0, load_delay=20.0))
    first, second = one_gpu_offers(market, 2)
    ids = [rent(market, first), rent(market, second)]
    insts = [market.show(i) for i in ids]
    t0 = min(i["start_date"] for i in insts)
    market.advance(BOOT)
    # Work out when $1 runs out: disk from creation, GPUs from the end of loading.
    burn = sum(i["dph_base"] + disk_dph(i) for i in insts) / HOUR
    boot_cost = sum(disk_dph(i) for i in insts) * BOOT / HOUR
    t_zero = insts[0]["start_date"] + BOOT + (credit - boot_cost) / burn
    assert t_zero - t0 < 100 * HOUR  # it runs out within the test's horizon

    market.advance(100 * HOUR)
    for iid in ids:
        inst = market.show(iid)
        assert (inst["actual_status"], inst["intended_status"]) == ("stopped", "stopped")
        assert "balance" in inst["status_msg"]
    charged = sum(items(market, i, t0 - 1, t_zero)["amount"] for i in ids)
    assert charged == pytest.approx(credit, abs=0.01)
    # No GPU second after the stop; the disks keep billing, so the balance goes below zero.
    after = [items(market, i, t_zero + 1, market.now()) for i in ids]
    assert all(a["gpu"] == 0 and a["disk"] > 0 for a in after)
    assert market.user()["balance"] < 0
    with pytest.raises(SimError) as err:
        market.set_state(ids[0], "running")
    assert err.value.status == 400
    market.set_balance(10)
    market.set_state(ids[0], "running")
    market.advance(CONFIG.schedule_delay + CONFIG.load_delay + 30)
    assert market.show(ids[0])["actual_status"] == "running"


def test_balance_set_to_zero_stops_running_instances(market: Market) -> None:
    iid = rent(market)
    market.advance(BOOT + 1)
    market.set_balance(0)
    market.advance(60)
    assert market.show(iid)["actual_status"] == "stopped"


def test_balance_at_zero_keeps_a_preempted_bid_from_resuming(market: Market) -> None:
    offer = one_gpu_offers(market)[0]
    iid = rent(market, offer, price=offer["min_bid"])
    market.advance(BOOT + 1)
    market.preempt(iid, resume_after=60)
    market.set_balance(0)
    market.advance(3600)
    inst = market.show(iid)
    assert inst["actual_status"] == "stopped"
    assert items(market, iid, inst["start_date"] + BOOT + 10, market.now())["gpu"] == 0


def test_charge_windows_cut_segments(market: Market, booted: tuple[int, float]) -> None:
    iid, t0 = booted
    inst = market.show(iid)
    run_start = t0 + BOOT
    whole = items(market, iid, t0, run_start + HOUR)
    halves = [items(market, iid, t0, run_start + HOUR / 2), items(market, iid, run_start + HOUR / 2, run_start + HOUR)]
    assert whole["gpu"] == pytest.approx(halves[0]["gpu"] + halves[1]["gpu"], rel=1e-9)
    assert halves[0]["gpu"] == pytest.approx(inst["dph_base"] / 2, rel=1e-5, abs=2e-6)
    # A window straddling the start of running holds only the running part's GPU time.
    straddle = items(market, iid, run_start - 600, run_start + 600)
    assert straddle["gpu"] == pytest.approx(inst["dph_base"] * 600 / HOUR, rel=1e-5, abs=2e-6)
    # Nothing before creation, nothing in the far future.
    assert items(market, iid, t0 - 10 * HOUR, t0)["amount"] == 0
    assert market.charges(t0 + 100 * HOUR, t0 + 200 * HOUR) == []
    (record,) = market.charges(t0, run_start + HOUR)
    assert record["type"] == "instance" and record["source"] == f"instance-{iid}"
    assert {item["type"] for item in record["items"]} == {"gpu", "disk", "bwu", "bwd"}
    assert record["start"] == t0 and record["end"] == run_start + HOUR


def test_destroyed_instances_keep_their_charges(market: Market) -> None:
    iid = rent(market, label="gone-soon")
    market.advance(BOOT + HOUR)
    t0 = market.show(iid)["start_date"]
    market.destroy(iid)
    t_end = market.now()
    balance = market.user()["balance"]
    market.advance(5 * HOUR)
    assert market.user()["balance"] == pytest.approx(balance, abs=1e-9)  # billing stopped
    record = items(market, iid, t0, t_end + 5 * HOUR)
    assert record["gpu"] > 0 and record["amount"] == pytest.approx(CONFIG.starting_credit - balance, abs=1e-4)
    assert items(market, iid, t_end + 1, t_end + 5 * HOUR)["amount"] == 0
    (full,) = market.charges(t0, t_end)
    assert full["metadata"]["label"] == "gone-soon"


def test_outbid_instance_bills_disk_from_creation(market: Market) -> None:
    offer = one_gpu_offers(market)[0]
    with pytest.raises(SimError) as err:
        market.create(offer["id"], {"image": "x", "disk": 50, "price": offer["min_bid"] / 2})
    iid = err.value.extra["new_contract"]
    market.advance(HOUR)
    inst = market.show(iid)
    window = items(market, iid, inst["start_date"], inst["start_date"] + HOUR)
    assert window["gpu"] == 0 and window["disk"] == pytest.approx(disk_dph(inst), rel=1e-5, abs=2e-6)
