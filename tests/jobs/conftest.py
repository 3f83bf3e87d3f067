"""Fixtures for jobs: a sim client whose controller (a real process, started by the first
submit) polls often and recovers at once; at the end, the controller stopped and nothing
left billing."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from vastnb import Client
from vastnb.jobs.controller import ControllerSettings, Timing
from vastnb.lifecycle.launch import LaunchPolicy
from vastnb.sim import SimConfig

FAST_SIM = SimConfig(create_delay=0.1, load_delay=0.2, schedule_delay=0.1)
FAST_POLICY = LaunchPolicy(poll=0.05, connect_deadline=30.0)
FAST_TIMING = Timing(poll_s=0.25, lost_after_s=8.0, resume_wait_s=0.0, backoff_s=0.1, backoff_max_s=0.5)
FAST_CONTROLLER = ControllerSettings(timing=FAST_TIMING, tick_s=0.1, idle_exit_s=120.0)


def billing(client: Client) -> list[int]:
    """Ids of the simulated instances that still exist (and so still bill)."""
    assert client.sim is not None
    return [int(i["id"]) for i in client.sim.market.instances()]


def wait_for(what: Callable[[], object], timeout: float = 60.0, message: str = "") -> object:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = what()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout} s waiting for {message or what}")


@pytest.fixture
def home(isolated: Path) -> Path:
    return isolated / "vastnb"


@pytest.fixture
def jobs_client(home: Path) -> Iterator[Callable[..., Client]]:
    """``jobs_client(**Client kwargs)``: sim clients on this test's VASTNB_HOME. At the end
    the controller is stopped and every simulated instance destroyed."""
    made: list[Client] = []

    def make(**kwargs: object) -> Client:
        kwargs.setdefault("sim_config", FAST_SIM)
        kwargs.setdefault("launch_policy", FAST_POLICY)
        kwargs.setdefault("controller", FAST_CONTROLLER)
        client = Client(backend="sim", home=home, **kwargs)  # type: ignore[arg-type]
        made.append(client)
        return client

    yield make
    if made:
        made[0].controller.stop(timeout=30)
        market = made[0].sim.market  # type: ignore[union-attr]
        for inst in market.instances():
            market.destroy(int(inst["id"]))
    for client in made:
        client.close()


@pytest.fixture
def vast(jobs_client: Callable[..., Client]) -> Client:
    return jobs_client()
