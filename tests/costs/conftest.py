"""A sim client whose profile ``dev-test`` charges team ``ml``, under a small budget (and
``dev-free`` no one, for tests of what things cost); its controller (if a
submit starts one) polls often; at the end, the controller stopped and nothing left billing."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from jobs.conftest import FAST_CONTROLLER, FAST_POLICY, FAST_SIM

from vastnb import Client

PROFILE = """\
dev-test:
  gpu: RTX_4090
  num_gpus: 1
  max_price_per_hour: 0.25
  min_reliability: 0.90
  max_duration_hours: 2
  team: ml
dev-free:
  gpu: RTX_4090
  num_gpus: 1
  max_price_per_hour: 0.25
  min_reliability: 0.90
  max_duration_hours: 8
"""
BUDGETS = "budgets:\n  - {team: ml, monthly_limit_usd: 0.55, alert_thresholds: [0.5, 0.8, 1.0]}\n"


@pytest.fixture
def vast(isolated: Path, tmp_path: Path) -> Iterator[Client]:
    folder = tmp_path / "profiles"
    folder.mkdir()
    (folder / "gpu_profiles.yaml").write_text(PROFILE)
    (folder / "budgets.yaml").write_text(BUDGETS)
    client = Client(
        backend="sim",
        home=isolated / "vastnb",
        profiles=folder,
        sim_config=FAST_SIM,
        launch_policy=FAST_POLICY,
        controller=FAST_CONTROLLER,
    )
    yield client
    client.controller.stop(timeout=30)
    assert client.sim is not None
    for inst in client.sim.market.instances():
        client.sim.market.destroy(int(inst["id"]))
    client.close()
