"""Budgets: what a team, or one of its projects, may spend; loaded strictly from ``budgets.yaml``.

The file is found like ``gpu_profiles.yaml`` (see :func:`vastnb.profiles.profile.find_profile_file`)
and checked as strictly: a budget that is silently misread is a budget that is not enforced.
"""

from __future__ import annotations

import itertools
import os
import urllib.parse
from dataclasses import dataclass
from typing import Any

from vastnb.profiles.profile import find_profile_file
from vastnb.profiles.yamlspec import Field, Range, check_mapping, compose_file, fail, line_of, sequence_items, within

__all__ = ["BUDGETS_FILE", "DEFAULT_ALERT_THRESHOLDS", "Budget", "load_budgets"]

BUDGETS_FILE = "budgets.yaml"
#: Alert at half the monthly limit, at 80%, and when it is reached.
DEFAULT_ALERT_THRESHOLDS: tuple[float, ...] = (0.5, 0.8, 1.0)
#: The largest limit a budget may set, in US dollars: any more is a typo, not a budget.
MAX_LIMIT_USD = 1e9


@dataclass(frozen=True)
class Budget:
    """A monthly spending limit for a team, or for one project when ``project`` is set.

    ``alert_thresholds`` are fractions of ``monthly_limit_usd``, strictly ascending.
    """

    team: str
    monthly_limit_usd: float
    project: str | None = None
    per_job_limit_usd: float | None = None
    alert_thresholds: tuple[float, ...] = DEFAULT_ALERT_THRESHOLDS
    webhook: str | None = None  # posted each alert (JSON), if set
    source: str = ""  # the file it was loaded from
    line: int = 0  # where its entry starts in that file

    @property
    def scope(self) -> str:
        """``team`` or ``team/project``, for messages and tables."""
        return self.team if self.project is None else f"{self.team}/{self.project}"

    def as_row(self) -> dict[str, Any]:
        """The budget as one row of a pandas DataFrame."""
        return {
            "team": self.team,
            "project": self.project,
            "monthly_limit_usd": self.monthly_limit_usd,
            "per_job_limit_usd": self.per_job_limit_usd,
            "alert_thresholds": self.alert_thresholds,
        }


def _check_name(value: str) -> str | None:
    return None if value.strip() else "must not be empty"


class _Fraction(Range):
    """An alert threshold: above 0 and at most 1."""

    def __call__(self, value: float) -> str | None:
        return None if 0 < value <= 1 else f"must hold fractions above 0 and at most 1, not {value:g}"


def _check_webhook(value: str) -> str | None:
    parts = urllib.parse.urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        return f"must be an http:// or https:// URL, not {value!r}"
    return None


def _check_ascending(values: tuple[float, ...]) -> str | None:
    for before, after in itertools.pairwise(values):
        if after <= before:
            return f"must be strictly ascending, but {after:g} follows {before:g}"
    return None


_ROOT = (Field("budgets", "node", required=True, expect="a list of budget entries", example="[]"),)
_FIELDS = (
    Field("team", "str", required=True, check=_check_name, example="ml-research"),
    Field("project", "str", check=_check_name, example="llm-finetune"),
    Field(
        "monthly_limit_usd",
        "number",
        required=True,
        check=within(0, MAX_LIMIT_USD, above=True, unit="USD"),
        expect="a monthly limit in US dollars, above 0",
        example="1000",
    ),
    Field(
        "per_job_limit_usd",
        "number",
        check=within(0, MAX_LIMIT_USD, above=True, unit="USD"),
        expect="a per-job limit in US dollars, above 0",
        example="100",
    ),
    Field(
        "alert_thresholds",
        "list[number]",
        default=DEFAULT_ALERT_THRESHOLDS,
        check=_check_ascending,
        item_check=_Fraction(0, 1, above=True),
        expect="a list of fractions of the monthly limit",
        example="[0.5, 0.8, 1.0]",
    ),
    Field("webhook", "str", check=_check_webhook, example="https://hooks.example.com/budget"),
)


def load_budgets(path: str | os.PathLike[str] | None = None) -> list[Budget]:
    """Load and check every budget in ``budgets.yaml``, in file order.

    Raises :class:`~vastnb.errors.ProfileError` at the first problem, naming the file,
    line and key. ``budgets: []`` is a valid file with no budgets.
    """
    file = find_profile_file(BUDGETS_FILE, path)
    source = str(file)
    root = check_mapping(compose_file(file), _ROOT, source, what="the budgets file")
    node = root.values["budgets"]
    example = "- {team: ml-research, monthly_limit_usd: 1000}"
    budgets: list[Budget] = []
    first_seen: dict[tuple[str, str | None], int] = {}
    for number, item in enumerate(sequence_items(node, source, "budgets", example), start=1):
        checked = check_mapping(item, _FIELDS, source, what=f"budget entry {number}")
        got = checked.values
        monthly, per_job = got["monthly_limit_usd"], got["per_job_limit_usd"]
        if per_job is not None and per_job > monthly:  # a limit that can never bind is a typo
            fail(
                f"per_job_limit_usd {per_job:g} is above monthly_limit_usd {monthly:g}; lower it to at most "
                f"{monthly:g}",
                source,
                checked.line_of("per_job_limit_usd"),
                "per_job_limit_usd",
            )
        # Two entries for one scope would leave it unclear which limit is enforced.
        scope = (got["team"], got["project"])
        if scope in first_seen:
            project = f", project {scope[1]!r}" if scope[1] is not None else " (no project)"
            named = f"team {scope[0]!r}{project}"
            fail(
                f"duplicate budget for {named} (first at line {first_seen[scope]}); merge the two entries",
                source,
                checked.line,
                "team",
            )
        first_seen[scope] = checked.line
        budgets.append(Budget(source=source, line=line_of(item), **got))
    return budgets
