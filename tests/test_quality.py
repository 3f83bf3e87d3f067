"""The quality gates, run with the suite so CI runs them: ruff's lint and its formatter, and
mypy (strict on the orchestrator's core). Their settings are in pyproject.toml; each reports
in its own words here when it fails. Locally, `ruff format .` fixes what the format check finds."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def run(*argv: str) -> None:
    """``python -m argv...`` in the repository root; its output is the failure's message."""
    done = subprocess.run([sys.executable, "-m", *argv], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, f"{' '.join(argv)} exited {done.returncode}:\n{done.stdout}{done.stderr}"


def test_ruff_finds_nothing() -> None:
    run("ruff", "check", "--no-fix", ".")


def test_the_code_is_as_ruff_formats_it() -> None:
    run("ruff", "format", "--check", "--diff", ".")


def test_mypy_finds_nothing() -> None:
    run("mypy")  # files, strictness and cache (.mypy_cache) from pyproject.toml
