"""Other Python processes that launch on the same VASTNB_HOME: other kernels, in tests."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

PRELUDE = """
import sys
import vastnb
from vastnb.lifecycle.launch import LaunchPolicy
from vastnb.sim import SimConfig
vast = vastnb.Client(backend="sim", sim_config=SimConfig(create_delay=0.05, load_delay=0.05),
                     launch_policy=LaunchPolicy(poll=0.02))
def say(line):
    print(line, flush=True)
"""


def start(code: str, home: Path) -> subprocess.Popen[str]:
    """A Python process running ``code`` after PRELUDE (``vast``, ``say``) on ``home``."""
    env = {**os.environ, "VASTNB_HOME": str(home)}
    return subprocess.Popen(
        [sys.executable, "-I", "-c", PRELUDE + textwrap.dedent(code)],  # -I: not the cwd's folders
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )


def wait_for(child: subprocess.Popen[str], line: str) -> None:
    """Read the child's output up to ``line`` (fail with its stderr if it ends first)."""
    assert child.stdout is not None
    for got in child.stdout:
        if got.strip() == line:
            return
    child.wait(timeout=30)
    raise AssertionError(
        f"the child ended (exit {child.returncode}) before {line!r}: {child.stderr.read() if child.stderr else ''}"
    )
