"""Seeded chaos (see tests/jobs/chaos.py): every job ends succeeded with the result of an
uninterrupted run, no fault costs more than one checkpoint interval of work, nothing is
left billing. ``bench/chaos.py --runs 100`` runs the same campaign on more seeds."""

from __future__ import annotations

from pathlib import Path

import pytest

from . import chaos

PLAIN_SEEDS = range(12)  # bench/chaos.py runs more; these are the suite's share
TORCH_SEEDS = (100,)
EVERY = 8


@pytest.mark.parametrize("seed", PLAIN_SEEDS)
def test_a_job_survives_random_faults(seed: int, tmp_path: Path) -> None:
    _check(chaos.run(seed, tmp_path / "vastnb", every=EVERY))


@pytest.mark.parametrize("seed", TORCH_SEEDS)
def test_a_torch_job_survives_random_faults(seed: int, tmp_path: Path) -> None:
    _check(chaos.run(seed, tmp_path / "vastnb", model="torch", steps=40, every=EVERY, delay=0.05))


def _check(run: chaos.ChaosRun) -> None:
    assert not run.error, run
    assert run.state == "succeeded", run
    assert run.correct, run
    assert all(redone <= EVERY + 1 for redone in run.redone), run  # + the step whose checkpoint was uploading
    assert run.left_billing == [], run
    assert run.ok(EVERY)
