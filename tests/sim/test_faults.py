"""The faults a job controller has to survive, injected on purpose: being outbid by another
renter, a worker that dies on a box that still answers the API, and an image pull that
never ends. Each through the market and through its ``/_sim/`` route.

The worker tests start real worker processes (over the sim backend's local transport, as
the orchestrator does) and end them afterwards.
"""

from __future__ import annotations

import contextlib
import math
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from offload.conftest import daemon_pids, end_processes

from vastnb.backends.local import local_transport
from vastnb.base.procs import alive, process_token
from vastnb.offload import Session
from vastnb.sim import Market, SimConfig, SimError, Simulator
from vastnb.sim.routes import SimAPI

from .conftest import BOOT, CONFIG, call, one_gpu_offers, rent

V0 = "/api/v0"
LONG = 3600.0  # far past every delay of CONFIG


def states(inst: dict[str, Any]) -> tuple[str, str, str, str]:
    return inst["actual_status"], inst["intended_status"], inst["cur_state"], inst["next_state"]


def ceil_cent_tenth(value: float) -> float:
    """``value`` rounded up to $0.001."""
    return math.ceil(round(value * 1000, 6)) / 1000


def running_bid(market: Market, factor: float = 1.2) -> tuple[int, dict[str, Any]]:
    """A running interruptible instance bidding ``factor`` times its offer's minimum; (id, offer)."""
    offer = one_gpu_offers(market)[0]
    iid = rent(market, offer, price=round(offer["min_bid"] * factor, 4))
    market.advance(BOOT + 1)
    assert market.show(iid)["actual_status"] == "running"
    return iid, offer


def error_of(fn: Any, *args: Any, **kwargs: Any) -> SimError:
    with pytest.raises(SimError) as caught:
        fn(*args, **kwargs)
    return caught.value


# -- outbid ---------------------------------------------------------------------------------------


def test_outbid_raises_the_minimum_bid_and_stops_the_instance_until_its_bid_wins(market: Market) -> None:
    iid, offer = running_bid(market)
    bid = market.show(iid)["dph_base"]
    price = market.outbid(iid)
    assert price == ceil_cent_tenth(bid * 1.25) and price > bid
    inst = market.show(iid)
    assert states(inst) == ("stopped",) * 4
    assert inst["status_msg"] == f"outbid: another renter bid ${price:.4f}/h, above your ${bid:.4f}/h"
    assert inst["min_bid"] == price and inst["dph_base"] == bid

    market.advance(10 * 86_400)  # no automatic resume: the other renter stays
    assert states(market.show(iid)) == ("stopped",) * 4
    market.change_bid(iid, price)  # outbid them back
    market.advance(CONFIG.schedule_delay + CONFIG.load_delay + 1)
    assert states(market.show(iid)) == ("running",) * 4

    # The offer's minimum bid stays raised: a new bid at the old price is refused.
    market.destroy(iid)
    err = error_of(market.create, offer["id"], {"image": "x", "price": bid})
    assert err.status == 400 and err.code == "invalid_price" and f"${price:.4f}/h" in err.msg


def test_outbid_with_resume_after_ends_when_the_other_renter_leaves(market: Market) -> None:
    iid, _ = running_bid(market)
    prior = market.show(iid)["min_bid"]
    price = market.outbid(iid, price=5.0, resume_after=600)
    assert price == 5.0
    assert market.show(iid)["status_msg"].startswith("outbid: another renter bid $5.0000/h, above your $")
    market.advance(599)
    assert market.show(iid)["actual_status"] == "stopped"
    market.advance(2)
    inst = market.show(iid)
    assert inst["actual_status"] == "loading" and inst["min_bid"] == prior
    market.advance(CONFIG.load_delay)
    assert states(market.show(iid)) == ("running",) * 4


def test_outbid_refuses_on_demand_instances_and_bad_prices(market: Market) -> None:
    on_demand = rent(market, one_gpu_offers(market, 2)[1])
    err = error_of(market.outbid, on_demand)
    assert err.status == 400 and "on-demand" in err.msg
    iid, _ = running_bid(market)
    bid = market.show(iid)["dph_base"]
    err = error_of(market.outbid, iid, price=bid)
    assert err.status == 400 and err.msg.startswith("price must be above") and f"${bid:.4f}/h" in err.msg
    for bad in ("cheap", -1, float("nan"), 1e9, True):
        err = error_of(market.outbid, iid, price=bad)
        assert err.status == 400 and err.msg.startswith("price must be a number"), err.msg
    err = error_of(market.outbid, iid, resume_after=-5)
    assert err.status == 400 and err.msg.startswith("resume_after must be a number")
    assert error_of(market.outbid, 1).status == 404
    assert states(market.show(iid)) == ("running",) * 4  # nothing refused changed anything


def test_outbidding_a_user_stopped_bid_does_not_start_it(market: Market) -> None:
    iid, _ = running_bid(market)
    market.set_state(iid, "stopped")
    market.outbid(iid, resume_after=10)
    market.advance(LONG)
    inst = market.show(iid)
    assert inst["actual_status"] == "stopped" and inst["status_msg"] == "stopped by user"


# -- stalled image pulls --------------------------------------------------------------------------


def test_a_stalled_instance_stays_loading_until_destroyed(market: Market, tmp_path: Path) -> None:
    market.stall_loading(1)
    with Market(tmp_path, CONFIG).store.transaction() as state:  # the count is in the state document
        assert state["stall_loading"] == 1
    first, second = one_gpu_offers(market, 2)
    stalled, normal = rent(market, first), rent(market, second)
    market.advance(LONG)
    inst = market.show(stalled)
    assert inst["actual_status"] == "loading" and inst["intended_status"] == "running"
    assert inst["status_msg"].startswith("Pulling image")
    assert market.show(normal)["actual_status"] == "running"  # only the next one stalls

    market.set_state(stalled, "stopped")  # a restart pulls again, and never finishes either
    market.set_state(stalled, "running")
    market.advance(LONG)
    assert market.show(stalled)["actual_status"] == "loading"
    market.destroy(stalled)
    assert market.show(stalled) is None


def test_stall_loading_counts_instances_and_zero_cancels(market: Market) -> None:
    market.stall_loading(2)
    ids = [rent(market, o) for o in one_gpu_offers(market, 3)]
    market.advance(LONG)
    assert [market.show(i)["actual_status"] for i in ids] == ["loading", "loading", "running"]
    market.stall_loading(5)
    market.stall_loading(0)
    later = rent(market, market.search({"num_gpus": {"eq": 1}, "limit": 1})[0])
    market.advance(LONG)
    assert market.show(later)["actual_status"] == "running"
    for bad in (-1, 1.5, True, "2", 10**6):
        err = error_of(market.stall_loading, bad)
        assert err.status == 400 and err.msg.startswith("count must be a whole number from 0 to"), err.msg


# -- a dead worker --------------------------------------------------------------------------------


@contextlib.contextmanager
def worker_on(market: Market, instance_id: int) -> Iterator[int]:
    """Connect to running instance ``instance_id``'s box (which starts its worker); the
    worker daemon's pid. Its processes are ended afterwards."""
    assert market.boxes is not None
    box = market.boxes.local(instance_id)
    session = Session(local_transport(box), on_output=lambda stream, text: None, connect_timeout=20)
    try:
        pid = session.call(os.getpid)
        assert int((box.root / "daemon.pid").read_text()) == pid
        yield pid
    finally:
        with contextlib.suppress(Exception):
            session.close()
        end_processes(box.root, grace=0.0)


@pytest.fixture
def quick(tmp_path: Path) -> Iterator[Market]:
    """A market whose instances run as soon as they are created; destroyed afterwards."""
    made = Market(tmp_path / "quick", SimConfig(create_delay=0.0, load_delay=0.0))
    yield made
    for inst in made.instances():  # with their worker processes
        made.destroy(int(inst["id"]))


def test_kill_worker_leaves_the_instance_running_and_billing_with_its_worker_dead(quick: Market) -> None:
    iid = rent(quick)
    quick.advance(1)
    assert quick.boxes is not None
    root = quick.boxes.local(iid).root
    with worker_on(quick, iid) as pid:
        token = process_token(pid)
        assert quick.kill_worker(iid) == pid
        assert not alive(pid, token)
        time.sleep(0.3)
        assert daemon_pids(root, ("daemon",)) == []  # nothing on the box started another one
        inst = quick.show(iid)
        assert states(inst) == ("running",) * 4 and inst["status_msg"] == "success, running"
        balance = quick.user()["balance"]
        quick.advance(LONG)
        assert quick.show(iid)["actual_status"] == "running"
        assert quick.user()["balance"] < balance - 0.9 * inst["dph_base"]  # an hour of GPU billed
        err = error_of(quick.kill_worker, iid)
        assert err.status == 400 and "no live worker" in err.msg
    with worker_on(quick, iid) as again:  # a new connection starts a new worker
        assert again != pid and alive(again, None)


def test_kill_worker_refuses_what_has_no_live_worker(quick: Market, tmp_path: Path) -> None:
    iid = rent(quick)
    quick.advance(1)
    err = error_of(quick.kill_worker, iid)  # running, but nobody has connected
    assert err.status == 400 and "no live worker" in err.msg
    quick.set_state(iid, "stopped")
    err = error_of(quick.kill_worker, iid)
    assert err.status == 400 and "is stopped, not running" in err.msg
    assert error_of(quick.kill_worker, 1).status == 404
    memory = Market(None, SimConfig(create_delay=0.0, load_delay=0.0))
    other = rent(memory)
    memory.advance(1)
    err = error_of(memory.kill_worker, other)
    assert err.status == 400 and "has no machine" in err.msg


# -- the routes -----------------------------------------------------------------------------------


def test_fault_routes_need_the_key(api: SimAPI) -> None:
    for path, body in (("/_sim/outbid/1", {}), ("/_sim/kill-worker/1", {}), ("/_sim/stall-loading", {"count": 1})):
        assert call(api, "POST", path, body).status == 403
        assert call(api, "POST", path, body, key="wrong").status == 401


def test_outbid_route(client: httpx.Client, sim: Simulator) -> None:
    iid, _ = running_bid(sim.market)
    bid = sim.market.show(iid)["dph_base"]
    for bad, says in (
        ({"price": "cheap"}, "price must be a number"),
        ({"price": bid / 2}, "price must be above"),
        ({"resume_after": -1}, "resume_after must be a number"),
        ({"colour": "red"}, "unknown field 'colour'"),
    ):
        r = client.post(f"/_sim/outbid/{iid}", json=bad)
        assert r.status_code == 400 and r.json()["error"] == "invalid_args" and says in r.json()["msg"], r.text
    assert client.post(f"/_sim/outbid/{iid}", json=[1]).status_code == 400
    assert client.post("/_sim/outbid/1").status_code == 404

    r = client.post(f"/_sim/outbid/{iid}", json={"price": 9.5, "resume_after": 30})
    assert r.json() == {"success": True, "min_bid": 9.5}
    inst = client.get(f"{V0}/instances/{iid}/").json()["instances"]
    assert states(inst) == ("stopped",) * 4 and inst["status_msg"].startswith("outbid: another renter bid $9.5000/h")
    client.post("/_sim/advance", json={"seconds": 31 + CONFIG.load_delay})
    assert client.get(f"{V0}/instances/{iid}/").json()["instances"]["actual_status"] == "running"

    r = client.post(f"/_sim/outbid/{iid}")  # no body: the default price, no resume
    assert r.json() == {"success": True, "min_bid": ceil_cent_tenth(bid * 1.25)}
    client.post("/_sim/advance", json={"seconds": LONG})
    inst = client.get(f"{V0}/instances/{iid}/").json()["instances"]
    assert states(inst) == ("stopped",) * 4 and inst["status_msg"].startswith("outbid: another renter bid $")

    on_demand = rent(sim.market, one_gpu_offers(sim.market)[0])
    r = client.post(f"/_sim/outbid/{on_demand}")
    assert r.status_code == 400 and "on-demand" in r.json()["msg"]


def test_stall_loading_route(client: httpx.Client, sim: Simulator) -> None:
    for bad, says in (
        ({"count": -1}, "count must be a whole number"),
        ({"count": "2"}, "count must be a whole number"),
        ({"count": 1, "times": 2}, "unknown field 'times'"),
    ):
        r = client.post("/_sim/stall-loading", json=bad)
        assert r.status_code == 400 and says in r.json()["msg"], r.text
    assert client.post("/_sim/stall-loading", json={"count": 1}).json() == {"success": True}
    offer = one_gpu_offers(sim.market)[0]
    iid = client.put(f"{V0}/asks/{offer['id']}/", json={"image": "vastai/base", "disk": 16}).json()["new_contract"]
    client.post("/_sim/advance", json={"seconds": LONG})
    assert client.get(f"{V0}/instances/{iid}/").json()["instances"]["actual_status"] == "loading"
    assert client.post("/_sim/stall-loading").json() == {"success": True}  # no body: one instance
    with sim.market.store.transaction() as state:
        assert state["stall_loading"] == 1


def test_kill_worker_route(client: httpx.Client, sim: Simulator) -> None:
    iid = rent(sim.market)
    r = client.post(f"/_sim/kill-worker/{iid}")
    assert r.status_code == 400 and "not started yet, not running" in r.json()["msg"]
    client.post("/_sim/advance", json={"seconds": BOOT + 1})
    try:
        with worker_on(sim.market, iid) as pid:
            token = process_token(pid)
            assert client.post(f"/_sim/kill-worker/{iid}", json={"signal": 9}).status_code == 400
            assert client.post(f"/_sim/kill-worker/{iid}").json() == {"success": True, "pid": pid}
            assert not alive(pid, token)
            assert client.get(f"{V0}/instances/{iid}/").json()["instances"]["actual_status"] == "running"
            again = client.post(f"/_sim/kill-worker/{iid}")
            assert again.status_code == 400 and "no live worker" in again.json()["msg"]
    finally:
        sim.market.destroy(iid)
    assert client.post("/_sim/kill-worker/1").status_code == 404


# -- the simulator's shortcuts --------------------------------------------------------------------


def test_simulator_shortcuts_reach_the_market(sim: Simulator) -> None:
    iid, _ = running_bid(sim.market)
    sim.preempt(iid, resume_after=None)
    assert sim.market.show(iid)["status_msg"].startswith("outbid")
    price = sim.outbid(iid, price=7.0)
    assert price == 7.0 and "$7.0000/h" in sim.market.show(iid)["status_msg"]
    sim.set_status(iid, "offline")
    assert sim.market.show(iid)["actual_status"] == "offline"
    sim.stall_loading(0)
    with pytest.raises(SimError):
        sim.kill_worker(iid)
