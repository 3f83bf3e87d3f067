"""Launch on the simulated market: a ready box, its work, its rental, its teardown."""

from __future__ import annotations

import itertools
import os
from collections.abc import Callable

import pytest

from vastnb import Client
from vastnb.backends.keys import ensure_keypair
from vastnb.errors import ConfigError, InstanceGoneError, NoOffersError, ProfileError

from .conftest import Events, billing


def test_launch_gives_a_ready_box_that_runs_work(vast: Client) -> None:
    events = Events()
    cheapest = vast.select("dev-test")[0]
    box = vast.launch("dev-test", name="exp1", progress=events)
    assert events.stages == ["offer", "created", "loading", "running", "connecting", "ready"]
    assert all(later.elapsed >= earlier.elapsed for earlier, later in itertools.pairwise(events))
    assert box.name == "exp1" and box.profile == "dev-test"
    assert box.status == "running"
    assert box.run(lambda a, b: a * b, 6, 7) == 42
    # The cheapest matching offer is the one rented, at the price launch reported.
    assert events[0].candidate is not None and events[0].candidate.offer.id == cheapest.offer.id
    assert box.price_per_hour == pytest.approx(cheapest.price)
    assert billing(vast) == [box.id]


def test_instances_table_shows_the_box_and_down_ends_billing(vast: Client) -> None:
    box = vast.launch("dev-test", name="exp1")
    table = vast.instances()
    row = table.loc[box.id]
    assert (row["name"], row["profile"], row["state"], row["owner"]) == ("exp1", "dev-test", "running", "this session")
    assert row["price_per_hour"] > 0 and row["cost"] >= 0
    assert table.columns.name == "SIMULATED"
    assert box.down() is True
    assert billing(vast) == []
    assert box.down() is False  # idempotent: already gone
    assert box.status == "destroyed"
    assert vast.instances().empty
    with pytest.raises(InstanceGoneError, match="destroyed"):
        box.run(print)


def test_the_label_names_vastnb_the_box_and_its_session(vast: Client) -> None:
    box = vast.launch("dev-test", name="exp1")
    label = box.info().label
    assert label is not None and label.startswith("vastnb:exp1:")
    stored = vast.fleet.store.get(vast.fleet.url, box.id)
    assert stored is not None and label == f"vastnb:exp1:{stored.session}"
    # The state history shows the way to ready.
    states = [state for _, state, _, _ in vast.fleet.store.history(vast.fleet.url, box.id)]
    assert states[0] == "created" and "running" in states


def test_context_manager_destroys_on_error_and_on_ctrl_c(vast: Client) -> None:
    with pytest.raises(ZeroDivisionError):
        with vast.launch("dev-test") as box:
            box.run(lambda: 1)
            raise ZeroDivisionError
    assert billing(vast) == []
    with pytest.raises(KeyboardInterrupt):
        with vast.launch("dev-test"):
            raise KeyboardInterrupt
    assert billing(vast) == []


def test_vastnb_key_is_on_the_account_before_the_create(vast: Client) -> None:
    box = vast.launch("dev-test")
    public = ensure_keypair().public
    assert vast.sim is not None
    account_keys = [k["key"] for k in vast.sim.market.account_ssh_keys()]
    assert " ".join(public.split()[:2]) in [" ".join(k.split()[:2]) for k in account_keys]
    # Vast installs account keys on instances created after them: this one has it.
    on_box = [k["public_key"] for k in vast.sim.market.instance_ssh_keys(box.id)]
    assert any(" ".join(public.split()[:2]) in k for k in on_box)
    vast.launch("dev-test").down()
    assert len(vast.sim.market.account_ssh_keys()) == 1  # registered once, not per launch
    box.down()


def test_interruptible_launch_sends_the_bid(vast: Client) -> None:
    box = vast.launch("dev-test", interruptible=True, bid="min")
    info = box.info()
    assert info.is_bid
    offer = vast.fleet.store.get(vast.fleet.url, box.id)
    assert offer is not None and offer.bid is not None
    assert offer.bid == pytest.approx(float(info.raw["min_bid"]))
    assert info.raw["dph_base"] == pytest.approx(offer.bid)  # billed at the bid, not on demand
    box.down()


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"interruptible": False, "bid": "min"}, ProfileError, "interruptible"),
        ({"bid": "max"}, ProfileError, "min, min\\+N%"),
        ({"name": "bad name!"}, ConfigError, "not usable"),
    ],
)
def test_bad_launch_arguments_are_refused_before_renting(vast: Client, kwargs: dict, error: type, match: str) -> None:
    with pytest.raises(error, match=match):
        vast.launch("dev-test", **kwargs)
    assert billing(vast) == []


def test_a_name_in_use_is_refused(vast: Client) -> None:
    box = vast.launch("dev-test", name="exp1")
    with pytest.raises(ConfigError, match="already running"):
        vast.launch("dev-test", name="exp1")
    assert billing(vast) == [box.id]
    box.down()
    vast.launch("dev-test", name="exp1").down()  # free again once destroyed


def test_no_matching_offer_rents_nothing(vast: Client, tmp_path: os.PathLike[str]) -> None:
    profiles = os.path.join(tmp_path, "gpu_profiles.yaml")
    with open(profiles, "w") as f:
        f.write(
            "impossible:\n  gpu: H100_SXM\n  num_gpus: 8\n  max_price_per_hour: 0.5\n"
            "  min_reliability: 0.99\n  max_duration_hours: 1\n"
        )
    vast = Client(backend="sim", profiles=profiles, home=vast.home)
    with pytest.raises(NoOffersError, match="No offer matches"):
        vast.launch("impossible")
    assert billing(vast) == []


def test_stop_keeps_the_disk_and_start_brings_a_fresh_worker(vast: Client) -> None:
    box = vast.launch("dev-test")
    box.run_cell("with open('notes.txt', 'w') as f: f.write('kept')\nx = 1")
    box.stop()
    assert box.status == "stopped"
    assert billing(vast) == [box.id]  # a stopped instance still bills its disk
    box.start()
    assert box.status == "running"
    assert box.run_cell("open('notes.txt').read()").value == "kept"
    assert box.run_cell("'x' in globals()").value is False  # the old worker's names are gone
    box.down()


def test_the_box_watchdog_is_armed_with_the_instance_key(vast: Client) -> None:
    from vastnb_worker import watchdog

    box = vast.launch("dev-test")
    status = box.run(watchdog.status)
    assert status["armed"] and status["instance_id"] == box.id
    hours = vast.profile("dev-test").max_duration_hours
    assert hours * 3600 - 60 < status["seconds_left"] <= hours * 3600  # the profile's max duration
    assert status["silence_s"] == 1800  # and half an hour without any orchestrator
    # The account key never reaches the box; the instance's own key does.
    assert vast.sim is not None
    box_home = vast.sim.market.boxes.home(box.id)  # type: ignore[union-attr]
    files = b"".join(p.read_bytes() for p in box_home.rglob("*") if p.is_file())
    assert vast.sim.market.api_key.encode() not in files
    box.down()


def test_attach_in_a_new_client_finds_the_same_worker(clients: Callable[..., Client]) -> None:
    first = clients()
    box = first.launch("dev-test", name="exp1", keep=True)
    box.run_cell("x = 41")
    second = clients()  # a new kernel would do the same, with the same VASTNB_HOME
    again = second.attach("exp1")
    assert again.id == box.id
    assert again.run_cell("x + 1").value == 42  # the worker (and its names) outlived the first client
    assert second.instances().loc[box.id, "owner"] == "this session"
    again.down()
    with pytest.raises(InstanceGoneError):
        second.attach("exp1")
