"""Retries: what is retried, how long the client waits, and when it gives up.

Waits are recorded by the ``sleep`` the clients get (see conftest), not slept.
"""

from __future__ import annotations

import random
import socket
import time
from collections.abc import Iterator

import pytest

from vastnb.base.secret import Secret
from vastnb.errors import APIConnectionError, APIError, RateLimitError
from vastnb.market.api import VastAPI
from vastnb.market.retry import NO_RETRY, RETRY_STATUSES, RetryPolicy, parse_threshold
from vastnb.sim import SimConfig, Simulator

THRESHOLD_429 = "API requests too frequent endpoint threshold=3.5"


def rent(api: VastAPI, offer_id: int | None = None) -> int:
    if offer_id is None:
        offer_id = api.search_offers({"num_gpus": {"eq": 1}, "rented": {"eq": False}, "limit": 1})[0].id
    return api.create_instance(offer_id, image="ubuntu:22.04", disk_gb=16, label="vastnb:retry").id


QUICK = RetryPolicy(attempts=4, base_delay=0.5)


@pytest.fixture
def closed_port() -> Iterator[int]:
    """A loopback port that refuses connections: bound, never listening, and held for the
    whole test so that nothing else can start listening on it meanwhile."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        yield s.getsockname()[1]


# -- status retries ---------------------------------------------------------------------------


def test_503_twice_then_success(api: VastAPI, sim: Simulator, waits: list[float]) -> None:
    sim.api.faults.inject("status", path="/users/current", status=503, times=2)
    assert api.current_user().id > 0
    assert len(waits) == 2
    base, jitter = api.retry.base_delay, api.retry.jitter
    assert base * (1 - jitter) <= waits[0] <= base * (1 + jitter)  # starts near base
    assert waits[1] > waits[0]  # and grows


@pytest.mark.parametrize("status", sorted(RETRY_STATUSES))
def test_every_retry_status_is_retried_on_a_get(api: VastAPI, sim: Simulator, waits: list[float], status: int) -> None:
    sim.api.faults.inject("status", path="/users/current", status=status)
    assert api.current_user().id > 0
    assert len(waits) == 1


def test_other_statuses_are_not_retried(api: VastAPI, sim: Simulator, waits: list[float]) -> None:
    sim.api.faults.inject("status", path="/users/current", status=500)
    with pytest.raises(APIError) as info:
        api.current_user()
    assert info.value.status == 500
    assert "status.vast.ai" in str(info.value)
    assert waits == []


def test_429_threshold_is_a_floor(api: VastAPI, sim: Simulator, waits: list[float]) -> None:
    sim.api.faults.inject("status", path="/users/current", status=429, body=THRESHOLD_429)
    api.current_user()
    assert len(waits) == 1 and waits[0] >= 3.5


def test_429_threshold_in_a_json_body(connect, sim: Simulator, waits: list[float]) -> None:
    api = connect(sim, retry=RetryPolicy(base_delay=0.1, jitter=0.5))
    body = '{"detail": "API requests too frequent endpoint threshold=4.5"}'
    sim.api.faults.inject("status", path="/users/current", status=429, body=body)
    api.current_user()
    assert len(waits) == 1 and waits[0] >= 4.5


def test_429_storm_gives_up_with_rate_limit_error(api: VastAPI, sim: Simulator, waits: list[float]) -> None:
    sim.api.faults.inject("status", path="/users/current", status=429, times=50, body=THRESHOLD_429)
    with pytest.raises(RateLimitError) as info:
        api.current_user()
    assert info.value.status == 429
    assert f"after {api.retry.attempts} attempts" in str(info.value)
    assert len(waits) == api.retry.attempts - 1
    assert all(w >= 3.5 for w in waits)


def test_total_time_bound_stops_retrying(connect, sim: Simulator, waits: list[float]) -> None:
    policy = RetryPolicy(attempts=50, base_delay=1.0, factor=2.0, max_delay=100.0, total=10.0, jitter=0.0)
    api = connect(sim, retry=policy)
    sim.api.faults.inject("status", path="/users/current", status=503, times=50)
    with pytest.raises(APIError) as info:
        api.current_user()
    assert info.value.status == 503
    # 1 + 2 + 4 = 7 s waited; the next wait (8 s) would end past the 10 s bound.
    assert waits == [1.0, 2.0, 4.0]
    assert sum(waits) <= policy.total


def test_total_time_bound_shows_in_the_rate_limit_message(connect, sim: Simulator, waits: list[float]) -> None:
    policy = RetryPolicy(attempts=50, base_delay=1.0, factor=2.0, max_delay=100.0, total=20.0, jitter=0.0)
    api = connect(sim, retry=policy)
    sim.api.faults.inject("status", path="/users/current", status=429, times=50)
    with pytest.raises(RateLimitError) as info:
        api.current_user()
    assert waits == [1.0, 2.0, 4.0, 8.0]
    assert "after 5 attempts over 15 s" in str(info.value)


def test_no_retry_policy(connect, sim: Simulator, waits: list[float]) -> None:
    api = connect(sim, retry=NO_RETRY)
    sim.api.faults.inject("status", path="/users/current", status=503)
    with pytest.raises(APIError):
        api.current_user()
    assert waits == []


# -- timeouts and connection failures -------------------------------------------------------


def test_timeout_on_a_get_is_retried(connect, sim: Simulator, waits: list[float]) -> None:
    api = connect(sim, timeout=0.2)
    sim.api.faults.inject("timeout", path="/users/current", method="GET")
    assert api.current_user().id > 0
    assert len(waits) == 1


def test_timeouts_past_the_budget_say_so(connect, sim: Simulator, waits: list[float]) -> None:
    api = connect(sim, timeout=0.2, retry=RetryPolicy(attempts=2, base_delay=0.1))
    sim.api.faults.inject("timeout", path="/users/current", times=2)
    with pytest.raises(APIConnectionError) as info:
        api.current_user()
    assert "timed out after 2 attempt(s)" in str(info.value)
    assert info.value.status is None
    assert len(waits) == 1


def test_timeout_on_create_is_not_retried(connect, sim: Simulator, waits: list[float]) -> None:
    api = connect(sim, timeout=0.2)
    offer = api.search_offers({"num_gpus": {"eq": 1}, "limit": 1})[0]
    sim.api.faults.inject("timeout", path=r"/asks/\d+", method="PUT")
    with pytest.raises(APIConnectionError) as info:
        rent(api, offer.id)
    message = str(info.value)
    assert "timed out" in message
    assert "check `vastnb ps` for a new instance" in message
    assert waits == []
    assert info.value.endpoint == f"/asks/{offer.id}/"
    # The fault was used once: the same create, sent again by the user, goes through.
    assert rent(api, offer.id) > 0
    assert len(api.list_instances()) == 1


def test_502_on_create_is_not_retried(api: VastAPI, sim: Simulator, waits: list[float]) -> None:
    sim.api.faults.inject("status", path=r"/asks/\d+", method="PUT", status=502)
    with pytest.raises(APIError) as info:
        rent(api)
    assert info.value.status == 502
    assert "vastnb ps" in str(info.value)  # the user is told to look for a machine it may have rented
    assert waits == []
    assert api.list_instances() == []


def test_429_on_create_is_retried(api: VastAPI, sim: Simulator, waits: list[float]) -> None:
    # A 429 is refused before anything happens, so sending the create again is safe.
    sim.api.faults.inject("status", path=r"/asks/\d+", method="PUT", status=429, body=THRESHOLD_429)
    instance_id = rent(api)
    assert len(waits) == 1 and waits[0] >= 3.5
    assert [i.id for i in api.list_instances()] == [instance_id]


def test_connection_refused_is_retried_then_explained(closed_port: int, waits: list[float]) -> None:
    api = VastAPI(
        Secret("retry-test-key-0123456789abcdef"),
        base_url=f"http://127.0.0.1:{closed_port}",
        retry=QUICK,
        sleep=waits.append,
    )
    with api, pytest.raises(APIConnectionError) as info:
        api.current_user()
    assert len(waits) == QUICK.attempts - 1
    assert f"after {QUICK.attempts} attempt(s)" in str(info.value)
    assert "Check your network, or VAST_URL" in str(info.value)


def test_connection_refused_on_create_is_retried(closed_port: int, waits: list[float]) -> None:
    # Nothing reached Vast, so nothing can have been rented: a retry is safe.
    api = VastAPI(
        Secret("retry-test-key-0123456789abcdef"),
        base_url=f"http://127.0.0.1:{closed_port}",
        retry=QUICK,
        sleep=waits.append,
    )
    with api, pytest.raises(APIConnectionError):
        api.create_instance(1, image="ubuntu:22.04", disk_gb=16, label="vastnb:x")
    assert len(waits) == QUICK.attempts - 1


# -- the simulator's real rate limiter ---------------------------------------------------------


def test_rate_limiter_answers_plain_text_429(connect, tmp_path, waits: list[float]) -> None:
    sim = Simulator(tmp_path, SimConfig(), rate_limit_scale=1.0)
    api = connect(sim, retry=NO_RETRY)
    offers = api.search_offers({"num_gpus": {"eq": 1}, "rented": {"eq": False}, "limit": 5})
    rent(api, offers[0].id)
    with pytest.raises(RateLimitError) as info:
        rent(api, offers[1].id)  # straight after the first: inside create's 4.5 s interval
    assert "API requests too frequent endpoint threshold=4.5" in str(info.value)
    assert info.value.code is None  # plain text, no JSON error code
    assert len(api.list_instances()) == 1


# Vast's intervals are seconds long; the simulator scaled down (its 429 still names the real
# threshold) and a sleep scaled to match keep this test quick while the client's recorded
# waits are the full thresholds.
SCALE = 0.1


def test_rate_limited_create_and_destroy_wait_then_succeed(connect, tmp_path, waits: list[float]) -> None:
    sim = Simulator(tmp_path, SimConfig(), rate_limit_scale=SCALE)

    def sleep(seconds: float) -> None:
        waits.append(seconds)
        time.sleep(seconds * SCALE)

    api = connect(sim, sleep=sleep)
    offers = api.search_offers({"num_gpus": {"eq": 1}, "rented": {"eq": False}, "limit": 5})
    first = rent(api, offers[0].id)
    second = rent(api, offers[1].id)
    assert len(waits) >= 1 and waits[0] >= 4.5
    assert sorted(i.id for i in api.list_instances()) == sorted([first, second])

    waits.clear()
    assert api.destroy_instance(first) is True
    assert api.destroy_instance(second) is True
    assert len(waits) >= 1 and waits[0] >= 3.0
    assert api.list_instances() == []


# -- RetryPolicy ---------------------------------------------------------------------------------


def test_delay_without_jitter_is_exponential_up_to_the_cap() -> None:
    policy = RetryPolicy(base_delay=1.0, factor=2.0, max_delay=20.0, jitter=0.0)
    assert [policy.delay(n) for n in range(1, 8)] == [1.0, 2.0, 4.0, 8.0, 16.0, 20.0, 20.0]


def test_delay_jitter_bounds() -> None:
    policy = RetryPolicy(base_delay=1.0, factor=2.0, max_delay=1000.0, jitter=0.25)
    rng = random.Random(7)
    for attempt in range(1, 6):
        nominal = 2.0 ** (attempt - 1)
        samples = [policy.delay(attempt, rng=rng) for _ in range(500)]
        assert all(0.75 * nominal <= s <= 1.25 * nominal for s in samples)
        # Jitter really spreads the waits, both ways.
        assert min(samples) < 0.85 * nominal and max(samples) > 1.15 * nominal


def test_delay_never_exceeds_max_delay() -> None:
    policy = RetryPolicy(base_delay=1.0, factor=2.0, max_delay=5.0, jitter=0.25)
    rng = random.Random(1)
    samples = [policy.delay(attempt, rng=rng) for attempt in range(1, 12) for _ in range(200)]
    assert max(samples) <= 5.0
    assert min(policy.delay(10, rng=rng) for _ in range(200)) >= 5.0 * 0.75


def test_delay_floor_beats_jitter_and_cap() -> None:
    policy = RetryPolicy(base_delay=1.0, max_delay=5.0, jitter=0.5)
    rng = random.Random(3)
    assert all(policy.delay(1, floor=3.5, rng=rng) >= 3.5 for _ in range(200))
    # The server's interval wins over our cap: waiting less only earns another 429.
    assert policy.delay(1, floor=12.0, rng=rng) == 12.0


def test_allows_counts_attempts_and_total_time() -> None:
    policy = RetryPolicy(attempts=3, total=10.0)
    assert policy.allows(1, 0.0, 1.0)
    assert policy.allows(2, 0.0, 1.0)
    assert not policy.allows(3, 0.0, 1.0)  # the third attempt was the last
    assert policy.allows(1, 8.0, 2.0)
    assert not policy.allows(1, 8.0, 2.5)  # the wait would end past the bound
    assert not NO_RETRY.allows(1, 0.0, 0.0)


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ("API requests too frequent endpoint threshold=4.5", 4.5),
        ('{"detail": "API requests too frequent endpoint threshold=3.0"}', 3.0),
        ('{"success": false, "error": "rate_limit_exceeded", "msg": "... threshold = 2"}', 2.0),
        ("API requests too frequent", None),
        ("", None),
    ],
)
def test_parse_threshold(body: str, expected: float | None) -> None:
    assert parse_threshold(body) == expected
