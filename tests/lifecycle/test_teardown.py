"""Teardown never stops early: one instance that cannot be destroyed spares none of the
others, and the failure is told, with what to do, only after every one was tried."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from vastnb import Client, TeardownError
from vastnb.front.cli import main
from vastnb.sim import Simulator

REFUSAL = '{"success": false, "error": "invalid_args", "msg": "instance is locked by the host"}'


@pytest.fixture
def sim(home: Path) -> Iterator[Simulator]:
    simulator = Simulator(home)
    yield simulator
    simulator.api.faults.clear()
    for inst in simulator.market.instances():
        simulator.market.destroy(int(inst["id"]))


def three_boxes(sim: Simulator, session: str = "0123abcd") -> list[int]:
    """Three ``vastnb:`` instances of ``session``, made straight on the market."""
    offers = sim.market.search({"order": [["dph_base", "asc"]], "limit": 3})
    return [
        int(sim.market.create(o["id"], {"image": "x", "disk": 10, "label": f"vastnb:box{n}:{session}"})["new_contract"])
        for n, o in enumerate(offers)
    ]


def refuse_destroying(sim: Simulator, instance_id: int) -> None:
    """Every DELETE of ``instance_id`` fails, as a destroy that keeps failing would."""
    sim.api.faults.inject(
        "status", path=rf"/instances/{instance_id}/?$", method="DELETE", status=400, body=REFUSAL, times=1000
    )


def alive(sim: Simulator) -> set[int]:
    return {int(i["id"]) for i in sim.market.instances()}


def test_down_all_tries_every_instance_and_names_the_one_that_failed(home: Path) -> None:
    with Client(backend="sim", home=home) as vast:
        sim = vast.sim
        assert sim is not None
        first, stuck, last = three_boxes(sim)
        refuse_destroying(sim, stuck)
        with pytest.raises(TeardownError) as info:
            vast.down_all()
        assert alive(sim) == {stuck}  # the one after the failure was destroyed too
        sim.api.faults.clear()
        sim.market.destroy(stuck)
    error = info.value
    assert sorted(error.destroyed) == [first, last] and list(error.failed) == [stuck]
    assert f"#{stuck}" in str(error) and f"vastnb down {stuck}" in str(error) and "may still be billing" in str(error)


def test_the_cli_reports_each_failure_and_exits_non_zero_after_trying_all(
    sim: Simulator, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    first, stuck, last = three_boxes(sim)
    refuse_destroying(sim, stuck)
    server = sim.serve("127.0.0.1", 0).start()  # the CLI is a client of its own: it reaches this market over HTTP
    try:
        monkeypatch.setenv("VAST_URL", server.url)
        monkeypatch.setenv("VAST_API_KEY", sim.market.api_key)
        code = main(["down", "--all"])
        out, err = capsys.readouterr()
    finally:
        threading.Thread(target=server.stop, daemon=True).start()
    assert code == 1, (out, err)
    assert alive(sim) == {stuck}
    assert f"destroyed: {first}, {last}" in out
    assert f"#{stuck}: " in err and "locked by the host" in err and f"vastnb down {stuck}" in err
