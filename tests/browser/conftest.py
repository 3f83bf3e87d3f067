"""The browser tests' JupyterLab server and Chromium page, one of each per module."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from .lab import ARGS, Lab, ensure_chromium, running_lab


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
