"""The cost report subcommand of the command table (``vastnb cost``, ``%vast cost``; the
reference architecture's cost_report script, hence its other spelling ``cost-report``), and
what both fronts do with its flags: the one call on the client, the file it writes, the
table it prints."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

from vastnb.errors import ConfigError
from vastnb.front.spec import _JSON, _PROFILES, Command, Flag

if TYPE_CHECKING:
    import pandas as pd

    from vastnb.client import Client

__all__ = ["COST_COMMAND", "DEFAULT_BY", "FREQS", "usage_problem", "report", "save_csv", "rounded", "for_json"]

#: What a report is broken down by when ``--by`` is not given.
DEFAULT_BY = "team,project"
#: The periods ``--freq`` takes (vastnb.costs.report.PERIODS; tests/test_cost_commands.py holds them equal).
FREQS = ("day", "week", "month")
#: What ``--by`` takes, for its help (vastnb.costs.report's DIMENSIONS and PERIODS, the same check).
BY_NAMES = "instance, job, profile, gpu, team, project, user, day, week, month"

COST_COMMAND = Command(
    "cost",
    "what vastnb's instances cost, by team, project, GPU, job... and period, from the ledger",
    (
        Flag(("--by",), f"break it down by these, comma-separated: {BY_NAMES} (default {DEFAULT_BY})", metavar="A,B"),
        Flag(("--since",), "from this date, YYYY-MM-DD (UTC; default: the start of this month)", metavar="DATE"),
        Flag(("--until",), "up to this date, YYYY-MM-DD (UTC; default: now)", metavar="DATE"),
        Flag(("--freq",), "a row for each period as well", choices=FREQS),
        Flag(("--csv",), "write the report to FILE as CSV, every digit kept", metavar="FILE"),
        Flag(
            ("--reconcile",),
            "instead: each instance's cost from the ledger against the market's charges, over the same dates",
            action="store_true",
        ),
        _JSON,
        _PROFILES,
    ),
    aliases=("cost-report",),
    # No api= yet: %vast help lists a command by its API docstring's first sentence, and
    # Client.costs's runs past a line. Its help here stands in until that sentence is short.
)


def usage_problem(args: argparse.Namespace) -> str | None:
    """What is wrong with flags that argparse takes one by one but not together; None if
    nothing. Each front says it as its bad arguments are said."""
    if args.reconcile and (args.by is not None or args.freq is not None):
        return "--reconcile compares instance by instance, over --since and --until: --by and --freq do not apply"
    if getattr(args, "json", False) and args.csv:
        return "--csv writes the report to a file and --json prints it: one or the other"
    return None


def _when(value: str | None) -> str | float | None:
    """A --since or --until as the API takes it: digits are epoch seconds, the rest a date."""
    if value is None:
        return None
    try:
        return float(value)
    except ValueError:
        return value


def report(client: Client, args: argparse.Namespace) -> pd.DataFrame:
    """The report the flags ask for: :meth:`~vastnb.Client.costs`, or with ``--reconcile``
    :meth:`~vastnb.Client.reconcile`."""
    since, until = _when(args.since), _when(args.until)
    if args.reconcile:
        return client.reconcile(since=since, until=until)
    return client.costs(DEFAULT_BY if args.by is None else args.by, since=since, until=until, freq=args.freq)


def save_csv(frame: pd.DataFrame, file: str) -> str:
    """Write ``frame`` to ``file`` as CSV, every digit kept; what to tell: where it went."""
    path = Path(file).expanduser().resolve()
    try:
        frame.to_csv(path, index=False)
    except OSError as exc:
        raise ConfigError(
            f"cannot write the cost report to {path}: {exc.strerror or exc}; give another --csv FILE"
        ) from None
    return f"wrote {len(frame)} {'row' if len(frame) == 1 else 'rows'} to {path}"


def rounded(frame: pd.DataFrame) -> pd.DataFrame:
    """``frame`` for reading: dollars to four decimals (as the other tables), GPU-hours to three."""
    numbers = frame.select_dtypes("number").columns
    shown = frame.round({c: 3 if c == "gpu_hours" else 4 for c in numbers})
    shown[numbers] += 0  # -0.0, what a tiny negative difference rounds to, shown as 0.0
    return shown


def for_json(frame: pd.DataFrame) -> pd.DataFrame:
    """``frame`` with its periods as ISO dates, so that JSON says ``"2026-11-01"``."""
    if "period" not in frame.columns:
        return frame
    return frame.assign(period=frame["period"].dt.strftime("%Y-%m-%d"))
