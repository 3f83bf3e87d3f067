"""GPU profiles: the shipped defaults, strict loading with located errors, and the search order."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pandas as pd
import pytest

from vastnb.errors import ConfigError, ProfileError
from vastnb.profiles.profile import DEFAULT_IMAGE, Profile, find_profile_file, get_profile, load_profiles

GOOD = """\
dev-test:
  gpu: RTX_4090
  num_gpus: 1
  max_price_per_hour: 0.25
  min_reliability: 0.90
  max_duration_hours: 2
"""


pytestmark = pytest.mark.usefixtures("own_cwd")


def write(folder: Path, text: str, name: str = "gpu_profiles.yaml") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / name).write_text(text)
    return folder / name


def edit(old: str, new: str) -> str:
    assert old in GOOD
    return GOOD.replace(old, new)


# --- the shipped defaults ---------------------------------------------------------------


def test_shipped_defaults_are_the_four_reference_profiles() -> None:
    profiles = load_profiles()
    assert list(profiles) == ["dev-test", "training-standard", "training-distributed", "inference-batch"]
    expected = {
        # name: (gpu, gpu_names, num_gpus, $/h, reliability, hours, interruptible, bid)
        "dev-test": ("RTX_4090", ("RTX 4090",), 1, 0.25, 0.90, 2, False, None),
        "training-standard": ("A100", ("A100 PCIE", "A100 SXM4", "A100X"), 1, 2.00, 0.98, 24, False, None),
        "training-distributed": ("H100_SXM", ("H100 SXM",), 4, 4.00, 0.99, 48, False, None),
        "inference-batch": ("RTX_4090", ("RTX 4090",), 1, 0.15, 0.95, 4, True, "min"),
    }
    for name, (gpu, names, count, price, reliability, hours, interruptible, bid) in expected.items():
        p = profiles[name]
        got = (
            p.gpu,
            p.gpu_names,
            p.num_gpus,
            p.max_price_per_hour,
            p.min_reliability,
            p.max_duration_hours,
            p.interruptible,
            p.bid,
        )
        assert got == (gpu, names, count, price, reliability, hours, interruptible, bid), name
        assert p.description and "\n" not in p.description
        assert (p.disk_gb, p.image, p.verified_only, p.direct_ssh) == (20.0, DEFAULT_IMAGE, True, False)
        assert (p.min_gpu_ram_gb, p.min_cuda, p.countries) == (None, None, ())
        assert p.source.endswith("gpu_profiles.yaml")


def test_profiles_are_frozen_and_typed() -> None:
    p = load_profiles()["dev-test"]
    with pytest.raises(dataclasses.FrozenInstanceError):
        p.num_gpus = 8  # type: ignore[misc]
    assert isinstance(p.max_price_per_hour, float) and isinstance(p.max_duration_hours, float)


def test_as_row_makes_a_dataframe() -> None:
    frame = pd.DataFrame([p.as_row() for p in load_profiles().values()])
    assert list(frame.columns) == [
        "name",
        "gpu",
        "num_gpus",
        "max_price_per_hour",
        "min_reliability",
        "max_duration_hours",
        "interruptible",
        "disk_gb",
        "description",
    ]
    assert frame.set_index("name").loc["training-distributed", "num_gpus"] == 4


# --- GPU names ---------------------------------------------------------------------------


@pytest.mark.parametrize("written", ["RTX_4090", "'RTX 4090'", "rtx_4090"])
def test_both_gpu_spellings_resolve(tmp_path: Path, written: str) -> None:
    p = load_profiles(write(tmp_path, edit("RTX_4090", written)))["dev-test"]
    assert p.gpu_names == ("RTX 4090",)
    assert p.gpu == written.strip("'")


def test_a_family_expands_and_a_list_is_deduplicated_in_order(tmp_path: Path) -> None:
    text = edit("gpu: RTX_4090", "gpu: [H100_SXM, A100, A100 SXM4, RTX 4090]")
    p = load_profiles(write(tmp_path, text))["dev-test"]
    assert p.gpu == ("H100_SXM", "A100", "A100 SXM4", "RTX 4090")
    assert p.gpu_names == ("H100 SXM", "A100 PCIE", "A100 SXM4", "A100X", "RTX 4090")


def test_optional_keys_load(tmp_path: Path) -> None:
    text = (
        GOOD
        + """\
  description: with every option
  min_gpu_ram_gb: 24
  disk_gb: 50
  image: nvcr.io/nvidia/pytorch:24.05-py3
  interruptible: true
  bid: min+10%
  min_cuda: 12.1
  countries: [US, CA, 'NO']
  verified_only: false
  direct_ssh: true
"""
    )
    p = load_profiles(write(tmp_path, text))["dev-test"]
    assert (p.min_gpu_ram_gb, p.disk_gb, p.min_cuda) == (24.0, 50.0, 12.1)
    assert (p.image, p.interruptible, p.bid) == ("nvcr.io/nvidia/pytorch:24.05-py3", True, "min+10%")
    assert (p.countries, p.verified_only, p.direct_ssh) == (("US", "CA", "NO"), False, True)


def test_ints_are_accepted_for_number_fields(tmp_path: Path) -> None:
    p = load_profiles(write(tmp_path, edit("0.25", "1")))["dev-test"]
    assert p.max_price_per_hour == 1.0 and isinstance(p.max_price_per_hour, float)


# --- bids ----------------------------------------------------------------------------------


def bidder(tmp_path: Path, bid: str) -> Profile:
    text = GOOD + f"  interruptible: true\n  bid: {bid}\n"
    return load_profiles(write(tmp_path, text))["dev-test"]


def test_bid_price_math(tmp_path: Path) -> None:
    assert bidder(tmp_path, "min").bid_price(0.10) == 0.10
    assert bidder(tmp_path, "min+10%").bid_price(0.10) == 0.11
    assert bidder(tmp_path, "min+2.5%").bid_price(0.20) == 0.205
    assert bidder(tmp_path, "0.12").bid_price(0.10) == 0.12
    assert bidder(tmp_path, "0.12").bid_price(0.20) == 0.12  # the offer search must skip this offer
    assert bidder(tmp_path, "min+0%").bid_price(0.1234564) == 0.1234564  # rounding never goes below min


def test_interruptible_defaults_to_the_minimum_bid(tmp_path: Path) -> None:
    p = load_profiles(write(tmp_path, GOOD + "  interruptible: true\n"))["dev-test"]
    assert p.bid == "min" and p.bid_price(0.07) == 0.07


def test_bid_price_refuses_on_demand_profiles_and_bad_minimums(tmp_path: Path) -> None:
    with pytest.raises(ProfileError, match="not interruptible"):
        load_profiles(write(tmp_path, GOOD))["dev-test"].bid_price(0.1)
    with pytest.raises(ValueError, match="min_bid"):
        bidder(tmp_path, "min").bid_price(0)


# --- strict loading: every refusal names file, line, key and the fix ---------------------

REFUSALS = [
    # (id, file text, line, key, fragments the message must hold)
    (
        "unknown key",
        edit("max_price_per_hour", "max_price_per_hr"),
        4,
        "max_price_per_hr",
        ["unknown key max_price_per_hr", "did you mean max_price_per_hour?"],
    ),
    (
        "unknown key, no close match",
        GOOD + "  colour: red\n",
        7,
        "colour",
        ["unknown key colour", "allowed keys: gpu, num_gpus"],
    ),
    ("duplicate key", GOOD + "  num_gpus: 2\n", 7, "num_gpus", ["duplicate key num_gpus", "first at line 3"]),
    ("duplicate profile", GOOD + GOOD, 7, "dev-test", ["duplicate key dev-test", "first at line 1"]),
    (
        "string for int",
        edit("num_gpus: 1", "num_gpus: four"),
        3,
        "num_gpus",
        ["num_gpus must be a whole number", "not the text 'four'", "`num_gpus: 1`"],
    ),
    ("quoted number", edit("num_gpus: 1", "num_gpus: '2'"), 3, "num_gpus", ["remove the quotes: `num_gpus: 2`"]),
    ("bool for int", edit("num_gpus: 1", "num_gpus: true"), 3, "num_gpus", ["not the boolean true"]),
    (
        "bool for number",
        edit("0.25", "yes"),
        4,
        "max_price_per_hour",
        ["max_price_per_hour must be a price in $/h", "not the boolean yes", "`max_price_per_hour: 0.50`"],
    ),
    ("float for int", edit("num_gpus: 1", "num_gpus: 1.5"), 3, "num_gpus", ["whole number", "not the number 1.5"]),
    ("zero GPUs", edit("num_gpus: 1", "num_gpus: 0"), 3, "num_gpus", ["must be at least 1, not 0"]),
    ("zero price", edit("0.25", "0"), 4, "max_price_per_hour", ["must be more than 0, not 0"]),
    (
        "negative price",
        edit("0.25", "-0.5"),
        4,
        "max_price_per_hour",
        ["must be more than 0, not -0.5", "`max_price_per_hour: 0.50`"],
    ),
    ("infinite price", edit("0.25", ".inf"), 4, "max_price_per_hour", ["finite"]),
    (
        "reliability above 1",
        edit("0.90", "1.5"),
        5,
        "min_reliability",
        ["between 0 and 1, not 1.5", "`min_reliability: 0.95`"],
    ),
    ("reliability as percent", edit("0.90", "95"), 5, "min_reliability", ["for 95% write 0.95"]),
    ("negative reliability", edit("0.90", "-0.1"), 5, "min_reliability", ["between 0 and 1"]),
    (
        "zero hours",
        edit("max_duration_hours: 2", "max_duration_hours: 0"),
        6,
        "max_duration_hours",
        ["must be more than 0"],
    ),
    (
        "unknown GPU",
        edit("RTX_4090", "RTX_4900"),
        2,
        "gpu",
        [
            "unknown GPU 'RTX_4900'",
            "did you mean RTX_4090 (or 'RTX 4090')?",
            "with underscores (RTX_4090)",
            "('RTX 4090')",
            "A100",
        ],
    ),
    (
        "unknown GPU in a list",
        edit("gpu: RTX_4090", "gpu:\n    - A100\n    - H100_SMX"),
        4,
        "gpu",
        ["unknown GPU 'H100_SMX'", "did you mean H100_SXM"],
    ),
    ("empty GPU list", edit("gpu: RTX_4090", "gpu: []"), 2, "gpu", ["empty list"]),
    (
        "missing key",
        GOOD.replace("  max_duration_hours: 2\n", ""),
        1,
        "max_duration_hours",
        ["profile 'dev-test' is missing the required key max_duration_hours", "`max_duration_hours: 24`"],
    ),
    ("null value", edit("num_gpus: 1", "num_gpus:"), 3, "num_gpus", ["num_gpus has no value", "`num_gpus: 1`"]),
    ("bid without interruptible", GOOD + "  bid: min\n", 7, "bid", ["add `interruptible: true` or remove bid"]),
    (
        "malformed bid",
        GOOD + "  interruptible: true\n  bid: min+ten%\n",
        8,
        "bid",
        ["'min+ten%'", "min+N%", "`bid: min`"],
    ),
    ("negative bid", GOOD + "  interruptible: true\n  bid: -0.1\n", 8, "bid", ["more than 0"]),
    (
        "bid above the maximum",
        GOOD + "  interruptible: true\n  bid: 0.5\n",
        8,
        "bid",
        ["above max_price_per_hour 0.25"],
    ),
    (
        "interruptible as text",
        GOOD + "  interruptible: 'yes'\n",
        7,
        "interruptible",
        ["true or false, not the text 'yes'"],
    ),
    ("disk below Vast's minimum", GOOD + "  disk_gb: 4\n", 7, "disk_gb", ["at least 8, not 4", "`disk_gb: 20`"]),
    ("lowercase country", GOOD + "  countries: [US, us]\n", 7, "countries", ["2-letter uppercase", "'us'"]),
    (
        "Norway unquoted",
        GOOD + "  countries:\n    - SE\n    - NO\n",
        9,
        "countries",
        ["yes/no/on/off", "put it in quotes: 'NO'"],
    ),
    ("number for text", GOOD + "  description: 42\n", 7, "description", ["put it in quotes: '42'"]),
    ("image with spaces", GOOD + "  image: pytorch latest\n", 7, "image", ["without spaces"]),
    ("profile not a mapping", "dev-test: RTX_4090\n", 1, "dev-test", ["profile 'dev-test' must be a mapping"]),
    ("profile name with a space", GOOD.replace("dev-test:", "dev test:"), 1, "dev test", ["one word", "dev-test"]),
    ("merge key", GOOD.replace("dev-test:", "dev-test: &b") + "copy:\n  <<: *b\n", 8, "<<", ["merge keys (<<)"]),
    # Huge, infinite and negative numbers: each named with the allowed range.
    (
        "huge price",
        edit("0.25", "1.7e+308"),
        4,
        "max_price_per_hour",
        ["must be at most 1000, not 1.7e+308", "allowed: above 0 and at most 1000 $/h"],
    ),
    (
        "price too long for a float",
        edit("0.25", "1" + "0" * 400),
        4,
        "max_price_per_hour",
        ["far too large", "above 0 and at most 1000 $/h", "(401 characters)"],
    ),
    ("price with 5,000 digits", edit("0.25", "9" * 5000), 4, "max_price_per_hour", ["far too large"]),
    (
        "negative infinite price",
        edit("0.25", "-.inf"),
        4,
        "max_price_per_hour",
        ["finite number (above 0 and at most 1000 $/h), not -.inf"],
    ),
    (
        "huge GPU count",
        edit("num_gpus: 1", "num_gpus: 1000000000000000000000"),
        3,
        "num_gpus",
        ["must be at most 64, not 1e+21", "allowed: from 1 to 64"],
    ),
    (
        "GPU count with 5,000 digits",
        edit("num_gpus: 1", "num_gpus: " + "9" * 5000),
        3,
        "num_gpus",
        ["far too large", "from 1 to 64"],
    ),
    (
        "negative GPU count",
        edit("num_gpus: 1", "num_gpus: -3"),
        3,
        "num_gpus",
        ["must be at least 1, not -3 (allowed: from 1 to 64)"],
    ),
    (
        "huge hours",
        edit("max_duration_hours: 2", "max_duration_hours: 1.0e+300"),
        6,
        "max_duration_hours",
        ["must be at most 8760", "above 0 and at most 8760 hours"],
    ),
    (
        "hours not a number",
        edit("max_duration_hours: 2", "max_duration_hours: .nan"),
        6,
        "max_duration_hours",
        ["finite number (above 0 and at most 8760 hours), not .nan"],
    ),
    (
        "negative hours",
        edit("max_duration_hours: 2", "max_duration_hours: -1"),
        6,
        "max_duration_hours",
        ["must be more than 0, not -1", "above 0 and at most 8760 hours"],
    ),
    ("infinite reliability", edit("0.90", ".inf"), 5, "min_reliability", ["finite number (from 0 to 1)"]),
    ("huge reliability", edit("0.90", "1" + "0" * 400), 5, "min_reliability", ["far too large", "from 0 to 1"]),
    (
        "huge disk",
        GOOD + "  disk_gb: 1.7e+308\n",
        7,
        "disk_gb",
        ["must be at most 100000, not 1.7e+308", "from 8 to 100000 GB"],
    ),
    (
        "huge GPU RAM",
        GOOD + "  min_gpu_ram_gb: 1.0e+308\n",
        7,
        "min_gpu_ram_gb",
        ["must be at most 1024", "above 0 and at most 1024 GB"],
    ),
    ("huge CUDA", GOOD + "  min_cuda: 1.0e+308\n", 7, "min_cuda", ["must be at most 99"]),
    (
        "bid above Vast's range",
        edit("0.25", "500") + "  interruptible: true\n  bid: 200\n",
        8,
        "bid",
        ["must be at most 128 when it is a fixed $/h, not 200", "from 0.001 to 128 $/h"],
    ),
    ("bid below Vast's range", GOOD + "  interruptible: true\n  bid: 0.0001\n", 8, "bid", ["must be at least 0.001"]),
    ("huge bid", GOOD + "  interruptible: true\n  bid: 1" + "0" * 400 + "\n", 8, "bid", ["far too large"]),
    (
        "huge bid percentage",
        GOOD + "  interruptible: true\n  bid: min+1" + "0" * 400 + "%\n",
        8,
        "bid",
        ["at most 1000% to the minimum bid"],
    ),
]


@pytest.mark.parametrize(("text", "line", "key", "fragments"), [r[1:] for r in REFUSALS], ids=[r[0] for r in REFUSALS])
def test_refusals_name_file_line_key_and_fix(
    tmp_path: Path, text: str, line: int, key: str, fragments: list[str]
) -> None:
    file = write(tmp_path, text)
    with pytest.raises(ProfileError) as info:
        load_profiles(file)
    message = str(info.value)
    assert message.startswith(f"{file}, line {line}: "), message
    assert (info.value.path, info.value.line, info.value.key) == (str(file), line, key)
    assert key in message
    for fragment in fragments:
        assert fragment in message, (fragment, message)


FILE_REFUSALS = [
    # (id, file text, line, fragments): problems with the file as a whole, so no key
    ("bad indentation", "dev-test:\n  gpu: RTX_4090\n   num_gpus: 1\n", 3, ["invalid YAML", "mapping values"]),
    ("unclosed list", "dev-test:\n  gpu: [RTX_4090\n  num_gpus: 1\n", 3, ["flow sequence, which starts at line 2"]),
    ("tab indentation", "dev-test:\n  gpu: RTX_4090\n\tnum_gpus: 1\n", 3, ["never tabs"]),
    ("two documents", "a: 1\n---\nb: 2\n", 2, ["single document", "remove the '---' line"]),
    ("empty file", "", 1, ["empty"]),
    ("only comments", "# nothing yet\n", 1, ["empty"]),
    (
        "top level is a list",
        "- dev-test\n- training\n",
        1,
        ["the top level must map profile names to profiles", "not a list"],
    ),
    ("top level is text", "dev-test\n", 1, ["not the text 'dev-test'"]),
    ("no profiles", "{}\n", 1, ["defines no profiles"]),
    ("number as a profile name", GOOD + "42:\n  gpu: A100\n", 7, ["must be text", "'42'"]),
]


@pytest.mark.parametrize(
    ("text", "line", "fragments"), [r[1:] for r in FILE_REFUSALS], ids=[r[0] for r in FILE_REFUSALS]
)
def test_file_refusals_name_file_and_line(tmp_path: Path, text: str, line: int, fragments: list[str]) -> None:
    file = write(tmp_path, text)
    with pytest.raises(ProfileError) as info:
        load_profiles(file)
    assert str(info.value).startswith(f"{file}, line {line}: "), str(info.value)
    for fragment in fragments:
        assert fragment in str(info.value), (fragment, str(info.value))


NESTED = [
    # (id, file text, line where the nesting goes too deep)
    ("10,000 nested lists", "dev-test: " + "[" * 10_000 + "]" * 10_000 + "\n", 1),
    ("10,000 nested mappings", "dev-test: " + "{a: " * 10_000 + "1" + "}" * 10_000 + "\n", 1),
    ("10,000 nested lists, unclosed", "dev-test:\n  gpu: " + "[" * 10_000 + "\n", 2),
    ("block mappings", "".join(" " * i + f"k{i}:\n" for i in range(3000)), 32),
    ("block lists", "".join(" " * i + "-\n" for i in range(3000)), 33),
]


@pytest.mark.parametrize(("text", "line"), [r[1:] for r in NESTED], ids=[r[0] for r in NESTED])
def test_deep_nesting_is_a_profile_error_not_a_recursion_error(tmp_path: Path, text: str, line: int) -> None:
    file = write(tmp_path, text)
    with pytest.raises(ProfileError) as info:
        load_profiles(file)
    message = str(info.value)
    assert message.startswith(f"{file}, line {line}: values are nested more than 32 levels deep"), message
    assert "remove the extra" in message and "\n" not in message
    assert isinstance(info.value, ConfigError) and info.value.path == str(file)


def test_nesting_a_file_needs_still_loads(tmp_path: Path) -> None:
    deep_but_fine = GOOD + "  countries: [[[[[[[[[[US]]]]]]]]]]\n"  # 14 levels: refused for its shape only
    with pytest.raises(ProfileError, match=r"countries must hold 2-letter|must be a list of text"):
        load_profiles(write(tmp_path, deep_but_fine))
    assert list(load_profiles(write(tmp_path, GOOD + "  countries: [US, CA]\n"))) == ["dev-test"]


def test_profile_errors_are_config_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError):
        load_profiles(write(tmp_path, ""))


# --- get_profile -------------------------------------------------------------------------


def test_get_profile_is_exact_and_suggests() -> None:
    profiles = load_profiles()
    assert get_profile("dev-test", profiles).name == "dev-test"
    with pytest.raises(ProfileError) as info:
        get_profile("dev_test", profiles)
    message = str(info.value)
    assert "unknown profile 'dev_test'; did you mean dev-test?" in message
    assert "Known profiles: dev-test, training-standard, training-distributed, inference-batch" in message
    assert message.startswith(profiles["dev-test"].source) and info.value.key == "dev_test"
    with pytest.raises(ProfileError, match="did you mean training-standard"):
        get_profile("training-standrd", profiles)
    with pytest.raises(ProfileError, match="Known profiles: none"):
        get_profile("dev-test", {})


# --- where the file is found -------------------------------------------------------------


def named(text: str, name: str) -> str:
    """GOOD with its profile renamed, so each test can tell which file won."""
    return text.replace("dev-test:", f"{name}:")


def test_search_order_each_step_wins_over_the_next(isolated: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    explicit = write(isolated / "explicit", named(GOOD, "from-path"))
    env = write(isolated / "env", named(GOOD, "from-env"))
    write(isolated / "cwd" / "profiles", named(GOOD, "from-cwd"))
    write(isolated / "config", named(GOOD, "from-config"))
    monkeypatch.setenv("VASTNB_PROFILES", str(env.parent))
    assert list(load_profiles(explicit)) == ["from-path"]
    assert list(load_profiles(explicit.parent)) == ["from-path"]  # a folder holding the file
    assert list(load_profiles()) == ["from-env"]
    monkeypatch.setenv("VASTNB_PROFILES", str(env))  # a file works too
    assert list(load_profiles()) == ["from-env"]
    monkeypatch.delenv("VASTNB_PROFILES")
    assert list(load_profiles()) == ["from-cwd"]
    (isolated / "cwd" / "profiles" / "gpu_profiles.yaml").unlink()
    assert list(load_profiles()) == ["from-config"]
    (isolated / "config" / "gpu_profiles.yaml").unlink()
    assert "dev-test" in load_profiles()  # the defaults in the wheel
    assert find_profile_file("gpu_profiles.yaml").parent.name == "profiles"


def test_the_file_found_is_the_file_named_in_errors(isolated: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    bad = write(isolated / "cwd" / "profiles", GOOD + "  colour: red\n")
    with pytest.raises(ProfileError) as info:
        load_profiles()
    assert info.value.path == str(bad)


@pytest.mark.parametrize("as_env", [False, True])
def test_a_named_path_that_does_not_exist_is_an_error(
    isolated: Path, monkeypatch: pytest.MonkeyPatch, as_env: bool
) -> None:
    write(isolated / "cwd" / "profiles", GOOD)  # would be found next: must not be used
    missing = isolated / "nowhere"
    if as_env:
        monkeypatch.setenv("VASTNB_PROFILES", str(missing))
    with pytest.raises(ProfileError) as info:
        load_profiles(None if as_env else missing)
    assert "does not exist" in str(info.value)
    assert ("VASTNB_PROFILES" if as_env else "the path argument") in str(info.value)


def test_a_named_folder_without_the_file_is_an_error(isolated: Path) -> None:
    (isolated / "empty").mkdir()
    with pytest.raises(ProfileError, match=r"empty/gpu_profiles.yaml does not exist"):
        load_profiles(isolated / "empty")
