"""Remote tracebacks show the user's own lines with every cloudpickle a user may have.

cloudpickle 3.1.3 names every code object it ships "<dynamic-code>"; earlier releases keep
the file name. The box runs the notebook's own cloudpickle (the worker zipapp bundles it),
so each version is tested end to end: a notebook process on that cloudpickle (its wheel
first on ``PYTHONPATH``), a local worker, and a function from a notebook cell, one from a
local module pickled by value, and a ``%%vast run``-style cell, each failing on the box.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import zipfile
from pathlib import Path

import pytest

#: The releases a user may have: the first of 3.x, the last that kept file names, the
#: first that dropped them.
VERSIONS = ["3.0.0", "3.1.2", "3.1.3"]

NOTEBOOK = textwrap.dedent(
    """
    import json, sys
    from pathlib import Path

    import cloudpickle
    from IPython.core.interactiveshell import InteractiveShell

    from vastnb.errors import RemoteError
    from vastnb.offload import LocalTransport, Session

    import shipped  # a module next to the notebook: pickled by value

    ip = InteractiveShell.instance()
    ip.run_cell("def from_a_cell(n):\\n    total = n * 2\\n    return total / 0\\n", store_history=True)

    def trace(run):
        try:
            run()
        except RemoteError as error:
            return error.remote_traceback
        raise AssertionError("the box did not fail")

    seen = {"cloudpickle": cloudpickle.__version__}
    with Session(LocalTransport(Path(sys.argv[1]))) as box:
        seen["cell function"] = trace(lambda: box.call(ip.user_ns["from_a_cell"], 1))
        seen["module"] = trace(lambda: box.call(shipped.outer, 4))
        seen["cell"] = trace(lambda: box.run_cell("x = [1, 2]\\nx[5]", name="Cell In[7]"))
        box.restart_worker()
    print(json.dumps(seen))
    """
)

SHIPPED = textwrap.dedent(
    """
    def outer(n):
        return inner(n) + 1


    def inner(n):
        raise KeyError(f"no shard {n}")
    """
)


@pytest.fixture(scope="module")
def wheels(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Each version's wheel, downloaded from the package index and unpacked."""
    root = tmp_path_factory.mktemp("cloudpickle")
    for version in VERSIONS:
        subprocess.run(
            [
                sys.executable,
                "-m",
                "pip",
                "download",
                "--quiet",
                "--no-deps",
                "--only-binary=:all:",
                "-d",
                str(root),
                f"cloudpickle=={version}",
            ],
            check=True,
            capture_output=True,
            timeout=300,
        )
        with zipfile.ZipFile(root / f"cloudpickle-{version}-py3-none-any.whl") as wheel:
            wheel.extractall(root / version)
    return root


@pytest.mark.parametrize("version", VERSIONS)
def test_tracebacks_name_the_users_files_and_lines(version: str, wheels: Path, tmp_path: Path) -> None:
    notebook_dir = tmp_path / "project"
    notebook_dir.mkdir()
    (notebook_dir / "shipped.py").write_text(SHIPPED)
    (notebook_dir / "notebook.py").write_text(NOTEBOOK)
    env = {**os.environ, "PYTHONPATH": f"{wheels / version}{os.pathsep}{notebook_dir}"}
    done = subprocess.run(
        [sys.executable, "notebook.py", str(tmp_path / "box")],
        cwd=notebook_dir,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    seen = json.loads(done.stdout.strip().splitlines()[-1])
    assert seen["cloudpickle"] == version

    assert "Cell In[1], line 3, in from_a_cell\n    return total / 0\n" in seen["cell function"]
    module = str(notebook_dir / "shipped.py")
    assert f'File "{module}", line 3, in outer\n    return inner(n) + 1\n' in seen["module"]
    assert f'File "{module}", line 7, in inner\n    raise KeyError(f"no shard {{n}}")\n' in seen["module"]
    assert "Cell In[7], line 2, in <module>\n    x[5]\n" in seen["cell"]
    for trace in seen.values():
        assert "<dynamic-code>" not in trace and "<vastnb:" not in trace
