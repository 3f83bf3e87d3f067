"""The CLI query mini-language: the bodies vastnb sends must be the ones `vastai search offers` sends."""

from __future__ import annotations

import pytest

from vastnb.errors import ConfigError, VastError
from vastnb.market.query import (
    ALIASES,
    DEFAULT_FILTERS,
    OFFER_FIELDS,
    UNIT_MULTIPLIERS,
    format_query,
    looks_like_query,
    parse_order,
    parse_query,
)

DEFAULTS = {"verified": {"eq": True}, "external": {"eq": False}, "rentable": {"eq": True}, "rented": {"eq": False}}


# --- the documented examples -------------------------------------------------------------------


def test_documented_example_with_defaults() -> None:
    assert parse_query("gpu_name=RTX_4090 num_gpus>=1 reliability>0.98 dph<2") == {
        **DEFAULTS,
        "gpu_name": {"eq": "RTX 4090"},
        "num_gpus": {"gte": "1"},
        "reliability": {"gt": "0.98"},
        "dph_total": {"lt": "2"},
    }


def test_defaults_off() -> None:
    assert parse_query("num_gpus>=1", defaults=False) == {"num_gpus": {"gte": "1"}}
    assert parse_query("", defaults=False) == {}
    assert parse_query("   ") == DEFAULTS


def test_default_constants() -> None:
    assert DEFAULT_FILTERS == DEFAULTS
    assert ALIASES == {
        "dph": "dph_total",
        "dlperf_usd": "dlperf_per_dphtotal",
        "flops_usd": "flops_per_dphtotal",
        "cuda_vers": "cuda_max_good",
        "display_active": "gpu_display_active",
    }
    assert "reliability" not in ALIASES  # the CLI dropped reliability -> reliability2
    assert UNIT_MULTIPLIERS == {"cpu_ram": 1000, "gpu_ram": 1000, "gpu_total_ram": 1000, "duration": 86400}
    assert {"gpu_name", "num_gpus", "dph_total", "reliability", "reliability2", "geolocation"} <= OFFER_FIELDS
    assert "dph" not in OFFER_FIELDS  # aliases are not fields


def test_parse_does_not_mutate_defaults() -> None:
    parse_query("verified=false rented=any")
    parse_query("verified!=false")["verified"]["gt"] = "x"
    assert DEFAULT_FILTERS == DEFAULTS


# --- operators -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "op"),
    [
        ("num_gpus=2", "eq"),
        ("num_gpus==2", "eq"),
        ("num_gpus eq 2", "eq"),
        ("num_gpus!=2", "neq"),
        ("num_gpus neq 2", "neq"),
        ("num_gpus noteq 2", "neq"),
        ("num_gpus not eq 2", "neq"),
        ("num_gpus>2", "gt"),
        ("num_gpus gt 2", "gt"),
        ("num_gpus>=2", "gte"),
        ("num_gpus gte 2", "gte"),
        ("num_gpus<2", "lt"),
        ("num_gpus lt 2", "lt"),
        ("num_gpus<=2", "lte"),
        ("num_gpus lte 2", "lte"),
        ("num_gpus >= 2", "gte"),
        ("  num_gpus  <=2  ", "lte"),
    ],
)
def test_every_comparison_spelling(text: str, op: str) -> None:
    assert parse_query(text, defaults=False) == {"num_gpus": {op: "2"}}


@pytest.mark.parametrize("spelling", ["in", "notin", "nin", "not in"])
def test_every_list_spelling(spelling: str) -> None:
    op = "in" if spelling == "in" else "notin"
    assert parse_query(f"geolocation {spelling} [TW,SE]", defaults=False) == {"geolocation": {op: ["TW", "SE"]}}


# --- values --------------------------------------------------------------------------------------


def test_lists() -> None:
    assert parse_query("gpu_name in [RTX_4090,RTX_3090]", defaults=False) == {
        "gpu_name": {"in": ["RTX 4090", "RTX 3090"]}
    }
    assert parse_query('gpu_name in ["RTX 4090", "RTX 3090"]', defaults=False) == {
        "gpu_name": {"in": ["RTX 4090", "RTX 3090"]}
    }
    # Unbracketed, a single word or a comma list is still a list; empty items are dropped.
    assert parse_query("geolocation in US", defaults=False) == {"geolocation": {"in": ["US"]}}
    assert parse_query("geolocation notin US,CA", defaults=False) == {"geolocation": {"notin": ["US", "CA"]}}
    assert parse_query("geolocation in [US,,CA,]", defaults=False) == {"geolocation": {"in": ["US", "CA"]}}
    assert parse_query("gpu_name in[A40]", defaults=False) == {"gpu_name": {"in": ["A40"]}}


def test_list_items_stay_strings() -> None:
    # Like the CLI, only whole values are converted to booleans, never list items.
    assert parse_query("num_gpus in [1,true,any]", defaults=False) == {"num_gpus": {"in": ["1", "true", "any"]}}


def test_underscores_become_spaces_but_quotes_keep_text() -> None:
    assert parse_query("gpu_name=RTX_PRO_6000_WS", defaults=False) == {"gpu_name": {"eq": "RTX PRO 6000 WS"}}
    assert parse_query('gpu_name="RTX 4090"', defaults=False) == {"gpu_name": {"eq": "RTX 4090"}}
    assert parse_query('mobo_name="X570_AORUS"', defaults=False) == {"mobo_name": {"eq": "X570_AORUS"}}
    assert parse_query('cpu_arch in ["x86_64",arm_64]', defaults=False) == {"cpu_arch": {"in": ["x86_64", "arm 64"]}}


def test_gpu_names_are_not_validated() -> None:
    assert parse_query("gpu_name=NoSuchGPU", defaults=False) == {"gpu_name": {"eq": "NoSuchGPU"}}


@pytest.mark.parametrize(
    ("word", "value"),
    [("true", True), ("True", True), ("false", False), ("False", False), ("None", None), ("null", None)],
)
def test_literals(word: str, value: object) -> None:
    assert parse_query(f"static_ip={word}", defaults=False) == {"static_ip": {"eq": value}}


def test_quoted_literal_stays_a_string() -> None:
    assert parse_query('verification="true"', defaults=False) == {"verification": {"eq": "true"}}


@pytest.mark.parametrize("wildcard", ["?", "*", "any"])
def test_wildcard_removes_a_default(wildcard: str) -> None:
    query = parse_query(f"rented={wildcard}")
    assert "rented" not in query
    assert query == {k: v for k, v in DEFAULTS.items() if k != "rented"}


def test_wildcard_removes_every_operator_on_the_field() -> None:
    assert parse_query("num_gpus>=1 num_gpus<=4 num_gpus=any dph<2", defaults=False) == {"dph_total": {"lt": "2"}}
    assert parse_query("num_gpus eq any", defaults=False) == {}
    assert parse_query('gpu_name="any"', defaults=False) == {"gpu_name": {"eq": "any"}}


def test_query_overrides_defaults_per_operator() -> None:
    assert parse_query("verified=false")["verified"] == {"eq": False}
    assert parse_query("rentable!=false")["rentable"] == {"eq": True, "neq": False}


def test_comparisons_on_one_field_merge() -> None:
    assert parse_query("num_gpus>=1 num_gpus<=4", defaults=False) == {"num_gpus": {"gte": "1", "lte": "4"}}
    assert parse_query("num_gpus>=1 num_gpus>=2", defaults=False) == {"num_gpus": {"gte": "2"}}  # last wins
    assert parse_query("dph<2 dph_total>0.1", defaults=False) == {"dph_total": {"lt": "2", "gt": "0.1"}}


def test_unit_multipliers() -> None:
    assert parse_query("gpu_ram>=24", defaults=False) == {"gpu_ram": {"gte": 24000.0}}
    assert parse_query("cpu_ram>=64.5 gpu_total_ram<=80 duration>=2", defaults=False) == {
        "cpu_ram": {"gte": 64500.0},
        "gpu_total_ram": {"lte": 80000.0},
        "duration": {"gte": 172800.0},
    }
    assert parse_query("gpu_ram in [24,48]", defaults=False) == {"gpu_ram": {"in": [24000.0, 48000.0]}}
    assert isinstance(parse_query("gpu_ram>=24", defaults=False)["gpu_ram"]["gte"], float)


def test_driver_version() -> None:
    assert parse_query("driver_version=535.86.05", defaults=False) == {"driver_version": {"eq": 535086005}}
    assert parse_query("driver_version>=550.54.14", defaults=False) == {"driver_version": {"gte": 550054014}}
    assert parse_query("driver_version>=535", defaults=False) == {"driver_version": {"gte": "535"}}
    assert parse_query("driver_version in [535.86.05,550.54.14]", defaults=False) == {
        "driver_version": {"in": [535086005, 550054014]}
    }


def test_aliases_and_reliability2() -> None:
    assert parse_query("dph<1 dlperf_usd>10 flops_usd>5 cuda_vers>=12.4 display_active=false", defaults=False) == {
        "dph_total": {"lt": "1"},
        "dlperf_per_dphtotal": {"gt": "10"},
        "flops_per_dphtotal": {"gt": "5"},
        "cuda_max_good": {"gte": "12.4"},
        "gpu_display_active": {"eq": False},
    }
    assert parse_query("reliability>0.9 reliability2>0.95", defaults=False) == {
        "reliability": {"gt": "0.9"},
        "reliability2": {"gt": "0.95"},
    }


# --- errors --------------------------------------------------------------------------------------


def _message(text: str) -> str:
    with pytest.raises(ConfigError) as info:
        parse_query(text)
    assert isinstance(info.value, VastError)
    return str(info.value)


def test_unknown_field_suggests_the_right_one() -> None:
    msg = _message("gpu_nam=RTX_4090 num_gpus>=1")
    assert "unknown field 'gpu_nam'" in msg
    assert "'gpu_nam=RTX_4090'" in msg
    assert "Did you mean 'gpu_name'" in msg


def test_unknown_field_suggests_an_alias() -> None:
    assert "Did you mean 'dph'" in _message("dhp<2")


def test_unknown_field_without_a_near_match_lists_fields() -> None:
    msg = _message("zzzzzz=1")
    assert "unknown field 'zzzzzz'" in msg
    assert "Known fields:" in msg and "gpu_name" in msg


@pytest.mark.parametrize("text", ["num_gpus>=", "num_gpus >= ", "gpu_name in", "num_gpus>= dph<2"])
def test_missing_value(text: str) -> None:
    msg = _message(text)
    assert "missing value" in msg
    assert "field op value" in msg


@pytest.mark.parametrize(("text", "op"), [("num_gpus=>1", "=>"), ("num_gpus<>1", "<>"), ("num_gpus!1", "!")])
def test_bad_operator_lists_the_valid_ones(text: str, op: str) -> None:
    msg = _message(text)
    assert f"unknown operator {op!r}" in msg
    assert repr(text) in msg
    assert "Valid operators: = == != < <= > >=" in msg and "'not in'" in msg


def test_missing_operator() -> None:
    msg = _message("gpu_name RTX_4090")
    assert "missing operator after 'gpu_name'" in msg
    assert "'gpu_name RTX_4090'" in msg
    assert "Valid operators" in msg


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("gpu-name=RTX_4090", "missing operator after 'gpu'"),
        ("-o=1", "expected a field name"),
        ("gpu_name in []", "empty list"),
        ("gpu_name in [A40", 'unclosed " or ['),
        ('gpu_name="RTX 4090', 'unclosed " or ['),
        ('gpu_name="A40"x', "expected a blank after the value"),
        ("gpu_name=[A40,L4]", "a list needs 'in' or 'notin'"),
        ('gpu_name in [A40"x"]', "malformed list"),
        ("num_gpus>any", "wildcard 'any' only works with ="),
        ("gpu_ram>=lots", "gpu_ram takes a number of GB"),
        ("duration>=forever", "duration takes a number of days"),
        ("driver_version=535.86", "bad driver_version '535.86'"),
        ("driver_version=535.x.05", "Write it as X.Y.Z"),
    ],
)
def test_malformed_input(text: str, expected: str) -> None:
    assert expected in _message(text)


# --- order ---------------------------------------------------------------------------------------


def test_parse_order() -> None:
    assert parse_order("num_gpus,total_flops-") == [["num_gpus", "asc"], ["total_flops", "desc"]]
    assert parse_order("score-") == [["score", "desc"]]  # the CLI's default, not a filter field
    assert parse_order(" dph+ , -dlperf_usd,cuda_vers ") == [
        ["dph_total", "asc"],
        ["dlperf_per_dphtotal", "desc"],
        ["cuda_max_good", "asc"],
    ]
    assert parse_order("") == []


def test_parse_order_refuses_unknown_keys() -> None:
    with pytest.raises(ConfigError, match=r"unknown field 'num_gpu'.*Did you mean 'num_gpus'"):
        parse_order("num_gpu-")
    with pytest.raises(ConfigError, match="bad sort key"):
        parse_order("dph total")


# --- format_query --------------------------------------------------------------------------------


def test_format_query_shows_cli_syntax() -> None:
    query = {
        "gpu_name": {"in": ["RTX 4090"]},
        "num_gpus": {"gte": 1, "lte": "4"},
        "gpu_ram": {"gte": 24000.0},
        "driver_version": {"gte": 535086005},
        "static_ip": {"eq": True},
        "order": [["dph_total", "asc"]],
        "type": "on-demand",
        "limit": 10,
        "allocated_storage": 20,
    }
    assert format_query(query) == (
        "gpu_name in [RTX_4090] num_gpus>=1 num_gpus<=4 gpu_ram>=24 driver_version>=535.86.05 static_ip=true"
    )


@pytest.mark.parametrize(
    "text",
    [
        "gpu_name=RTX_4090 num_gpus>=1 reliability>0.98 dph<2",
        'gpu_name in ["RTX 4090",A100_SXM4] geolocation notin [TW,SE] rented=any',
        'mobo_name="X570_AORUS" cpu_arch in ["x86_64"] verification="true" gpu_name="any" ubuntu_version="null"',
        "gpu_ram>=24.576 cpu_ram<=64.5 gpu_total_ram in [80,160] duration>=0.1",
        "driver_version>=535.86.05 driver_version<=550.104.5 static_ip=None has_avx!=false",
        "gpu_name in [a_b,c] num_gpus in [1,2]",
    ],
)
def test_format_query_round_trips(text: str) -> None:
    query = parse_query(text)
    assert parse_query(format_query(query), defaults=False) == query


def test_format_query_round_trips_numbers_as_strings() -> None:
    query = {"num_gpus": {"gte": 2}, "dph_total": {"lt": 1.5}, "geolocation": {"in": "US"}}
    assert parse_query(format_query(query), defaults=False) == {
        "num_gpus": {"gte": "2"},
        "dph_total": {"lt": "1.5"},
        "geolocation": {"in": ["US"]},
    }


def test_format_query_refuses_what_it_cannot_write() -> None:
    with pytest.raises(ConfigError, match=r"must be an {op: value} dict"):
        format_query({"num_gpus": 2})
    with pytest.raises(ConfigError, match="unknown operator 'ge'"):
        format_query({"num_gpus": {"ge": 2}})
    with pytest.raises(ConfigError, match="holds a quote"):
        format_query({"mobo_name": {"eq": 'X570_"AORUS"'}})  # needs quoting for the _, but holds a quote
    assert parse_query(format_query({"mobo_name": {"eq": 'say "hi"'}}), defaults=False) == {
        "mobo_name": {"eq": 'say "hi"'}
    }


# --- looks_like_query ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        "gpu_name=RTX_4090 num_gpus>=1",
        "dph<2",
        "num_gpus != 2",
        "geolocation in [US,CA]",
        "geolocation in[US]",
        "gpu_name not in [A40]",
        "num_gpus gte 2",
    ],
)
def test_looks_like_query(text: str) -> None:
    assert looks_like_query(text)


@pytest.mark.parametrize("text", ["training-standard", "cheap_4090", "llm.finetune-v2", "in", "eq-test", ""])
def test_profile_names_do_not_look_like_queries(text: str) -> None:
    assert not looks_like_query(text)
