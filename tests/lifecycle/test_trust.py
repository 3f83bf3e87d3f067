"""A launched box is a stranger's machine: what comes back is plain data unless the user
trusts the box, per box, per call or per cell."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import torch
from IPython.core.interactiveshell import InteractiveShell

from vastnb import Client, UnsafeResultError
from vastnb.front.magics import VastMagics


def functions() -> tuple[Callable[[float], Any], Callable[..., list[object]]]:
    """Made here, not at module level: a test module is not importable on the box, and
    functions and classes defined in a function travel by value."""

    class Model:
        def __init__(self, w: float) -> None:
            self.w = w

    def make_model(w: float) -> Model:
        return Model(w)

    def named_like_settings(trust: object = None, results: object = None, detach: object = None) -> list[object]:
        return [trust, results, detach]

    return make_model, named_like_settings


def test_results_are_plain_data_unless_the_box_is_trusted(vast: Client) -> None:
    make_model, _ = functions()
    box = vast.launch("dev-test")
    assert box.run(lambda: {"loss": [0.5], "w": torch.ones(2)})["loss"] == [0.5]  # data comes back as it is
    with pytest.raises(UnsafeResultError, match=r"results=trusted|trust"):
        box.run(make_model, 2.0)  # an object of the user's own class could be anything
    assert box.options(trust=True).run(make_model, 2.0).w == 2.0  # one call
    task = box.options(trust=True).submit(make_model, 3.0)
    assert task.result().w == 3.0  # a detached one, too
    box.trust = True  # the whole box
    assert box.run(make_model, 4.0).w == 4.0
    assert box.options(trust=False).run(lambda: 1) == 1


#: Every name a setting of a run, a cell or a job has or will have (box.options(...),
#: vast.submit(...)), and the names of the calls' own parameters.
SETTINGS = ("fn", "self", "args", "kwargs", "trust", "results", "detach", "push", "pull", "name", "nproc", "ranks",
            "timeout", "profile", "checkpoint", "max_recoveries", "priority")  # fmt: skip


def test_settings_never_take_the_functions_own_arguments(vast: Client) -> None:
    """A user's function may have parameters named like any setting: a call passes them all
    to the function, and settings go through box.options(...) only."""
    _, named_like_settings = functions()
    box = vast.launch("dev-test")
    assert box.run(named_like_settings, trust=1, results=2, detach=3) == [1, 2, 3]
    assert box.options(trust=True).run(named_like_settings, trust="t") == ["t", None, None]

    def echo(**kwargs: object) -> dict[str, object]:
        return kwargs

    given = {name: f"mine-{name}" for name in SETTINGS}
    assert box.run(echo, **given) == given
    assert box.options(trust=True).run(echo, **given) == given
    assert box.submit(echo, **given).result() == given
    assert box.options(trust=False).submit(echo, **given).result() == given


def test_a_cell_brings_back_objects_only_with_trust(vast: Client) -> None:
    shell = InteractiveShell.instance()
    shell.reset()
    shell.register_magics(VastMagics(shell, client=vast))
    vast.launch("dev-test", name="cells")
    assert shell.run_cell("%vast use cells", store_history=True).success
    refused = shell.run_cell("%%vast run --pull f\ndef f():\n    return 1", store_history=True)
    assert isinstance(refused.error_in_exec, UnsafeResultError)
    trusted = shell.run_cell("%%vast run --trust --pull f\ndef f():\n    return 7", store_history=True)
    assert trusted.success and shell.user_ns["f"]() == 7
