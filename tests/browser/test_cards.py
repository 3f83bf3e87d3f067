"""The launch view and the status card in real JupyterLab and Chromium: a notebook run cell by
cell in the browser, as a person runs it, on the simulated market. Screenshots of each stage
land in the screenshots folder (see ``lab.py``)."""

from __future__ import annotations

import re
from typing import Any

import httpx

from .lab import Lab, Notebook, notebook, text

NOTE = "live until its kernel stopped at"

CELLS = [
    "%load_ext vastnb",
    "%vast launch dev-test --name web",
    "%vast status web",
    "%vast down web",
]


def test_a_launch_ticks_live_leaves_its_record_and_every_card_follows_the_box(lab: Lab, page: Any) -> None:
    notebook(lab.root / "cards.ipynb", CELLS)
    nb = Notebook(lab, page, "cards.ipynb")
    nb.run(0)
    launch = nb.cell(1)
    nb.cell(1).locator(".jp-InputPrompt").click()
    page.keyboard.press("Escape")
    page.keyboard.press("Shift+Enter")
    # The live view ticks: some step is done while the launch still runs.
    nb.wait(lambda: "✓" in text(launch.locator(".jp-OutputArea")), 60, "a launch step to tick")
    nb.shot("1-launching")
    nb.wait(lambda: re.fullmatch(r"\[\d+\]:", nb.prompt(1)) is not None, 120, "the launch to end")
    # The live view made way for the record of how the launch ended: one, every step done.
    # Its own output was emptied (by its display id): the card is the cell's only widget.
    nb.wait(lambda: launch.locator(".widget-vbox").count() == 1, 30, "the live view's output to be emptied")
    record = launch.locator(".jp-OutputArea-output").filter(has_text="Launch of dev-test: ready in", visible=True)
    assert record.count() == 1
    assert "worker ready" in text(record) and "○" not in text(record) and text(record).count("✓") == 6
    card = launch.locator(".widget-vbox").last
    assert "web" in text(card) and "running" in text(card)
    assert launch.locator("button:has-text('Destroy')").is_enabled()
    nb.shot("2-launched")

    nb.run(2)  # a second view of the same box
    assert "running" in text(nb.cell(2).locator(".jp-OutputArea"))
    nb.run(3)
    assert "destroyed web" in text(nb.cell(3).locator(".jp-OutputArea"))
    for index in (1, 2):  # every view of the box, the earlier cell's too
        card = nb.cell(index).locator(".widget-vbox").last
        nb.wait(lambda c=card: "● destroyed" in text(c), 30, f"the card in cell {index} to follow the box")
        assert not nb.cell(index).locator("button:has-text('Destroy')").is_enabled()
    nb.shot("3-destroyed")

    # The kernel shuts down: each card becomes what it last showed, with a note, in place.
    (kernel,) = lab.kernels()
    httpx.delete(f"{lab.url}/api/kernels/{kernel['id']}", params={"token": lab.token}, timeout=30).raise_for_status()
    for index in (1, 2):
        output = nb.cell(index).locator(".jp-OutputArea")
        nb.wait(lambda o=output: NOTE in text(o), 30, f"the card in cell {index} to say its kernel stopped")
        assert "● destroyed" in text(output) and output.locator("button").count() == 0
    # Saved and opened again (a new kernel, which knows none of the old widgets), the notebook
    # shows those last states and notes, not "Error displaying widget: model not found".
    page.keyboard.press("Control+s")
    nb.wait(lambda: NOTE in (lab.root / "cards.ipynb").read_text(), 30, "the notebook to be saved")
    again = Notebook(lab, page, "cards.ipynb")
    outputs = text(page.locator(".jp-Notebook"))
    assert outputs.count(NOTE) == 2 and "model not found" not in outputs and "Launch of dev-test: ready" in outputs
    again.shot("4-kernel-gone")
    assert page.errors == []
