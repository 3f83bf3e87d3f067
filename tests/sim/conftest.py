"""Fixtures for the simulated market and its HTTP face.

Everything goes through the simulator's public surface: ``Market`` methods, ``SimAPI.handle``,
and httpx against the in-process transport or a real loopback server. Time is simulated
(``advance``); nothing sleeps for it.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import httpx
import pytest

from vastnb.sim import Market, SimConfig, Simulator
from vastnb.sim.routes import SimAPI, SimRequest, SimResponse

# Short, distinct delays so that each phase can be stepped into on its own.
CONFIG = SimConfig(seed=0, offers=600, starting_credit=25.0, create_delay=10.0, load_delay=20.0, schedule_delay=5.0)
BOOT = CONFIG.create_delay + CONFIG.load_delay


@pytest.fixture
def market(tmp_path: Path) -> Market:
    return Market(tmp_path, CONFIG)


@pytest.fixture
def sim(tmp_path: Path) -> Simulator:
    return Simulator(tmp_path, CONFIG)


@pytest.fixture
def api(sim: Simulator) -> SimAPI:
    return sim.api


@pytest.fixture
def key(sim: Simulator) -> str:
    return sim.market.api_key


@pytest.fixture(params=["in-process", "loopback"])
def client(request: pytest.FixtureRequest, sim: Simulator, key: str) -> Iterator[httpx.Client]:
    """An authenticated httpx client on the simulator: in process, or over real HTTP."""
    headers = {"Authorization": f"Bearer {key}"}
    if request.param == "in-process":
        with httpx.Client(transport=sim.transport(), base_url="http://sim.test", headers=headers) as c:
            yield c
        return
    with sim.serve("127.0.0.1", 0) as server, httpx.Client(base_url=server.url, headers=headers, timeout=10) as c:
        yield c


def call(
    api: SimAPI,
    method: str,
    path: str,
    body: Any = None,
    *,
    key: str | None = None,
    query: Mapping[str, Any] | None = None,
    raw: bytes | None = None,
) -> SimResponse:
    """One request through ``SimAPI.handle``; query values that are not strings go as JSON."""
    q = {k: v if isinstance(v, str) else json.dumps(v) for k, v in (query or {}).items()}
    headers = {"authorization": f"Bearer {key}"} if key else {}
    data = raw if raw is not None else (b"" if body is None else json.dumps(body).encode())
    return api.handle(SimRequest(method, path, q, headers, data))


def body_of(response: SimResponse) -> Any:
    return json.loads(response.body)


def one_gpu_offers(market: Market, n: int = 1, **filters: Any) -> list[dict[str, Any]]:
    """``n`` cheap single-GPU offers on different machines."""
    body = {"num_gpus": {"eq": 1}, "order": [["dph_base", "asc"]], "limit": 200, **filters}
    seen, out = set(), []
    for offer in market.search(body):
        if offer["machine_id"] not in seen:
            seen.add(offer["machine_id"])
            out.append(offer)
    assert len(out) >= n, "the catalogue should have enough single-GPU machines"
    return out[:n]


def rent(market: Market, offer: Mapping[str, Any] | None = None, **payload: Any) -> int:
    """Rent ``offer`` (the cheapest single GPU by default); the new instance id."""
    offer = offer or one_gpu_offers(market)[0]
    result = market.create(offer["id"], {"image": "pytorch/pytorch:latest", "disk": 20, **payload})
    assert result["success"] is True
    return int(result["new_contract"])
