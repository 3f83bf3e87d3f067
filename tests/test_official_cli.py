"""The official Vast CLI (``vastai``, a client we did not write) against our simulator.

If the simulator drifts from the real API's routes, shapes or quirks, the CLI breaks
here, the way it would break for a user pointing it at ``vastnb sim serve``.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from vastnb.sim import SimConfig, SimServer, Simulator

VASTAI = shutil.which("vastai") or str(Path(sys.executable).with_name("vastai"))


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[Simulator, SimServer]]:
    sim = Simulator(tmp_path / "home", SimConfig(create_delay=1, load_delay=3))
    with sim.serve() as server:
        yield sim, server


def vastai(served: tuple[Simulator, SimServer], tmp_path: Path, *args: str, text: bool = False) -> Any:
    """Run ``vastai ARGS --raw`` against the simulator; its JSON output decoded (or the
    plain text, for the commands that print no JSON even with --raw)."""
    sim, server = served
    env = {**os.environ, "XDG_CONFIG_HOME": str(tmp_path / "xdg"), "HOME": str(tmp_path)}
    env.pop("VAST_API_KEY", None)
    done = subprocess.run(
        [VASTAI, "--url", server.url, "--api-key", sim.market.api_key, *args, "--raw"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout if text else json.loads(done.stdout)


def test_search_offers_with_cli_query_syntax(served: tuple[Simulator, SimServer], tmp_path: Path) -> None:
    offers = vastai(
        served, tmp_path, "search", "offers", "gpu_name=RTX_4090 num_gpus=1 reliability>0.98 dph<0.4", "-o", "dph"
    )
    assert offers, "the CLI found no offers"
    assert {o["gpu_name"] for o in offers} == {"RTX 4090"}
    assert all(o["reliability"] > 0.98 and o["dph_total"] < 0.4 and o["num_gpus"] == 1 for o in offers)
    prices = [o["dph_total"] for o in offers]
    assert prices == sorted(prices)


def test_rent_watch_label_stop_and_destroy(served: tuple[Simulator, SimServer], tmp_path: Path) -> None:
    sim, _ = served
    offer = vastai(served, tmp_path, "search", "offers", "gpu_name=RTX_3090 num_gpus=1", "-o", "dph")[0]
    created = vastai(
        served,
        tmp_path,
        "create",
        "instance",
        str(offer["id"]),
        "--image",
        "pytorch/pytorch",
        "--disk",
        "20",
        "--ssh",
        "--direct",
    )
    assert created["success"] is True
    instance_id = created["new_contract"]

    sim.advance(10)
    shown = vastai(served, tmp_path, "show", "instance", str(instance_id))
    assert shown["id"] == instance_id and shown["actual_status"] == "running"
    assert shown["gpu_name"] == "RTX 3090"

    vastai(served, tmp_path, "label", "instance", str(instance_id), "vastnb:cli-test", text=True)
    listed = vastai(served, tmp_path, "show", "instances")
    assert [(i["id"], i["label"]) for i in listed] == [(instance_id, "vastnb:cli-test")]

    vastai(served, tmp_path, "stop", "instance", str(instance_id), text=True)
    assert sim.market.show(instance_id)["actual_status"] == "stopped"

    vastai(served, tmp_path, "destroy", "instance", str(instance_id), "-y", text=True)
    assert sim.market.show(instance_id) is None


def test_show_user_reports_the_simulated_balance(served: tuple[Simulator, SimServer], tmp_path: Path) -> None:
    user = vastai(served, tmp_path, "show", "user")
    assert user["credit"] == pytest.approx(25.0)
    # The CLI drops the api_key the endpoint echoes, as it does for the real API.
    assert "api_key" not in user
