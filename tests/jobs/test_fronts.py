"""Jobs through the two fronts, as a user meets them: ``%%vast job`` and ``%vast jobs``,
``logs``, ``cancel`` and ``down --cancel-job`` in a notebook (IPython's InteractiveShell);
``vastnb submit``, ``jobs``, ``logs``, ``cancel`` and ``controller`` as real commands; bad
input refused with a clear message before anything is queued; names and priorities.

Every test that makes a controller or a box stops and destroys them at the end, passed or
failed (the ``jobs_client`` fixture in process, ``cli`` for the commands).
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import textwrap
import time
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from IPython.core.interactiveshell import InteractiveShell

import vastnb
from vastnb import Client, JobState
from vastnb.errors import ConfigError, JobWarning, ProfileError, RemoteError
from vastnb.front.magics import VastMagics
from vastnb.jobs.controller import ControllerSettings
from vastnb.jobs.queue import Limits
from vastnb.offload import CellResult
from vastnb.sim import Simulator

from . import work
from .conftest import FAST_TIMING, billing, wait_for

J = JobState
#: vastnb's own code: no message or traceback a user sees should point into it.
VASTNB_CODE = str(Path(vastnb.__file__).parent) + os.sep
FINAL = {s.value for s in JobState if s.final}

# Most jobs here have no checkpoint on purpose; test_a_job_without_a_checkpoint_warns checks the warning.
pytestmark = pytest.mark.filterwarnings("ignore::vastnb.errors.JobWarning")


# -- the notebook --------------------------------------------------------------------------


@pytest.fixture
def ip(vast: Client) -> InteractiveShell:
    """IPython's shell with a fresh namespace, ``%vast`` bound to this test's client and
    ``vast`` defined in it, as after ``vast = Client()`` in a notebook."""
    shell = InteractiveShell.instance()
    shell.reset()
    shell.register_magics(VastMagics(shell, client=vast))
    shell.user_ns["vast"] = vast
    return shell


def run(ip: InteractiveShell, source: str) -> Any:
    """Run a cell; its result (the value it displays), raising if it failed."""
    result = ip.run_cell(source, store_history=True)
    result.raise_error()
    return result.result


def fails(ip: InteractiveShell, source: str, capsys: pytest.CaptureFixture[str]) -> str:
    """Run a cell that must fail; what the user sees (stdout and stderr)."""
    capsys.readouterr()
    result = ip.run_cell(source, store_history=True)
    assert not result.success, f"{source!r} did not fail"
    out, err = capsys.readouterr()
    return out + err


def clear(seen: str) -> None:
    """A message, not a traceback into vastnb."""
    assert "Traceback" not in seen and VASTNB_CODE not in seen, seen


def test_a_cell_job_runs_with_the_inputs_captured_at_submit(
    ip: InteractiveShell, vast: Client, capsys: pytest.CaptureFixture[str]
) -> None:
    run(ip, "x = 21")
    job = run(
        ip, "%%vast job dev-test --name cellj --pull y\nimport time\ntime.sleep(0.5)\nprint('doubling', x)\ny = x * 2"
    )
    assert "job cellj queued" in capsys.readouterr().out
    assert job.name == "cellj"
    run(ip, "x = 1000")  # the notebook moves on: the job keeps the x it was submitted with
    result = vast.job("cellj").result(timeout=60)
    assert isinstance(result, CellResult)
    assert result["y"] == 42
    assert ip.user_ns["x"] == 1000 and "y" not in ip.user_ns  # a job's pulls go to its result only

    frame = run(ip, "%vast jobs")
    assert isinstance(frame, pd.DataFrame)
    row = frame[frame.name == "cellj"]
    assert len(row) == 1 and row.state.iloc[0] == "succeeded" and row.profile.iloc[0] == "dev-test"
    assert row.attempts.iloc[0] == 1 and row.recoveries.iloc[0] == 0

    capsys.readouterr()
    run(ip, "%vast logs cellj")
    logs = capsys.readouterr().out
    assert "=== attempt 1" in logs and "doubling 21" in logs and "doubling 1000" not in logs

    seen = fails(ip, "%vast cancel cellj", capsys)
    assert "cellj" in seen and "succeeded" in seen
    clear(seen)
    assert vast.job("cellj").state is J.SUCCEEDED
    wait_for(lambda: not billing(vast), timeout=30, message="nothing billing")


def test_a_cell_job_that_raises_fails_and_its_result_raises_the_cells_error(
    ip: InteractiveShell, vast: Client, capsys: pytest.CaptureFixture[str]
) -> None:
    run(ip, "%%vast job dev-test --name boom\ndef f():\n    raise ValueError('no good value')\nf()")
    job = vast.job("boom")
    assert job.wait(timeout=60) is J.FAILED
    with pytest.raises(RemoteError) as caught:
        job.result()
    error = caught.value
    assert error.remote_type == "ValueError" and error.remote_message == "no good value"
    assert "Cell In[" in str(error) and "raise ValueError('no good value')" in str(error)
    # What the notebook shows for it: the cell's traceback, not vastnb's.
    seen = fails(ip, "vast.job('boom').result()", capsys)
    assert "Cell In[" in seen and "ValueError: no good value" in seen
    assert VASTNB_CODE not in seen and "vastnb_worker" not in seen
    frame = run(ip, "%vast jobs")
    assert frame.set_index("name").loc["boom", "state"] == "failed"
    wait_for(lambda: not billing(vast), timeout=30, message="nothing billing")


def test_a_failed_jobs_error_is_not_called_a_control_call(
    ip: InteractiveShell, vast: Client, capsys: pytest.CaptureFixture[str]
) -> None:
    run(ip, "%%vast job dev-test --name boom2\nraise ValueError('bad')")
    assert vast.job("boom2").wait(timeout=60) is J.FAILED
    seen = fails(ip, "vast.job('boom2').result()", capsys)
    assert "ValueError: bad" in seen
    assert "control call" not in seen


def test_down_of_a_box_running_a_job_is_refused_unless_the_job_is_cancelled(
    ip: InteractiveShell, vast: Client, capsys: pytest.CaptureFixture[str]
) -> None:
    job = vast.submit(work.sleep_then, args=(60, "late"), profile="dev-test", name="longjob")
    wait_for(lambda: job.state is J.RUNNING, timeout=60, message="the job running")
    instance = job.record.instance_id
    assert instance is not None
    name = vast.instances().loc[instance, "name"]

    seen = fails(ip, f"%vast down {name}", capsys)
    assert "longjob" in seen and "--cancel-job" in seen
    clear(seen)
    assert job.state is J.RUNNING and instance in billing(vast)

    capsys.readouterr()
    run(ip, f"%vast down {name} --cancel-job")
    assert "destroyed" in capsys.readouterr().out
    assert job.state is J.CANCELLED
    assert "cancelled" in list(job.events().event)
    wait_for(lambda: not billing(vast), timeout=30, message="the job's box destroyed")
    assert vast.jobs().set_index("name").loc["longjob", "state"] == "cancelled"


def test_magic_mistakes_are_clear_messages_and_queue_nothing(
    ip: InteractiveShell, vast: Client, capsys: pytest.CaptureFixture[str]
) -> None:
    run(ip, "x = 1")
    seen = fails(ip, "%%vast job dev-tset --name typo\ny = x", capsys)
    assert "ProfileError" in seen and "did you mean dev-test" in seen
    clear(seen)
    seen = fails(ip, "%%vast job dev-test --name 'no spaces!'\ny = x", capsys)
    assert "not usable" in seen
    clear(seen)
    seen = fails(ip, "%%vast job dev-test --checkpoint relative/path\ny = x", capsys)
    assert "relative/path" in seen
    clear(seen)
    seen = fails(ip, "%vast logs nope", capsys)
    assert "no job called 'nope'" in seen
    clear(seen)
    seen = fails(ip, "%vast cancel nope", capsys)
    assert "no job called 'nope'" in seen
    clear(seen)
    assert vast.jobs().empty and not billing(vast)
    assert not vast.controller.status()["running"]


def test_the_no_checkpoint_warning_of_a_cell_job_is_one_line_of_the_notebooks_own(
    ip: InteractiveShell, vast: Client, capsys: pytest.CaptureFixture[str]
) -> None:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        run(ip, "%%vast job dev-test --name warned\n1")
    assert not [w for w in caught if issubclass(w.category, JobWarning)]  # not a Python warning into vastnb
    err = capsys.readouterr().err
    assert "[vastnb] warning: this job has no checkpoint location" in err and VASTNB_CODE not in err


# -- the Python API's refusals -------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"profile": "dev-tset"}, ProfileError, "did you mean dev-test"),
        ({"checkpoint": "memory://x"}, ConfigError, "not a location every box of the job can reach"),
        ({"checkpoint": "relative/path"}, ConfigError, "not a location every box of the job can reach"),
        ({"checkpoint": "s3://"}, ConfigError, "names no bucket"),
        ({"name": "no spaces!"}, ConfigError, "is not usable"),
        ({"max_recoveries": -1}, ConfigError, "max_recoveries must be a whole number from 0"),
        ({"retry_on_error": -1}, ConfigError, "retry_on_error must be a whole number from 0"),
        ({"priority": "high"}, ConfigError, "priority must be a whole number"),
    ],
    ids=["profile", "memory-url", "relative-path", "s3-no-bucket", "name", "max-recoveries", "retry", "priority"],
)
def test_bad_input_is_refused_before_anything_is_queued(
    vast: Client, kwargs: dict[str, Any], error: type[Exception], message: str
) -> None:
    kwargs = {"profile": "dev-test", "name": "bad", **kwargs}
    with pytest.raises(error, match=message):
        vast.submit(work.sleep_then, args=(0, 1), **kwargs)
    assert vast.jobs().empty
    assert not billing(vast)
    assert not vast.controller.status()["running"]  # a refused submit starts no controller


def test_an_unknown_job_is_a_clear_error(vast: Client) -> None:
    with pytest.raises(ConfigError, match=r"no job called 'nope'.*vastnb jobs"):
        vast.job("nope")
    with pytest.raises(ConfigError, match="no job 99"):
        vast.job(99)
    assert vast.jobs().empty and not billing(vast)


def test_a_job_without_a_checkpoint_warns_where_it_was_submitted(vast: Client, tmp_path: Path) -> None:
    with pytest.warns(JobWarning, match="no checkpoint") as record:
        job = vast.submit(work.sleep_then, args=(0, "ok"), profile="dev-test", name="nockpt")
    assert [w.filename for w in record if issubclass(w.category, JobWarning)] == [__file__]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        saved = vast.submit(
            work.sleep_then, args=(0, "ok2"), profile="dev-test", name="ckpt", checkpoint=str(tmp_path / "ck")
        )
    assert not [w for w in caught if issubclass(w.category, JobWarning)]
    assert job.result(timeout=60) == "ok" and saved.result(timeout=60) == "ok2"
    wait_for(lambda: not billing(vast), timeout=30, message="nothing billing")


def test_a_second_job_with_an_active_jobs_name_is_refused(
    ip: InteractiveShell, vast: Client, capsys: pytest.CaptureFixture[str]
) -> None:
    first = vast.submit(work.sleep_then, args=(60, 1), profile="dev-test", name="dup")
    with pytest.raises(ConfigError, match=r"a job called 'dup' is already .*cancel that one first"):
        vast.submit(work.sleep_then, args=(0, 2), profile="dev-test", name="dup")
    seen = fails(ip, "%%vast job dev-test --name dup\n1", capsys)
    assert "a job called 'dup' is already" in seen
    clear(seen)
    assert list(vast.jobs().name) == ["dup"]
    first.cancel()
    assert first.state is J.CANCELLED
    # Once it ended, the name is free again; vast.job(name) is the latest of that name.
    second = vast.submit(work.sleep_then, args=(0, 2), profile="dev-test", name="dup")
    assert second.id != first.id and vast.job("dup").id == second.id
    assert second.result(timeout=60) == 2
    assert first.state is J.CANCELLED
    wait_for(lambda: not billing(vast), timeout=30, message="nothing billing")


def test_a_higher_priority_job_starts_first_within_the_limit(jobs_client: Callable[..., Client]) -> None:
    vast = jobs_client(
        controller=ControllerSettings(timing=FAST_TIMING, limits=Limits(total=1), tick_s=0.1, idle_exit_s=60)
    )
    a = vast.submit(work.sleep_then, args=(3, "a"), profile="dev-test", name="a")
    b = vast.submit(work.sleep_then, args=(0, "b"), profile="dev-test", name="b", priority=0)
    c = vast.submit(work.sleep_then, args=(0, "c"), profile="dev-test", name="c", priority=5)
    assert [j.result(timeout=90) for j in (a, b, c)] == ["a", "b", "c"]

    def first(job: Any, event: str) -> pd.Timestamp:
        events = job.events()
        return events[events.event == event].time.iloc[0]

    assert first(a, "claimed") < first(c, "claimed") < first(b, "claimed")
    assert first(c, "running") < first(b, "claimed")
    # total=1: neither waiting job was claimed before the one ahead of it had ended
    assert first(c, "claimed").timestamp() >= a.record.finished_at - 0.01  # type: ignore[operator]
    assert first(b, "claimed").timestamp() >= c.record.finished_at - 0.01  # type: ignore[operator]
    wait_for(lambda: not billing(vast), timeout=30, message="nothing billing")


# -- the command line ----------------------------------------------------------------------

CLI = Callable[..., "subprocess.CompletedProcess[str]"]


@pytest.fixture
def project(isolated: Path) -> Path:
    """The user's folder, where the commands run: not ``isolated`` itself, whose ``vastnb``
    folder (VASTNB_HOME) would shadow an editable install's package for ``python -m vastnb``."""
    folder = isolated / "project"
    folder.mkdir()
    return folder


@pytest.fixture
def cli(project: Path) -> Iterator[CLI]:
    """``cli(*argv)``: ``python -m vastnb ARGV`` in ``project``, with the test's VASTNB_HOME, on
    the default simulated market. At the end its controller is stopped and everything destroyed."""

    def vastnb_command(*argv: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "vastnb", *argv], cwd=project, capture_output=True, text=True, timeout=timeout
        )

    try:
        yield vastnb_command
    finally:
        for argv in (("controller", "stop"), ("down", "--all")):
            with contextlib.suppress(subprocess.TimeoutExpired):
                vastnb_command(*argv)
        with Client(backend="sim") as client:  # what a command above could not end, in process
            client.controller.stop(timeout=30)
            assert client.sim is not None
            for inst in client.sim.market.instances():
                client.sim.market.destroy(int(inst["id"]))


def _script(folder: Path) -> None:
    """``train.py``, which imports ``helper.py`` beside it and prints from its arguments."""
    (folder / "helper.py").write_text("def combine(a, b):\n    return a * 10 + b\n")
    (folder / "train.py").write_text(
        textwrap.dedent(
            """\
            import sys
            from helper import combine

            a, b = (int(v) for v in sys.argv[1:3])
            print(f"script {sys.argv[0]} product {a * b}")
            print(f"helper says {combine(a, b)}")
            """
        )
    )


def _rows(cli: CLI) -> dict[str, dict[str, Any]]:
    done = cli("jobs", "--json")
    assert done.returncode == 0, done.stderr
    listing = json.loads(done.stdout)
    assert listing["simulated"] is True
    return {row["name"]: row for row in listing["rows"]}


def _wait_final(cli: CLI, name: str, timeout: float = 60) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        state = _rows(cli).get(name, {}).get("state")
        if state in FINAL:
            return str(state)
        time.sleep(0.3)
    raise AssertionError(f"job {name} not final after {timeout} s; its output:\n{cli('logs', name).stdout}")


def test_a_script_submitted_from_the_terminal_runs_with_its_modules_and_arguments(
    cli: CLI, isolated: Path, project: Path
) -> None:
    _script(project)
    done = cli("submit", "--profile", "dev-test", "--name", "s1", "train.py", "--", "3", "4")
    assert done.returncode == 0, done.stderr
    assert "job s1 queued" in done.stdout
    assert _wait_final(cli, "s1") == "succeeded"
    row = _rows(cli)["s1"]
    assert (row["profile"], row["attempts"], row["recoveries"]) == ("dev-test", 1, 0)

    logs = cli("logs", "s1")
    assert logs.returncode == 0, logs.stderr
    assert "=== attempt 1" in logs.stdout
    assert "script train.py product 12" in logs.stdout and "helper says 34" in logs.stdout

    cancel = cli("cancel", "s1")
    assert cancel.returncode == 1
    assert cancel.stderr.startswith("vastnb: ") and len(cancel.stderr.strip().splitlines()) == 1, cancel.stderr
    assert "s1" in cancel.stderr and "succeeded" in cancel.stderr and "Traceback" not in cancel.stderr
    unknown = cli("logs", "nope")
    assert unknown.returncode == 1 and "no job called 'nope'" in unknown.stderr and "Traceback" not in unknown.stderr

    status = cli("controller", "status")
    assert status.returncode == 0 and "the controller runs: pid" in status.stdout, status.stdout + status.stderr
    info = json.loads(cli("controller", "status", "--json").stdout)
    assert info["running"] is True and isinstance(info["pid"], int)
    stop = cli("controller", "stop")
    assert stop.returncode == 0 and "controller stopped" in stop.stdout
    status = cli("controller", "status")
    assert status.returncode == 0 and "no controller runs" in status.stdout
    assert "no controller was running" in cli("controller", "stop").stdout
    assert not Simulator(isolated / "vastnb").market.instances()  # the job's box went when it ended


def test_a_cli_submit_of_an_unknown_profile_queues_nothing(cli: CLI, project: Path) -> None:
    _script(project)
    done = cli("submit", "--profile", "dev-tset", "train.py")
    assert done.returncode == 1
    assert done.stderr.startswith("vastnb: ") and "did you mean dev-test" in done.stderr
    assert "Traceback" not in done.stderr
    missing = cli("submit", "--profile", "dev-test", "nosuch.py")
    assert missing.returncode == 1 and "no script at nosuch.py" in missing.stderr
    assert _rows(cli) == {}
    assert "no controller runs" in cli("controller", "status").stdout


def test_submit_takes_its_flags_between_the_script_and_its_arguments(cli: CLI, project: Path) -> None:
    _script(project)
    done = cli("submit", "train.py", "--profile", "dev-test", "--name", "s2", "--", "3", "4")
    assert done.returncode == 0, done.stderr
    assert _wait_final(cli, "s2") == "succeeded"
    assert "product 12" in cli("logs", "s2").stdout


def test_a_cli_submit_without_checkpoint_warns_in_the_terminals_words(cli: CLI, project: Path) -> None:
    _script(project)
    done = cli("submit", "--profile", "dev-test", "--name", "s3", "train.py", "--", "1", "2")
    assert done.returncode == 0, done.stderr
    assert "checkpoint" in done.stderr
    assert VASTNB_CODE not in done.stderr, done.stderr
