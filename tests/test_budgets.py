"""Budgets: the shipped example, strict loading with located errors, and the shared search order."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pandas as pd
import pytest

from vastnb.errors import ProfileError
from vastnb.profiles.budgets import DEFAULT_ALERT_THRESHOLDS, Budget, load_budgets

GOOD = """\
budgets:
  - team: ml-research
    project: llm-finetune
    monthly_limit_usd: 1000
    per_job_limit_usd: 100
"""


pytestmark = pytest.mark.usefixtures("own_cwd")


def write(folder: Path, text: str, name: str = "budgets.yaml") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / name).write_text(text)
    return folder / name


def edit(old: str, new: str) -> str:
    assert old in GOOD
    return GOOD.replace(old, new)


def test_shipped_example_has_two_teams_with_a_project_each() -> None:
    budgets = load_budgets()
    assert [(b.team, b.project) for b in budgets] == [
        ("ml-research", "llm-finetune"),
        ("data-platform", "batch-inference"),
    ]
    for b in budgets:
        assert b.monthly_limit_usd > 0 and b.per_job_limit_usd is not None
        assert b.per_job_limit_usd <= b.monthly_limit_usd
        assert list(b.alert_thresholds) == sorted(set(b.alert_thresholds))
        assert b.source.endswith("budgets.yaml") and b.line > 1
    assert budgets[1].alert_thresholds == DEFAULT_ALERT_THRESHOLDS == (0.5, 0.8, 1.0)


def test_values_defaults_and_rows(tmp_path: Path) -> None:
    text = (
        GOOD
        + """\
  - team: ml-research
    monthly_limit_usd: 2500.50
    alert_thresholds: [0.25, 1]
"""
    )
    first, second = load_budgets(write(tmp_path, text))
    assert first == Budget(
        team="ml-research",
        project="llm-finetune",
        monthly_limit_usd=1000.0,
        per_job_limit_usd=100.0,
        source=first.source,
        line=2,
    )
    assert first.scope == "ml-research/llm-finetune" and second.scope == "ml-research"
    assert (second.project, second.per_job_limit_usd, second.alert_thresholds) == (None, None, (0.25, 1.0))
    assert isinstance(first.monthly_limit_usd, float)
    with pytest.raises(dataclasses.FrozenInstanceError):
        first.monthly_limit_usd = 0  # type: ignore[misc]
    frame = pd.DataFrame([b.as_row() for b in (first, second)])
    assert frame["monthly_limit_usd"].sum() == 3500.5


def test_an_empty_list_means_no_budgets(tmp_path: Path) -> None:
    assert load_budgets(write(tmp_path, "budgets: []\n")) == []


def test_a_team_wide_budget_and_a_project_budget_can_coexist(tmp_path: Path) -> None:
    text = GOOD + "  - team: ml-research\n    monthly_limit_usd: 5000\n"
    scopes = [b.scope for b in load_budgets(write(tmp_path, text))]
    assert scopes == ["ml-research/llm-finetune", "ml-research"]


REFUSALS = [
    # (id, file text, line, key, fragments the message must hold)
    (
        "unknown key",
        edit("monthly_limit_usd", "monthly_limit"),
        4,
        "monthly_limit",
        ["unknown key monthly_limit in budget entry 1", "did you mean monthly_limit_usd?"],
    ),
    (
        "unknown top-level key",
        "budget:\n  - team: a\n    monthly_limit_usd: 1\n",
        1,
        "budget",
        ["unknown key budget in the budgets file", "did you mean budgets?"],
    ),
    ("missing budgets", "teams: []\n", 1, "teams", ["unknown key teams", "allowed keys: budgets"]),
    ("null budgets", "budgets:\n", 1, "budgets", ["budgets has no value", "`budgets: []`"]),
    ("budgets not a list", "budgets:\n  team: a\n", 2, "budgets", ["budgets must be a list, not a mapping"]),
    (
        "entry not a mapping",
        "budgets:\n  - ml-research\n",
        2,
        None,
        ["budget entry 1 must be a mapping", "not the text 'ml-research'"],
    ),
    ("duplicate key", GOOD + "    team: other\n", 6, "team", ["duplicate key team", "first at line 2"]),
    (
        "missing team",
        GOOD.replace("  - team: ml-research\n    project", "  - project"),
        2,
        "team",
        ["budget entry 1 is missing the required key team", "`team: ml-research`"],
    ),
    (
        "missing monthly limit",
        edit("    monthly_limit_usd: 1000\n", ""),
        2,
        "monthly_limit_usd",
        ["missing the required key monthly_limit_usd", "`monthly_limit_usd: 1000`"],
    ),
    ("empty team", edit("team: ml-research", "team: ''"), 2, "team", ["team must not be empty"]),
    ("number for team", edit("team: ml-research", "team: 42"), 2, "team", ["put it in quotes: '42'"]),
    (
        "text for limit",
        edit("1000", "1k"),
        4,
        "monthly_limit_usd",
        ["monthly_limit_usd must be a monthly limit in US dollars", "not the text '1k'"],
    ),
    ("bool for limit", edit("1000", "true"), 4, "monthly_limit_usd", ["not the boolean true"]),
    ("zero limit", edit("1000", "0"), 4, "monthly_limit_usd", ["must be more than 0, not 0"]),
    ("negative per-job limit", edit("100\n", "-5\n"), 5, "per_job_limit_usd", ["must be more than 0, not -5"]),
    (
        "per-job above monthly",
        edit("100\n", "1500\n"),
        5,
        "per_job_limit_usd",
        ["per_job_limit_usd 1500 is above monthly_limit_usd 1000", "at most 1000"],
    ),
    (
        "threshold above 1",
        GOOD + "    alert_thresholds: [0.5, 1.5]\n",
        6,
        "alert_thresholds",
        ["above 0 and at most 1, not 1.5"],
    ),
    ("zero threshold", GOOD + "    alert_thresholds:\n      - 0.5\n      - 0\n", 8, "alert_thresholds", ["not 0"]),
    (
        "thresholds not ascending",
        GOOD + "    alert_thresholds: [0.8, 0.5, 1.0]\n",
        6,
        "alert_thresholds",
        ["strictly ascending, but 0.5 follows 0.8", "`alert_thresholds: [0.5, 0.8, 1.0]`"],
    ),
    ("repeated threshold", GOOD + "    alert_thresholds: [0.5, 0.5]\n", 6, "alert_thresholds", ["strictly ascending"]),
    ("empty thresholds", GOOD + "    alert_thresholds: []\n", 6, "alert_thresholds", ["empty list"]),
    (
        "duplicate team and project",
        GOOD + GOOD.replace("budgets:\n", ""),
        6,
        "team",
        ["duplicate budget for team 'ml-research', project 'llm-finetune'", "first at line 2"],
    ),
    (
        "duplicate team-wide budget",
        "budgets:\n  - {team: a, monthly_limit_usd: 1}\n  - {team: a, monthly_limit_usd: 2}\n",
        3,
        "team",
        ["duplicate budget for team 'a' (no project)", "first at line 2"],
    ),
    ("invalid YAML", "budgets:\n  - team: [a\n", 3, None, ["invalid YAML"]),
    ("empty file", "\n", 1, None, ["empty"]),
    ("top level a list", "- team: a\n", 1, None, ["the budgets file must be a mapping", "not a list"]),
    # Huge, infinite and negative numbers: each named with the allowed range.
    (
        "huge limit",
        edit("1000", "1.7e+308"),
        4,
        "monthly_limit_usd",
        ["must be at most 1e+09, not 1.7e+308", "allowed: above 0 and at most 1e+09 USD"],
    ),
    (
        "limit too long for a float",
        edit("1000", "1" + "0" * 400),
        4,
        "monthly_limit_usd",
        ["far too large", "above 0 and at most 1e+09 USD"],
    ),
    ("limit with 5,000 digits", edit("1000", "9" * 5000), 4, "monthly_limit_usd", ["far too large"]),
    (
        "infinite per-job limit",
        edit("100\n", ".inf\n"),
        5,
        "per_job_limit_usd",
        ["finite number (above 0 and at most 1e+09 USD), not .inf"],
    ),
    ("negative limit", edit("1000", "-1.0e+308"), 4, "monthly_limit_usd", ["must be more than 0, not -1e+308"]),
    (
        "threshold not a number",
        GOOD + "    alert_thresholds: [0.5, .nan]\n",
        6,
        "alert_thresholds",
        ["finite number (above 0 and at most 1), not .nan"],
    ),
    (
        "10,000 nested lists",
        "budgets: " + "[" * 10_000 + "]" * 10_000 + "\n",
        1,
        None,
        ["values are nested more than 32 levels deep", "remove the extra"],
    ),
    (
        "10,000 nested mappings",
        "budgets:\n  - " + "{a: " * 10_000 + "}" * 10_000 + "\n",
        2,
        None,
        ["values are nested more than 32 levels deep"],
    ),
]


@pytest.mark.parametrize(("text", "line", "key", "fragments"), [r[1:] for r in REFUSALS], ids=[r[0] for r in REFUSALS])
def test_refusals_name_file_line_key_and_fix(
    tmp_path: Path, text: str, line: int, key: str | None, fragments: list[str]
) -> None:
    file = write(tmp_path, text)
    with pytest.raises(ProfileError) as info:
        load_budgets(file)
    message = str(info.value)
    assert message.startswith(f"{file}, line {line}: "), message
    assert (info.value.path, info.value.line, info.value.key) == (str(file), line, key)
    if key is not None:
        assert key in message
    for fragment in fragments:
        assert fragment in message, (fragment, message)


def named(team: str) -> str:
    return edit("ml-research", team)


def test_search_order_is_shared_with_profiles(isolated: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    explicit = write(isolated / "explicit", named("from-path"))
    env = write(isolated / "env", named("from-env"))
    write(isolated / "cwd" / "profiles", named("from-cwd"))
    write(isolated / "config", named("from-config"))
    monkeypatch.setenv("VASTNB_PROFILES", str(env.parent))
    assert load_budgets(explicit.parent)[0].team == "from-path"
    assert load_budgets()[0].team == "from-env"
    monkeypatch.delenv("VASTNB_PROFILES")
    assert load_budgets()[0].team == "from-cwd"
    (isolated / "cwd" / "profiles" / "budgets.yaml").unlink()
    assert load_budgets()[0].team == "from-config"
    (isolated / "config" / "budgets.yaml").unlink()
    assert load_budgets()[0].team == "ml-research"  # the example in the wheel


def test_a_folder_without_budgets_is_an_error(isolated: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    folder = isolated / "only-profiles"
    write(folder, "dev-test: {}\n", name="gpu_profiles.yaml")
    monkeypatch.setenv("VASTNB_PROFILES", str(folder))
    expected = r"only-profiles/budgets.yaml does not exist \(from VASTNB_PROFILES\)"
    with pytest.raises(ProfileError, match=expected):
        load_budgets()


def test_vastnb_profiles_naming_a_profiles_file_finds_budgets_beside_it_or_the_defaults(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from vastnb.profiles.profile import find_profile_file

    profiles = tmp_path / "team" / "my_profiles.yaml"
    profiles.parent.mkdir()
    profiles.write_text("")
    monkeypatch.setenv("VASTNB_PROFILES", str(profiles))
    monkeypatch.chdir(tmp_path)
    assert find_profile_file("gpu_profiles.yaml") == profiles
    assert find_profile_file("budgets.yaml").parent.name == "profiles"  # the shipped default
    (profiles.parent / "budgets.yaml").write_text("budgets: []\n")
    assert find_profile_file("budgets.yaml") == profiles.parent / "budgets.yaml"
