"""The boot switch: an instance guards itself from its container's first second.

Every instance vastnb creates carries the boot switch in its ``onstart``; the simulator
runs it as Vast runs onstart (a real background process, with ``CONTAINER_ID`` and
``CONTAINER_API_KEY``), on the simulator's clock. Nothing here is patched: the program
is the one a real box runs, and it destroys its instance through the simulator's spool
folder, or over HTTP with the instance's own key as it would on Vast.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from vastnb import Client
from vastnb.backends.base import BoxOptions
from vastnb.backends.local import local_transport
from vastnb.lifecycle.onstart import LIMIT, boot_switch
from vastnb.offload import Session
from vastnb.sim import Market, SimError, Simulator
from vastnb_worker import watchdog
from vastnb_worker.relay import PID_NAME

from .conftest import FAST_SIM

WAIT = 30.0  # the most any poll waits (seconds)


def wait_for(condition: Callable[[], Any], what: str, timeout: float = WAIT) -> Any:
    deadline = time.monotonic() + timeout
    while not (value := condition()):
        if time.monotonic() > deadline:
            raise AssertionError(f"still waiting after {timeout:.0f} s for {what}")
        time.sleep(0.1)
    return value


@pytest.fixture
def sim(home: Path) -> Iterator[Simulator]:
    simulator = Simulator(home, FAST_SIM)
    yield simulator
    for inst in simulator.market.instances():  # with their processes, boot switches included
        simulator.market.destroy(int(inst["id"]))


def switch_for(market: Market, **config: Any) -> str:
    """The onstart vastnb sends for a simulated instance, with these settings."""
    assert market.boxes is not None
    settings: dict[str, Any] = {"silence_s": 600.0, "max_s": None, **config}
    return boot_switch(
        url=str(market.selfdestruct_url()),
        home=str(market.boxes.root / "{id}"),
        clock=str(market.clock_path),
        **settings,
    )


def rent(market: Market, onstart: str, *, interruptible: bool = False) -> tuple[int, str]:
    """Create an instance with ``onstart`` and let it start; (its id, its own key)."""
    offer = market.search({"num_gpus": {"eq": 1}, "order": [["dph_base", "asc"]], "limit": 1})[0]
    payload: dict[str, Any] = {
        "image": "pytorch/pytorch:latest",
        "disk": 20,
        "label": "vastnb:test:none",
        "onstart": onstart,
    }
    if interruptible:
        payload["price"] = offer["min_bid"] * 1.5
    created = market.create(offer["id"], payload)
    instance_id = int(created["new_contract"])
    market.advance(1)  # loading, then running: the container starts, and its onstart
    on_duty(market, instance_id)
    return instance_id, str(created["instance_api_key"])


def switch_log(market: Market, instance_id: int) -> str:
    assert market.boxes is not None
    try:
        return (market.boxes.home(instance_id) / "bootswitch.log").read_text()
    except FileNotFoundError:
        return ""


def on_duty(market: Market, instance_id: int, times: int = 1) -> None:
    wait_for(
        lambda: switch_log(market, instance_id).count("on duty") >= times, f"the boot switch of {instance_id} to start"
    )


def destroyed_by(market: Market, instance_id: int) -> str:
    wait_for(lambda: market.show(instance_id) is None, f"instance {instance_id} to be destroyed")
    return str(market.destroyed_by(instance_id))


def test_an_instance_no_orchestrator_ever_reached_ends_itself_after_the_silence(sim: Simulator) -> None:
    market = sim.market
    instance_id, _ = rent(market, switch_for(market, silence_s=600.0))
    assert market.show(instance_id) is not None
    market.advance(700)  # nobody connects: the simulated clock passes the silence limit
    assert destroyed_by(market, instance_id).startswith("itself: boot switch: no orchestrator in touch")


def test_the_maximum_duration_counts_from_the_first_boot_across_a_preemption(sim: Simulator) -> None:
    market = sim.market
    instance_id, _ = rent(market, switch_for(market, silence_s=10**7, max_s=100.0), interruptible=True)
    market.advance(50)
    market.preempt(instance_id, resume_after=10)  # outbid: the container stops, its switch with it
    market.advance(11)  # resumed: the container starts again, and its onstart
    on_duty(market, instance_id, times=2)
    market.advance(40)  # 101 s since the first boot, 30 since this one
    assert destroyed_by(market, instance_id) == "itself: boot switch: its maximum duration ran out"


def test_the_worker_takes_over_and_the_switch_takes_back_when_the_worker_dies(sim: Simulator) -> None:
    market = sim.market
    assert market.boxes is not None
    # Short limits, so that this runs in seconds of real time: silence 4 s, beats stale after 1.5 s.
    instance_id, key = rent(market, switch_for(market, silence_s=4.0, beat_s=1.5))
    session = Session(local_transport(market.boxes.local(instance_id)))
    session.call(
        watchdog.arm,
        instance_id,
        market.selfdestruct_url(),
        key,
        remaining_s=None,
        silence_s=4.0,
        clock=str(market.clock_path),
    )
    time.sleep(6.0)  # past the silence limit, with an orchestrator connected: the worker is on duty
    assert market.show(instance_id) is not None, switch_log(market, instance_id)
    daemon = int((market.boxes.home(instance_id) / PID_NAME).read_text().split()[0])
    os.killpg(daemon, signal.SIGKILL)  # the worker dies (out of memory, say): no more beats
    session.close()
    assert destroyed_by(market, instance_id).startswith("itself: boot switch: no orchestrator in touch")


def test_on_duty_the_workers_watchdog_counts_silence_on_the_simulators_clock(sim: Simulator) -> None:
    market = sim.market
    assert market.boxes is not None
    instance_id, key = rent(market, switch_for(market, silence_s=600.0))
    with Session(local_transport(market.boxes.local(instance_id))) as session:
        session.call(
            watchdog.arm,
            instance_id,
            market.selfdestruct_url(),
            key,
            remaining_s=None,
            silence_s=600.0,
            clock=str(market.clock_path),
        )
    market.advance(700)  # the orchestrator left; the simulated clock passes the silence limit
    by = destroyed_by(market, instance_id)
    assert by.startswith("itself: no orchestrator has been in touch"), by  # the worker's, not the boot switch


def test_a_disarmed_watchdog_stands_the_switch_down_too(sim: Simulator) -> None:
    market = sim.market
    assert market.boxes is not None
    instance_id, key = rent(market, switch_for(market, silence_s=4.0))
    with Session(local_transport(market.boxes.local(instance_id))) as session:
        session.call(watchdog.arm, instance_id, market.selfdestruct_url(), key, remaining_s=None, silence_s=4.0)
        session.call(watchdog.disarm)  # the user wants this box to stay
    wait_for(lambda: "standing down" in switch_log(market, instance_id), "the boot switch to stand down")
    market.advance(10**5)
    time.sleep(1.0)
    assert market.show(instance_id) is not None


def test_over_http_the_switch_destroys_with_the_instances_own_key(sim: Simulator) -> None:
    market = sim.market
    assert market.boxes is not None
    server = sim.serve("127.0.0.1", 0).start()
    try:
        onstart = boot_switch(
            url=server.url,
            home=str(market.boxes.root / "{id}"),
            silence_s=600.0,
            max_s=None,
            clock=str(market.clock_path),
        )
        instance_id, _ = rent(market, onstart)
        market.advance(700)
        assert destroyed_by(market, instance_id) == "its own key"  # DELETE /api/v0/instances/{id}/, as on Vast
    finally:
        threading.Thread(target=server.stop, daemon=True).start()


def test_everything_sent_at_create_fits_vasts_limit(sim: Simulator, home: Path) -> None:
    # The longest settings a user may reasonably have still fit, with room to spare.
    long_home = "/" + "/".join(["a-rather-long-folder-name"] * 8) + "/{id}"
    onstart = boot_switch(
        url="https://" + "api." * 20 + "example.com", home=long_home, silence_s=1e9, max_s=1e9, clock="/" + "c" * 200
    )
    assert len(onstart) <= LIMIT - 500
    # What a real launch sends, as the market received it: within the limit, and running.
    with Client(backend="sim", home=home, sim_config=FAST_SIM, box=BoxOptions(silence_s=600.0)) as vast:
        box = vast.launch("dev-test")
        sent = sim.market.show(box.id)["onstart"]  # type: ignore[index]
        assert sent.startswith("nohup python3 ") and len(sent) <= LIMIT
        assert "on duty" in switch_log(sim.market, box.id)
    # And the market refuses what Vast refuses.
    offer = sim.market.search({"limit": 1})[0]
    with pytest.raises(SimError, match="at most 4096 characters"):
        sim.market.create(offer["id"], {"image": "x", "disk": 10, "onstart": "x" * (LIMIT - 10), "args_str": "y" * 11})


def test_a_launch_records_keep_only_once_the_box_is_ready(sim: Simulator, home: Path) -> None:
    with Client(backend="sim", home=home, sim_config=FAST_SIM) as vast:
        rows: list[bool] = []
        box = vast.launch(
            "dev-test",
            keep=True,
            progress=lambda e: rows.append(
                bool(e.instance_id and (s := vast.fleet.store.get(vast.fleet.url, e.instance_id)) and s.keep)
            ),
        )
        assert rows and not any(rows[:-1])  # never kept while the launch could still die
        assert vast.fleet.store.get(vast.fleet.url, box.id).keep  # type: ignore[union-attr]
        box.down()
