"""The ``vastnb`` command line, run as a user runs it."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from vastnb.front.cli import main


def test_profiles_prints_the_table(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["profiles"]) == 0
    out = capsys.readouterr().out
    for name in ("dev-test", "training-standard", "training-distributed", "inference-batch"):
        assert name in out


def test_offers_for_a_profile_says_it_is_simulated(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["offers", "training-standard", "--limit", "5"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("SIMULATED marketplace")
    rows = [line for line in out.splitlines() if re.match(r"^\d+ ", line)]
    assert len(rows) == 5 and all("A100" in row for row in rows)


def test_offers_json_is_machine_readable(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["offers", "dev-test", "--limit", "3", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["simulated"] is True
    assert len(data["rows"]) == 3
    prices = [row["price_per_hour"] for row in data["rows"]]
    assert prices == sorted(prices) and all(p <= 0.25 for p in prices)
    assert all(row["gpu"] == "RTX 4090" for row in data["rows"])


def test_offers_takes_a_query_in_several_words(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["offers", "gpu_name=RTX_3090", "num_gpus=2", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)["rows"]
    assert rows and all(r["gpu"] == "RTX 3090" and r["num_gpus"] == 2 for r in rows)


def test_offers_sorts_a_query_by_order(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["offers", "gpu_name=RTX_4090", "--limit", "5", "--order", "reliability-", "--json"]) == 0
    reliability = [row["reliability"] for row in json.loads(capsys.readouterr().out)["rows"]]
    assert len(reliability) == 5 and reliability == sorted(reliability, reverse=True)


def test_help_lists_the_commands_and_a_bad_flag_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["--help"])
    assert exit_.value.code == 0
    listing = capsys.readouterr().out
    assert all(name in listing for name in ("profiles", "offers", "launch", "ps", "down", "demo", "sim"))
    with pytest.raises(SystemExit) as exit_:
        main(["ps", "--detach"])  # a %%vast run flag: not the command line's
    assert exit_.value.code == 2 and "unrecognized arguments: --detach" in capsys.readouterr().err


def test_errors_are_one_clear_line_not_a_traceback(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["offers", "gpu_nam=RTX_4090"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("vastnb: ") and "gpu_name" in err and "Traceback" not in err


def test_bad_profile_file_names_file_and_line(isolated: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (isolated / "profiles").mkdir()
    (isolated / "profiles" / "gpu_profiles.yaml").write_text(
        "dev:\n  gpu: RTX_4090\n  num_gpus: 1\n  max_price_per_hr: 0.3\n  min_reliability: 0.9\n  max_duration_hours: 1\n"
    )
    assert main(["profiles"]) == 1
    err = capsys.readouterr().err
    assert "gpu_profiles.yaml, line 4" in err and "max_price_per_hour" in err


def test_sim_serve_refuses_a_non_loopback_host(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["sim", "serve", "--host", "0.0.0.0"]) == 2
    assert "loopback" in capsys.readouterr().err


def test_sim_serve_serves_the_vast_api_on_loopback(isolated: Path) -> None:
    """`vastnb sim serve` in its own process, queried over HTTP like any Vast client would."""
    process = subprocess.Popen(
        [sys.executable, "-m", "vastnb.front.cli", "sim", "serve", "--port", "0", "--rate-limits", "0"],
        stdout=subprocess.PIPE,
        text=True,
        env=os.environ.copy(),
    )
    try:
        assert process.stdout is not None
        banner = [process.stdout.readline() for _ in range(4)]
        url = re.search(r"http://127\.0\.0\.1:\d+", banner[0])
        key = re.search(r"VAST_API_KEY=(\S+)", banner[3])
        assert url and key, banner
        offers = httpx.post(f"{url.group(0)}/api/v0/bundles/", json={"gpu_name": {"eq": "RTX_4090"}, "limit": 5}).json()
        assert len(offers["offers"]) == 5 and {o["gpu_name"] for o in offers["offers"]} == {"RTX 4090"}
        user = httpx.get(f"{url.group(0)}/api/v0/users/current/", headers={"Authorization": f"Bearer {key.group(1)}"})
        assert user.status_code == 200 and user.json()["balance"] > 0
    finally:
        process.terminate()
        process.wait(timeout=10)


def test_the_simulator_serves_on_ipv6_loopback_too() -> None:
    from vastnb.sim import Simulator

    try:
        server = Simulator(None).serve("::1", 0).start()
    except OSError as exc:  # a machine without IPv6
        pytest.skip(f"no IPv6 loopback here: {exc}")
    try:
        assert server.url.startswith("http://[::1]:")
        assert httpx.post(f"{server.url}/api/v0/bundles/", json={"limit": 1}).json()["offers"]
    finally:
        server.stop()
