"""Code from the notebook's folder works on the box; a module the box lacks is named, with the
fix; a user's own ``worker.py`` shadows nothing."""

from __future__ import annotations

import importlib
import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from vastnb.errors import RemoteError
from vastnb.offload import Session

from .conftest import Boxes


def import_from(folder: Path, name: str, source: str) -> object:
    (folder / f"{name}.py").write_text(textwrap.dedent(source))
    sys.path.insert(0, str(folder))
    try:
        importlib.invalidate_caches()
        return importlib.import_module(name)
    finally:
        sys.path.remove(str(folder))


@pytest.fixture
def forget_modules() -> Iterator[None]:
    before = set(sys.modules)
    yield
    for name in set(sys.modules) - before:
        del sys.modules[name]


def test_a_module_next_to_the_notebook_travels_by_value(box: Session, tmp_path: Path, forget_modules: None) -> None:
    assert Path.cwd() == tmp_path  # the notebook's folder
    name = f"helpers_{tmp_path.name.replace('-', '_')}"
    helpers = import_from(
        tmp_path,
        name,
        """
        SCALE = 3

        def scaled(x):
            return x * SCALE

        class Model:
            def __init__(self, w):
                self.w = w

            def predict(self, x):
                return scaled(x) + self.w
    """,
    )
    assert box.call(helpers.scaled, 5) == 15  # type: ignore[attr-defined]
    model = box.call(lambda m: m, helpers.Model(1))  # type: ignore[attr-defined]
    assert model.predict(2) == 7
    assert box.call(lambda m, x: m.predict(x), helpers.Model(10), 1) == 13  # type: ignore[attr-defined]


def test_a_module_the_box_lacks_is_named_with_the_fix(box: Session, tmp_path: Path, forget_modules: None) -> None:
    elsewhere = tmp_path.parent / f"{tmp_path.name}-site"  # importable here, not under the notebook's folder
    elsewhere.mkdir()
    name = f"sitelib_{tmp_path.name.replace('-', '_')}"
    sitelib = import_from(
        elsewhere,
        name,
        """
        def twice(x):
            return 2 * x
    """,
    )
    with pytest.raises(RemoteError) as info:
        box.call(sitelib.twice, 4)  # type: ignore[attr-defined]
    error = info.value
    assert error.remote_type == "ModuleNotFoundError" and name in error.remote_message
    assert f"The box has no module {name!r}" in error.remote_traceback
    assert "install it on the box" in error.remote_traceback
    assert f"cloudpickle.register_pickle_by_value({name})" in error.remote_traceback
    assert "vastnb_worker" not in error.remote_traceback
    assert box.call(lambda: "fine") == "fine"


SHADOW = "raise RuntimeError('this is the user worker.py, imported by mistake')\n"


def test_a_user_worker_py_shadows_nothing_in_a_session(box: Session, tmp_path: Path) -> None:
    (tmp_path / "worker.py").write_text(SHADOW)
    (tmp_path / "vastnb_worker.py").write_text(SHADOW)  # not even a file of the package's own name
    assert box.call(lambda: 6 * 7) == 42
    assert box.run_cell("import sys\n'worker' in sys.modules").value is False


def test_a_worker_running_in_a_folder_with_a_worker_py(
    boxes: Boxes, link: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    """Tasks may run in the user's folder (``workdir``): its worker.py still shadows nothing."""
    (tmp_path / "worker.py").write_text(SHADOW)
    server = request.getfixturevalue("sshd") if link == "ssh" else None
    workdir = tmp_path if link == "local" else str(tmp_path)
    session = boxes.session(boxes.transport(link, server, workdir=workdir))
    assert session.call(os.getcwd) == str(tmp_path)
    assert session.run_cell("import sys\n'worker' in sys.modules").value is False
    session.restart_worker()


def test_a_user_worker_py_does_not_break_import_vastnb(tmp_path: Path) -> None:
    (tmp_path / "worker.py").write_text(SHADOW)
    code = textwrap.dedent(f"""
        import sys
        import vastnb
        from vastnb.offload import LocalTransport, Session
        with Session(LocalTransport({str(tmp_path / "subbox")!r}), on_output=lambda s, t: None) as box:
            print(box.call(lambda: "ok from the box"))
            box.restart_worker()
        print("worker" in sys.modules)
    """)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONSAFEPATH"}  # the folder comes first on sys.path
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=60, env=env
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["ok", "from", "the", "box", "False"]


def test_a_module_imported_after_another_was_dropped_still_travels(
    box: Session, tmp_path: Path, forget_modules: None
) -> None:
    """The quick "nothing new imported" check must not miss a module whose import left
    sys.modules as large as before (another one was dropped from it)."""
    stem = tmp_path.name.replace("-", "_")
    first = import_from(tmp_path.parent, f"first_{stem}", "def f():\n    return 1\n")
    assert box.call(lambda: 0) == 0  # the session looks at sys.modules
    del sys.modules[first.__name__]  # type: ignore[attr-defined]
    second = import_from(tmp_path, f"second_{stem}", "def g():\n    return 'shipped'\n")
    assert box.call(second.g) == "shipped"  # type: ignore[attr-defined]
