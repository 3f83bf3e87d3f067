"""Fixtures for launching on the simulated market: a client whose simulated instances
start in a fraction of a second, and cleanup that leaves no box running."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from vastnb import Client
from vastnb.lifecycle.launch import LaunchEvent, LaunchPolicy
from vastnb.market.retry import RetryPolicy
from vastnb.sim import SimConfig

#: Simulated instances that come up in half a second, through every state.
FAST_SIM = SimConfig(create_delay=0.2, load_delay=0.3, schedule_delay=0.2)
#: Polls often; generous connect deadline (a worker starts in well under a second).
FAST_POLICY = LaunchPolicy(poll=0.05, connect_deadline=30.0)
#: Rate-limit retries that wait milliseconds.
QUICK_RETRY = RetryPolicy(attempts=5, base_delay=0.01, factor=2.0, max_delay=0.1, total=10.0, jitter=0.0)


def billing(client: Client) -> list[int]:
    """Ids of the simulated instances that still exist (and so still bill)."""
    assert client.sim is not None
    return [int(i["id"]) for i in client.sim.market.instances()]


def make_client(home: Path, **kwargs: object) -> Client:
    kwargs.setdefault("sim_config", FAST_SIM)
    kwargs.setdefault("launch_policy", FAST_POLICY)
    kwargs.setdefault("retry", QUICK_RETRY)
    return Client(backend="sim", home=home, **kwargs)  # type: ignore[arg-type]


@pytest.fixture
def home(isolated: Path) -> Path:
    return isolated / "vastnb"


@pytest.fixture
def clients(home: Path) -> Iterator[Callable[..., Client]]:
    """``clients(**Client kwargs)``: sim clients on this test's VASTNB_HOME. Every
    simulated instance left at the end is destroyed (its worker processes with it)."""
    made: list[Client] = []

    def make(**kwargs: object) -> Client:
        client = make_client(home, **kwargs)
        made.append(client)
        return client

    yield make
    if made:
        market = made[0].sim.market  # type: ignore[union-attr]
        for inst in market.instances():
            market.destroy(int(inst["id"]))
    for client in made:
        client.close()


@pytest.fixture
def vast(clients: Callable[..., Client]) -> Client:
    return clients()


class Events(list[LaunchEvent]):
    """A progress callback that records every launch event."""

    def __call__(self, event: LaunchEvent) -> None:
        self.append(event)

    @property
    def stages(self) -> list[str]:
        return [e.stage for e in self]
