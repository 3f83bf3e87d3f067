"""Package-level promises: the public surface, light imports, the worker's independence."""

from __future__ import annotations

import inspect
import subprocess
import sys
import textwrap
from pathlib import Path

import vastnb


def test_all_lists_exactly_the_public_names() -> None:
    public = {
        name
        for name in dir(vastnb)
        if not name.startswith("_") and not inspect.ismodule(getattr(vastnb, name)) and name != "annotations"
    }
    assert public | {"__version__"} == set(vastnb.__all__)
    assert all(hasattr(vastnb, name) for name in vastnb.__all__)


def test_the_documented_checkpoints_function_is_reachable() -> None:
    """``vastnb.checkpoints(url)`` is the function, not the module that defines it."""
    import vastnb.storage.checkpoints  # importing the module must not shadow the function

    assert callable(vastnb.checkpoints) and not inspect.ismodule(vastnb.checkpoints)
    assert vastnb.checkpoints is vastnb.storage.checkpoints.checkpoints


def test_importing_vastnb_and_its_packages_loads_nothing_heavy() -> None:
    """pandas, numpy, httpx, ipywidgets, boto3 and torch load when used, not on import."""
    code = textwrap.dedent(
        """
        import sys, pkgutil, importlib, vastnb
        for package in ("base", "profiles", "market", "offload", "storage", "sim", "backends", "lifecycle", "jobs", "front", "front.widgets"):
            importlib.import_module("vastnb." + package)
        heavy = ("pandas", "numpy", "httpx", "ipywidgets", "boto3", "torch")
        print(",".join(sorted(m for m in sys.modules if m.split(".")[0] in heavy)))
        """
    )
    done = subprocess.run([sys.executable, "-I", "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == ""


def test_every_error_is_a_vast_error() -> None:
    errors = [getattr(vastnb, n) for n in vastnb.__all__ if n.endswith("Error")]
    assert len(errors) >= 10
    assert all(issubclass(e, vastnb.VastError) for e in errors)


def test_worker_imports_nothing_from_the_orchestrator_side() -> None:
    """On the box the worker needs only the standard library and cloudpickle."""
    code = textwrap.dedent(
        """
        import sys, vastnb_worker
        banned = ("vastnb", "httpx", "pandas", "yaml", "ipywidgets", "torch", "boto3")
        loaded = sorted(m for m in sys.modules if m.split(".")[0] in banned)
        print(",".join(loaded))
        """
    )
    done = subprocess.run([sys.executable, "-I", "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == ""


def test_worker_checkpoints_import_no_heavy_or_orchestrator_module() -> None:
    """torch, numpy and boto3 are imported only when a checkpoint needs them."""
    code = textwrap.dedent(
        """
        import sys, vastnb_worker.checkpoint, vastnb_worker.checkpoint.s3
        from vastnb_worker.checkpoint import CheckpointManager
        banned = ("vastnb", "httpx", "pandas", "yaml", "ipywidgets", "torch", "numpy", "boto3", "botocore")
        print(",".join(sorted(m for m in sys.modules if m.split(".")[0] in banned)))
        """
    )
    done = subprocess.run([sys.executable, "-I", "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == ""


def test_worker_package_is_python_3_9_syntax() -> None:
    """Boxes run whatever python3 their image has: the worker must parse on 3.9."""
    import ast

    import vastnb_worker

    root = Path(vastnb_worker.__file__).parent
    for path in sorted(root.rglob("*.py")):
        ast.parse(path.read_text(), filename=str(path), feature_version=(3, 9))


def test_checkpoint_manager_is_one_class_on_the_box_and_in_the_notebook() -> None:
    from vastnb_worker.checkpoint import CheckpointManager
    from vastnb_worker.errors import VastError

    assert vastnb.CheckpointManager is CheckpointManager and vastnb.VastError is VastError


def test_a_users_worker_py_does_not_shadow_the_worker_package(tmp_path: Path) -> None:
    (tmp_path / "worker.py").write_text("raise SystemExit('the user worker.py was imported')\n")
    code = "import vastnb, vastnb_worker; print(vastnb_worker.__file__)"
    done = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert "worker.py" not in done.stdout and "vastnb_worker" in done.stdout


def test_package_ships_its_default_profiles_and_type_marker() -> None:
    from importlib.resources import files

    assert files("vastnb_profiles").joinpath("gpu_profiles.yaml").is_file()
    assert files("vastnb_profiles").joinpath("budgets.yaml").is_file()
    assert files("vastnb").joinpath("py.typed").is_file()
