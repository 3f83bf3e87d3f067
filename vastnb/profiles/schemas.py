"""The two ways a profiles file may be written, read with the same strictness.

vastnb's own: profile names at the top level, with ``gpu``, ``num_gpus``,
``max_price_per_hour``, ``min_reliability``, ``max_duration_hours``. The reference
architecture's (its ``config/gpu_profiles.yaml``): one top-level ``profiles:`` key holding the
profiles, with ``gpu_name``, ``num_gpus``, ``max_dph``, ``reliability_min``,
``max_duration_hours``. ``max_dph`` is Vast's ``dph_total`` for the whole instance, the same
as ``max_price_per_hour``. A team that adopted that architecture points vastnb at its file
unchanged. The optional keys are the same in both.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import yaml

from vastnb.profiles.yamlspec import Field, fail, line_of, mapping_items

__all__ = ["Schema", "schema_of", "REFERENCE_NAMES"]

#: vastnb's key -> the reference architecture's name for it.
REFERENCE_NAMES = {"gpu": "gpu_name", "max_price_per_hour": "max_dph", "min_reliability": "reliability_min"}


@dataclass(frozen=True)
class Schema:
    """How one file is written: where its profiles are, its keys, and the other schema's
    names for them (for a did-you-mean)."""

    name: str  # "vastnb" or "reference"
    profiles: yaml.Node  # the mapping of profile names to profiles
    fields: tuple[Field, ...]
    aliases: Mapping[str, str]  # the other schema's key -> this schema's key

    def key(self, ours: str) -> str:
        """How this file spells vastnb's key ``ours``."""
        return REFERENCE_NAMES.get(ours, ours) if self.name == "reference" else ours

    def to_ours(self, values: Mapping[str, Any]) -> dict[str, Any]:
        """Checked values under vastnb's own key names."""
        if self.name != "reference":
            return dict(values)
        back = {theirs: ours for ours, theirs in REFERENCE_NAMES.items()}
        return {back.get(key, key): value for key, value in values.items()}


def schema_of(root: yaml.Node, fields: Iterable[Field], source: str) -> Schema:
    """Which schema the file at ``source`` (parsed: ``root``) is written in."""
    ours = tuple(fields)
    if not _is_reference(root):
        return Schema("vastnb", root, ours, {theirs: mine for mine, theirs in REFERENCE_NAMES.items()})
    assert isinstance(root, yaml.MappingNode)
    for key, key_node, _ in mapping_items(root, source, "the top level"):
        if key != "profiles":
            fail(
                f"unknown top-level key {key}: a file with a top-level profiles: key holds only that key "
                "(the reference architecture's schema); move it under profiles:, or write every profile at the "
                "top level (vastnb's schema)",
                source,
                line_of(key_node),
                key,
            )
    profiles = next(value for key_node, value in root.value if key_node.value == "profiles")
    theirs = tuple(dataclasses.replace(f, name=REFERENCE_NAMES.get(f.name, f.name)) for f in ours)
    return Schema("reference", profiles, theirs, dict(REFERENCE_NAMES))


def _is_reference(root: yaml.Node) -> bool:
    """A top-level ``profiles:`` whose value maps names to mappings, and is no profile itself
    (vastnb's schema may name a profile ``profiles``)."""
    if not isinstance(root, yaml.MappingNode):
        return False
    value = next((v for k, v in root.value if isinstance(k, yaml.ScalarNode) and k.value == "profiles"), None)
    if not isinstance(value, yaml.MappingNode) or not value.value:
        return False
    keys = {k.value for k, _ in value.value if isinstance(k, yaml.ScalarNode)}
    looks_like_a_profile = bool(keys & {"gpu", "num_gpus", "max_price_per_hour", "min_reliability"})
    return not looks_like_a_profile and all(isinstance(v, yaml.MappingNode) for _, v in value.value)
