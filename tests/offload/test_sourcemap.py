"""The notebook renders a box's traceback from its own records, and a hostile box's
report can neither print a local file, nor smuggle terminal escapes, nor flood the output.

The ERROR meta here is what a box under an attacker's control could send: the rendering is
the boundary, so it is driven with that input directly.
"""

from __future__ import annotations

import linecache
import types
from pathlib import Path
from typing import Any

from vastnb.offload.sourcemap import SourceMap
from vastnb_worker.tracebacks import MAX_FRAMES


def compiled(path: Path, source: str) -> types.CodeType:
    path.write_text(source)
    linecache.checkcache(str(path))
    return compile(source, str(path), "exec")


def error(*frames: dict[str, Any], **meta: Any) -> dict[str, Any]:
    return {"type": "ValueError", "message": "bad", "frames": list(frames), "exception": "ValueError: bad\n", **meta}


def test_a_frame_of_shipped_code_shows_the_notebooks_own_lines(tmp_path: Path) -> None:
    sources = SourceMap()
    code = compiled(tmp_path / "train.py", "def step(batch):\n    return batch[99]\n")
    code_id = sources.name_code(code)[len("<vastnb:") : -1]
    shown = sources.render(error({"code": code_id, "line": 2, "name": "step", "columns": [11, 20]}))
    assert shown == (
        "Traceback (most recent call last):\n"
        f'  File "{tmp_path / "train.py"}", line 2, in step\n'
        "    return batch[99]\n"
        "           ~~~~~^^^^\n"  # as Python marks a subscript
        "ValueError: bad\n"
    )


def test_the_same_code_gets_the_same_id_and_an_edit_a_new_one(tmp_path: Path) -> None:
    sources = SourceMap()
    path = tmp_path / "model.py"
    first = sources.name_code(compiled(path, "x = 1\n"))
    assert sources.name_code(compile("x = 1\n", str(path), "exec")) == first
    assert SourceMap().name_code(compile("x = 1\n", str(path), "exec")) == first  # deterministic payloads
    edited = sources.name_code(compiled(path, "x = 2\n"))
    assert edited != first
    # A task still running the old code is shown with the old lines.
    assert "x = 1" in sources.render(error({"code": first[8:-1], "line": 1, "name": "<module>"}))


def test_a_box_naming_a_local_file_cannot_print_it(tmp_path: Path) -> None:
    secret = tmp_path / "credentials"
    secret.write_text("aws_secret_access_key = hunter2\n")
    linecache.checkcache(str(secret))
    shown = SourceMap().render(error({"file": str(secret), "line": 1, "name": "steal"}))
    assert "hunter2" not in shown
    assert f'File "{secret}", line 1, in steal' in shown  # the box's words, shown as such
    # Nor by naming code this notebook never shipped.
    shown = SourceMap().render(error({"code": "0123456789abcdef", "line": 1, "name": "f"}))
    assert "code sent from another kernel" in shown and "hunter2" not in shown


def test_terminal_escapes_and_forged_lines_are_neutralised() -> None:
    shown = SourceMap().render(
        error(
            {
                "file": '/opt/lib.py\n  File "/home/me/x.py", line 1',
                "line": 3,
                "name": "f\x1b]0;pwned\x07",
                "text": "ok()\x1b[2J",
            },
            exception="ValueError: \x1b[31mred\x1b[0m\n",
        )
    )
    assert "\x1b" not in shown and "\x07" not in shown
    assert shown.count("\n  File ") == 1  # the forged second frame stays on the first frame's line


def test_malformed_reports_render_without_failing() -> None:
    sources = SourceMap()
    for meta in (
        {},
        {"frames": "not a list", "type": 3, "message": None},
        {"frames": [None, 7, {"line": "2", "name": ["x"], "code": "../../etc/passwd"}, {"columns": [9, 2, 1]}]},
        {"frames": [{"line": 2**40, "text": "y" * 10_000, "columns": [-5, True]}], "omitted": {"after": "x"}},
        {"exception": 12, "hint": {"a": 1}},
    ):
        shown = sources.render(meta)
        assert isinstance(shown, str) and len(shown) < 10_000


def test_a_flood_of_frames_is_bounded() -> None:
    frame = {"file": "/opt/lib.py", "line": 1, "name": "f", "text": "f()"}
    shown = SourceMap().render(error(*[dict(frame, line=i) for i in range(100_000)]))
    assert shown.count("\n  File ") <= MAX_FRAMES + 1


def test_recursion_is_folded_as_python_folds_it() -> None:
    frame = {"file": "/opt/lib.py", "line": 4, "name": "f", "text": "return f(n - 1)"}
    shown = SourceMap().render(error(*[frame] * 50, {"file": "/opt/lib.py", "line": 2, "name": "f", "text": "1 / 0"}))
    assert shown.count("return f(n - 1)") == 3
    assert "[Previous line repeated 47 more times]" in shown


def test_records_are_bounded(tmp_path: Path) -> None:
    sources = SourceMap(limit=5)
    names = [sources.name_source(f"Cell In[{i}]", [f"x = {i}\n"]) for i in range(20)]
    assert len(sources) == 5
    assert "x = 19" in sources.render(error({"code": names[-1][8:-1], "line": 1, "name": "<module>"}))
    assert "another kernel" in sources.render(error({"code": names[0][8:-1], "line": 1, "name": "<module>"}))
