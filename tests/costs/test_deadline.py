"""A budget holds on the boxes themselves: with no notebook and no controller left, each box
of the budget destroys itself when the budget's money runs out at their summed price."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from jobs.conftest import billing, wait_for

from vastnb import Client
from vastnb.costs.deadline import BACKSTOP_S


def _launch_elsewhere(isolated: Path, profiles: Path, name: str) -> None:
    """``vastnb launch --keep`` as a process of its own that exits: nothing of vastnb is left
    running once it has (no kernel, no controller)."""
    folder = isolated / "project"
    folder.mkdir(exist_ok=True)
    done = subprocess.run(
        [sys.executable, "-m", "vastnb", "launch", "dev-test", "--keep", "--name", name]
        + ["--silence", "600", "--profiles", str(profiles)],  # silence alone would end them after 10 h
        cwd=folder,
        capture_output=True,
        text=True,
        timeout=180,
        env={**os.environ, "VASTNB_BACKEND": "sim"},
    )
    assert done.returncode == 0, done.stderr


def test_the_boxes_end_themselves_when_the_budget_runs_out_with_every_process_gone(
    vast: Client, isolated: Path, tmp_path: Path
) -> None:
    assert vast.sim is not None
    _launch_elsewhere(isolated, tmp_path / "profiles", "first")
    _launch_elsewhere(isolated, tmp_path / "profiles", "second")  # the first box's deadline moves nearer
    boxes = {r.name: r for r in vast.fleet.store.instances(vast.fleet.url)}
    assert set(boxes) == {"first", "second"} and not vast.controller.status()["running"]
    burn = sum(r.dph_total or 0.0 for r in boxes.values())
    left = 0.55 - sum(vast.api.charged_by_instance(0).values())
    lasts_h = left / burn  # both together: under 1.5 h (one alone would last about 2.7 h)

    vast.sim.advance(lasts_h * 3600)  # the money is out; the backstop gives a live vastnb time to act
    vast.instances()
    assert sorted(billing(vast)) == sorted(r.id for r in boxes.values())
    vast.sim.advance(BACKSTOP_S + 60)  # nobody did: past the boxes' deadline, by a minute
    wait_for(lambda: not billing(vast), timeout=60, message="both boxes destroyed by their own watchdogs")
    for rental in boxes.values():
        assert "budget ml ran out" in (vast.sim.market.destroyed_by(rental.id) or ""), rental.name
    spent = sum(vast.api.charged_by_instance(0).values())
    assert spent <= 0.55 + burn * (BACKSTOP_S + 60 + 10) / 3600  # overshoot: the backstop, and the watchdog's check
