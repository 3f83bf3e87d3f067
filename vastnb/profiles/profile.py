"""GPU profiles: what each kind of job may rent, loaded strictly from ``gpu_profiles.yaml``.

A profile that loads is a profile that can be trusted with money: any unknown key, wrong
type or impossible value is refused with the file, line and fix, never guessed around.
The file is looked for in this order: the ``path`` argument > ``VASTNB_PROFILES`` >
``./profiles/`` > the user config folder > the defaults shipped in the wheel.
"""

from __future__ import annotations

import dataclasses
import difflib
import importlib.resources
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from vastnb.base.config import user_config_dir
from vastnb.base.gpus import resolve_gpu, suggest_gpu
from vastnb.errors import ProfileError
from vastnb.profiles.schemas import schema_of
from vastnb.profiles.yamlspec import (
    Field,
    Range,
    check_mapping,
    compose_file,
    describe,
    fail,
    line_of,
    mapping_items,
    within,
)

__all__ = ["PROFILES_FILE", "DEFAULT_IMAGE", "Profile", "find_profile_file", "load_profiles", "get_profile"]

PROFILES_FILE = "gpu_profiles.yaml"
DEFAULT_IMAGE = "pytorch/pytorch:2.5.1-cuda12.4-cudnn9-runtime"

# The most each number in a profile may be: far above anything Vast rents, so only a typo
# (or a unit mix-up) reaches them, and never so large that arithmetic on them overflows.
MAX_GPUS = 64
MAX_PRICE_PER_HOUR = 1000.0  # $/h for the whole instance
MAX_DURATION_HOURS = 8760.0  # one year
MAX_DISK_GB = 100_000.0
MAX_GPU_RAM_GB = 1024.0  # per GPU
MAX_CUDA = 99.0
#: Vast's range for a bid, $/h per machine (Vast's create-instance API: docs.vast.ai).
BID_RANGE = (0.001, 128.0)
MAX_BID_PERCENT = 1000.0  # "min+N%"

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*\Z")  # one word, so `%vast launch NAME` can parse it
_BID = re.compile(r"min(?:\+(\d+(?:\.\d+)?)%)?\Z")
_COUNTRY = re.compile(r"[A-Z]{2}\Z")


@dataclass(frozen=True)
class Profile:
    """One GPU profile. Prices are $/h for the whole instance, as Vast's ``dph_total``."""

    name: str
    gpu: str | tuple[str, ...]  # as written in the file
    gpu_names: tuple[str, ...]  # the Vast model names it stands for, deduplicated, in order
    num_gpus: int
    max_price_per_hour: float
    min_reliability: float
    max_duration_hours: float
    description: str = ""
    min_gpu_ram_gb: float | None = None
    disk_gb: float = 20.0
    image: str = DEFAULT_IMAGE
    interruptible: bool = False
    bid: str | float | None = None  # "min", "min+N%" or a fixed $/h; None unless interruptible
    min_cuda: float | None = None
    countries: tuple[str, ...] = ()
    verified_only: bool = True
    direct_ssh: bool = False
    team: str | None = None  # whose budget its spending counts against (budgets.yaml)
    project: str | None = None
    source: str = ""  # the file it was loaded from
    # Set for a group's nodes (never in a file): offers of this cluster only, on this overlay.
    cluster_id: int | None = None
    overlay: str | None = None

    def bid_price(self, min_bid: float) -> float:
        """The bid to send for an offer whose minimum bid is ``min_bid`` ($/h).

        A fixed bid is returned as is, even below ``min_bid``: the offer search must skip
        such offers, because Vast creates (and bills) an instance for a bid that is too low.
        """
        if not self.interruptible or self.bid is None:
            raise ProfileError(
                f"profile {self.name!r} is not interruptible, so it has no bid", path=self.source, key="bid"
            )
        if isinstance(min_bid, bool) or not (isinstance(min_bid, (int, float)) and min_bid > 0):
            raise ValueError(f"min_bid must be a price in $/h above 0, not {min_bid!r}")
        if isinstance(self.bid, float):
            return self.bid
        match = _BID.match(self.bid)
        assert match is not None, "bids are validated at load time"
        if match.group(1) is None:
            return float(min_bid)
        # Rounded so that "min+10%" of 0.10 is 0.11, not 0.11000000000000001, but never
        # below min_bid: Vast would still create (and bill) a stopped instance.
        return max(round(min_bid * (1 + float(match.group(1)) / 100), 6), float(min_bid))

    def rented_as(self, *, interruptible: bool | None = None, bid: str | float | None = None) -> Profile:
        """This profile rented as asked: ``interruptible=True`` with a ``bid`` ("min",
        "min+N%" or a fixed $/h; default: the profile's, else "min"), or on demand with
        ``interruptible=False``. Bad values raise :class:`ProfileError`."""
        if interruptible is None and bid is None:
            return self
        if interruptible is False:
            if bid is not None:
                raise ProfileError("bid only applies to interruptible rentals: drop the bid, or ask for interruptible")
            return dataclasses.replace(self, interruptible=False, bid=None)
        if isinstance(bid, str):
            try:
                bid = float(bid)  # "0.20" from a command line is a fixed $/h
            except ValueError:
                pass
        if isinstance(bid, (int, float)) and not isinstance(bid, bool):
            bid = float(bid)
        elif bid is not None and not isinstance(bid, str):
            raise ProfileError(f"bid must be min, min+N% or a fixed $/h, not {bid!r}")
        chosen = bid if bid is not None else (self.bid or "min")
        problem = _check_bid(chosen)
        if problem:
            raise ProfileError(f"bid {problem}")
        return dataclasses.replace(self, interruptible=True, bid=chosen)

    def charged_to(self, team: str | None = None, project: str | None = None) -> Profile:
        """This profile with its spending charged to ``team`` and ``project`` (those given)."""
        for what, value in (("team", team), ("project", project)):
            if value is not None and (not isinstance(value, str) or not value.strip()):
                raise ProfileError(f"{what} must be a name such as 'ml-research', not {value!r}")
        return dataclasses.replace(self, team=team or self.team, project=project or self.project)

    def as_row(self) -> dict[str, Any]:
        """The profile as one row of a pandas DataFrame (the columns people compare)."""
        return {
            "name": self.name,
            "gpu": self.gpu if isinstance(self.gpu, str) else ", ".join(self.gpu),
            "num_gpus": self.num_gpus,
            "max_price_per_hour": self.max_price_per_hour,
            "min_reliability": self.min_reliability,
            "max_duration_hours": self.max_duration_hours,
            "interruptible": self.interruptible,
            "disk_gb": self.disk_gb,
            "description": self.description,
        }


def _check_gpu(name: str) -> str | None:
    if resolve_gpu(name):
        return None
    close = suggest_gpu(name)
    hint = f"did you mean {close.replace(' ', '_')} (or '{close}')? " if close else ""
    return (
        f"names an unknown GPU {name!r}; {hint}Write a Vast model name with underscores (RTX_4090) or "
        "as Vast spells it, quoted ('RTX 4090'); a family such as A100 or H100 matches every variant"
    )


class _Reliability(Range):
    """From 0 to 1, with a hint when the value looks like a percentage."""

    def __call__(self, value: float) -> str | None:
        if 0 <= value <= 1:
            return None
        percent = f" (for {value:g}% write {value / 100:g})" if 10 <= value <= 100 else ""
        return f"must be a fraction between 0 and 1, not {value:g}{percent}"


def _check_bid(value: str | float) -> str | None:
    low, high = BID_RANGE
    allowed = f"(allowed: from {low:g} to {high:g} $/h, Vast's range for a bid)"
    if isinstance(value, float):
        if value <= 0:
            return f"must be more than 0 when it is a fixed $/h, not {value:g} {allowed}"
        if value < low:
            return f"must be at least {low:g} when it is a fixed $/h, not {value:g} {allowed}"
        if value > high:
            return f"must be at most {high:g} when it is a fixed $/h, not {value:g} {allowed}"
        return None
    match = _BID.match(value)
    if match and match.group(1) is not None and float(match.group(1)) > MAX_BID_PERCENT:
        return f"must add at most {MAX_BID_PERCENT:g}% to the minimum bid (min+N%), not {value!r}"
    if match:
        return None
    return f'must be min, min+N% (e.g. "min+10%") or a fixed $/h such as 0.20, not {value!r}'


def _check_country(code: str) -> str | None:
    return None if _COUNTRY.match(code) else f"must hold 2-letter uppercase country codes (US), not {code!r}"


def _check_image(value: str) -> str | None:
    if value and not any(c.isspace() for c in value):
        return None
    return f"must be a Docker image reference without spaces, not {value!r}"


_FIELDS = (
    Field(
        "gpu",
        "str|list[str]",
        required=True,
        item_check=_check_gpu,
        expect="a GPU name or family, or a list of them",
        example="RTX_4090",
    ),
    Field(
        "num_gpus",
        "int",
        required=True,
        check=within(1, MAX_GPUS),
        expect=f"a whole number of GPUs, from 1 to {MAX_GPUS}",
        example="1",
    ),
    Field(
        "max_price_per_hour",
        "number",
        required=True,
        check=within(0, MAX_PRICE_PER_HOUR, above=True, unit="$/h"),
        expect="a price in $/h for the whole instance, disk included",
        example="0.50",
    ),
    Field(
        "min_reliability",
        "number",
        required=True,
        check=_Reliability(0, 1),
        expect="a fraction between 0 and 1",
        example="0.95",
    ),
    Field(
        "max_duration_hours",
        "number",
        required=True,
        check=within(0, MAX_DURATION_HOURS, above=True, unit="hours"),
        expect=f"a number of hours above 0, at most {MAX_DURATION_HOURS:g} (a year)",
        example="24",
    ),
    Field("description", "str", default="", example="Quick experiments on one cheap GPU"),
    Field("min_gpu_ram_gb", "number", check=within(0, MAX_GPU_RAM_GB, above=True, unit="GB"), example="24"),
    Field(
        "disk_gb",
        "number",
        default=20.0,
        check=within(8, MAX_DISK_GB, unit="GB"),
        expect=f"a disk size in GB, from 8 (Vast's minimum) to {MAX_DISK_GB:g}",
        example="20",
    ),
    Field("image", "str", default=DEFAULT_IMAGE, check=_check_image, example=DEFAULT_IMAGE),
    Field("interruptible", "bool", default=False, example="true"),
    Field("bid", "str|number", check=_check_bid, expect="min, min+N% or a fixed $/h", example="min"),
    Field("min_cuda", "number", check=within(0, MAX_CUDA, above=True), example="12.1"),
    Field("countries", "list[str]", default=(), item_check=_check_country, example="[US, CA, 'NO']"),
    Field("verified_only", "bool", default=True, example="true"),
    Field("direct_ssh", "bool", default=False, example="false"),
    Field("team", "str", expect="the team its spending counts against (budgets.yaml)", example="ml-research"),
    Field("project", "str", expect="the team's project it is charged to", example="llm-finetune"),
)


def _explicit(given: Path, filename: str, origin: str) -> Path | None:
    """A path the user named: use it, or refuse; never fall back to another file silently.

    A file path names the profiles file; the budgets file is looked for beside it, and
    None (keep searching) when it is not there.
    """
    if given.is_file() and given.name != filename and filename != PROFILES_FILE:
        sibling = given.parent / filename
        return sibling if sibling.is_file() else None
    if given.is_dir():
        given = given / filename
    if not given.is_file():
        raise ProfileError(
            f"{given} does not exist (from {origin}); point it at {filename} or the folder holding it", path=str(given)
        )
    return given


def find_profile_file(filename: str, path: str | os.PathLike[str] | None = None) -> Path:
    """Where ``filename`` (``gpu_profiles.yaml`` or ``budgets.yaml``) is read from.

    ``path`` (a file, or a folder holding ``filename``) > ``VASTNB_PROFILES`` (the same) >
    ``./profiles/`` > :func:`~vastnb.base.config.user_config_dir` > the defaults in the wheel.
    A ``path`` or ``VASTNB_PROFILES`` that does not exist is an error.
    """
    env = os.environ.get("VASTNB_PROFILES")
    for given, origin in ((path, "the path argument"), (env, "VASTNB_PROFILES")):
        if given:
            found = _explicit(Path(given).expanduser(), filename, origin)
            if found is not None:
                return found
            break
    # Implicit places are only candidates: a folder without the file is passed over.
    for folder in (Path.cwd() / "profiles", user_config_dir()):
        if (folder / filename).is_file():
            return folder / filename
    default = Path(str(importlib.resources.files("vastnb_profiles") / filename))
    if not default.is_file():
        raise ProfileError(
            f"the default {filename} is missing from the installed package; reinstall vastnb", path=str(default)
        )
    return default


def _dedupe(names: list[str]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(names))


def load_profiles(path: str | os.PathLike[str] | None = None) -> dict[str, Profile]:
    """Load and check every profile in ``gpu_profiles.yaml``, found by :func:`find_profile_file`.

    Raises :class:`~vastnb.errors.ProfileError` at the first problem, naming the file,
    line and key, and saying what to write instead.
    """
    file = find_profile_file(PROFILES_FILE, path)
    source = str(file)
    root = compose_file(file)
    if not isinstance(root, yaml.MappingNode):
        fail(
            f"the top level must map profile names to profiles (`dev-test:` then indented keys), not {describe(root)}",
            source,
            line_of(root),
        )
    schema = schema_of(root, _FIELDS, source)  # vastnb's keys, or the reference architecture's
    profiles: dict[str, Profile] = {}
    for name, key_node, node in mapping_items(schema.profiles, source, "profiles", "profiles"):
        line = line_of(key_node)
        if not _NAME.match(name):
            fail(
                f"profile name {name!r} must be one word of letters, digits, '-', '_' or '.', e.g. dev-test",
                source,
                line,
                name,
            )
        values = check_mapping(
            node, schema.fields, source, what=f"profile {name!r}", line=line, parent=name, aliases=schema.aliases
        )
        got = schema.to_ours(values.values)
        if got["bid"] is not None and not got["interruptible"]:
            fail(
                "bid is only used by interruptible rentals; add `interruptible: true` or remove bid",
                source,
                values.line_of("bid"),
                "bid",
            )
        # Interruptible rentals always send a bid (design 6): default to the offer's minimum.
        if got["interruptible"] and got["bid"] is None:
            got["bid"] = "min"
        if isinstance(got["bid"], float) and got["bid"] > got["max_price_per_hour"]:
            fail(
                f"bid {got['bid']:g} is above {schema.key('max_price_per_hour')} {got['max_price_per_hour']:g}, "
                "which must cover the bid plus disk; lower the bid or raise the maximum",
                source,
                values.line_of("bid"),
                "bid",
            )
        gpus = [got["gpu"]] if isinstance(got["gpu"], str) else list(got["gpu"])
        resolved = [model for gpu in gpus for model in resolve_gpu(gpu) or ()]
        profiles[name] = Profile(name=name, gpu_names=_dedupe(resolved), source=source, **got)
    if not profiles:
        fail(
            "the file defines no profiles; add one, e.g. `dev-test:` with gpu, num_gpus, "
            "max_price_per_hour, min_reliability and max_duration_hours",
            source,
            1,
        )
    return profiles


def get_profile(name: str, profiles: Mapping[str, Profile]) -> Profile:
    """The profile called exactly ``name``; an unknown name lists the known ones."""
    if name in profiles:
        return profiles[name]
    known = list(profiles)
    # A swapped '-'/'_' is the likeliest slip, so check it before fuzzy matching.
    swapped = [k for k in known if k.replace("_", "-").lower() == name.replace("_", "-").lower()]
    close = swapped or difflib.get_close_matches(name, known, n=1, cutoff=0.6)
    hint = f"did you mean {close[0]}? " if close else ""
    source = next(iter(profiles.values())).source if profiles else None
    listed = ", ".join(known) if known else "none"
    raise ProfileError(f"unknown profile {name!r}; {hint}Known profiles: {listed}", path=source, key=name)
