"""Instances outlive the processes that launch them: at exit, after a crash, when kept."""

from __future__ import annotations

import os
import signal
from pathlib import Path

from vastnb import Client

from . import children
from .conftest import billing


def test_a_killed_kernel_leaves_an_orphan_that_a_fresh_client_destroys(vast: Client, home: Path) -> None:
    child = children.start(
        """
        box = vast.launch("dev-test", name="doomed")
        box.run_cell("x = 1")
        say("ready")
        sys.stdin.read()
    """,
        home,
    )
    children.wait_for(child, "ready")
    child.kill()  # SIGKILL: no atexit, no finally
    child.wait()
    table = vast.instances()
    (doomed,) = table.index[table["name"] == "doomed"]
    assert table.loc[doomed, "owner"] == "orphan"
    orphans = vast.orphans()
    assert list(orphans.index) == [doomed] and orphans.loc[doomed, "cost"] >= 0
    assert vast.sim is not None
    pid = int((vast.sim.market.boxes.home(doomed) / "daemon.pid").read_text().split()[0])  # type: ignore[union-attr]
    # The box's worker survived the kernel, as a rented machine would.
    os.kill(pid, 0)
    assert vast.down_orphans() == [doomed]
    assert billing(vast) == []
    assert vast.orphans().empty


def test_at_exit_unkept_boxes_are_destroyed_and_kept_ones_listed(vast: Client, home: Path) -> None:
    child = children.start(
        """
        vast.launch("dev-test", name="scratch")
        vast.launch("dev-test", name="keeper", keep=True)
        say("launched")
    """,
        home,
    )
    _out, err = child.communicate(timeout=120)
    assert child.returncode == 0, err
    assert "kept running: keeper" in err and "/h" in err and "vastnb down keeper" in err
    table = vast.instances()
    assert list(table["name"]) == ["keeper"]
    assert table["owner"].tolist() == ["kept"]
    assert vast.orphans().empty  # kept on purpose: not an orphan
    assert vast.down_orphans() == []
    assert vast.down("keeper") is True
    assert billing(vast) == []


def test_a_live_session_owns_its_boxes(vast: Client, home: Path) -> None:
    child = children.start(
        """
        box = vast.launch("dev-test", name="busy")
        say("ready")
        sys.stdin.read()
    """,
        home,
    )
    try:
        children.wait_for(child, "ready")
        owner = vast.instances().set_index("name").loc["busy", "owner"]
        assert owner.startswith("session ") and f"pid {child.pid}" in owner
        assert vast.down_orphans() == []  # someone's live work is never an orphan
    finally:
        child.send_signal(signal.SIGTERM)
        child.wait()


def test_down_all_destroys_vastnb_instances_only(vast: Client) -> None:
    assert vast.sim is not None
    mine = [vast.launch("dev-test").id, vast.launch("dev-test").id]
    # A rental made outside vastnb (no vastnb: label) is not ours to destroy.
    offer = vast.select("dev-test")[0].offer
    theirs = vast.api.create_instance(offer.id, image="ubuntu:22.04", disk_gb=10, label="my-own").id
    assert sorted(vast.down_all()) == sorted(mine)
    assert billing(vast) == [theirs]


def test_closing_destroys_what_the_market_labels_as_this_sessions(clients: object) -> None:
    # An instance whose create answered but whose row never reached the store (a Ctrl-C
    # in between): its label still names this session, and closing finds it.
    vast = clients()  # type: ignore[operator]
    offer = vast.select("dev-test")[0].offer
    ghost = vast.api.create_instance(
        offer.id, image="ubuntu:22.04", disk_gb=10, label=f"vastnb:ghost:{vast.fleet.session_id}"
    ).id
    assert billing(vast) == [ghost]
    vast.close()
    assert billing(vast) == []
