"""What a job reports reaches the notebook while it runs (``vastnb_worker.report``), and the
dashboard shows the job, its output, its checkpoints and metric curve, and spend against a
budget: a real controller process runs the job on the simulator, the widgets are drawn
headless (``rich=True``), and the client's poller keeps them current."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import cloudpickle
import ipywidgets
import pytest
from IPython.core.interactiveshell import InteractiveShell
from IPython.utils.capture import capture_output

from vastnb import Client
from vastnb.front import magics
from vastnb.front.magics import VastMagics
from vastnb.front.widgets import LiveBoxes, base as widgets_base
from vastnb.front.widgets.dashboard import Dashboard
from vastnb.front.widgets.spend import CostView

from .conftest import wait_for

cloudpickle.register_pickle_by_value(sys.modules[__name__])  # the box cannot import this module

BUDGETS = "budgets:\n  - {team: ml, monthly_limit_usd: 20.0, alert_thresholds: [0.5, 0.8]}\n"


def train(steps: int, gate: str) -> float:
    """Reports every step, checkpoints every 4th with its loss, then waits for ``gate``."""
    import os
    import time

    from vastnb_worker import report
    from vastnb_worker.checkpoint import CheckpointManager

    ckpt = CheckpointManager(every_steps=4)
    loss = 0.0
    for step in range(1, steps + 1):
        loss = 1.0 / step
        print(f"step {step}", flush=True)
        report(step, loss=loss, lr=0.1)
        ckpt.save(step, extras={"step": step}, metrics={"loss": loss})
    ckpt.flush()
    deadline = time.monotonic() + 60
    while not os.path.exists(gate) and time.monotonic() < deadline:
        time.sleep(0.05)
    return loss


@pytest.fixture
def vast(jobs_client: Callable[..., Client], tmp_path: Path) -> Client:
    import vastnb_profiles

    folder = tmp_path / "profiles"
    folder.mkdir()
    (folder / "gpu_profiles.yaml").write_text((Path(vastnb_profiles.__file__).parent / "gpu_profiles.yaml").read_text())
    (folder / "budgets.yaml").write_text(BUDGETS)
    return jobs_client(profiles=folder)


def test_a_job_s_reports_and_checkpoints_reach_the_dashboard_as_it_runs(
    vast: Client, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    gate = tmp_path / "gate"
    job = vast.submit(
        train, args=(12, str(gate)), profile="dev-test", name="curve", checkpoint=str(tmp_path / "ckpt"), team="ml"
    )
    live = LiveBoxes(vast, store_every=0.05, market_every=0.5)
    board = live.shared("dashboard", lambda: Dashboard(vast, rich=True, live=live))
    assert board.job == "curve"  # the latest job, chosen by default
    assert isinstance(board.widget, ipywidgets.VBox)

    # While it runs (it waits for the gate): its reports, its checkpoints, its output.
    wait_for(lambda: len(job.metrics()) == 12, message="the job's 12 reports")
    reported = job.metrics()
    assert reported[["attempt", "step"]].values.tolist() == [[1, s] for s in range(1, 13)]
    assert reported["loss"].tolist() == [1.0 / s for s in range(1, 13)]
    assert "vastnb-metrics" not in job.logs() and "step 12" in job.logs()
    curve = board.checkpoints.curve
    wait_for(lambda: len(curve.checkpoints()[0]) == 3, message="the curve's dots at steps 4, 8, 12")
    assert curve.metric == "loss" and curve.names == ["loss", "lr"]
    [(label, steps, values)] = curve.series()
    assert label == "attempt 1" and list(steps) == list(range(1, 13)) and list(values) == reported["loss"].tolist()
    assert list(curve.checkpoints()[0]) == [4, 8, 12]
    wait_for(  # the bqplot line itself holds the points
        lambda: list(curve.figure.marks[0].x) == list(range(1, 13)), message="the line through 12 points"
    )
    assert board.checkpoints.table.frame is not None and board.checkpoints.table.frame["step"].tolist() == [4, 8, 12]
    wait_for(lambda: "step 12" in board.log_tail, message="the job's output in its tab")
    assert "vastnb-metrics" not in board.log_tail
    wait_for(lambda: "running" in board.jobs.text, message=f"the job running: {board.jobs!r}")
    wait_for(lambda: board.spend.standings and board.spend.standings[0].spent > 0, message="spend on the budget")
    [standing] = board.spend.standings
    assert (standing.name, standing.limit, standing.thresholds) == ("ml", 20.0, (0.5, 0.8))

    gate.touch()
    assert job.result(timeout=60) == pytest.approx(1.0 / 12)
    wait_for(lambda: "succeeded" in board.jobs.text, message="the job's end on the dashboard")
    # Closed, each display of it becomes its final state as static text and HTML, in place.
    InteractiveShell.instance()  # a shell for display() to publish through
    with capture_output() as shown:
        board.display()
        board.close()
    displayed, closed = shown.outputs
    assert "application/vnd.jupyter.widget-view+json" in displayed.data
    assert closed.update and closed.transient["display_id"] == displayed.transient["display_id"]
    assert set(closed.data) == {"text/plain", "text/html"}
    assert "succeeded" in closed.data["text/plain"] and "closed at" in closed.data["text/plain"]
    assert "succeeded" in closed.data["text/html"] and "mathjax_ignore" in closed.data["text/html"]
    assert live.shared("dashboard", lambda: "a new one") == "a new one"  # not the closed one

    # Where no widget can be drawn (nbval, a terminal IPython): the DataFrames, and the text.
    shell = InteractiveShell.instance()
    shell.reset()
    shell.register_magics(VastMagics(shell, client=vast))
    saved = shell.run_line_magic("vast", "checkpoints curve")
    assert saved["step"].tolist() == [4, 8, 12] and saved["loss"].tolist() == [0.25, 0.125, 1.0 / 12]
    assert shell.run_line_magic("vast", f"checkpoints {tmp_path / 'ckpt'}").equals(saved)  # by its URL
    assert shell.run_line_magic("vast", "jobs")["name"].tolist() == ["curve"]
    project = tmp_path / "project"  # not the test's folder: its vastnb/ would shadow the package
    project.mkdir()
    printed = subprocess.run(
        [sys.executable, "-m", "vastnb", "checkpoints", "curve"],
        cwd=project,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert printed.returncode == 0, printed.stderr
    assert [line.split()[:1] for line in printed.stdout.splitlines()[1:]] == [["4"], ["8"], ["12"]]
    text = repr(shell.run_line_magic("vast", "dashboard"))
    report = shell.run_line_magic("vast", "cost --by team")
    assert report["team"].tolist() == ["ml"] and report["total_usd"].iloc[0] > 0

    # In a kernel %vast cost is spend against the budgets over the same report, kept current.
    monkeypatch.setattr(magics, "rich_frontend", lambda: True)
    monkeypatch.setattr(widgets_base, "rich_frontend", lambda: True)
    view = shell.run_line_magic("vast", "cost --by team")
    assert isinstance(view, CostView) and isinstance(view.widget, ipywidgets.VBox)
    assert view.report.frame is not None and view.report.frame["team"].tolist() == ["ml"]
    assert [s.name for s in view.spend.standings] == ["ml"] and view.spend.standings[0].spent > 0
    assert shell.run_line_magic("vast", "cost --by team") is view  # shown again: the same view
    assert "jobs:" in text and "curve" in text and "succeeded" in text
    assert "job curve: loss, 12 reported points, last 0.08333 at step 12, 3 checkpoints" in text
    assert "ml: $" in text and "of $20.00" in text


def test_a_dashboard_with_nothing_yet_says_how_to_begin(vast: Client) -> None:
    text = repr(Dashboard(vast, rich=False))
    assert "no boxes" in text
    assert "no jobs yet: vast.submit(...) or %%vast job" in text
    assert "no metrics yet (vastnb_worker.report(step, loss=...) sends them)" in text
