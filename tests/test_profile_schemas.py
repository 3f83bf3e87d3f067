"""Both ways a profiles file may be written: vastnb's (names at the top) and the reference
architecture's (``config/gpu_profiles.yaml``: one ``profiles:`` key, ``gpu_name``, ``max_dph``,
``reliability_min``), each with the same strictness and a did-you-mean that knows both."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from vastnb.errors import ProfileError
from vastnb.profiles.profile import load_profiles

pytestmark = pytest.mark.usefixtures("own_cwd")

OURS = """\
training-standard:
  gpu: A100
  num_gpus: 1
  max_price_per_hour: 2.0
  min_reliability: 0.98
  max_duration_hours: 24
inference-batch:
  gpu: RTX_4090
  num_gpus: 1
  max_price_per_hour: 0.15
  min_reliability: 0.95
  max_duration_hours: 4
  interruptible: true
"""

REFERENCE = """\
# The reference architecture's config/gpu_profiles.yaml, unchanged.
profiles:
  training-standard:
    gpu_name: A100
    num_gpus: 1
    max_dph: 2.0
    reliability_min: 0.98
    max_duration_hours: 24
  inference-batch:
    gpu_name: RTX_4090
    num_gpus: 1
    max_dph: 0.15
    reliability_min: 0.95
    max_duration_hours: 4
    interruptible: true
"""


def _load(tmp_path: Path, text: str) -> dict:  # type: ignore[type-arg]
    folder = tmp_path / "p"
    folder.mkdir(exist_ok=True)
    (folder / "gpu_profiles.yaml").write_text(text)
    return load_profiles(folder)


def _same(a: dict, b: dict) -> bool:  # type: ignore[type-arg]
    strip = lambda p: dataclasses.replace(p, source="")  # noqa: E731
    return {k: strip(v) for k, v in a.items()} == {k: strip(v) for k, v in b.items()}


def test_the_reference_architectures_file_loads_unchanged_as_the_same_profiles(tmp_path: Path) -> None:
    reference, ours = _load(tmp_path, REFERENCE), _load(tmp_path, OURS)
    assert _same(reference, ours)
    standard = reference["training-standard"]
    assert (standard.gpu_names, standard.max_price_per_hour, standard.min_reliability) == (
        ("A100 PCIE", "A100 SXM4", "A100X"),
        2.0,
        0.98,
    )
    assert reference["inference-batch"].bid == "min"  # the optional keys behave the same


@pytest.mark.parametrize(
    ("text", "line", "message"),
    [
        (
            REFERENCE.replace("max_dph: 2.0", "max_dhp: 2.0"),
            6,
            "unknown key max_dhp in profile 'training-standard'; did you mean max_dph?",
        ),
        (OURS.replace("max_price_per_hour: 2.0", "max_dhp: 2.0"), 4, "did you mean max_price_per_hour?"),
        (OURS.replace("max_price_per_hour: 2.0", "max_dph: 2.0"), 4, "here it is written max_price_per_hour"),
        (REFERENCE.replace("gpu_name: A100", "gpu: A100"), 4, "here it is written gpu_name"),
        (REFERENCE.replace("reliability_min: 0.98", "reliabilty_min: 0.98"), 7, "did you mean reliability_min?"),
        (REFERENCE.replace("    gpu_name: A100\n", "", 1), 3, "missing the required key gpu_name"),
        (REFERENCE.replace("max_dph: 2.0", "max_dph: -2"), 6, "max_dph must be"),
        (REFERENCE + "budgets:\n  ml: 100\n", 16, "unknown top-level key budgets"),
    ],
)
def test_each_schema_is_as_strict_and_knows_the_others_names(
    tmp_path: Path, text: str, line: int, message: str
) -> None:
    with pytest.raises(ProfileError) as caught:
        _load(tmp_path, text)
    assert message in str(caught.value), str(caught.value)
    assert caught.value.line == line and str(caught.value.path).endswith("gpu_profiles.yaml")


def test_a_profile_of_vastnbs_schema_may_still_be_called_profiles(tmp_path: Path) -> None:
    loaded = _load(tmp_path, OURS.replace("training-standard:", "profiles:"))
    assert loaded["profiles"].max_price_per_hour == 2.0
