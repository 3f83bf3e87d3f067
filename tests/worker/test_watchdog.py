"""The box watches itself: vastnb_worker.watchdog inside a real worker daemon.

Each test runs a real daemon over ``LocalTransport`` and arms it, through
``session.control(watchdog.arm, ...)``, against the simulator served over HTTP on loopback
(or its ``file://`` spool folder), with the instance's own key, as the orchestrator
does. Limits are a second or two, so the watchdog fires within the test; nothing is
patched, and every wait is a poll with a generous bound.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import stat
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from offload.conftest import Boxes, daemon_pids, end_processes

from vastnb.backends.local import local_transport
from vastnb.errors import RemoteError
from vastnb.offload import Session
from vastnb.sim import Market, SimConfig, Simulator
from vastnb_worker import watchdog

CONFIG = SimConfig(create_delay=0.0, load_delay=0.0)
WAIT = 30.0  # the most any poll waits (seconds); each usually takes one or two


def wait_for(condition: Callable[[], Any], what: str, timeout: float = WAIT) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"still waiting after {timeout:.0f} s for {what}")
        time.sleep(0.05)


class Rented:
    """The simulator served on loopback, and one instance rented on it."""

    def __init__(self, sim: Simulator, url: str) -> None:
        self.sim, self.market, self.url = sim, sim.market, url
        offer = self.market.search({"num_gpus": {"eq": 1}, "order": [["dph_base", "asc"]], "limit": 1})[0]
        created = self.market.create(offer["id"], {"image": "pytorch/pytorch:latest", "disk": 20})
        self.instance_id, self.key = int(created["new_contract"]), str(created["instance_api_key"])
        self.sim.advance(1)  # running: billing GPU time

    def gone(self) -> bool:
        return self.market.show(self.instance_id) is None


@pytest.fixture
def served(tmp_path: Path) -> Iterator[Rented]:
    sim = Simulator(tmp_path / "simhome", CONFIG)
    server = sim.serve("127.0.0.1", 0).start()
    yield Rented(sim, f"{server.url}/api/v0")
    threading.Thread(target=server.stop, daemon=True).start()  # its poll loop need not be waited out


@pytest.fixture
def home(tmp_path: Path) -> Path:
    return tmp_path / "box"  # where Boxes puts a local worker's files


@pytest.fixture
def boxes(tmp_path: Path, home: Path) -> Iterator[Boxes]:
    """Sessions on a local worker in ``home``; its daemon is stopped after the test."""
    made = Boxes(tmp_path)
    yield made
    if daemon_pids(home, ("daemon",)):
        with contextlib.suppress(Exception), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "the worker restarted", after a test killed it
            made.session(made.transport("local")).restart_worker()
    made.cleanup()


@pytest.fixture
def box(boxes: Boxes) -> Session:
    return boxes.session(boxes.transport("local"))


def daemon_log(home: Path) -> str:
    return (home / "daemon.log").read_text(errors="replace")


def test_silence_destroys_the_instance_once_the_last_connection_closes(
    box: Session, served: Rented, home: Path
) -> None:
    status = box.control(watchdog.arm, served.instance_id, served.url, served.key, remaining_s=None, silence_s=1.0)
    assert status["armed"] and status["instance_id"] == served.instance_id
    assert status["deadline"] is None and status["seconds_left"] is None and status["silence_s"] == 1.0
    box.close()  # the orchestrator goes away: the silence clock starts
    wait_for(served.gone, "the instance to be destroyed")
    balance = served.market.user()["balance"]
    served.sim.advance(3600)
    assert served.market.user()["balance"] == balance  # billing stopped
    log = daemon_log(home)
    assert "no orchestrator has been in touch" in log and f"instance {served.instance_id}: destroyed" in log
    assert served.key not in log


def test_an_open_connection_holds_off_the_silence_limit(box: Session, served: Rented, home: Path) -> None:
    box.control(watchdog.arm, served.instance_id, served.url, served.key, remaining_s=None, silence_s=0.5)
    # A task that outlasts the limit many times over, on the open connection.
    box.call(time.sleep, 1.5)
    status = box.control(watchdog.status)
    assert status["fired"] is None and status["silence_left_s"] == 0.5
    assert not served.gone()


def test_arming_is_no_task_and_does_not_wait_for_one(box: Session, served: Rented) -> None:
    busy = box.submit(time.sleep, 300)  # the user's long cell; arming must not wait for it
    status = box.control(watchdog.arm, served.instance_id, served.url, served.key, remaining_s=3600.0, silence_s=600.0)
    assert status["armed"] and status["instance_id"] == served.instance_id
    [listed] = box.tasks()  # the arm call is no task
    assert listed["task"] == busy.id and listed["state"] in ("queued", "running")  # and it did not wait for it
    busy.interrupt()
    with pytest.raises(KeyboardInterrupt):
        busy.result()
    box.control(watchdog.disarm)


def test_the_maximum_duration_fires_while_connected(box: Session, served: Rented) -> None:
    host = served.url.removesuffix("/api/v0")  # as VAST_URL gives it: the box adds /api/v0
    armed = box.control(watchdog.arm, served.instance_id, host, served.key, remaining_s=1.0, silence_s=600.0)
    assert armed["deadline"] == pytest.approx(time.time() + 1.0, abs=30)  # on the box's own clock
    wait_for(served.gone, "the instance to be destroyed")
    status = wait_for(lambda: box.control(watchdog.status)["fired"], "the watchdog's report")
    assert status["result"] == "destroyed" and "maximum duration" in status["reason"] and status["done"]
    assert box.control(watchdog.status)["armed"]  # the same connection is still up and answering


def test_arming_again_replaces_the_configuration(box: Session, served: Rented, home: Path) -> None:
    first = box.control(watchdog.arm, served.instance_id, served.url, served.key, remaining_s=3600.0, silence_s=600.0)
    assert 3500 < first["seconds_left"] <= 3600
    second = box.control(watchdog.arm, served.instance_id, served.url, served.key, remaining_s=None, silence_s=900.0)
    assert second["deadline"] is None and second["silence_s"] == 900.0
    assert box.control(watchdog.status) == {**second, "silence_left_s": 900.0}
    saved = home / watchdog.CONFIG_NAME
    assert stat.S_IMODE(saved.stat().st_mode) == 0o600  # it holds the instance's key
    config = json.loads(saved.read_text())
    assert config["deadline"] is None and config["silence_s"] == 900.0 and config["key"] == served.key
    assert not [p for p in home.iterdir() if p.name.endswith(".tmp")]
    box.control(watchdog.disarm)
    assert not saved.exists() and box.control(watchdog.status)["armed"] is False
    assert not served.gone()


def test_bad_arguments_are_refused_on_the_box(box: Session, served: Rented) -> None:
    for args, kwargs in [
        ((0, served.url, served.key), {"remaining_s": None}),
        ((served.instance_id, "ftp://example.invalid/", served.key), {"remaining_s": None}),
        ((served.instance_id, served.url, ""), {"remaining_s": None}),
        ((served.instance_id, served.url, served.key), {"remaining_s": float("nan")}),
        ((served.instance_id, served.url, served.key), {"remaining_s": None, "silence_s": 0}),
    ]:
        with pytest.raises(RemoteError) as raised:
            box.control(watchdog.arm, *args, **kwargs)
        assert raised.value.remote_type == "ValueError"
    assert box.control(watchdog.status)["armed"] is False


def test_the_watchdog_survives_a_daemon_restart(boxes: Boxes, box: Session, served: Rented, home: Path) -> None:
    armed = box.control(watchdog.arm, served.instance_id, served.url, served.key, remaining_s=3600.0, silence_s=600.0)
    pid = int((home / "daemon.pid").read_text())
    assert daemon_pids(home, ("daemon",)) == [pid]
    os.kill(pid, signal.SIGKILL)  # out of memory, say: no clean exit
    wait_for(lambda: not daemon_pids(home, ("daemon",)), "the daemon to die")
    box.close()
    again = boxes.session(boxes.transport("local"))
    status = again.control(watchdog.status)  # a new daemon, re-armed from its saved configuration
    assert status["armed"] and status["instance_id"] == served.instance_id
    assert status["deadline"] == armed["deadline"] and status["silence_s"] == 600.0
    assert int((home / "daemon.pid").read_text()) != pid
    assert "re-armed after a worker restart" in daemon_log(home)
    # A clean exit takes its pid file away.
    again.restart_worker()
    wait_for(lambda: not (home / "daemon.pid").exists(), "the pid file to go")


def test_the_account_key_never_reaches_the_box(box: Session, served: Rented, home: Path) -> None:
    # The orchestrator hands the box the instance's key, nothing else; the box fires with it.
    box.control(watchdog.arm, served.instance_id, served.url, served.key, remaining_s=0.0)
    wait_for(served.gone, "the instance to be destroyed")
    account_key = served.market.api_key.encode()
    found = []
    for path in home.rglob("*"):
        if path.is_file() and not path.is_symlink():
            data = path.read_bytes()
            if account_key in data:
                found.append(path)
            if served.key.encode() in data and path.name != watchdog.CONFIG_NAME:
                found.append(path)
    assert found == []


def test_retries_through_server_errors(box: Session, served: Rented, home: Path) -> None:
    served.sim.api.faults.inject("status", path=r"/instances/\d+", method="DELETE", status=503, times=2)
    box.control(watchdog.arm, served.instance_id, served.url, served.key, remaining_s=0.0)
    wait_for(served.gone, "the instance to be destroyed")
    log = daemon_log(home)
    assert log.count("HTTP 503") == 2 and f"instance {served.instance_id}: destroyed" in log


def test_a_refused_key_destroys_nothing(box: Session, served: Rented, home: Path) -> None:
    other = Rented(served.sim, served.url)  # a second instance, whose key this box must not use
    box.control(watchdog.arm, served.instance_id, served.url, other.key, remaining_s=0.0)
    fired = wait_for(lambda: box.control(watchdog.status)["fired"], "the watchdog to fire")
    assert fired["result"].startswith("refused: HTTP 401") and not fired["done"]
    assert not served.gone() and not other.gone()


def test_through_the_embedded_simulators_spool(box: Session, tmp_path: Path, home: Path) -> None:
    market = Market(tmp_path / "embedded", CONFIG)
    offer = market.search({"num_gpus": {"eq": 1}, "limit": 1})[0]
    created = market.create(offer["id"], {"image": "pytorch/pytorch:latest", "disk": 20})
    instance_id, key = int(created["new_contract"]), str(created["instance_api_key"])
    url = market.selfdestruct_url()
    assert url and url.startswith("file://")
    box.control(watchdog.arm, instance_id, url, key, remaining_s=0.0)
    fired = wait_for(lambda: box.control(watchdog.status)["fired"], "the watchdog to fire")
    assert fired["result"] == "requested" and fired["done"]
    assert market.show(instance_id) is None  # the market's next transaction carried it out
    assert not list((tmp_path / "embedded" / "sim" / "selfdestruct").iterdir())
    assert key not in daemon_log(home)


def test_a_simulated_box_destroys_itself_and_its_machine_goes(tmp_path: Path) -> None:
    """The sim backend's whole path: a box of the embedded market arms itself with the
    spool URL; the market's next transaction destroys the instance and ends the box."""
    market = Market(tmp_path / "embedded", CONFIG)
    assert market.boxes is not None
    offer = market.search({"num_gpus": {"eq": 1}, "limit": 1})[0]
    created = market.create(offer["id"], {"image": "pytorch/pytorch:latest", "disk": 20})
    instance_id, key = int(created["new_contract"]), str(created["instance_api_key"])
    assert market.show(instance_id)["actual_status"] == "running"  # type: ignore[index]
    home = market.boxes.home(instance_id)
    session = Session(local_transport(market.boxes.local(instance_id)), connect_timeout=20)
    try:
        session.control(watchdog.arm, instance_id, market.selfdestruct_url(), key, remaining_s=None, silence_s=0.5)
        assert (home / "daemon.pid").exists() and daemon_pids(home, ("daemon",))
        session.close()
        wait_for(lambda: market.show(instance_id) is None, "the instance to be destroyed")
        wait_for(lambda: not daemon_pids(home), "the box's processes to end")
        assert not home.exists()  # a destroyed instance's disk is gone
    finally:
        session.close()
        end_processes(home)


def test_only_inside_a_daemon() -> None:
    with pytest.raises(RuntimeError, match="worker daemon"):
        watchdog.status()
