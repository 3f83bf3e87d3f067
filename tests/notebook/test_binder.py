"""Binder: a fresh virtual environment built from ``binder/`` alone runs the quickstart.

mybinder.org (repo2docker) runs ``pip install -r binder/requirements.txt`` from the
repository's root on top of a base environment that has Jupyter and ipykernel. This test
does the same in an empty venv, adds only the test harness (nbval, which brings ipykernel),
and runs ``notebooks/01-quickstart.ipynb`` under nbval, strict, in the kernel that Binder
would start: the notebook's own ``python3`` kernelspec, not this test process's environment.

It installs everything from scratch, so it is slow: one to two minutes with uv (the test
extra brings it), about twice that with pip alone. It needs PyPI, as Binder does.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
REQUIREMENTS = REPO / "binder" / "requirements.txt"
QUICKSTART = REPO / "notebooks" / "01-quickstart.ipynb"
SANITIZE = REPO / "notebooks" / "sanitize.cfg"
#: The test's own harness: nbval, which brings pytest and ipykernel (Binder's base
#: environment has ipykernel too, and its Jupyter starts the kernel instead of nbval).
HARNESS = ["nbval"]


def _uv() -> str | None:
    """uv beside this interpreter (the test extra installs it), else on PATH."""
    beside = Path(sys.executable).parent / "uv"
    return str(beside) if beside.exists() else shutil.which("uv")


def _run(argv: list[str], env: dict[str, str], timeout: float) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(argv, cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, (
        f"{' '.join(argv)} failed ({done.returncode}):\n{done.stdout[-4000:]}\n{done.stderr[-4000:]}"
    )
    return done


def _local_requirements(tmp: Path) -> Path:
    """binder/requirements.txt less its extra index lines. The PyTorch CPU index that Binder
    uses cannot be reached from this project's machines; their pip takes the same CPU build
    of the pinned torch from its local wheel folder instead. Every requirement is kept, and
    the constraints file it names is the same file (its path made absolute for the copy)."""
    lines = REQUIREMENTS.read_text().splitlines()
    kept = [line for line in lines if not line.strip().startswith(("--extra-index-url", "--index-url", "-i "))]
    kept = [
        f"-c {(REQUIREMENTS.parent / line.split(None, 1)[1]).resolve()}" if line.startswith("-c ") else line
        for line in kept
    ]
    assert any(line.startswith("-c ") and line.endswith("requirements.lock") for line in kept), (
        "binder installs what CI tested"
    )
    assert any(line.strip() == "torch==2.13.0" for line in kept), "binder/requirements.txt must pin torch==2.13.0"
    path = tmp / "requirements.txt"
    path.write_text("\n".join(kept) + "\n")
    return path


@pytest.fixture
def binder_env(tmp_path: Path) -> dict[str, str]:
    """A process environment as a Binder user has it: no API key, no vastnb state, a HOME of
    its own, and nothing of this test run's Python (no VIRTUAL_ENV, no PYTHONPATH)."""
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("VIRTUAL_ENV", "PYTHONPATH", "PYTHONHOME") and not k.startswith(("VAST", "PYTEST", "JUPYTER"))
    }
    env.update(
        HOME=str(tmp_path / "home"),
        XDG_CONFIG_HOME=str(tmp_path / "home" / ".config"),
        VASTNB_HOME=str(tmp_path / "vastnb"),
    )
    (tmp_path / "home").mkdir()
    return env


def test_a_venv_from_binder_files_alone_runs_the_quickstart_under_nbval(
    tmp_path: Path, binder_env: dict[str, str]
) -> None:
    venv = tmp_path / "venv"
    python = str(venv / "bin" / "python")
    requirements = _local_requirements(tmp_path)
    uv = _uv()
    if uv:
        # uv is several times faster than pip, but it does not look in the local wheel folder
        # where this machine keeps torch's CPU build: torch alone goes through the venv's pip
        # (not compiled to bytecode ahead: the kernel compiles the little it imports).
        _run([uv, "venv", "--quiet", "--seed", "--python", sys.executable, str(venv)], binder_env, 120)
        _run([python, "-m", "pip", "install", "--quiet", "--no-compile", "torch==2.13.0"], binder_env, 600)
        _run([uv, "pip", "install", "--quiet", "--python", python, "-r", str(requirements), *HARNESS], binder_env, 600)
    else:
        _run([sys.executable, "-m", "venv", str(venv)], binder_env, 120)
        _run([python, "-m", "pip", "install", "--quiet", "-r", str(requirements), *HARNESS], binder_env, 900)

    # Installed, not imported from this checkout: the venv is all the kernel sees.
    where = _run(
        [python, "-I", "-c", "import vastnb, torch; print(vastnb.__file__, torch.__version__, torch.version.cuda)"],
        binder_env,
        120,
    )
    module, version, cuda = where.stdout.split()
    assert module.startswith(str(venv)) and version.startswith("2.13.0") and cuda == "None"  # the CPU build

    env = dict(binder_env, PATH=f"{venv / 'bin'}{os.pathsep}{binder_env.get('PATH', '')}")
    # -o addopts= drops the project's own pytest options (--nbval-current-env among them):
    # the kernel is the notebook's python3 kernelspec, as Binder's Jupyter starts it.
    done = _run(
        [
            python,
            "-m",
            "pytest",
            "-o",
            "addopts=",
            "-p",
            "no:cacheprovider",
            "--nbval",
            str(QUICKSTART.relative_to(REPO)),
            "--nbval-sanitize-with",
            str(SANITIZE.relative_to(REPO)),
            "-q",
        ],
        env,
        600,
    )
    summary = done.stdout.strip().splitlines()[-1]
    assert " passed" in summary and "failed" not in summary and "error" not in summary, done.stdout[-4000:]
