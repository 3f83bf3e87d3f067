"""Import speed: what ``import vastnb`` and ``%load_ext vastnb`` cost a fresh interpreter.

Run: ``python bench/imports.py [RUNS]`` (default 15 runs of each). Every figure is the median
wall time of a fresh ``python -I`` process, started the given number of times; the cases take
turns, so a slow moment of the machine falls on all of them alike. Each is printed with its
ratio to the baseline measured in the same run, bare ``python -c pass``:
- ``import vastnb`` (the goal: at most 3x bare Python);
- ``%load_ext vastnb`` in IPython's ``InteractiveShell``, also against starting that shell
  without it (the extension's own share);
- ``import pandas``, for scale: what ``import vastnb`` would cost if it loaded pandas;
- the first use, ``vastnb.Client`` and ``%vast profiles`` on the simulated market: what is
  loaded later, when a feature needs it (pandas, httpx, the client), rather than on import.
The processes run in a scratch ``HOME`` (IPython's folder, vastnb's state) on the sim backend.
"""

from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

RUNS = 15
SHELL = "from IPython.core.interactiveshell import InteractiveShell; ip = InteractiveShell.instance()"
CASES = {
    "python -c pass": "pass",
    "import vastnb": "import vastnb",
    "IPython shell": SHELL,
    "IPython shell + %load_ext vastnb": f"{SHELL}; ip.run_line_magic('load_ext', 'vastnb')",
    "import pandas": "import pandas",
    "import vastnb; vastnb.Client": "import vastnb; vastnb.Client",
    "%load_ext vastnb + %vast profiles": f"{SHELL}; ip.run_line_magic('load_ext', 'vastnb'); "
    "ip.run_line_magic('vast', 'profiles')",
}
#: case -> the other case it is also compared to (the ratio to bare Python is always printed)
ALSO = {"IPython shell + %load_ext vastnb": "IPython shell", "%load_ext vastnb + %vast profiles": "IPython shell"}
GOAL = 3.0  # import vastnb, against bare Python


def timed(code: str, env: dict[str, str], cwd: Path) -> float:
    start = time.perf_counter()
    subprocess.run([sys.executable, "-I", "-c", code], env=env, cwd=cwd, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - start


def main() -> None:
    runs = int(sys.argv[1]) if len(sys.argv) > 1 else RUNS
    print(f"vastnb import bench, Python {sys.version.split()[0]}, {os.cpu_count()} CPUs, median of {runs} runs")
    scratch = Path(tempfile.mkdtemp(prefix="vnbimports"))
    env = {
        **os.environ,
        "HOME": str(scratch),
        "IPYTHONDIR": str(scratch / "ipython"),
        "VASTNB_HOME": str(scratch / "vastnb"),
        "VASTNB_BACKEND": "sim",
    }
    env.pop("VAST_API_KEY", None)
    try:
        for code in CASES.values():  # once each first: disk caches and .pyc files warm
            timed(code, env, scratch)
        times: dict[str, list[float]] = {name: [] for name in CASES}
        for _ in range(runs):
            for name, code in CASES.items():
                times[name].append(timed(code, env, scratch))
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    median = {name: statistics.median(t) * 1000 for name, t in times.items()}
    bare = median["python -c pass"]
    for name, ms in median.items():
        also = f"   {ms / median[ALSO[name]]:5.2f}x {ALSO[name]}" if name in ALSO else ""
        print(f"  {name:<36} {ms:8.1f} ms {ms / bare:6.2f}x bare python{also}")
    ratio = median["import vastnb"] / bare
    print(f"import vastnb: {ratio:.2f}x bare python (goal <= {GOAL:.0f}x): {'met' if ratio <= GOAL else 'NOT met'}")


if __name__ == "__main__":
    main()
