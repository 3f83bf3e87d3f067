"""The dashboard in real JupyterLab and Chromium: a job submitted from the notebook reports its
loss and checkpoints on a simulated box, and ``%vast dashboard`` shows it live: the job's row,
its output, the loss curve drawn by bqplot, its checkpoints. Screenshots land in the
screenshots folder (see ``lab.py``)."""

from __future__ import annotations

import re
from typing import Any

from .lab import Lab, Notebook, notebook, text

TRAIN = """\
%%vast job dev-test --name board --checkpoint {checkpoints}
import os, time
from vastnb_worker import report
from vastnb_worker.checkpoint import CheckpointManager

ckpt = CheckpointManager(every_steps=4)
for step in range(1, 13):
    print("step", step, flush=True)
    report(step, loss=1.0 / step)
    ckpt.save(step, extras={{"step": step}}, metrics={{"loss": 1.0 / step}})
ckpt.flush()
while not os.path.exists(GATE):
    time.sleep(0.1)
"""


def test_the_dashboard_follows_a_job_s_loss_checkpoints_and_end(lab: Lab, page: Any) -> None:
    gate = lab.root / "gate"
    cells = [
        "%load_ext vastnb",
        f"GATE = {str(gate)!r}",
        TRAIN.format(checkpoints=lab.root / "checkpoints"),
        "%vast dashboard board",
        "open(GATE, 'w').close()",
        "import vastnb\nvastnb.Client().controller.stop()  # the job is done: its controller too",
    ]
    notebook(lab.root / "board.ipynb", cells)
    nb = Notebook(lab, page, "board.ipynb")
    for index in range(3):
        nb.run(index)
    assert "job board queued" in text(nb.cell(2).locator(".jp-OutputArea"))
    board = nb.run(3).locator(".jp-OutputArea")
    tabs = board.locator(".lm-TabBar-tab")
    assert [text(tabs.nth(i)) for i in range(tabs.count())] == ["Boxes", "Jobs", "Checkpoints", "Spend"]

    tabs.nth(1).click()  # the job runs, and its output shows, metrics lines taken out
    nb.wait(lambda: "running" in text(board.locator("table").first), 180, "the job to run")
    nb.wait(lambda: "step 12" in text(board.locator("pre").first), 60, "the job's output")
    assert "vastnb-metrics" not in text(board)

    tabs.nth(2).click()  # the loss curve: bqplot's line through 12 reports, a dot per checkpoint
    line = board.locator(".bqplot g.curve path.line").first
    nb.wait(lambda: line.count() > 0 and len(re.findall(r"[ML]", line.get_attribute("d") or "")) == 12, 60, "the curve")
    dots = board.locator(".bqplot path.dot")
    nb.wait(lambda: dots.count() == 3, 60, "a dot per checkpoint")
    assert "loss, 12 reported points, last 0.08333 at step 12, 3 checkpoints" in text(board)
    nb.shot("4-dashboard-curve")

    nb.run(4)  # the job ends: the dashboard says so without being run again
    tabs.nth(1).click()
    nb.wait(lambda: "succeeded" in text(board.locator("table").first), 120, "the job's end on the dashboard")
    nb.shot("5-dashboard-job-done")
    nb.run(5)
    assert page.errors == []
