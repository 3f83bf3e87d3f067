"""The lifecycle commands of the ``vastnb`` CLI, as a user types them: ``launch``, ``ps``,
``down`` and ``demo``, on the simulated market (no API key in these tests).

``launch``, ``ps`` and ``down`` run in process through ``vastnb.front.cli.main``; ``demo`` runs
as a real command. Simulated boxes are real local worker processes: every test that
makes one destroys everything on its market at the end, passed or failed.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from vastnb import Client
from vastnb.front.cli import main
from vastnb.lifecycle.launch import LaunchPolicy
from vastnb.sim import SimConfig, Simulator

STAGE = re.compile(r"^\[\s*\d+\.\d+s\] (\w+): ", re.M)


@pytest.fixture
def vastnb_home(isolated: Path) -> Path:
    return isolated / "vastnb"


@pytest.fixture
def market(vastnb_home: Path) -> Iterator[object]:
    """The simulated market the CLI uses here. At the end, ``down --all``'s own path
    (``Client().down_all()``), then anything still there, is destroyed."""
    yield Simulator(vastnb_home).market
    try:
        with Client(backend="sim") as client:
            client.down_all()
    finally:
        sim = Simulator(vastnb_home)
        for inst in sim.market.instances():
            sim.market.destroy(int(inst["id"]))


def live_ids(market: object) -> list[int]:
    """Ids of the simulated instances that still exist (and so would bill)."""
    return [int(i["id"]) for i in market.instances()]  # type: ignore[attr-defined]


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    """``vastnb ARGV`` in process: (exit code, stdout, stderr)."""
    capsys.readouterr()
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def ps_rows(capsys: pytest.CaptureFixture[str], *flags: str) -> list[dict[str, object]]:
    code, out, err = run(capsys, "ps", "--json", *flags)
    assert code == 0, err
    listing = json.loads(out)
    assert listing["simulated"] is True
    return listing["rows"]


# -- launch, ps, down ----------------------------------------------------------------------


def test_launch_ps_down(capsys: pytest.CaptureFixture[str], market: object) -> None:
    code, out, err = run(capsys, "launch", "dev-test", "--name", "x")
    assert code == 0, err
    assert "SIMULATED" in out
    stages = STAGE.findall(out)
    for stage in ("offer", "created", "running", "ready"):
        assert stage in stages, out
    assert stages.index("offer") < stages.index("created") < stages.index("running") < stages.index("ready")
    assert "x (#" in out and "vastnb down x" in out  # how to end it is said
    assert "Traceback" not in out + err
    (instance_id,) = live_ids(market)  # the command is over; the box stays
    assert f"#{instance_id}" in out
    assert market.show(instance_id)["actual_status"] == "running"  # type: ignore[attr-defined]

    # ps: a table with the box, kept, and the figures marked as simulated.
    code, out, err = run(capsys, "ps")
    assert code == 0, err
    assert "SIMULATED" in out
    (line,) = [ln for ln in out.splitlines() if ln.startswith(str(instance_id))]
    assert line.split()[1:3] == ["x", "dev-test"]
    assert "running" in line and "kept" in line and "True" in line

    # ps --json: the same, for scripts.
    (row,) = ps_rows(capsys)
    assert row["id"] == instance_id and row["name"] == "x" and row["profile"] == "dev-test"
    assert row["state"] == "running" and row["owner"] == "kept" and row["keep"] is True
    assert isinstance(row["price_per_hour"], float) and row["price_per_hour"] > 0
    assert ps_rows(capsys, "--orphans") == []  # kept is not orphaned

    # The name is taken while it runs: a second launch says so and rents nothing.
    code, out, err = run(capsys, "launch", "dev-test", "--name", "x")
    assert code == 1
    assert "already running" in err and "Traceback" not in err
    assert live_ids(market) == [instance_id]

    # down: gone from the market, and from ps.
    code, out, err = run(capsys, "down", "x")
    assert code == 0, err
    # by name, as asked (--all and --orphans say ids), with what it cost in all
    assert re.fullmatch(r"destroyed: x; it cost \$\d+\.\d{4} in all", out.strip()), out
    assert live_ids(market) == []
    code, out, err = run(capsys, "ps")
    assert code == 0 and "(none)" in out and "dev-test" not in out
    assert ps_rows(capsys) == []

    # down again: idempotent, nothing to do.
    code, out, err = run(capsys, "down", "x")
    assert code == 0, err
    assert out.strip() == "x: already gone"


@pytest.mark.parametrize(
    "argv",
    [["down"], ["down", "x", "--all"], ["down", "--all", "--orphans"], ["down", "x", "--orphans"]],
    ids=["nothing", "name+all", "all+orphans", "name+orphans"],
)
def test_down_needs_exactly_one_selector(capsys: pytest.CaptureFixture[str], market: object, argv: list[str]) -> None:
    code, out, err = run(capsys, *argv)
    assert code == 2
    assert "--all" in err and "--orphans" in err
    assert out == "" and "Traceback" not in err


def test_down_of_an_unknown_name_says_so(capsys: pytest.CaptureFixture[str], market: object) -> None:
    code, out, err = run(capsys, "down", "nosuchname")
    assert code == 1
    assert "nosuchname" in err and "vastnb ps" in err
    assert "Traceback" not in out + err


def test_launch_of_an_unknown_profile_says_which_exist(capsys: pytest.CaptureFixture[str], market: object) -> None:
    code, out, err = run(capsys, "launch", "nosuchprofile")
    assert code == 1
    assert "unknown profile 'nosuchprofile'" in err
    assert "dev-test" in err  # the known ones are listed
    assert "Traceback" not in out + err
    assert live_ids(market) == []


def test_down_with_a_typo_among_names_still_destroys_the_others(
    capsys: pytest.CaptureFixture[str], market: object
) -> None:
    fast = SimConfig(create_delay=0.05, load_delay=0.05)
    with Client(backend="sim", sim_config=fast, launch_policy=LaunchPolicy(poll=0.02)) as vast:
        box = vast.launch("dev-test", name="exp1", keep=True)
    assert live_ids(market) == [box.id]
    code, out, err = run(capsys, "down", "typo", "exp1")
    assert "typo" in err and "Traceback" not in err
    assert live_ids(market) == []  # exp1 is not left billing because of a typo beside it
    assert "exp1" in out
    assert code == 1


# -- orphans ---------------------------------------------------------------------------------

KERNEL = """
    import os, signal
    from vastnb import Client
    from vastnb.lifecycle.launch import LaunchPolicy
    from vastnb.sim import SimConfig
    vast = Client(backend="sim", sim_config=SimConfig(create_delay=0.05, load_delay=0.05),
                  launch_policy=LaunchPolicy(poll=0.02))
    lost = vast.launch("dev-test", name="lost")
    kept = vast.launch("dev-test", name="kept", keep=True)
    print(lost.id, kept.id, flush=True)
    os.kill(os.getpid(), signal.SIGKILL)  # the kernel dies: no at-exit teardown
"""


def test_orphans_of_a_killed_kernel_are_listed_and_destroyed(
    capsys: pytest.CaptureFixture[str], market: object, isolated: Path
) -> None:
    work = isolated / "kernel"
    work.mkdir()
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(KERNEL)], cwd=work, capture_output=True, text=True, timeout=180
    )
    assert done.returncode == -9, done.stderr
    lost, kept = map(int, done.stdout.split())
    assert sorted(live_ids(market)) == sorted([lost, kept])

    rows = {r["name"]: r for r in ps_rows(capsys)}
    assert rows["lost"]["owner"] == "orphan" and rows["lost"]["keep"] is False
    assert rows["kept"]["owner"] == "kept"
    code, out, err = run(capsys, "ps", "--orphans")
    assert code == 0, err
    assert "lost" in out and "orphan" in out and "kept" not in out
    assert [r["id"] for r in ps_rows(capsys, "--orphans")] == [lost]

    code, out, err = run(capsys, "down", "--orphans")
    assert code == 0, err
    assert out.strip() == f"destroyed: {lost}"
    assert live_ids(market) == [kept]  # a kept box is not an orphan
    assert ps_rows(capsys, "--orphans") == []

    code, out, err = run(capsys, "down", "--all")
    assert code == 0, err
    assert out.strip() == f"destroyed: {kept}"
    assert live_ids(market) == []
    code, out, err = run(capsys, "down", "--all")
    assert code == 0 and out.strip() == "nothing to destroy"


def test_ctrl_c_during_launch_leaves_nothing_billing(market: object, isolated: Path) -> None:
    """Ctrl-C while ``vastnb launch`` waits for the box: the instance it created is
    destroyed, though launch keeps boxes it finishes."""
    work = isolated / "work"
    work.mkdir()
    child = subprocess.Popen(
        [*_vastnb_command(), "launch", "dev-test", "--name", "cc"],
        cwd=work,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert child.stdout is not None
        lines = []
        for line in child.stdout:
            lines.append(line)
            if "] loading:" in line:  # created and recorded; now waiting for the image
                child.send_signal(signal.SIGINT)
                break
        out, err = child.communicate(timeout=60)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    out = "".join(lines) + out
    assert "] created:" in out and "] loading:" in out, out + err
    assert child.returncode != 0
    assert "] cleanup: instance" in out and "destroyed" in out.split("] cleanup:")[1], out + err
    assert "] ready:" not in out
    assert live_ids(market) == []


# -- demo ------------------------------------------------------------------------------------


def _vastnb_command() -> list[str]:
    script = Path(sys.executable).with_name("vastnb")
    return [str(script)] if script.exists() else [sys.executable, "-m", "vastnb.front.cli"]


def test_demo_runs_the_whole_loop_and_leaves_nothing(isolated: Path, vastnb_home: Path) -> None:
    env = {
        **os.environ,
        "HOME": str(isolated),
        "VASTNB_HOME": str(vastnb_home),
        "XDG_CONFIG_HOME": str(isolated / "config"),
    }
    for name in ("VAST_API_KEY", "VAST_URL", "VASTNB_BACKEND"):
        env.pop(name, None)
    work = isolated / "work"
    work.mkdir()
    try:
        done = subprocess.run(
            [*_vastnb_command(), "demo"], cwd=work, env=env, capture_output=True, text=True, timeout=120
        )
        out = done.stdout
        assert done.returncode == 0, done.stdout + done.stderr
        assert "Traceback" not in out + done.stderr
        assert "SIMULATED" in out
        stages = STAGE.findall(out)
        for stage in ("offer", "created", "running", "ready"):
            assert stage in stages, out
        losses = re.findall(r"^step\s+(\d+)\s+loss (\d+\.\d+)", out, re.M)
        assert [int(step) for step, _ in losses] == [100, 200, 300, 400]  # streamed from the box
        assert float(losses[-1][1]) < 0.05
        result = re.search(r"^Result from the box: w=(-?\d+\.\d+) b=(-?\d+\.\d+)", out, re.M)
        assert result, out
        assert abs(float(result[1]) - 3) < 0.1 and abs(float(result[2]) + 1) < 0.1  # y = 3x - 1, learnt
        assert re.search(r"^Simulated cost: \$\d+\.\d+", out, re.M), out
        order = [out.index(s) for s in ("] offer:", "] ready:", "step  100", "Result from the box", "Simulated cost")]
        assert order == sorted(order)
        assert Simulator(vastnb_home).market.instances() == []
    finally:
        sim = Simulator(vastnb_home)
        for inst in sim.market.instances():
            sim.market.destroy(int(inst["id"]))
