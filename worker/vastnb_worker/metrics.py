"""Metrics a training run reports as it goes: ``vastnb_worker.report(step, loss=0.42)``.

Each report is one marked line of standard output, so it travels every way a task's output
already does (a call's stream, a job's log that its controller reads, a rank's output through
the elastic launcher, a reattach that replays a task's output) and needs no channel of its own.
The notebook's side takes marked lines out of what it prints and keeps them as points
(``box.metrics()``, ``job.metrics()``, the dashboard's curve), without waiting for a checkpoint.

What arrives is a box's output, so :class:`MetricReader` treats it as hostile: a line is read
only if it is short, well-formed JSON of the documented shape, with a bounded number of named,
finite numbers; anything else is dropped (and counted), never evaluated.
"""

from __future__ import annotations

import json
import math
import os
import re
import sys
import threading
import time
from collections import deque
from dataclasses import dataclass
from typing import Any, Optional

__all__ = ["report", "history", "Metric", "MetricReader", "MARK", "MAX_NAMES", "RESERVED", "ON_A_BOX"]

#: What starts a metrics line (after a rank prefix such as ``[r0] `` if any). The control
#: character keeps a user's own print from being taken for one.
MARK = "\x1evastnb-metrics "
#: Set by the worker daemon on a box (``python -m vastnb_worker daemon``), so inherited by its
#: tasks and every process they start: there a report is a line of output.
ON_A_BOX = "VASTNB_WORKER"
MAX_NAMES = 32  # metrics per report
MAX_LINE = 4096  # characters in a metrics line
MAX_STEP = 2**53  # steps above this are not exact as JSON numbers
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_./-]{0,63}\Z")
#: Columns of the metrics and checkpoints tables that a metric may not take as its name.
RESERVED = frozenset({"step", "time", "rank", "attempt", "size", "id"})
_RANK_PREFIX = re.compile(r"\[r(\d{1,6})\] ?")

_local: deque = deque(maxlen=100_000)  # this process's reports, for history()
_lock = threading.Lock()


@dataclass(frozen=True)
class Metric:
    """One report: the training step, and the named values reported at it."""

    step: int
    values: dict
    rank: Optional[int] = None  # the reporting rank in a distributed run


def _check(step: Any, values: dict) -> dict:
    if isinstance(step, bool) or not isinstance(step, int) or not 0 <= step < MAX_STEP:
        raise ValueError(f"report(step, ...): step must be an int from 0 to 2**53, got {step!r}")
    if not values:
        raise ValueError("report(step, ...) needs at least one metric, as report(step, loss=0.42)")
    if len(values) > MAX_NAMES:
        raise ValueError(f"report() takes at most {MAX_NAMES} metrics at once, got {len(values)}")
    checked = {}
    for name, value in values.items():
        if not _NAME.match(name):
            raise ValueError(f"report(): {name!r} is not a metric name (letters, digits, _ . / -, at most 64)")
        if name in RESERVED:
            raise ValueError(f"report(): {name!r} is a column of its own in the metrics table: call it otherwise")
        try:
            number = float(value)  # a 0-d tensor or numpy scalar too
        except (TypeError, ValueError):
            raise TypeError(f"report(): {name}={value!r} is not a number") from None
        if isinstance(value, bool) or not math.isfinite(number):
            raise ValueError(f"report(): {name}={value!r} is not a finite number")
        checked[name] = number
    return checked


def report(step: int, *, every_rank: bool = False, **values: Any) -> None:
    """Report metrics at ``step`` (``report(step, loss=loss.item(), lr=lr)``): the notebook
    shows them as they come (the dashboard's curve, ``box.metrics()``, ``job.metrics()``).

    In a distributed run only rank 0 reports unless ``every_rank=True`` (then each point
    carries its rank). Outside a box (training in the notebook itself) the points are kept in
    this process: :func:`history`."""
    checked = _check(step, values)
    rank_text = os.environ.get("RANK")
    rank = int(rank_text) if rank_text and rank_text.isdigit() else None
    if rank not in (None, 0) and not every_rank:
        return
    with _lock:
        _local.append((time.time(), Metric(step, checked, rank if every_rank else None)))
    if not os.environ.get(ON_A_BOX):
        return  # training in the notebook itself: history() has it
    record = {"step": step, "values": checked}
    if every_rank and rank is not None:
        record["rank"] = rank
    sys.stdout.write(MARK + json.dumps(record, separators=(",", ":")) + "\n")
    sys.stdout.flush()


def history() -> list:
    """This process's reports as ``(time, Metric)`` pairs, oldest first (at most 100,000)."""
    with _lock:
        return list(_local)


def _parse(body: str) -> Optional[Metric]:
    """A metric from the JSON after the mark, or None when it is not one exactly."""
    try:
        record = json.loads(body, parse_constant=lambda _: None)  # NaN, Infinity: refused below
    except (ValueError, RecursionError):
        return None
    if not isinstance(record, dict) or set(record) - {"step", "values", "rank"}:
        return None
    values, rank = record.get("values"), record.get("rank")
    if not isinstance(values, dict) or (rank is not None and (type(rank) is not int or not 0 <= rank < 10**6)):
        return None
    if not all(type(v) in (int, float) for v in values.values()):
        return None
    step: Any = record.get("step")
    try:
        checked = _check(step, values)  # step checked too: an int in range
        return Metric(int(step), checked, rank)
    except (TypeError, ValueError):
        return None


class MetricReader:
    """Takes the metrics lines out of a stream's output as it arrives (see the module doc).

    ``feed(text)`` returns the text to show, without metrics lines, and the metrics read. A
    metrics line cut between two chunks is held until its end arrives. Lines that carry the
    mark but are not a valid report are dropped and counted in ``rejected``."""

    def __init__(self) -> None:
        self._held = ""
        self.rejected = 0

    def feed(self, text: str) -> tuple:
        if self._held:
            text, self._held = self._held + text, ""
        if MARK[0] not in text:
            return text, []
        shown, found = [], []
        # Split at newlines only: str.splitlines would also cut at the mark's own \x1e.
        for line in re.findall(r"[^\n]*\n|[^\n]+\Z", text):
            if not line.endswith("\n") and MARK[0] in line and len(line) <= MAX_LINE:
                self._held = line  # perhaps a report whose rest comes with the next chunk
                continue
            at = line.find(MARK)
            if at < 0:
                shown.append(line)
                continue
            prefix = line[:at]
            rank_match = _RANK_PREFIX.fullmatch(prefix) if prefix else None
            metric = _parse(line[at + len(MARK) :].strip()) if len(line) <= MAX_LINE else None
            if metric is None or (prefix and rank_match is None):
                self.rejected += 1
                continue
            if rank_match is not None and metric.rank is None:
                metric = Metric(metric.step, metric.values, int(rank_match.group(1)))
            found.append(metric)
        return "".join(shown), found
