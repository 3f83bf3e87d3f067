"""The state store's schema migrations: a state.db written by vastnb 0.1.0 (committed in
fixtures/, made by the script beside it) opens in this release with every instance,
session and history row intact, and an old file is set aside before it is changed."""

from __future__ import annotations

import shutil
import sqlite3
from pathlib import Path

import pytest

from vastnb import Client
from vastnb.errors import ConfigError
from vastnb.lifecycle.migrations import SCHEMA_VERSION
from vastnb.lifecycle.states import InstanceState
from vastnb.lifecycle.store import StateStore

FIXTURE = Path(__file__).parent / "fixtures" / "state-0.1.0.db"
VAST = "https://console.vast.ai"
SIM = "http://sim.vastnb.invalid"


@pytest.fixture
def old_db(tmp_path: Path) -> Path:
    home = tmp_path / "home"
    home.mkdir(mode=0o700)
    path = home / "state.db"
    shutil.copyfile(FIXTURE, path)
    path.chmod(0o600)
    return path


def test_a_0_1_0_state_db_opens_with_its_instances_intact(old_db: Path) -> None:
    store = StateStore(old_db)
    assert store.version == SCHEMA_VERSION
    everything = {r.id: r for r in store.instances(VAST, live=False)}
    assert sorted(everything) == [1001, 1002, 1003, 1004]
    exp1 = everything[1001]
    assert (exp1.name, exp1.profile, exp1.gpu_name, exp1.num_gpus, exp1.dph_total) == (
        "exp1",
        "training-standard",
        "RTX 4090",
        1,
        0.412,
    )
    assert exp1.state is InstanceState.RUNNING and exp1.keep and exp1.instance_key == "k" * 64 and exp1.live
    assert exp1.label == f"vastnb:exp1:{exp1.session}" and exp1.max_duration_hours == 4.0
    scratch = everything[1002]
    assert scratch.state is InstanceState.STOPPED and scratch.billing and scratch.bid == 0.18
    assert {i for i, r in everything.items() if not r.live} == {1003, 1004}
    assert everything[1003].destroyed_at is not None and everything[1003].state is InstanceState.DESTROYED
    assert [r.id for r in store.instances(VAST)] == [1001, 1002]  # the live ones, oldest first
    sim = store.get(SIM, 5)
    assert sim is not None and sim.state is InstanceState.STARTING


def test_a_0_1_0_state_db_keeps_its_sessions_and_history(old_db: Path) -> None:
    store = StateStore(old_db)
    exp1 = store.get(VAST, 1001)
    scratch = store.get(VAST, 1002)
    assert exp1 is not None and scratch is not None
    ended, current = store.session(exp1.session), store.session(scratch.session)
    assert ended is not None and ended.ended_at is not None and not ended.alive
    assert current is not None and current.ended_at is None and current.pid > 0
    history = [(state, price, note) for _, state, price, note in store.history(VAST, 1001)]
    assert history == [("created", 0.412, "created"), ("loading", 0.412, "pulling"), ("running", 0.412, "worker ready")]
    assert [h[1:] for h in store.history(VAST, 1004)][-1] == ("destroyed", None, "launch attempt failed")


def test_a_migrated_store_goes_on_working(old_db: Path) -> None:
    store = StateStore(old_db)
    store.transition(VAST, 1002, InstanceState.STARTING)
    store.transition(VAST, 1002, InstanceState.RUNNING, "worker ready")
    store.transition(VAST, 1001, InstanceState.DESTROYED, "destroyed")
    assert [r.id for r in StateStore(old_db).instances(VAST)] == [1002]  # a second open: nothing to migrate
    assert [h[1] for h in store.history(VAST, 1002)] == ["created", "running", "stopped", "starting", "running"]


def test_the_old_file_is_set_aside_before_it_is_migrated(old_db: Path) -> None:
    StateStore(old_db)
    backup = old_db.with_name("state.db.v0.bak")
    db = sqlite3.connect(backup)
    try:
        assert db.execute("PRAGMA user_version").fetchone()[0] == 0
        assert db.execute("SELECT count(*) FROM instances").fetchone()[0] == 5
        assert "price_per_hour" in [c[1] for c in db.execute("PRAGMA table_info(instances)")]
    finally:
        db.close()


def test_a_new_file_gets_the_current_schema_and_no_backup(tmp_path: Path) -> None:
    store = StateStore(tmp_path / "state.db")
    assert store.version == SCHEMA_VERSION
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.endswith(".bak")) == []


def test_a_file_from_a_newer_vastnb_is_refused_and_left_alone(old_db: Path) -> None:
    StateStore(old_db)
    db = sqlite3.connect(old_db)
    db.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    db.close()
    with pytest.raises(ConfigError, match=r"newer vastnb.*upgrade vastnb"):
        StateStore(old_db)
    db = sqlite3.connect(old_db)
    try:
        assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION + 1
    finally:
        db.close()


def test_a_client_on_a_0_1_0_home_lists_its_kept_box(old_db: Path) -> None:
    """A user upgrades vastnb: `attach` still finds what 0.1.0 recorded (here on the
    simulator's market, whose instance 5 the fixture holds but the market does not)."""
    with Client(backend="sim", home=old_db.parent) as vast:
        with pytest.raises(Exception, match="destroyed"):
            vast.attach("simbox")  # gone from the (fresh) simulated market: said, and recorded
        rental = vast.fleet.rental(5)
        assert rental is not None and rental.state is InstanceState.DESTROYED
