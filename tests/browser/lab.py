"""Real JupyterLab in real Chromium, for the widget tests: a Lab server on 127.0.0.1 (its own
config, data and runtime folders, the news pop-up off) whose kernels run this environment on
the simulated market, driven by Playwright with Debian's ``chromium`` (installed with apt
where missing, as ``tests/sshd.py`` installs sshd; Playwright's own browser download is never
used). A browser that cannot be had skips the test, and fails it in CI.

Screenshots go to ``$VASTNB_SCREENSHOTS`` (default: a folder under the system's temporary
folder), never into the repository.
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import json
import os
import re
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]  # fmt: skip
SCREENSHOTS = Path(os.environ.get("VASTNB_SCREENSHOTS") or Path(tempfile.gettempdir()) / "vastnb-screenshots")


def unavailable(reason: str) -> None:
    """Skip the test, or fail it in CI (``CI=true``) so browser coverage never silently vanishes."""
    if os.environ.get("CI", "").strip().lower() in ("1", "true", "yes"):
        pytest.fail(f"browser unavailable in CI: {reason}", pytrace=False)
    pytest.skip(f"browser unavailable: {reason}")


@functools.cache
def _installed() -> bool:
    if not os.path.exists(CHROMIUM) and os.geteuid() == 0 and shutil.which("apt-get"):
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        with open("/tmp/vastnb-chromium-install.lock", "w") as lock:  # one installer at a time
            fcntl.flock(lock, fcntl.LOCK_EX)
            for update in (False, True):  # apt-get update only if a plain install fails
                if os.path.exists(CHROMIUM):
                    break
                if update:
                    subprocess.run(["apt-get", "update", "-q"], env=env, capture_output=True)
                subprocess.run(["apt-get", "install", "-y", "-q", "chromium"], env=env, capture_output=True)
    return os.path.exists(CHROMIUM)


def ensure_chromium() -> str:
    if not _installed():
        unavailable("no /usr/bin/chromium, and it cannot be installed (needs root and apt-get)")
    return CHROMIUM


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Lab:
    """A JupyterLab server serving ``root``; :meth:`open` a notebook in a browser page."""

    def __init__(self, root: Path) -> None:
        self.root, self.token, self.port = root, secrets.token_hex(16), _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        state = root.parent / "jupyter"
        settings = state / "lab-settings"
        settings.mkdir(parents=True, exist_ok=True)
        news_off = {"@jupyterlab/apputils-extension:notification": {"fetchNews": "false", "checkForUpdates": False}}
        (settings / "overrides.json").write_text(json.dumps(news_off))
        bin_dir = str(Path(sys.executable).parent)
        self.env = {
            **os.environ,
            "PATH": os.pathsep.join([bin_dir, os.environ.get("PATH", "")]),  # kernels run this env's python
            "JUPYTER_CONFIG_DIR": str(state / "config"),
            "JUPYTER_DATA_DIR": str(state / "data"),
            "JUPYTER_RUNTIME_DIR": str(state / "runtime"),
            "VASTNB_BACKEND": "sim",
            "VASTNB_HOME": str(state / "vastnb"),  # a market and state store of its own
        }
        argv = [sys.executable, "-m", "jupyterlab", "--no-browser", "--allow-root", "--ip=127.0.0.1",
                f"--port={self.port}", f"--IdentityProvider.token={self.token}", f"--ServerApp.root_dir={root}",
                f"--LabApp.app_settings_dir={settings}"]  # fmt: skip
        self.log = open(state / "lab.log", "wb")
        self.process = subprocess.Popen(argv, env=self.env, cwd=root, stdout=self.log, stderr=subprocess.STDOUT)
        self._wait_up()

    def _wait_up(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"jupyter lab exited ({self.process.returncode}); see {self.log.name}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{self.url}/api/status", params={"token": self.token}, timeout=2).is_success:
                    return
            time.sleep(0.2)
        raise RuntimeError(f"jupyter lab did not answer within {timeout:.0f} s; see {self.log.name}")

    def kernels(self) -> list[dict[str, Any]]:
        return list(httpx.get(f"{self.url}/api/kernels", params={"token": self.token}, timeout=5).json())

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
        self.log.close()


@contextlib.contextmanager
def running_lab(root: Path) -> Iterator[Lab]:
    lab = Lab(root)
    try:
        yield lab
    finally:
        lab.stop()


def notebook(path: Path, cells: list[str]) -> Path:
    """A notebook of code ``cells`` (no outputs), written to ``path``."""
    nb = {
        "cells": [
            {"cell_type": "code", "execution_count": None, "metadata": {}, "outputs": [], "source": c} for c in cells
        ],
        "metadata": {"kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"}},
        "nbformat": 4,
        "nbformat_minor": 5,
    }
    path.write_text(json.dumps(nb))
    return path


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
