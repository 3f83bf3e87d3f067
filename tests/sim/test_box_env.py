"""A simulated box is a machine of its own: its own HOME and its own Python.

Each test rents a real simulated instance (a worker process on this machine) and runs
code on it over the sim backend's transport, as the orchestrator does: ``~`` on the box
is inside the box's folder and goes with it, its interpreter is a virtual environment
of its own layered on the notebook's packages, and what code on the box installs stays
on the box. Nothing is patched and nothing reaches the network (pip runs ``--no-index``).
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import shlex
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cloudpickle
import pytest
from offload.conftest import end_processes

from vastnb.backends.local import local_transport
from vastnb.offload import Session
from vastnb.sim import Market, SimConfig
from vastnb.sim.boxes import LocalBox

CONFIG = SimConfig(create_delay=0.0, load_delay=0.0)  # an instance runs as soon as it is created
TINY = "vastnb_tiny_box_pkg"  # a package that exists nowhere but in one test's folder


@dataclass
class Rented:
    """One simulated instance, its machine, and a session with its worker."""

    market: Market
    box: LocalBox
    session: Session

    def run(self, fn: Any, *args: Any) -> Any:
        return self.session.call(fn, *args)

    def destroy(self) -> None:
        self.session.close()
        self.market.destroy(self.box.instance_id)


def rent(market: Market, onstart: str | None = None) -> LocalBox:
    """Create an instance (running at once); its machine."""
    assert market.boxes is not None
    offer = market.search({"num_gpus": {"eq": 1}, "order": [["dph_base", "asc"]], "limit": 1})[0]
    payload: dict[str, Any] = {"image": "pytorch/pytorch:latest", "disk": 20}
    if onstart is not None:
        payload["onstart"] = onstart
    created = market.create(offer["id"], payload)
    market.advance(1)
    return market.boxes.local(int(created["new_contract"]))


@pytest.fixture
def market(tmp_path: Path) -> Iterator[Market]:
    made = Market(tmp_path / "embedded", CONFIG)
    yield made
    for inst in made.instances():  # with their worker processes
        made.destroy(int(inst["id"]))


@pytest.fixture
def rented(market: Market, request: pytest.FixtureRequest) -> Iterator[Rented]:
    """A running simulated box, and a session with its worker; destroyed afterwards."""
    cloudpickle.register_pickle_by_value(request.module)  # the box cannot import this module
    box = rent(market)
    session = Session(local_transport(box), on_output=lambda stream, text: None, connect_timeout=20)
    yield Rented(market, box, session)
    with contextlib.suppress(Exception):
        session.close()
    end_processes(box.root, grace=0.0)


# -- functions that run on the box ------------------------------------------------------


def where_home() -> dict[str, str]:
    return {
        "HOME": os.environ.get("HOME", ""),
        "~": os.path.expanduser("~"),
        "home": str(Path.home()),
        "keys": ",".join(k for k in os.environ if "KEY" in k or k.startswith("VAST")),
    }


def write_home(name: str) -> str:
    path = Path.home() / name
    path.write_text("written on the box\n")
    return str(path)


def interpreter() -> dict[str, Any]:
    import shutil
    import sysconfig

    pip = subprocess.run([sys.executable, "-m", "pip", "--version"], capture_output=True, text=True, check=False)
    return {
        "prefix": sys.prefix,
        "base_prefix": sys.base_prefix,
        "executable": sys.executable,
        "purelib": sysconfig.get_paths()["purelib"],
        "path": sys.path,
        "pip": pip.stdout + pip.stderr,
        "python3": shutil.which("python3"),
        "pip_on_path": shutil.which("pip"),
    }


def notebook_packages() -> dict[str, str]:
    import cloudpickle  # the worker brings its own copy (in its zipapp): it imports either way
    import numpy
    import pytest

    return {"cloudpickle": str(cloudpickle.__file__), "numpy": str(numpy.__file__), "pytest": str(pytest.__file__)}


def pip_install(path: str) -> str:
    argv = [
        sys.executable,
        "-m",
        "pip",
        "install",
        "--no-index",
        "--no-build-isolation",
        "--no-deps",
        "--disable-pip-version-check",
        "--no-input",
        path,
    ]
    done = subprocess.run(argv, capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def import_tiny() -> dict[str, Any]:
    import importlib

    module = importlib.import_module(TINY)
    return {"file": str(module.__file__), "value": module.VALUE}


# -- the tests --------------------------------------------------------------------------


def test_code_on_the_box_has_the_boxs_home_not_the_users(rented: Rented, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VAST_API_KEY", "the-notebooks-own-key")  # in the notebook, never on the box
    seen = rented.run(where_home)
    box = rented.box
    assert seen["HOME"] == seen["~"] == seen["home"] == str(box.home)
    assert box.home.is_relative_to(box.root) and box.home.is_dir()
    assert seen["home"] != str(Path.home()) and seen["home"] != os.path.expanduser("~")
    assert seen["keys"] == "VASTNB_WORKER"  # nothing of the notebook's environment: the worker's own mark only


def test_a_file_written_to_home_on_the_box_stays_there_and_goes_with_it(rented: Rented) -> None:
    name = f"box-notes-{os.getpid()}-{rented.box.instance_id}.txt"
    written = Path(rented.run(write_home, name))
    assert written == rented.box.home / name and written.read_text() == "written on the box\n"
    assert not (Path.home() / name).exists() and not Path(os.path.expanduser(f"~/{name}")).exists()
    rented.destroy()
    assert not written.exists() and not rented.box.root.exists()  # the box's disk is gone, ~ with it


def test_the_box_runs_its_own_python_in_its_own_venv(rented: Rented) -> None:
    seen = rented.run(interpreter)
    env_dir = rented.box.env_dir
    assert seen["prefix"] == str(env_dir) and seen["prefix"] != seen["base_prefix"]
    assert seen["executable"] == str(rented.box.python)
    assert Path(seen["purelib"]).is_relative_to(env_dir)
    assert seen["prefix"] != sys.prefix  # not the notebook's environment
    assert Path(seen["python3"]).parent == Path(seen["pip_on_path"]).parent == env_dir / "bin"
    assert seen["pip"].startswith("pip "), seen["pip"]  # ``python -m pip`` works on the box
    # The box's own packages come first, the notebook's after them.
    layers = [p for p in seen["path"] if p.endswith("site-packages")]
    assert layers[0] == seen["purelib"] and any(p != seen["purelib"] for p in layers[1:])


def test_the_notebooks_packages_import_on_the_box(rented: Rented) -> None:
    files = rented.run(notebook_packages)
    assert files["numpy"] == importlib.import_module("numpy").__file__  # the notebook's own copies
    assert files["pytest"] == pytest.__file__
    assert not Path(files["numpy"]).is_relative_to(rented.box.root)


def test_a_package_installed_on_the_box_is_the_boxs_alone(rented: Rented, tmp_path: Path) -> None:
    source = tmp_path / "tiny"
    (source / TINY).mkdir(parents=True)
    (source / TINY / "__init__.py").write_text("VALUE = 42\n")
    (source / "pyproject.toml").write_text(
        '[build-system]\nrequires = ["setuptools"]\nbuild-backend = "setuptools.build_meta"\n'
        f'[project]\nname = "{TINY.replace("_", "-")}"\nversion = "0.1"\n'
    )
    rented.run(pip_install, str(source))
    found = rented.run(import_tiny)
    purelib = rented.run(interpreter)["purelib"]
    assert found["value"] == 42 and Path(found["file"]).is_relative_to(purelib)
    assert importlib.util.find_spec(TINY) is None  # not in the notebook
    fresh = subprocess.run([sys.executable, "-c", f"import {TINY}"], capture_output=True, check=False)
    assert fresh.returncode != 0  # nor in a fresh interpreter of the notebook's environment


def test_onstart_runs_with_the_boxs_python_and_environment(market: Market) -> None:
    probe = (
        "import json, os, sys; json.dump({'prefix': sys.prefix, 'home': os.environ['HOME'], "
        "'id': os.environ['CONTAINER_ID'], 'path': os.environ['PATH']}, open('onstart.json', 'w'))"
    )
    box = rent(market, onstart=f"python3 -c {shlex.quote(probe)}")
    seen = json.loads((box.root / "onstart.json").read_text())  # the shell ran it before power_on returned
    assert seen == {
        "prefix": str(box.env_dir),
        "home": str(box.home),
        "id": str(box.instance_id),
        "path": box.env["PATH"],
    }


def test_a_launched_box_runs_in_its_own_environment(isolated: Path) -> None:
    from lifecycle.conftest import make_client  # the whole client: only this test needs it

    cloudpickle.register_pickle_by_value(sys.modules[__name__])
    with make_client(isolated / "vastnb") as vast:
        box = vast.launch("dev-test")
        try:
            assert vast.sim is not None and vast.sim.market.boxes is not None
            local = vast.sim.market.boxes.local(box.id)
            assert box.run(where_home)["HOME"] == str(local.home)
            assert box.run(interpreter)["prefix"] == str(local.env_dir)
        finally:
            box.down()
