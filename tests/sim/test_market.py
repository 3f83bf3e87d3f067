"""The simulated market: instance lifecycle, offers coming and going, bids, host trouble, and
state that outlives the process, seen the way a Vast client sees it."""

from __future__ import annotations

import subprocess
import sys
import threading
from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest

from vastnb.sim import Market, SimConfig, SimError

from .conftest import BOOT, CONFIG, one_gpu_offers, rent


def states(inst: dict[str, Any]) -> tuple[Any, ...]:
    return inst["actual_status"], inst["intended_status"], inst["cur_state"], inst["next_state"]


def in_market(market: Market, offer_id: int) -> dict[str, Any] | None:
    found = market.search({"id": {"eq": offer_id}, "limit": 5})
    return found[0] if found else None


# -- lifecycle -----------------------------------------------------------------------------------


def test_create_loading_running_shape(market: Market) -> None:
    offer = one_gpu_offers(market)[0]
    result = market.create(
        offer["id"],
        {"image": "vastai/base:latest", "disk": 16, "label": "job-1", "env": {"HF_TOKEN": "x", "-p 8080:8080": "1"}},
    )
    assert set(result) >= {"success", "new_contract", "instance_api_key"} and result["success"] is True
    inst = market.show(result["new_contract"])
    assert inst is not None
    assert states(inst) == (None, "running", "running", "running")
    assert not inst["ports"]  # no ports until running
    assert inst["label"] == "job-1" and inst["image_uuid"] == "vastai/base:latest"
    assert inst["extra_env"] == [["HF_TOKEN", "x"], ["-p 8080:8080", "1"]]
    assert inst["machine_id"] == offer["machine_id"] and inst["num_gpus"] == 1
    assert inst["dph_base"] == offer["dph_base"] and inst["is_bid"] is False
    assert inst["disk_space"] == 16
    # What the API never shows: the simulator's bookkeeping and the instance's own key.
    assert not {"ledger", "events", "traffic", "instance_api_key", "account_keys"} & set(inst)

    market.advance(CONFIG.create_delay + 0.5)
    inst = market.show(result["new_contract"])
    assert inst["actual_status"] == "loading" and not inst["ports"]

    market.advance(CONFIG.load_delay)
    inst = market.show(result["new_contract"])
    assert states(inst) == ("running", "running", "running", "running")
    (binding,) = inst["ports"]["22/tcp"]
    assert set(binding) == {"HostIp", "HostPort"}
    assert isinstance(binding["HostPort"], str) and int(binding["HostPort"]) == inst["ssh_port"]
    assert isinstance(inst["ssh_port"], int) and inst["ssh_host"]
    assert inst["public_ipaddr"] != inst["public_ipaddr"].rstrip()  # trailing whitespace quirk
    assert inst["public_ipaddr"].strip()
    assert inst["uptime_mins"] is not None


def test_stop_then_start_goes_through_scheduling(market: Market) -> None:
    iid = rent(market)
    market.advance(BOOT + 1)
    market.set_state(iid, "stopped")
    inst = market.show(iid)
    assert states(inst) == ("stopped", "stopped", "stopped", "stopped")
    assert not inst["ports"]

    market.set_state(iid, "running")
    inst = market.show(iid)
    assert inst["actual_status"] == "stopped" and inst["intended_status"] == "running"
    assert "scheduling" in inst["status_msg"]
    market.advance(CONFIG.schedule_delay + 1)
    assert market.show(iid)["actual_status"] == "loading"
    market.advance(CONFIG.load_delay)
    assert states(market.show(iid)) == ("running", "running", "running", "running")


def test_stop_while_scheduling_cancels_the_restart(market: Market) -> None:
    iid = rent(market)
    market.advance(BOOT + 1)
    market.set_state(iid, "stopped")
    market.set_state(iid, "running")
    market.set_state(iid, "stopped")
    market.advance(3600)
    assert states(market.show(iid)) == ("stopped", "stopped", "stopped", "stopped")


def test_start_of_a_running_instance_changes_nothing(market: Market) -> None:
    iid = rent(market)
    market.advance(BOOT + 1)
    market.set_state(iid, "running")
    assert market.show(iid)["actual_status"] == "running"
    with pytest.raises(SimError) as err:
        market.set_state(iid, "paused")
    assert err.value.status == 400


def test_destroy_frees_the_offer_and_a_second_destroy_is_404(market: Market) -> None:
    offer = one_gpu_offers(market)[0]
    iid = rent(market, offer)
    assert in_market(market, offer["id"]) is None  # a one-GPU machine, now rented
    market.advance(BOOT + 1)
    market.destroy(iid)
    assert market.show(iid) is None
    assert iid not in [i["id"] for i in market.instances()]
    back = in_market(market, offer["id"])
    assert back is not None and back["rented"] is False
    with pytest.raises(SimError) as err:
        market.destroy(iid)
    assert (err.value.status, err.value.code) == (404, "no_such_instance")
    for action in (lambda: market.set_state(iid, "running"), lambda: market.change_bid(iid, 1.0)):
        with pytest.raises(SimError) as err:
            action()
        assert err.value.code == "no_such_instance"


def _sliced_machine(market: Market) -> tuple[int, dict[int, dict[str, Any]]]:
    """A machine listed as several slices, including a one-GPU slice."""
    by_machine: dict[int, dict[int, dict[str, Any]]] = defaultdict(dict)
    for offer in market.catalogue:
        by_machine[offer["machine_id"]][offer["num_gpus"]] = offer
    for machine_id, sizes in by_machine.items():
        if 1 in sizes and max(sizes) >= 4 and len(sizes) >= 3:
            return machine_id, sizes
    raise AssertionError("the catalogue should list some machines in slices")


def test_renting_a_slice_removes_slices_that_no_longer_fit(market: Market) -> None:
    machine_id, sizes = _sliced_machine(market)
    total = max(sizes)
    before = market.search({"machine_id": {"eq": machine_id}, "limit": 50})
    assert {o["num_gpus"] for o in before} == set(sizes) and not any(o["rented"] for o in before)

    rent(market, sizes[1])
    after = market.search({"machine_id": {"eq": machine_id}, "limit": 50})
    assert {o["num_gpus"] for o in after} == {n for n in sizes if n <= total - 1}
    assert total not in {o["num_gpus"] for o in after}
    assert after and all(o["rented"] is True for o in after)
    with pytest.raises(SimError) as err:
        market.create(sizes[total]["id"], {"image": "x"})
    assert (err.value.status, err.value.code) == (404, "no_such_ask")


def test_taken_offer_cannot_be_created(market: Market) -> None:
    offer = one_gpu_offers(market)[0]
    market.take_offer(offer["id"])
    assert in_market(market, offer["id"]) is None
    with pytest.raises(SimError) as err:
        market.create(offer["id"], {"image": "x"})
    assert (err.value.status, err.value.code) == (404, "no_such_ask")
    assert str(offer["id"]) in err.value.msg
    assert market.instances() == []


def test_unknown_offer_and_bad_payloads(market: Market) -> None:
    with pytest.raises(SimError) as err:
        market.create(1, {"image": "x"})
    assert (err.value.status, err.value.code) == (404, "no_such_ask")
    offer = one_gpu_offers(market)[0]
    for payload in ({}, {"image": "x", "disk": "lots"}, {"image": "x", "disk": 2}, {"image": "x", "price": -1}):
        with pytest.raises(SimError) as err:
            market.create(offer["id"], payload)
        assert err.value.status == 400
    assert market.instances() == []  # nothing half-created
    rent(market, offer, disk="32")  # numbers may come as strings, as Vast accepts


# -- bids ----------------------------------------------------------------------------------------


def test_bid_below_min_bid_creates_a_stopped_instance_and_names_it(market: Market) -> None:
    offer = one_gpu_offers(market)[0]
    low = round(offer["min_bid"] / 2, 4)
    with pytest.raises(SimError) as err:
        market.create(offer["id"], {"image": "x", "price": low})
    assert err.value.status == 400
    iid = err.value.extra["new_contract"]
    inst = market.show(iid)
    assert inst is not None, "the instance exists even though create failed"
    assert states(inst) == ("stopped", "stopped", "stopped", "stopped")
    assert inst["is_bid"] is True and inst["dph_base"] == pytest.approx(low)
    market.advance(3600)
    assert market.show(iid)["actual_status"] == "stopped"

    market.change_bid(iid, offer["min_bid"])
    market.advance(CONFIG.schedule_delay + 1)
    assert market.show(iid)["actual_status"] == "loading"
    market.advance(CONFIG.load_delay)
    inst = market.show(iid)
    assert states(inst) == ("running", "running", "running", "running")
    assert inst["dph_base"] == pytest.approx(offer["min_bid"])


def test_starting_an_outbid_instance_waits_for_a_winning_bid(market: Market) -> None:
    offer = one_gpu_offers(market)[0]
    with pytest.raises(SimError) as err:
        market.create(offer["id"], {"image": "x", "price": offer["min_bid"] / 2})
    iid = err.value.extra["new_contract"]
    market.set_state(iid, "running")
    market.advance(3600)
    assert market.show(iid)["actual_status"] == "stopped"
    market.change_bid(iid, offer["min_bid"] * 1.1)
    market.advance(CONFIG.schedule_delay + CONFIG.load_delay + 1)
    assert market.show(iid)["actual_status"] == "running"


def test_lowering_a_bid_below_min_bid_stops_the_instance(market: Market) -> None:
    offer = one_gpu_offers(market)[0]
    iid = rent(market, offer, price=offer["min_bid"])
    market.advance(BOOT + 1)
    assert market.show(iid)["actual_status"] == "running"
    market.change_bid(iid, offer["min_bid"] / 3)
    assert states(market.show(iid)) == ("stopped", "stopped", "stopped", "stopped")
    with pytest.raises(SimError) as err:
        market.change_bid(iid, 10_000)
    assert err.value.status == 400


def test_change_bid_on_an_on_demand_instance_is_refused(market: Market) -> None:
    iid = rent(market)
    with pytest.raises(SimError) as err:
        market.change_bid(iid, 0.001)
    assert err.value.status == 400
    assert market.show(iid)["is_bid"] is False


def test_preempted_bid_stops_in_all_three_fields_then_resumes(market: Market) -> None:
    offer = one_gpu_offers(market)[0]
    iid = rent(market, offer, price=offer["min_bid"] * 1.2)
    market.advance(BOOT + 1)
    market.preempt(iid, resume_after=600)
    inst = market.show(iid)
    assert states(inst) == ("stopped", "stopped", "stopped", "stopped")
    assert "outbid" in inst["status_msg"]
    market.advance(599)
    assert market.show(iid)["actual_status"] == "stopped"
    market.advance(2)
    assert market.show(iid)["actual_status"] == "loading"
    market.advance(CONFIG.load_delay)
    assert states(market.show(iid)) == ("running", "running", "running", "running")


def test_preempt_without_resume_stays_stopped(market: Market) -> None:
    offer = one_gpu_offers(market)[0]
    iid = rent(market, offer, price=offer["min_bid"])
    market.advance(BOOT + 1)
    market.preempt(iid, resume_after=None)
    market.advance(10 * 86_400)
    assert market.show(iid)["actual_status"] == "stopped"


def test_preempting_a_user_stopped_bid_does_not_start_it(market: Market) -> None:
    offer = one_gpu_offers(market)[0]
    iid = rent(market, offer, price=offer["min_bid"])
    market.advance(BOOT + 1)
    market.set_state(iid, "stopped")
    market.preempt(iid, resume_after=60)
    market.advance(3600)
    assert market.show(iid)["actual_status"] == "stopped"


def test_on_demand_instances_are_not_preempted(market: Market) -> None:
    iid = rent(market)
    market.advance(BOOT + 1)
    with pytest.raises(SimError) as err:
        market.preempt(iid)
    assert err.value.status == 400
    assert market.show(iid)["actual_status"] == "running"


# -- host trouble --------------------------------------------------------------------------------


@pytest.mark.parametrize("status", ["exited", "offline", "unknown"])
@pytest.mark.parametrize("when", [0.0, CONFIG.create_delay + 1, BOOT + 1])
def test_fault_states_stick(market: Market, status: str, when: float) -> None:
    iid = rent(market)
    market.advance(when)
    market.set_status(iid, status)
    for _ in range(3):
        market.advance(86_400)
        inst = market.show(iid)
        assert inst["actual_status"] == status
        assert not inst["ports"]
    with pytest.raises(SimError):
        market.set_state(iid, "running")


def test_set_status_validates_and_can_restore_running(market: Market) -> None:
    iid = rent(market)
    with pytest.raises(ValueError):
        market.set_status(iid, "frozen")
    market.set_status(iid, "offline")
    market.set_status(iid, "running")
    assert states(market.show(iid)) == ("running", "running", "running", "running")
    assert market.show(iid)["ports"]


# -- persistence ---------------------------------------------------------------------------------


def test_second_market_on_the_same_home_sees_and_bills_the_same_instances(tmp_path: Path) -> None:
    one, two = Market(tmp_path, CONFIG), Market(tmp_path, CONFIG)
    assert one.api_key == two.api_key
    iid = rent(one)
    one.advance(BOOT + 1)
    assert two.show(iid)["actual_status"] == "running"
    two.advance(3600)
    assert one.now() == pytest.approx(two.now(), abs=1)
    assert one.user()["balance"] == pytest.approx(two.user()["balance"], abs=1e-4)
    dph = one.show(iid)["dph_total"]
    assert CONFIG.starting_credit - one.user()["balance"] == pytest.approx(dph, rel=0.05)
    # A "restarted kernel": a fresh Market object finds it all again.
    three = Market(tmp_path, CONFIG)
    assert three.show(iid)["actual_status"] == "running"
    three.destroy(iid)
    assert one.show(iid) is None


def test_concurrent_creates_on_one_home_never_share_an_id(tmp_path: Path) -> None:
    offers = one_gpu_offers(Market(tmp_path, CONFIG), 24)
    ids: list[int] = []
    errors: list[BaseException] = []
    lock = threading.Lock()

    def worker(chunk: list[dict[str, Any]]) -> None:
        market = Market(tmp_path, CONFIG)
        try:
            for offer in chunk:
                new = rent(market, offer)
                with lock:
                    ids.append(new)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(offers[i::6],)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert len(ids) == len(set(ids)) == 24
    assert sorted(i["id"] for i in Market(tmp_path, CONFIG).instances()) == sorted(ids)


def test_concurrent_processes_never_share_an_id(tmp_path: Path) -> None:
    offers = one_gpu_offers(Market(tmp_path, CONFIG), 12)
    script = (
        "import sys; from pathlib import Path; from vastnb.sim import Market, SimConfig\n"
        "m = Market(Path(sys.argv[1]), SimConfig(create_delay=10.0, load_delay=20.0, schedule_delay=5.0))\n"
        "for oid in sys.argv[2:]:\n"
        "    print(m.create(int(oid), {'image': 'x'})['new_contract'])\n"
    )
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", script, str(tmp_path), *(str(o["id"]) for o in offers[i::3])],
            stdout=subprocess.PIPE,
            text=True,
        )
        for i in range(3)
    ]
    ids = [int(line) for p in procs for line in p.communicate(timeout=60)[0].split()]
    assert all(p.returncode == 0 for p in procs)
    assert len(ids) == len(set(ids)) == 12
    assert len(Market(tmp_path, CONFIG).instances()) == 12


def test_in_memory_market(tmp_path: Path) -> None:
    market = Market(None, CONFIG)
    iid = rent(market)
    market.advance(BOOT + 1)
    assert market.show(iid)["actual_status"] == "running"
    assert market.user()["balance"] < CONFIG.starting_credit
    assert not any(tmp_path.iterdir())
    # Separate in-memory markets are separate worlds.
    assert Market(None, CONFIG).instances() == []


def test_clock_only_moves_forward(market: Market) -> None:
    t = market.now()
    with pytest.raises(ValueError):
        market.advance(-60)
    market.advance(0)
    assert market.now() >= t


def test_failed_calls_leave_state_unchanged(market: Market) -> None:
    iid = rent(market)
    before = market.show(iid)
    with pytest.raises(SimError):
        market.set_label(iid, "x" * 2000)
    assert market.show(iid)["label"] == before["label"]
    market.set_label(iid, "renamed")
    assert market.show(iid)["label"] == "renamed"


def test_zero_delays_bill_running_from_the_first_second(tmp_path: Path) -> None:
    market = Market(tmp_path, SimConfig(create_delay=0.0, load_delay=0.0))
    iid = rent(market)
    market.advance(3600)
    inst = market.show(iid)
    assert inst["actual_status"] == "running"
    start = inst["start_date"]
    (record,) = market.charges(start, start + 3600)
    gpu = next(item for item in record["items"] if item["type"] == "gpu")
    assert gpu["amount"] == pytest.approx(inst["dph_base"], rel=1e-3)
