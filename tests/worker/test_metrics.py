"""vastnb_worker.report and the reader that takes reports out of a box's output.

What a box prints is hostile: a line that carries the mark is taken only if it is a report
of the documented shape; the fuzz test feeds mutated lines and random chunks.
"""

from __future__ import annotations

import json
import math
import random

import pytest
from hypothesis import given, settings, strategies as st

from vastnb_worker import metrics
from vastnb_worker.metrics import MARK, ON_A_BOX, Metric, MetricReader, report


@pytest.fixture(autouse=True)
def on_a_box(monkeypatch: pytest.MonkeyPatch) -> None:
    """As in a task on a box, whose worker daemon sets it."""
    monkeypatch.setenv(ON_A_BOX, "1")
    monkeypatch.delenv("RANK", raising=False)


def test_outside_a_box_a_report_is_kept_in_this_process_only(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(ON_A_BOX)
    report(41, loss=0.5)  # training in the notebook itself: nothing printed into the cell
    assert capsys.readouterr().out == ""
    assert metrics.history()[-1][1] == Metric(41, {"loss": 0.5})


def test_a_report_is_one_marked_line_of_output_that_the_reader_takes_back(capsys: pytest.CaptureFixture[str]) -> None:
    report(7, loss=0.25, lr=1e-3)
    out = capsys.readouterr().out
    assert out.startswith(MARK) and out.endswith("\n") and out.count("\n") == 1
    shown, found = MetricReader().feed("epoch 1\n" + out + "done\n")
    assert shown == "epoch 1\ndone\n"
    assert found == [Metric(7, {"loss": 0.25, "lr": 1e-3})]
    assert metrics.history()[-1][1] == found[0]  # kept in this process too


def test_numbers_of_any_kind_are_reported_as_floats(capsys: pytest.CaptureFixture[str]) -> None:
    import numpy as np
    import torch

    report(1, loss=torch.tensor(0.5), acc=np.float32(0.75), count=3)
    _, found = MetricReader().feed(capsys.readouterr().out)
    assert found[0].values == {"loss": 0.5, "acc": 0.75, "count": 3.0}


@pytest.mark.parametrize(
    ("step", "values", "error"),
    [
        (-1, {"loss": 1.0}, "step must be an int"),
        (1.5, {"loss": 1.0}, "step must be an int"),
        (True, {"loss": 1.0}, "step must be an int"),
        (1, {}, "at least one metric"),
        (1, {"loss": float("nan")}, "not a finite number"),
        (1, {"loss": math.inf}, "not a finite number"),
        (1, {"loss": "low"}, "not a number"),
        (1, {"attempt": 1.0}, "a column of its own"),
        (1, {f"m{i}": 1.0 for i in range(40)}, "at most 32"),
    ],
)
def test_a_bad_report_is_refused_where_it_is_made(step: object, values: dict, error: str) -> None:
    with pytest.raises((ValueError, TypeError), match=error):
        report(step, **values)  # type: ignore[arg-type]


def test_in_ranks_only_rank_0_reports_unless_every_rank_does(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RANK", "2")
    report(1, loss=1.0)
    assert capsys.readouterr().out == ""
    report(1, every_rank=True, loss=1.0)
    _, found = MetricReader().feed("[r2] " + capsys.readouterr().out)  # as the launcher tees it
    assert found == [Metric(1, {"loss": 1.0}, rank=2)]


def test_rank_0_s_line_through_the_launcher_carries_its_rank(capsys: pytest.CaptureFixture[str]) -> None:
    report(3, loss=2.0)
    _, found = MetricReader().feed("[r0] " + capsys.readouterr().out)
    assert found == [Metric(3, {"loss": 2.0}, rank=0)]


def test_a_line_cut_between_chunks_is_read_whole(capsys: pytest.CaptureFixture[str]) -> None:
    report(5, loss=0.5)
    line = capsys.readouterr().out
    reader = MetricReader()
    first = reader.feed("before\n" + line[:10])
    second = reader.feed(line[10:] + "after\n")
    assert first == ("before\n", [])
    assert second == ("after\n", [Metric(5, {"loss": 0.5})])


@pytest.mark.parametrize(
    "body",
    [
        "not json",
        '{"step": 1}',
        '{"step": 1, "values": {"loss": NaN}}',
        '{"step": 1, "values": {"loss": "1"}}',
        '{"step": -4, "values": {"loss": 1}}',
        '{"step": 1, "values": {"bad name": 1}}',
        '{"step": 1, "values": {"loss": 1}, "code": "import os"}',
        '{"step": 1, "values": {"loss": 1}, "rank": "0"}',
        '{"step": 1, "values": {"loss": true}}',
        '{"step": 1, "values": {"loss": 1e999}}',
        "[" * 5000,
        '{"step": 1, "values": {"loss": 1, "x": ' + "1" * 5000 + "}}",
    ],
)
def test_a_marked_line_that_is_not_a_report_is_dropped_and_counted(body: str) -> None:
    reader = MetricReader()
    shown, found = reader.feed(f"a\n{MARK}{body}\nb\n")
    assert (shown, found, reader.rejected) == ("a\nb\n", [], 1)


def test_a_mark_after_other_text_is_not_a_report() -> None:
    reader = MetricReader()
    line = f"user says {MARK}" + json.dumps({"step": 1, "values": {"loss": 1}}) + "\n"
    assert reader.feed(line) == ("", [])
    assert reader.rejected == 1


@settings(max_examples=300, deadline=None, derandomize=True)
@given(st.lists(st.text(max_size=80), max_size=8), st.integers(min_value=0, max_value=2**32))
def test_any_output_is_read_without_error_and_only_reports_come_out(chunks: list[str], seed: int) -> None:
    rng = random.Random(seed)
    good = MARK + json.dumps({"step": 3, "values": {"loss": 0.5}}) + "\n"
    pieces = [c if rng.random() < 0.7 else MARK + c + "\n" for c in chunks]
    pieces.insert(rng.randrange(len(pieces) + 1), "\n" + good)
    text = "".join(pieces)
    reader = MetricReader()
    cut = rng.randrange(len(text) + 1)
    shown_a, found_a = reader.feed(text[:cut])
    shown_b, found_b = reader.feed(text[cut:] + "\n")
    for metric in found_a + found_b:
        assert isinstance(metric.step, int) and 0 <= metric.step < 2**53
        assert 0 < len(metric.values) <= metrics.MAX_NAMES
        assert all(isinstance(v, float) and math.isfinite(v) for v in metric.values.values())
    assert Metric(3, {"loss": 0.5}) in found_a + found_b  # a report on a line of its own
    assert MARK not in shown_a + shown_b
