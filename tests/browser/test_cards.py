"""The launch view and the status card in real JupyterLab and Chromium: a notebook run cell by
cell in the browser, as a person runs it, on the simulated market. Screenshots of each stage
land in the screenshots folder (see ``lab.py``)."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from typing import Any

import pytest

from .lab import ARGS, SCREENSHOTS, Lab, ensure_chromium, notebook, running_lab

CELLS = [
    "%load_ext vastnb",
    "%vast launch dev-test --name web",
    "%vast status web",
    "%vast down web",
]


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    ensure_chromium()
    root = tmp_path_factory.mktemp("lab") / "work"
    root.mkdir()
    with running_lab(root) as server:
        yield server


@pytest.fixture(scope="module")
def page(lab: Lab) -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=ensure_chromium(), headless=True, args=ARGS)
        context = browser.new_context(viewport={"width": 1200, "height": 1100})
        page = context.new_page()
        errors: list[str] = []
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        page.errors = errors
        yield page
        browser.close()


class Notebook:
    """A notebook open in the page, run cell by cell."""

    def __init__(self, lab: Lab, page: Any, name: str) -> None:
        self.lab, self.page = lab, page
        page.goto(f"{lab.url}/lab/tree/{name}?reset&token={lab.token}")
        self.wait(lambda: any(k["execution_state"] == "idle" and k["connections"] > 0 for k in lab.kernels()), 90)
        page.wait_for_selector(".jp-Notebook .jp-Cell", timeout=30_000)

    @staticmethod
    def wait(check: Any, timeout: float, what: str = "the kernel to be idle and connected") -> None:
        deadline = time.monotonic() + timeout
        while not check():
            if time.monotonic() > deadline:
                pytest.fail(f"gave up waiting {timeout:.0f} s for {what}")
            time.sleep(0.2)

    def cell(self, index: int) -> Any:
        return self.page.locator(".jp-Notebook .jp-Cell").nth(index)

    def prompt(self, index: int) -> str:
        return str(self.cell(index).locator(".jp-InputPrompt").inner_text()).strip()

    def run(self, index: int, timeout: float = 120.0) -> Any:
        """Run cell ``index`` (click its prompt, command mode, Shift+Enter) and wait for it."""
        for _ in range(3):  # a Shift+Enter sent as the kernel settles can be lost: send again
            self.cell(index).locator(".jp-InputPrompt").click()
            self.page.keyboard.press("Escape")
            self.page.keyboard.press("Shift+Enter")
            started = time.monotonic()
            while self.prompt(index) in ("[ ]:", "") and time.monotonic() - started < 5:
                time.sleep(0.1)
            if self.prompt(index) not in ("[ ]:", ""):
                break
        self.wait(lambda: re.fullmatch(r"\[\d+\]:", self.prompt(index)) is not None, timeout, f"cell {index} to run")
        return self.cell(index)

    def shot(self, name: str) -> None:
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        self.page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=True)


def text(locator: Any) -> str:
    return str(locator.inner_text())


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
    live = launch.locator(".widget-vbox").first
    assert not live.is_visible()
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
    assert page.errors == []
