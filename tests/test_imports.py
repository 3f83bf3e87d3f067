"""Instant import: ``import vastnb`` and ``%load_ext vastnb`` load none of the heavy packages;
the first use that needs them (the client, ``%vast profiles``) loads them, and works.

Each case runs in a fresh interpreter (``python -I``): this one has imported everything already.
How long these take is measured by bench/imports.py, not asserted here.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

#: What must not load before a feature needs it.
HEAVY = ("pandas", "numpy", "ipywidgets", "bqplot", "boto3", "botocore", "torch", "httpx", "cloudpickle", "yaml")

_PRELUDE = f"""
import json, sys
HEAVY = {HEAVY!r}

def heavy():
    return sorted({{m.split(".")[0] for m in sys.modules}} & set(HEAVY))

def shell():
    from IPython.core.interactiveshell import InteractiveShell
    return InteractiveShell.instance()
"""


def run(code: str, home: Path) -> dict[str, Any]:
    """Run ``code`` in a fresh interpreter on the sim backend, in ``home``; the JSON it printed last."""
    env = {**os.environ, "HOME": str(home), "VASTNB_HOME": str(home / "vastnb"), "VASTNB_BACKEND": "sim"}
    done = subprocess.run(
        [sys.executable, "-I", "-c", _PRELUDE + textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        cwd=home,
    )
    assert done.returncode == 0, done.stderr
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def test_import_vastnb_loads_nothing_heavy(tmp_path: Path) -> None:
    found = run(
        """
        import vastnb
        print(json.dumps({"heavy": heavy()}))
        """,
        tmp_path,
    )
    assert found == {"heavy": []}


def test_the_client_loads_on_first_use_and_works(tmp_path: Path) -> None:
    found = run(
        """
        import vastnb
        before = heavy()
        Client = vastnb.Client
        from vastnb.client import Client as Defined
        with Client() as vast:
            names = list(vast.profiles().index)
        print(json.dumps({"before": before, "same": Client is Defined, "sim": vast.backend, "names": names,
                          "pandas": "pandas" in sys.modules}))
        """,
        tmp_path,
    )
    assert found["before"] == [] and found["same"] is True and found["sim"] == "sim"
    assert "dev-test" in found["names"]
    assert found["pandas"] is True


def test_load_ext_vastnb_loads_nothing_heavy(tmp_path: Path) -> None:
    """The IPython shell alone loads none of them either: what is counted is the extension's."""
    found = run(
        """
        ip = shell()
        bare = heavy()
        ip.run_line_magic("load_ext", "vastnb")
        print(json.dumps({"bare": bare, "heavy": heavy(), "magic": "vast" in ip.magics_manager.magics["line"]}))
        """,
        tmp_path,
    )
    assert found == {"bare": [], "heavy": [], "magic": True}


def test_the_first_vast_line_makes_the_client_and_answers(tmp_path: Path) -> None:
    found = run(
        """
        ip = shell()
        ip.run_line_magic("load_ext", "vastnb")
        loaded = heavy()
        frame = ip.run_line_magic("vast", "profiles")
        ip.run_line_magic("vast", "help profiles")
        print(json.dumps({"loaded": loaded, "names": list(frame.index), "pandas": "pandas" in sys.modules}))
        """,
        tmp_path,
    )
    assert found["loaded"] == []
    assert "dev-test" in found["names"]
    assert found["pandas"] is True


def test_a_bad_vast_line_is_refused_before_anything_loads(tmp_path: Path) -> None:
    """A typo is a usage message, as before, and costs no import of the client."""
    found = run(
        """
        from IPython.core.error import UsageError
        ip = shell()
        ip.run_line_magic("load_ext", "vastnb")
        try:
            ip.run_line_magic("vast", "profilez")
        except UsageError as exc:
            message = str(exc)
        print(json.dumps({"message": message, "heavy": heavy()}))
        """,
        tmp_path,
    )
    assert "no %vast subcommand 'profilez'" in found["message"]
    assert found["heavy"] == []
