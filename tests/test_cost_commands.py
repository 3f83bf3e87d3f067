"""The cost report from both fronts, as a user meets it: ``vastnb cost`` (and its other
spelling ``cost-report``) run as a command, ``%vast cost`` in a notebook (IPython's
InteractiveShell). Spending comes from a real launch on the simulator: a box charged to team
``ml``, project ``vision``, an hour on the simulated clock, then ended, so that the report
stays as it is while the test reads it several ways."""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from IPython.core.interactiveshell import InteractiveShell

import vastnb
from vastnb import Client
from vastnb.costs.report import DIMENSIONS, PERIODS
from vastnb.front import costcommands
from vastnb.front.cli import main
from vastnb.front.magics import VastMagics
from vastnb.lifecycle.launch import LaunchPolicy
from vastnb.sim import SimConfig

#: vastnb's own code: no message or traceback a user sees should point into it.
VASTNB_CODE = str(Path(vastnb.__file__).parent) + os.sep
PROFILE = """\
dev-test:
  gpu: RTX_4090
  num_gpus: 1
  max_price_per_hour: 0.25
  min_reliability: 0.90
  max_duration_hours: 2
  team: ml
  project: vision
"""
BUDGETS = "budgets:\n  - {team: ml, monthly_limit_usd: 10.0}\n"
TEAM = ("ml", "vision")


@pytest.fixture
def vast(isolated: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Client]:
    """A sim client on this test's VASTNB_HOME whose profiles and budgets (found through
    VASTNB_PROFILES, by the commands too) charge team ml; at the end nothing is left billing."""
    folder = isolated / "profiles"
    folder.mkdir()
    (folder / "gpu_profiles.yaml").write_text(PROFILE)
    (folder / "budgets.yaml").write_text(BUDGETS)
    monkeypatch.setenv("VASTNB_PROFILES", str(folder))
    client = Client(
        backend="sim",
        home=isolated / "vastnb",
        sim_config=SimConfig(create_delay=0.1, load_delay=0.2),
        launch_policy=LaunchPolicy(poll=0.05),
    )
    yield client
    assert client.sim is not None
    for inst in client.sim.market.instances():
        client.sim.market.destroy(int(inst["id"]))
    client.close()


@pytest.fixture
def since(vast: Client) -> str:
    """An hour of a box charged to ml/vision, ended; the day it began (UTC), for --since."""
    assert vast.sim is not None
    day = dt.datetime.fromtimestamp(vast.sim.market.now(), dt.timezone.utc).strftime("%Y-%m-%d")
    box = vast.launch("dev-test")
    vast.sim.advance(3600)
    vast.instances()  # a reading: the hour is in the ledger
    vast.down(box.id)
    return day


def _team_total(frame: pd.DataFrame) -> float:
    """ml/vision's total: its row's, or the sum of its periods' rows."""
    return float(frame[(frame.team == TEAM[0]) & (frame.project == TEAM[1])].total_usd.sum())


def _cli(capsys: pytest.CaptureFixture[str], *argv: str, code: int = 0) -> str:
    """``vastnb ARGV`` in this process: its output, after checking how it exited."""
    capsys.readouterr()
    assert main(list(argv)) == code
    out, err = capsys.readouterr()
    assert code or not err, err
    return out if code == 0 else err


def _command(isolated: Path, *argv: str) -> subprocess.CompletedProcess[str]:
    """``python -m vastnb ARGV`` as its own process, with this test's environment (VASTNB_HOME
    among it), in a folder of its own: in ``isolated`` itself, the ``vastnb`` folder (the
    VASTNB_HOME) would shadow the package."""
    folder = isolated / "project"
    folder.mkdir(exist_ok=True)
    return subprocess.run(
        [sys.executable, "-m", "vastnb", *argv], cwd=folder, capture_output=True, text=True, timeout=120
    )


def _json_rows(capsys: pytest.CaptureFixture[str], *argv: str) -> list[dict[str, Any]]:
    data = json.loads(_cli(capsys, *argv, "--json"))
    assert data["simulated"] is True
    return list(data["rows"])


# -- the command line ----------------------------------------------------------------------


def test_the_table_shows_the_teams_spending_as_the_api_reports_it(
    vast: Client, since: str, capsys: pytest.CaptureFixture[str]
) -> None:
    expected = _team_total(vast.costs(since=since))
    assert expected > 0.1  # an hour of an RTX 4090 at up to $0.25/h
    out = _cli(capsys, "cost", "--by", "team,project", "--since", since)
    assert out.startswith("SIMULATED marketplace")
    header, *lines = [line for line in out.splitlines()[1:] if line.strip()]
    rows = [dict(zip(header.split(), line.split(), strict=True)) for line in lines]
    (row,) = [r for r in rows if (r["team"], r["project"]) == TEAM]
    assert float(row["total_usd"]) == pytest.approx(expected, abs=0.00005)  # dollars to four decimals
    assert len(row["total_usd"].partition(".")[2]) <= 4 and float(row["gpu_hours"]) == pytest.approx(1.0, abs=0.01)
    assert float(row["share_of_budget"]) == pytest.approx(expected / 10.0, abs=0.00005)  # of ml's $10 a month


def test_json_is_one_object_per_row_with_null_for_nan_and_iso_dates(
    vast: Client, since: str, capsys: pytest.CaptureFixture[str]
) -> None:
    expected = vast.costs(since=since)
    rows = _json_rows(capsys, "cost", "--since", since)
    assert {(r["team"], r["project"]): r["total_usd"] for r in rows} == {TEAM: pytest.approx(_team_total(expected))}
    assert list(rows[0]) == list(expected.columns)
    by_day = _json_rows(capsys, "cost", "--by", "gpu", "--freq", "day", "--since", since)
    assert {r["gpu"] for r in by_day} == {"RTX 4090"}
    assert sum(r["total_usd"] for r in by_day) == pytest.approx(_team_total(expected))
    assert by_day[0]["period"] == since  # an ISO date, not milliseconds (a second day, if the hour crossed midnight)
    assert all(r["share_of_budget"] is None for r in by_day)  # no budget applies to a GPU: NaN, as null


def test_csv_writes_a_file_pandas_reads_back_with_the_same_totals(
    vast: Client, since: str, isolated: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    expected = vast.costs(by="team,project,week", since=since)
    out = _cli(capsys, "cost", "--by", "team,project", "--freq", "week", "--since", since, "--csv", "report.csv")
    path = isolated / "report.csv"
    back = pd.read_csv(path, parse_dates=["period"])
    assert out.strip() == f"wrote {len(back)} {'row' if len(back) == 1 else 'rows'} to {path}"  # where, in full
    assert list(back.columns) == list(expected.columns)
    assert _team_total(back) == pytest.approx(_team_total(expected), rel=1e-12)  # every digit
    assert (back.period == expected.period).all()


def test_cost_report_is_cost_and_runs_as_its_own_process(
    vast: Client, since: str, isolated: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The reference architecture's name for it, run as a user runs it: another process,
    the same market and ledger through VASTNB_HOME."""
    here = _json_rows(capsys, "cost", "--since", since)
    assert _json_rows(capsys, "cost-report", "--since", since) == here
    done = _command(isolated, "cost-report", "--since", since, "--json")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["rows"] == here
    assert "cost (cost-report)" in _cli_help(capsys)


def _cli_help(capsys: pytest.CaptureFixture[str]) -> str:
    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_:
        main(["--help"])
    assert exit_.value.code == 0
    return capsys.readouterr().out


def test_reconcile_sets_the_ledger_against_the_markets_charges(
    vast: Client, since: str, capsys: pytest.CaptureFixture[str]
) -> None:
    (row,) = _json_rows(capsys, "cost", "--reconcile", "--since", since)
    assert row["charged_usd"] > 0.1 and row["estimate_usd"] == pytest.approx(row["charged_usd"], abs=0.01)
    assert row["estimate_usd"] == pytest.approx(_team_total(vast.costs(since=since)), abs=0.00001)
    assert row["differs"] is False
    assert "charged_usd" in _cli(capsys, "cost-report", "--reconcile", "--since", since)


def test_an_unknown_dimension_names_the_ones_there_are(vast: Client, capsys: pytest.CaptureFixture[str]) -> None:
    err = _cli(capsys, "cost", "--by", "team,nonsense", code=1)
    assert err.startswith("vastnb: ") and len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert "'nonsense'" in err and all(name in err for name in [*DIMENSIONS, *PERIODS])


def test_a_date_that_is_not_one_is_refused_as_the_real_command_does(
    vast: Client, isolated: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    err = _cli(capsys, "cost", "--since", "notadate", code=1)
    assert err.startswith("vastnb: ") and "'notadate'" in err and "YYYY-MM-DD" in err and "Traceback" not in err
    done = _command(isolated, "cost", "--until", "2026-13-45")
    assert done.returncode == 1 and done.stdout == ""
    assert done.stderr.startswith("vastnb: ") and "2026-13-45" in done.stderr and "Traceback" not in done.stderr


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--reconcile", "--by", "team"], "--by and --freq do not apply"),
        (["--csv", "x.csv", "--json"], "one or the other"),
    ],
)
def test_flags_that_do_not_go_together_are_a_usage_error(
    argv: list[str], message: str, vast: Client, capsys: pytest.CaptureFixture[str]
) -> None:
    err = _cli(capsys, "cost", *argv, code=2)
    assert err.startswith("vastnb cost: ") and message in err


def test_a_bad_period_is_argparses_choice_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["cost", "--freq", "year"])
    assert exit_.value.code == 2 and "invalid choice: 'year'" in capsys.readouterr().err


def test_the_flags_help_names_what_the_report_takes() -> None:
    assert costcommands.FREQS == tuple(PERIODS)
    assert costcommands.BY_NAMES == ", ".join([*DIMENSIONS, *PERIODS])


# -- the notebook --------------------------------------------------------------------------


@pytest.fixture
def ip(vast: Client) -> InteractiveShell:
    shell = InteractiveShell.instance()
    shell.reset()
    shell.register_magics(VastMagics(shell, client=vast))
    return shell


def run(ip: InteractiveShell, source: str) -> Any:
    result = ip.run_cell(source, store_history=True)
    result.raise_error()
    return result.result


def fails(ip: InteractiveShell, source: str, capsys: pytest.CaptureFixture[str]) -> str:
    capsys.readouterr()
    result = ip.run_cell(source, store_history=True)
    assert not result.success, f"{source!r} did not fail"
    out, err = capsys.readouterr()
    seen = out + err
    assert "Traceback" not in seen and VASTNB_CODE not in seen, seen
    return seen


def test_the_magic_returns_the_report_to_display(ip: InteractiveShell, vast: Client, since: str) -> None:
    frame = run(ip, f"%vast cost --by team,project --since {since}")
    assert isinstance(frame, pd.DataFrame)
    pd.testing.assert_frame_equal(frame, vast.costs(since=since))
    assert _team_total(frame) > 0.1
    pd.testing.assert_frame_equal(run(ip, f"%vast cost-report --since {since}"), frame)
    default = run(ip, "%vast cost")  # this month so far: the hour is in it
    assert _team_total(default) == pytest.approx(_team_total(vast.costs()))
    weekly = run(ip, f"%vast cost --by team --freq week --since {since} --until 2100-01-01")
    assert list(weekly.columns[:2]) == ["team", "period"] and weekly.total_usd.sum() == pytest.approx(
        _team_total(frame)
    )
    checked = run(ip, f"%vast cost --reconcile --since {since}")
    assert checked.charged_usd.sum() == pytest.approx(_team_total(frame), abs=0.01)


def test_the_magic_writes_csv_and_still_displays(
    ip: InteractiveShell, since: str, isolated: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    capsys.readouterr()
    frame = run(ip, f"%vast cost --since {since} --csv costs.csv")
    said = capsys.readouterr().out.splitlines()
    assert said[0] == f"wrote 1 row to {isolated / 'costs.csv'}" and said[1].startswith("Out[")  # then displayed
    assert _team_total(pd.read_csv(isolated / "costs.csv")) == pytest.approx(_team_total(frame), rel=1e-12)


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ("%vast cost --by nonsense", "choose from " + ", ".join([*DIMENSIONS, *PERIODS])),
        ("%vast cost --since notadate", "since='notadate' is not a date"),
        ("%vast cost --freq hourly", "invalid choice: 'hourly'"),
        ("%vast cost --reconcile --freq day", "--by and --freq do not apply"),
        ("%vast cost --json", "unrecognized arguments: --json"),  # the notebook displays the DataFrame itself
    ],
)
def test_the_magic_says_what_is_wrong_without_a_traceback(
    ip: InteractiveShell, capsys: pytest.CaptureFixture[str], source: str, message: str
) -> None:
    assert message in fails(ip, source, capsys)


def test_the_magics_help_lists_cost_and_its_flags(ip: InteractiveShell, capsys: pytest.CaptureFixture[str]) -> None:
    capsys.readouterr()
    run(ip, "%vast help")
    (line,) = [ln for ln in capsys.readouterr().out.splitlines() if ln.strip().startswith("%vast cost ")]
    assert "%vast cost-report" in line and len(line) < 200
    run(ip, "%vast help cost-report")
    full = capsys.readouterr().out
    assert full.startswith("%vast cost ") and "--reconcile" in full and "--csv FILE" in full
    assert "--json" not in full and "--profiles" not in full  # the command line's
