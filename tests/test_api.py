"""VastAPI against the simulated market: every call a user makes, over both transports."""

from __future__ import annotations

import time

import pytest

from vastnb.base.secret import Secret
from vastnb.errors import (
    APIError,
    AuthError,
    InstanceCreateError,
    NotFoundError,
    OfferUnavailableError,
    VastError,
)
from vastnb.market.api import VastAPI
from vastnb.market.query import parse_query
from vastnb.market.records import ActualStatus, Charge, CreatedInstance, Instance, Offer, SSHKey, User
from vastnb.sim import Simulator

PUBKEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGq1x5cQeZ0t0hXK7b1Yt7e5m2dJ3u8fT0k2n4QvZc9a you@laptop"


def cheapest(api: VastAPI, text: str = "num_gpus=1", **controls: object) -> list[Offer]:
    """Offers for a CLI-style query, cheapest first."""
    return api.search_offers({**parse_query(text), "order": [["dph_total", "asc"]], "limit": 20, **controls})


def rent(
    api: VastAPI, *, bid: float | None = None, label: str = "vastnb:test", offer: Offer | None = None
) -> CreatedInstance:
    offer = offer or cheapest(api)[0]
    return api.create_instance(offer.id, image="ubuntu:22.04", disk_gb=16, label=label, price=bid)


def shown(api: VastAPI, instance_id: int) -> Instance:
    inst = api.show_instance(instance_id)
    assert inst is not None, f"instance {instance_id} should exist"
    return inst


# -- offers -------------------------------------------------------------------------------


def test_search_matches_a_profile_like_query(api: VastAPI) -> None:
    offers = cheapest(api, "gpu_name=RTX_4090 num_gpus=1 reliability>0.9 dph<5")
    assert offers, "the simulated market has RTX 4090s"
    for offer in offers:
        assert isinstance(offer, Offer)
        assert offer.gpu_name == "RTX 4090"
        assert offer.num_gpus == 1
        assert offer.reliability > 0.9
        assert 0 < offer.dph_total < 5
        assert offer.id > 0 and offer.machine_id > 0
        assert offer.raw["id"] == offer.id
    prices = [o.dph_total for o in offers]
    assert prices == sorted(prices)


def test_search_order_descending_and_limit(api: VastAPI) -> None:
    offers = api.search_offers({**parse_query("num_gpus>=2"), "order": [["dph_total", "desc"]], "limit": 7})
    assert 0 < len(offers) <= 7
    assert all(o.num_gpus >= 2 for o in offers)
    prices = [o.dph_total for o in offers]
    assert prices == sorted(prices, reverse=True)


def test_search_with_no_match_is_empty(api: VastAPI) -> None:
    assert api.search_offers({"num_gpus": {"gt": 1000}}) == []


def test_search_interruptible_prices_at_min_bid(api: VastAPI) -> None:
    on_demand = {o.id: o for o in cheapest(api, limit=100)}
    bids = cheapest(api, type="bid", limit=100)
    both = [o for o in bids if o.id in on_demand]
    assert both
    for offer in both:
        assert offer.min_bid > 0
        assert offer.dph_total <= on_demand[offer.id].dph_total


def test_search_needs_no_key(connect, sim: Simulator) -> None:
    # Vast serves offer search without auth (gpuhunt relies on it).
    assert connect(sim, key=None).search_offers({"num_gpus": {"eq": 1}, "limit": 3})


# -- create and show -------------------------------------------------------------------------


def test_create_on_demand_then_states_follow_the_clock(api: VastAPI, sim: Simulator) -> None:
    offer = cheapest(api)[0]
    created = api.create_instance(
        offer.id,
        image="ubuntu:22.04",
        disk_gb=16,
        label="vastnb:t1",
        env={"HF_HOME": "/workspace/hf"},
        onstart="echo hi",
    )
    assert isinstance(created, CreatedInstance)
    assert created.id > 0
    assert created.instance_api_key  # the restricted per-instance key
    assert created.instance_api_key not in repr(created)

    inst = shown(api, created.id)
    assert inst.actual_status is ActualStatus.PROVISIONING  # Vast sends null at first
    assert not inst.actual_status.is_failed
    assert inst.id == created.id
    assert inst.label == "vastnb:t1"
    assert inst.machine_id == offer.machine_id
    assert inst.gpu_name == offer.gpu_name and inst.num_gpus == offer.num_gpus
    assert inst.is_bid is False
    assert inst.intended_status == "running"
    assert inst.extra_env == {"HF_HOME": "/workspace/hf"}  # pairs on the wire
    assert inst.ports == {}
    assert inst.preempted is False

    sim.advance(1.5)
    assert shown(api, created.id).actual_status is ActualStatus.LOADING

    sim.advance(3)
    inst = shown(api, created.id)
    assert inst.actual_status is ActualStatus.RUNNING
    port = inst.raw["ports"]["22/tcp"][0]["HostPort"]
    assert isinstance(port, str)  # Vast's quirk, parsed below
    assert inst.ports["22/tcp"] == int(port)
    assert inst.public_ipaddr and inst.public_ipaddr == inst.public_ipaddr.strip()
    host, ssh_port = inst.ssh_address()
    assert (host, ssh_port) == (inst.public_ipaddr, int(port))
    assert isinstance(ssh_port, int)


def test_create_interruptible_at_min_bid(api: VastAPI, sim: Simulator) -> None:
    offer = cheapest(api, type="bid")[0]
    bid = offer.min_bid + 0.01
    created = rent(api, bid=bid, offer=offer)
    assert created.id > 0 and created.instance_api_key
    sim.advance(5)
    inst = shown(api, created.id)
    assert inst.is_bid is True
    assert inst.actual_status is ActualStatus.RUNNING
    assert inst.raw["dph_base"] == pytest.approx(bid)
    assert inst.preempted is False


def test_show_unknown_instance_is_none(api: VastAPI) -> None:
    assert api.show_instance(99_999_999) is None


def test_list_instances_reads_every_page(api: VastAPI) -> None:
    # The v1 list gives at most 25 per page; 30 instances need next_token.
    offers = api.search_offers({"num_gpus": {"eq": 1}, "order": [["dph_total", "asc"]], "limit": 200})
    machines: set[int] = set()
    created = []
    for offer in offers:
        if offer.machine_id in machines:
            continue
        machines.add(offer.machine_id)
        created.append(rent(api, offer=offer, label=f"vastnb:page-{len(created)}").id)
        if len(created) == 30:
            break
    assert len(created) == 30
    listed = api.list_instances()
    assert [i.id for i in listed] == sorted(created)
    assert all(isinstance(i, Instance) for i in listed)
    assert {i.label for i in listed} == {f"vastnb:page-{n}" for n in range(30)}


def test_list_instances_empty(api: VastAPI) -> None:
    assert api.list_instances() == []


def test_list_instances_with_a_filter(api: VastAPI) -> None:
    a = rent(api, label="vastnb:keep")
    rent(api, label="other")  # the default filters skip the machine already rented
    listed = api.list_instances({"label": {"eq": "vastnb:keep"}})
    assert [i.id for i in listed] == [a.id]


# -- manage -----------------------------------------------------------------------------------


def test_stop_then_start_goes_through_scheduling(api: VastAPI, sim: Simulator) -> None:
    created = rent(api)
    sim.advance(5)
    api.stop_instance(created.id)
    inst = shown(api, created.id)
    assert inst.actual_status is ActualStatus.STOPPED
    assert inst.intended_status == "stopped"
    assert inst.preempted is False  # we stopped it; an on-demand instance is never outbid

    api.start_instance(created.id)
    inst = shown(api, created.id)
    assert inst.intended_status == "running"
    assert inst.actual_status is not ActualStatus.RUNNING  # waiting for its GPUs
    assert "scheduling" in (inst.status_msg or "")

    sim.advance(30)
    assert shown(api, created.id).actual_status is ActualStatus.RUNNING


def test_label(api: VastAPI) -> None:
    created = rent(api, label="vastnb:before")
    api.label_instance(created.id, "vastnb:after")
    assert shown(api, created.id).label == "vastnb:after"


def test_destroy_then_again_then_show(api: VastAPI, sim: Simulator) -> None:
    created = rent(api)
    sim.advance(5)
    assert api.destroy_instance(created.id) is True
    # Already gone counts as destroyed: a cleanup retried after a lost answer is fine.
    assert api.destroy_instance(created.id) is False
    assert api.show_instance(created.id) is None
    assert api.list_instances() == []


def test_destroy_unknown_instance_is_false(api: VastAPI) -> None:
    assert api.destroy_instance(99_999_999) is False


def test_destroy_does_not_take_a_bad_key_for_gone(api: VastAPI, sim: Simulator) -> None:
    # Vast can answer a bad key with 404 "Invalid user key": that is no proof the instance
    # is gone, and a false "destroyed" would leave it billing.
    created = rent(api)
    body = '{"success": false, "error": "auth_error", "msg": "Invalid user key"}'
    sim.api.faults.inject("status", path=r"/instances/\d+", method="DELETE", status=404, body=body)
    with pytest.raises(AuthError):
        api.destroy_instance(created.id)
    assert shown(api, created.id).id == created.id


def test_destroy_does_not_take_a_bare_404_for_gone(api: VastAPI, sim: Simulator) -> None:
    # A 404 page (VAST_URL pointing at the wrong server, a proxy) says nothing about the instance.
    created = rent(api)
    sim.api.faults.inject("status", path=r"/instances/\d+", method="DELETE", status=404, body="<html>Not Found</html>")
    with pytest.raises(NotFoundError):
        api.destroy_instance(created.id)
    assert api.destroy_instance(created.id) is True


def test_change_bid(api: VastAPI, sim: Simulator) -> None:
    offer = cheapest(api, type="bid")[0]
    created = rent(api, bid=offer.min_bid, offer=offer)
    new_bid = round(offer.min_bid * 2, 4)
    api.change_bid(created.id, new_bid)
    inst = shown(api, created.id)
    assert inst.raw["dph_base"] == pytest.approx(new_bid)
    assert inst.dph_total > new_bid  # plus the disk


def test_change_bid_out_of_range_is_an_api_error(api: VastAPI) -> None:
    offer = cheapest(api, type="bid")[0]
    created = rent(api, bid=offer.min_bid, offer=offer)
    with pytest.raises(APIError) as info:
        api.change_bid(created.id, 10_000.0)
    assert info.value.status == 400 and info.value.code == "invalid_args"


def test_change_bid_on_unknown_instance(api: VastAPI) -> None:
    with pytest.raises(NotFoundError) as info:
        api.change_bid(99_999_999, 0.5)
    assert info.value.code == "no_such_instance"
    assert "vastnb ps" in str(info.value)


def test_attach_ssh_key(api: VastAPI, sim: Simulator) -> None:
    created = rent(api)
    api.attach_ssh_key(created.id, PUBKEY + "\n")
    keys = sim.market.instance_ssh_keys(created.id)
    assert [k["public_key"] for k in keys] == [PUBKEY]


def test_attach_a_malformed_ssh_key_is_refused(api: VastAPI) -> None:
    created = rent(api)
    with pytest.raises(APIError) as info:
        api.attach_ssh_key(created.id, "not a key")
    assert info.value.status == 400


def test_add_ssh_key_and_list(api: VastAPI) -> None:
    assert api.ssh_keys() == []
    added = api.add_ssh_key(PUBKEY + "\n")
    assert isinstance(added, SSHKey)
    assert added.id > 0 and added.key == PUBKEY
    assert api.ssh_keys() == [added]


def test_account_key_reaches_instances_created_after_it(api: VastAPI, sim: Simulator) -> None:
    before = rent(api)
    api.add_ssh_key(PUBKEY)
    after = rent(api)
    assert sim.market.instance_ssh_keys(before.id) == []
    assert [k["public_key"] for k in sim.market.instance_ssh_keys(after.id)] == [PUBKEY]


# -- account ----------------------------------------------------------------------------------


def test_current_user_drops_the_key(api: VastAPI, sim: Simulator) -> None:
    user = api.current_user()
    assert isinstance(user, User)
    assert user.id > 0 and user.email
    assert user.balance == pytest.approx(25.0)
    assert "api_key" not in user.raw
    assert sim.market.api_key not in repr(user) + repr(dict(user.raw))


def test_balance_goes_down_while_running(api: VastAPI, sim: Simulator) -> None:
    start = api.current_user().balance
    created = rent(api)
    sim.advance(5)
    after_start = api.current_user().balance
    sim.advance(3600)
    after_hour = api.current_user().balance
    assert start > after_start > after_hour
    hourly = shown(api, created.id).dph_total
    assert start - after_hour == pytest.approx(hourly, rel=0.05)


def test_charges_itemised_and_growing(api: VastAPI, sim: Simulator) -> None:
    created = rent(api)
    sim.advance(5)
    sim.advance(1800)
    start, end = time.time() - 86400, time.time() + 10 * 86400
    first = api.charges(start, end)
    assert len(first) == 1
    charge = first[0]
    assert isinstance(charge, Charge)
    assert charge.instance_id == created.id
    assert charge.source == f"instance-{created.id}"
    types = {item["type"]: item["amount"] for item in charge.items}
    assert types["gpu"] > 0 and types["disk"] > 0
    assert charge.amount == pytest.approx(sum(types.values()), abs=1e-5)

    sim.advance(1800)
    later = api.charges(start, end)
    assert later[0].amount > charge.amount


def test_charges_with_nothing_rented(api: VastAPI) -> None:
    assert api.charges(time.time() - 86400, time.time()) == []


# -- failures -----------------------------------------------------------------------------------


def test_create_on_a_taken_offer_race(api: VastAPI, sim: Simulator) -> None:
    offer = cheapest(api)[0]
    sim.api.faults.inject("race", path=r"/asks/")
    with pytest.raises(OfferUnavailableError) as info:
        rent(api, offer=offer)
    assert info.value.code == "no_such_ask"
    assert "search again" in str(info.value)
    assert api.list_instances() == []
    assert offer.id not in {o.id for o in cheapest(api, limit=200)}


def test_create_on_an_offer_someone_took(api: VastAPI, sim: Simulator) -> None:
    offer = cheapest(api)[0]
    sim.market.take_offer(offer.id)
    with pytest.raises(OfferUnavailableError):
        rent(api, offer=offer)
    # The next offer still works.
    assert rent(api, offer=cheapest(api)[0]).id > 0


def test_bid_below_min_bid_still_creates_an_instance(api: VastAPI, sim: Simulator) -> None:
    offer = cheapest(api, type="bid")[0]
    with pytest.raises(InstanceCreateError) as info:
        rent(api, bid=offer.min_bid / 2, offer=offer)
    error = info.value
    assert error.created_instance_id is not None
    assert error.code == "invalid_price"
    assert f"vastnb down {error.created_instance_id}" in str(error)
    # It exists, stopped and billing disk, until someone destroys it.
    inst = shown(api, error.created_instance_id)
    assert inst.actual_status is ActualStatus.STOPPED
    assert [i.id for i in api.list_instances()] == [error.created_instance_id]
    assert api.destroy_instance(error.created_instance_id) is True
    assert api.show_instance(error.created_instance_id) is None


def test_create_without_an_id_in_the_answer_is_a_vast_error(api: VastAPI, sim: Simulator) -> None:
    sim.api.faults.inject("status", path=r"/asks/", status=200, body='{"success": true}')
    with pytest.raises(InstanceCreateError) as info:
        rent(api)
    assert "vastnb ps" in str(info.value)


def test_unknown_offer_is_unavailable(api: VastAPI) -> None:
    with pytest.raises(OfferUnavailableError):
        api.create_instance(1, image="ubuntu:22.04", disk_gb=16, label="vastnb:x")


def test_bad_key_is_auth_error_401(connect, sim: Simulator) -> None:
    api = connect(sim, key=Secret("not-the-key-0123456789"))
    with pytest.raises(AuthError) as info:
        api.current_user()
    assert info.value.status == 401
    assert "VAST_API_KEY" in str(info.value)
    with pytest.raises(AuthError):
        api.show_instance(1)
    with pytest.raises(AuthError):  # not "already destroyed"
        api.destroy_instance(1)


def test_no_key_is_auth_error_403(connect, sim: Simulator) -> None:
    api = connect(sim, key=None)
    with pytest.raises(AuthError) as info:
        api.list_instances()
    assert info.value.status == 403
    assert "api_key" in repr(api) and "none" in repr(api)


def test_errors_are_vast_errors(api: VastAPI, sim: Simulator) -> None:
    sim.api.faults.inject("status", path="/users/current", status=400, body="plain text refusal")
    with pytest.raises(VastError) as info:
        api.current_user()
    assert isinstance(info.value, APIError) and info.value.status == 400
    assert "plain text refusal" in str(info.value)


def test_preempted_instance(api: VastAPI, sim: Simulator) -> None:
    offer = cheapest(api, type="bid")[0]
    created = rent(api, bid=offer.min_bid, offer=offer)
    sim.advance(5)
    assert shown(api, created.id).preempted is False
    sim.market.preempt(created.id, resume_after=60)
    inst = shown(api, created.id)
    assert inst.preempted is True
    assert inst.actual_status is ActualStatus.STOPPED
    sim.advance(60 + 5)
    inst = shown(api, created.id)
    assert inst.preempted is False
    assert inst.actual_status is ActualStatus.RUNNING


def test_failed_host_states(api: VastAPI, sim: Simulator) -> None:
    created = rent(api)
    for status in ("exited", "offline", "unknown"):
        sim.market.set_status(created.id, status)
        inst = shown(api, created.id)
        assert inst.actual_status.is_failed
        assert inst.actual_status is not ActualStatus.RUNNING
