"""The ledger follows the market's billing state by state, and says where it differs.

Each test drives real instances on the simulator (whose ``/charges/`` bill exactly as Vast
does) and reads them the way vastnb does; the ledger must come out at what the market
charged, item by item, except where a difference is made on purpose.
"""

from __future__ import annotations

import pytest

from vastnb import Client

#: Between a change and the reading that sees it, a few wall-clock seconds pass (the
#: simulated clock runs on): at these prices, well under a tenth of a cent.
CENT = 0.01


def _intervals(vast: Client, instance_id: int) -> list[tuple[str, float, float]]:
    """(state, GPU $/h, disk $/h) of each ledger interval of ``instance_id``, in order."""
    with vast.fleet.store.transaction() as db:
        return db.execute(
            "SELECT state, gpu_dph, disk_dph FROM ledger WHERE instance_id = ? ORDER BY start, row", (instance_id,)
        ).fetchall()


def _row(vast: Client, instance_id: int) -> dict[str, object]:
    frame = vast.reconcile(since=0)
    rows = frame[frame.instance == instance_id].to_dict("records")
    assert len(rows) == 1, frame
    return rows[0]


def test_every_state_is_billed_as_the_market_bills_it(vast: Client) -> None:
    assert vast.sim is not None
    box = vast.launch("dev-free")
    vast.sim.advance(3600)  # an hour running
    assert box.status == "running"
    vast.sim.market.record_traffic(box.id, up_bytes=2_000_000_000, down_bytes=5_000_000_000)
    vast.sim.set_status(box.id, "offline")  # the host drops off: nothing billed
    assert box.status == "offline"
    vast.sim.advance(1800)
    vast.sim.set_status(box.id, "running")
    assert box.status == "running"
    vast.sim.advance(1800)
    box.stop()  # the disk bills on
    assert box.status == "stopped"
    vast.sim.advance(7200)
    assert box.status == "stopped"
    box.down()

    states = [s for s, _, _ in _intervals(vast, box.id)]
    assert states == ["created", "loading", "running", "offline", "running", "stopped"]
    rates = {s: (gpu, disk) for s, gpu, disk in _intervals(vast, box.id)}
    assert rates["offline"] == (0.0, 0.0)
    assert rates["stopped"][0] == 0.0 and rates["stopped"][1] > 0
    assert rates["loading"][0] == 0.0 and rates["running"][0] > 0

    row = _row(vast, box.id)
    for item in ("gpu", "disk", "bwu", "bwd"):
        assert row[f"{item}_estimate"] == pytest.approx(row[f"{item}_charged"], abs=CENT), item
    assert row["bwu_charged"] > 0 and row["bwd_charged"] > 0
    assert not row["differs"]
    report = vast.costs(by="instance", since=0)
    assert report.total_usd.sum() == pytest.approx(row["charged_usd"], abs=CENT)
    assert report.gpu_hours.iloc[0] == pytest.approx(1.5, abs=0.01)  # an hour and a half running, one GPU


def test_an_interruptible_box_bills_its_bid_and_a_stop_vast_made_is_seen(vast: Client) -> None:
    assert vast.sim is not None
    box = vast.launch("dev-free", interruptible=True, bid="min+20%")
    vast.sim.advance(1800)
    assert box.status == "running"
    vast.sim.outbid(box.id)  # Vast stops it by itself: the disk bills on, the GPUs do not
    assert box.status == "stopped"  # the next poll sees it
    vast.sim.advance(3600)
    assert box.status == "stopped"
    box.down()
    (_, _, _), (_, _, _), (state, gpu_dph, _), *rest = _intervals(vast, box.id)
    assert state == "running" and gpu_dph == pytest.approx(box.rental.bid, rel=1e-6)
    assert [s for s, _, _ in rest] == ["stopped"]
    row = _row(vast, box.id)
    assert row["gpu_estimate"] == pytest.approx(row["gpu_charged"], abs=CENT)
    assert row["disk_estimate"] == pytest.approx(row["disk_charged"], abs=CENT)
    assert not row["differs"]


def test_reconciliation_says_where_the_estimate_and_the_charges_part(vast: Client) -> None:
    assert vast.sim is not None
    seen, unseen, tampered = vast.launch("dev-free"), vast.launch("dev-free"), vast.launch("dev-free")
    vast.sim.advance(3600)
    vast.instances()  # one reading of all three
    # A stop no reading saw for an hour: the ledger bills that hour as running.
    vast.sim.market.set_state(unseen.id, "stopped")
    vast.sim.advance(3600)
    vast.instances()
    # A price the ledger got wrong.
    with vast.fleet.store.transaction() as db:
        db.execute("UPDATE ledger_days SET gpu = gpu * 2 WHERE instance_id = ?", (tampered.id,))
    for box in (seen, unseen, tampered):
        box.down()
    report = vast.reconcile(since=0).set_index("instance")
    assert not report.loc[seen.id, "differs"]
    assert report.loc[unseen.id, "differs"]
    gpu = report.loc[unseen.id, ["gpu_estimate", "gpu_charged"]]
    assert gpu.gpu_estimate == pytest.approx(2 * gpu.gpu_charged, rel=0.01)  # two hours billed, one charged
    assert report.loc[tampered.id, "differs"]
    assert report.loc[tampered.id, "gpu_estimate"] == pytest.approx(
        2 * report.loc[tampered.id, "gpu_charged"], rel=0.01
    )
    assert report.loc[unseen.id, "disk_estimate"] == pytest.approx(report.loc[unseen.id, "disk_charged"], abs=CENT)


def test_a_gone_box_is_closed_once_and_its_cost_still_answers(vast: Client) -> None:
    assert vast.sim is not None
    box = vast.launch("dev-free")
    vast.sim.advance(3600)
    box.down()
    charged = box.cost()
    assert charged > 0
    vast.sim.advance(3600)  # an hour after it is gone: nothing more accrues
    vast.instances()
    assert box.cost() == charged
    assert vast.costs(by="instance", since=0).total_usd.sum() == pytest.approx(charged, abs=CENT)
    with vast.fleet.store.transaction() as db:
        assert db.execute("SELECT count(*) FROM ledger WHERE open = 1").fetchone()[0] == 0
