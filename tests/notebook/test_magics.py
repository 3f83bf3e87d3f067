"""``%vast`` and ``%%vast run`` driven through IPython's InteractiveShell, as a notebook would."""

from __future__ import annotations

import inspect
import os
import signal
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from IPython.core.interactiveshell import InteractiveShell

from vastnb import Client
from vastnb.front.magics import VastMagics, free_names
from vastnb.lifecycle.launch import LaunchPolicy
from vastnb.sim import SimConfig

#: vastnb's own code: no message or traceback a user sees should point into it.
VASTNB_CODE = str(Path(inspect.getfile(VastMagics)).parent) + os.sep


@pytest.fixture(scope="module")
def shell() -> InteractiveShell:
    return InteractiveShell.instance()


@pytest.fixture
def client(isolated: Path) -> Iterator[Client]:
    vast = Client(
        backend="sim", sim_config=SimConfig(create_delay=0.1, load_delay=0.1), launch_policy=LaunchPolicy(poll=0.05)
    )
    yield vast
    vast.close()  # destroys what the test launched


@pytest.fixture
def ip(shell: InteractiveShell, client: Client) -> InteractiveShell:
    """The shell with a fresh namespace and %vast bound to this test's client."""
    shell.reset()
    shell.register_magics(VastMagics(shell, client=client))
    return shell


def run(ip: InteractiveShell, source: str) -> Any:
    """Run a cell; its result (the value it displays), raising if it failed."""
    result = ip.run_cell(source, store_history=True)
    result.raise_error()
    return result.result


def fails(ip: InteractiveShell, source: str, capsys: pytest.CaptureFixture[str]) -> str:
    """Run a cell that must fail; what the user sees (stdout and stderr)."""
    result = ip.run_cell(source, store_history=True)
    assert not result.success
    out, err = capsys.readouterr()
    return out + err


@pytest.fixture
def launched(ip: InteractiveShell, client: Client, capsys: pytest.CaptureFixture[str]) -> InteractiveShell:
    """A box launched from Python, put in use by the magic."""
    client.launch("dev-test", name="nb1")
    run(ip, "%vast use nb1")
    assert "%%vast run now goes to nb1" in capsys.readouterr().out
    return ip


def test_load_ext_works_beside_a_users_worker_py(
    tmp_path: Path, shell: InteractiveShell, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "worker.py").write_text("raise ImportError('the user worker.py was imported')\n")
    (tmp_path / "vastnb_worker.py").write_text("raise ImportError('shadowed')\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    shell.reset()
    run(shell, "%load_ext vastnb")
    run(shell, "%vast help")
    assert "%vast launch" in capsys.readouterr().out


def test_help_lists_every_subcommand_with_the_api_docstring(
    ip: InteractiveShell, capsys: pytest.CaptureFixture[str]
) -> None:
    run(ip, "%vast help")
    lines = capsys.readouterr().out.splitlines()
    for command in ("help", "profiles", "offers", "launch", "ps", "use", "status", "down", "follow"):
        assert any(line.strip().startswith(f"%vast {command} ") for line in lines), command
    follow = next(line for line in lines if line.strip().startswith("%vast follow "))
    assert "%vast attach" in follow  # its older spelling, listed once
    assert any(line.strip().startswith("%%vast run ") for line in lines)
    first = inspect.getdoc(Client.launch).split(". ")[0]  # type: ignore[union-attr]
    launch = next(line for line in lines if line.strip().startswith("%vast launch "))
    assert first.replace("\n", " ").replace("``", "") in launch  # one source of truth: the API's docstring
    assert all(len(line) < 200 for line in lines)  # one line each, a sentence
    run(ip, "%vast help run")
    full = capsys.readouterr().out
    assert "--pull" in full and "--detach" in full and "last expression" in full


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ("%vast nosuch", "no %vast subcommand 'nosuch'"),
        ("%vast launch", "the following arguments are required: profile"),
        ("%vast offers dev-test --limit many", "invalid int value"),
        ("%vast run", "run is a cell magic"),
        ("%%vast ps\nx", "not a cell magic"),
        ("%%vast run --bogus\nx", "unrecognized arguments: --bogus"),
        ("%%vast run --pull 'a b'\nx", "not a Python name"),
        ("%%vast run\nx", "no box in use"),
        ('%vast launch "dev-test', "cannot parse"),
    ],
)
def test_bad_arguments_get_a_usage_message_not_a_traceback(
    ip: InteractiveShell, capsys: pytest.CaptureFixture[str], source: str, message: str
) -> None:
    seen = fails(ip, source, capsys)
    assert "UsageError" in seen and message in seen
    assert "Traceback" not in seen


def test_a_vast_error_shows_its_message_only(ip: InteractiveShell, capsys: pytest.CaptureFixture[str]) -> None:
    seen = fails(ip, "%vast launch nosuchprofile", capsys)
    assert "ProfileError" in seen and "nosuchprofile" in seen
    assert "Traceback" not in seen and VASTNB_CODE not in seen


def test_launch_then_run_a_cell_with_push_pull_and_the_last_value(
    launched: InteractiveShell, capsys: pytest.CaptureFixture[str]
) -> None:
    ip = launched
    run(ip, "a = 20\nb = np_array = __import__('numpy').arange(4)")
    value = run(
        ip,
        "%%vast run --pull total,pid\nimport os\ntotal = a + 22\npid = os.getpid()\nprint('on the box', total)\ntotal * 2",
    )
    assert value == 84  # shown as a local cell's last expression would be
    assert ip.user_ns["total"] == 42 and ip.user_ns["pid"] != os.getpid()
    assert "on the box 42" in capsys.readouterr().out  # the box's output, under the cell
    assert run(ip, "%%vast run\ntotal * 0;") is None  # a trailing ; hides it, as locally
    # Arrays pushed and pulled back intact.
    run(ip, "%%vast run --pull doubled\ndoubled = np_array * 2")
    np.testing.assert_array_equal(ip.user_ns["doubled"], np.arange(4) * 2)


def test_dash_o_stores_the_handle_and_push_names_what_goes(
    launched: InteractiveShell, capsys: pytest.CaptureFixture[str]
) -> None:
    ip = launched
    run(ip, "x, y = 1, 2")
    run(ip, "%%vast run --push x -o handle --pull z\nz = x + 1\n'y' in globals()")
    handle = ip.user_ns["handle"]
    assert handle.value is False and handle["z"] == 2  # only x was sent
    assert "not define" in fails(ip, "%%vast run --push nope\n1", capsys)


def test_a_remote_error_shows_the_box_traceback_without_vastnb(
    launched: InteractiveShell, capsys: pytest.CaptureFixture[str]
) -> None:
    ip = launched
    cell = ip.execution_count  # the number the next cell gets: In[cell]
    seen = fails(ip, "%%vast run\ndef f():\n    return 1 / 0\nf()", capsys)
    assert "ZeroDivisionError" in seen
    assert f"Cell In[{cell}], line 4, in <module>\n    f()" in seen  # the notebook cell's own line numbers
    assert f"Cell In[{cell}], line 3, in f\n    return 1 / 0" in seen
    assert VASTNB_CODE not in seen and "vastnb_worker" not in seen


def test_a_function_from_a_notebook_cell_fails_with_its_cells_lines(
    launched: InteractiveShell, client: Client, capsys: pytest.CaptureFixture[str]
) -> None:
    ip = launched
    ip.user_ns["vast"] = client
    defined_in = ip.execution_count
    run(ip, "def scale(batch):\n    factor = 0\n    return batch / factor")
    seen = fails(ip, "vast.attach('nb1').run(scale, 3)", capsys)
    assert f"Cell In[{defined_in}], line 3, in scale\n    return batch / factor" in seen
    assert "<dynamic-code>" not in seen and "<vastnb:" not in seen


def test_ctrl_c_interrupts_the_remote_work(launched: InteractiveShell, capsys: pytest.CaptureFixture[str]) -> None:
    ip = launched
    run(ip, "%%vast run\n1")  # connected: the interrupt is not spent starting the worker
    timer = threading.Timer(0.5, os.kill, (os.getpid(), signal.SIGINT))
    timer.start()
    try:
        seen = fails(ip, "%%vast run\nimport time\ntry:\n    time.sleep(30)\nfinally:\n    print('cleaned up')", capsys)
    finally:
        timer.cancel()
    assert "cleaned up" in seen and "KeyboardInterrupt" in seen
    assert run(ip, "%%vast run\n'still usable'") == "still usable"


def test_detach_returns_at_once_and_follow_brings_the_output_back(
    launched: InteractiveShell, capsys: pytest.CaptureFixture[str]
) -> None:
    ip = launched
    run(ip, "%%vast run --detach --pull r -o job\nimport time\ntime.sleep(0.3)\nprint('detached work')\nr = 7\n'done'")
    out = capsys.readouterr().out
    task = ip.user_ns["job"].id
    assert f"%vast follow {task}" in out  # what it says to run next
    assert run(ip, f"%vast attach {task}") == "done"  # follow's old name, kept as an alias
    assert "detached work" in capsys.readouterr().out
    assert ip.user_ns["r"] == 7


def test_follow_finds_a_detached_run_on_a_box_by_name(
    launched: InteractiveShell, capsys: pytest.CaptureFixture[str]
) -> None:
    """A kernel that did not start the run (no handle): --on names the box it runs on."""
    ip = launched
    run(ip, "%%vast run --detach -o job\nprint('followed')\n6 * 7")
    task = ip.user_ns["job"].id
    magics = ip.magics_manager.registry["VastMagics"]
    magics.tasks.clear()  # as in a new kernel: only the task's number is known
    capsys.readouterr()
    assert run(ip, f"%vast follow {task} --on nb1") == 42
    assert "followed" in capsys.readouterr().out


def test_ps_use_status_and_down(ip: InteractiveShell, client: Client, capsys: pytest.CaptureFixture[str]) -> None:
    run(ip, "%vast launch dev-test --name one")
    run(ip, "%vast launch dev-test --name two")
    table = run(ip, "%vast ps")
    assert sorted(table["name"]) == ["one", "two"]
    run(ip, "%vast use one")
    assert run(ip, "%%vast run\n__import__('os').getcwd()").endswith("workspace")
    run(ip, "%vast down")  # the box in use
    assert "destroyed one" in capsys.readouterr().out
    assert "no box in use" in fails(ip, "%%vast run\n1", capsys)
    assert run(ip, "%vast ps --orphans").empty  # a live kernel's boxes are nobody's orphans
    assert "one of them" in fails(ip, "%vast down two --all", capsys)
    run(ip, "%vast down --orphans")
    assert "nothing to destroy" in capsys.readouterr().out
    run(ip, "%vast down --all")
    assert client.sim is not None and client.sim.market.instances() == []


def test_down_takes_several_names_and_a_typo_spares_none(
    ip: InteractiveShell, client: Client, capsys: pytest.CaptureFixture[str]
) -> None:
    client.launch("dev-test", name="a1")
    client.launch("dev-test", name="a2")
    seen = fails(ip, "%vast down a1 typo a2", capsys)
    assert "destroyed a1" in seen and "destroyed a2" in seen and "typo" in seen
    assert "Traceback" not in seen
    assert client.sim is not None and client.sim.market.instances() == []


def test_offers_takes_the_command_lines_order(ip: InteractiveShell) -> None:
    table = run(ip, "%vast offers gpu_name=RTX_4090 --limit 5 -o reliability-")
    assert len(table) == 5 and list(table["reliability"]) == sorted(table["reliability"], reverse=True)


def test_free_names_are_what_the_cell_reads_from_outside() -> None:
    source = "import os\nfrom math import pi\ny = x + 1\ndef f(a):\n    return a * z\nfor i in range(3):\n    print(i, w)\nos.sep, pi, y"
    assert free_names(source) == ["x", "z", "w"]
    assert free_names("{k: v * n for k, v in d.items()}\n[j for j in r]") == ["n", "d", "r"]


def test_launch_shows_progress_then_a_status_card(
    ip: InteractiveShell, client: Client, capsys: pytest.CaptureFixture[str]
) -> None:
    run(ip, "%vast launch dev-test --name shown")
    out = capsys.readouterr().out
    # Outside a widget frontend, the same information prints as text: the steps...
    for stage in ("offer:", "created:", "running:", "connecting:", "ready:"):
        assert stage in out
    # ...then the card: state, GPU, $/h, uptime, cost so far, marked simulated.
    (box,) = client.fleet.store.instances(client.fleet.url)
    card = next(line for line in out.splitlines() if line.startswith(f"shown #{box.id}: running"))
    assert "/h" in card and "cost so far $" in card and "SIMULATED" in card
    run(ip, "%vast status")
    assert capsys.readouterr().out.startswith(f"shown #{box.id}: running")
