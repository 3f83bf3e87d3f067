"""Every way a launch can fail: what the user sees, and that nothing is left billing."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from vastnb import Client
from vastnb.errors import APIError, ProvisionError, RateLimitError
from vastnb.lifecycle.launch import LaunchEvent, LaunchPolicy
from vastnb.sim import SimConfig

from .conftest import FAST_POLICY, Events, billing


def destroyed_by_launch(vast: Client) -> list[int]:
    """Instances the launch created, then destroyed itself (from the state history)."""
    url = vast.fleet.url
    return [
        s.id
        for s in vast.fleet.store.instances(url, live=False)
        if any(note == "launch attempt failed" for *_, note in vast.fleet.store.history(url, s.id))
    ]


def test_an_offer_taken_between_search_and_create_moves_on(vast: Client) -> None:
    assert vast.sim is not None
    first = vast.select("dev-test")[0].offer
    vast.sim.api.faults.inject("race", path=f"/asks/{first.id}/")
    events = Events()
    box = vast.launch("dev-test", progress=events)
    assert "retry" in events.stages
    assert box.info().machine_id != first.machine_id
    assert billing(vast) == [box.id]


def test_an_outbid_create_is_destroyed_and_the_next_offer_rented(vast: Client) -> None:
    # Between search and create the minimum bid doubles: Vast still creates a stopped,
    # disk-billing instance and answers with an error that names it.
    assert vast.sim is not None
    vast.sim.api.faults.inject("outbid", path="/asks/")
    box = vast.launch("dev-test", interruptible=True, bid="min")
    assert len(destroyed_by_launch(vast)) == 1
    assert billing(vast) == [box.id]


def test_an_outbid_create_with_no_other_offer_left_fails_clean(clients: Callable[..., Client]) -> None:
    vast = clients(launch_policy=LaunchPolicy(poll=0.05, offers=1))
    assert vast.sim is not None
    vast.sim.api.faults.inject("outbid", path="/asks/")
    with pytest.raises(ProvisionError) as caught:
        vast.launch("dev-test", interruptible=True, bid="min")
    (attempt,) = caught.value.attempts
    assert attempt["instance_id"] and attempt["destroyed"] is True
    assert "minimum bid" in str(caught.value) and "Nothing was left billing" in str(caught.value)
    assert caught.value.left_billing == []
    assert billing(vast) == []


def test_a_box_stuck_loading_is_destroyed_at_its_deadline(clients: Callable[..., Client]) -> None:
    vast = clients(
        sim_config=SimConfig(create_delay=0.1, load_delay=3600),
        launch_policy=LaunchPolicy(poll=0.05, load_deadline=0.5, attempts=2),
    )
    with pytest.raises(ProvisionError) as caught:
        vast.launch("dev-test")
    assert len(caught.value.attempts) == 2  # two machines tried, each avoided after
    assert len({a["machine_id"] for a in caught.value.attempts}) == 2
    assert all(a["destroyed"] for a in caught.value.attempts)
    assert "still loading" in str(caught.value) and "deadline" in str(caught.value)
    assert billing(vast) == []


@pytest.mark.parametrize("status", ["exited", "offline", "unknown"])
def test_a_dead_state_fails_the_attempt_at_once(clients: Callable[..., Client], status: str) -> None:
    vast = clients(launch_policy=LaunchPolicy(poll=0.05, attempts=1, create_deadline=600))

    def break_it(event: LaunchEvent) -> None:
        if event.stage == "created":
            vast.sim.market.set_status(event.instance_id, status)  # type: ignore[union-attr]

    with pytest.raises(ProvisionError, match=f"is {status}") as caught:
        vast.launch("dev-test", progress=break_it)
    assert caught.value.attempts[0]["destroyed"] is True
    assert billing(vast) == []


def test_a_failed_machine_is_avoided_and_the_next_one_works(vast: Client) -> None:
    broken: list[int] = []

    def break_first(event: LaunchEvent) -> None:
        if event.stage == "created" and not broken:
            broken.append(event.instance_id)  # type: ignore[arg-type]
            vast.sim.market.set_status(event.instance_id, "exited")  # type: ignore[union-attr]

    box = vast.launch("dev-test", progress=break_first)
    assert destroyed_by_launch(vast) == broken
    assert billing(vast) == [box.id]


def test_a_box_whose_ssh_never_answers_is_destroyed(clients: Callable[..., Client]) -> None:
    vast = clients(launch_policy=LaunchPolicy(poll=0.05, attempts=1, connect_deadline=1.5))

    def unplug(event: LaunchEvent) -> None:
        if event.stage == "running":  # running, but nothing answers on its SSH port
            vast.sim.market.boxes.power_off(event.instance_id)  # type: ignore[union-attr]

    with pytest.raises(ProvisionError, match="Connection refused"):
        vast.launch("dev-test", progress=unplug)
    assert billing(vast) == []


def test_a_rate_limit_storm_is_ridden_out(vast: Client) -> None:
    assert vast.sim is not None
    vast.sim.api.faults.inject("status", status=429, times=3)  # every endpoint, in turn
    box = vast.launch("dev-test")
    assert billing(vast) == [box.id]


def test_a_rate_limit_storm_past_the_retry_budget_rents_nothing(vast: Client) -> None:
    assert vast.sim is not None
    vast.sim.api.faults.inject("status", status=429, times=1000, path="/asks/")
    with pytest.raises(RateLimitError):
        vast.launch("dev-test")
    assert billing(vast) == []


def test_a_server_error_on_create_says_to_check_and_guesses_nothing(vast: Client) -> None:
    assert vast.sim is not None
    vast.sim.api.faults.inject("status", status=502, path="/asks/")
    with pytest.raises(APIError, match="check `vastnb ps`"):
        vast.launch("dev-test")
    assert billing(vast) == []


def test_ctrl_c_while_loading_destroys_the_instance(clients: Callable[..., Client]) -> None:
    vast = clients(sim_config=SimConfig(create_delay=0.1, load_delay=3600), launch_policy=FAST_POLICY)

    def interrupt(event: LaunchEvent) -> None:
        if event.stage == "loading":
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        vast.launch("dev-test", progress=interrupt)
    assert billing(vast) == []
