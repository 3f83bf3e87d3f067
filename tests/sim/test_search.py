"""The simulator's offer search: every part of a ``POST /bundles/`` body, as Vast reads it."""

from __future__ import annotations

import copy
import time
from typing import Any

import pytest

from vastnb.sim.catalogue import generate_offers
from vastnb.sim.search import DEFAULT_LIMIT, SearchError, search_offers

ALL = 100_000  # a limit above any catalogue here


@pytest.fixture(scope="module")
def offers() -> list[dict[str, Any]]:
    return generate_offers(0, 600)


def ids(results: list[dict[str, Any]]) -> set[int]:
    return {o["id"] for o in results}


def expect(offers: list[dict[str, Any]], test: Any) -> set[int]:
    return {o["id"] for o in offers if test(o)}


def find(offers: list[dict[str, Any]], body: dict[str, Any]) -> set[int]:
    return ids(search_offers(offers, {**body, "limit": ALL}))


@pytest.mark.parametrize(
    ("op", "value", "test"),
    [
        ("eq", 2, lambda n: n == 2),
        ("neq", 2, lambda n: n != 2),
        ("gt", 2, lambda n: n > 2),
        ("gte", 2, lambda n: n >= 2),
        ("lt", 4, lambda n: n < 4),
        ("lte", 4, lambda n: n <= 4),
        ("in", [1, 8], lambda n: n in (1, 8)),
        ("notin", [1, 8], lambda n: n not in (1, 8)),
    ],
)
def test_each_operator(offers: list[dict[str, Any]], op: str, value: Any, test: Any) -> None:
    found = find(offers, {"num_gpus": {op: value}})
    assert found == expect(offers, lambda o: test(o["num_gpus"]))
    assert 0 < len(found) < len(offers)


def test_several_operators_on_one_field(offers: list[dict[str, Any]]) -> None:
    found = find(offers, {"num_gpus": {"gte": 2, "lte": 4}, "dph_total": {"gt": 0.5, "lt": 3}})
    assert found == expect(offers, lambda o: 2 <= o["num_gpus"] <= 4 and 0.5 < o["dph_total"] < 3)
    assert found


def test_numeric_strings_coerced_as_the_cli_sends_them(offers: list[dict[str, Any]]) -> None:
    as_strings = {
        "num_gpus": {"gte": "1", "lte": "2"},
        "reliability": {"gt": "0.98"},
        "dph_total": {"lt": "0.5"},
        "gpu_ram": {"gte": "24000.0"},
    }
    as_numbers = {
        "num_gpus": {"gte": 1, "lte": 2},
        "reliability": {"gt": 0.98},
        "dph_total": {"lt": 0.5},
        "gpu_ram": {"gte": 24000},
    }
    assert find(offers, as_strings) == find(offers, as_numbers)
    in_strings = find(offers, {"num_gpus": {"in": ["1", "2"]}})
    assert in_strings == find(offers, {"num_gpus": {"in": [1, 2]}})
    assert find(offers, as_numbers)


def test_booleans_and_their_spellings(offers: list[dict[str, Any]]) -> None:
    verified = expect(offers, lambda o: o["verified"])
    assert 0 < len(verified) < len(offers)
    assert find(offers, {"verified": {"eq": True}}) == verified
    assert find(offers, {"verified": {"eq": "true"}}) == verified
    assert find(offers, {"verified": {"eq": "True"}}) == verified
    assert find(offers, {"verified": {"neq": True}}) == ids(offers) - verified
    assert find(offers, {"verified": {"eq": False}}) == ids(offers) - verified
    assert find(offers, {"rented": {"eq": False}, "external": {"eq": False}}) == ids(offers)
    assert find(offers, {"rentable": {"in": [True]}, "verified": {"notin": ["false"]}}) == verified
    datacenter = expect(offers, lambda o: o["hosting_type"] >= 1)
    assert find(offers, {"datacenter": {"eq": True}}) == datacenter and datacenter


def test_null_values(offers: list[dict[str, Any]]) -> None:
    assert find(offers, {"cluster_id": {"eq": None}}) == ids(offers)
    assert find(offers, {"cluster_id": {"neq": None}}) == set()
    assert find(offers, {"cluster_id": {"in": [None, 5]}}) == ids(offers)
    with pytest.raises(SearchError, match="null"):
        search_offers(offers, {"num_gpus": {"gt": None}})


@pytest.mark.parametrize("name", ["RTX 4090", "RTX_4090", "rtx 4090", "rtx_4090", " RTX  4090 "])
def test_gpu_names_with_underscores_and_any_case(offers: list[dict[str, Any]], name: str) -> None:
    found = find(offers, {"gpu_name": {"eq": name}})
    assert found == expect(offers, lambda o: o["gpu_name"] == "RTX 4090") and found


def test_gpu_name_lists(offers: list[dict[str, Any]]) -> None:
    wanted = ("H100 SXM", "A100 SXM4")
    found = find(offers, {"gpu_name": {"in": ["H100_SXM", "a100 sxm4"]}})
    assert found == expect(offers, lambda o: o["gpu_name"] in wanted) and found
    assert find(offers, {"gpu_name": {"notin": ["H100_SXM", "A100_SXM4"]}}) == ids(offers) - found
    assert find(offers, {"gpu_name": {"neq": "RTX_4090"}}) == expect(offers, lambda o: o["gpu_name"] != "RTX 4090")


def test_reliability_and_reliability2_are_one_value(offers: list[dict[str, Any]]) -> None:
    one = find(offers, {"reliability": {"gte": 0.99}})
    assert one == find(offers, {"reliability2": {"gte": "0.99"}})
    assert one == expect(offers, lambda o: o["reliability"] >= 0.99) and one
    # An offer carrying only one of the two names is still filtered on the other.
    lone = [{k: v for k, v in o.items() if k != "reliability2"} for o in offers[:50]]
    found = find(lone, {"reliability2": {"gte": 0.99}})
    assert found == expect(lone, lambda o: o["reliability"] >= 0.99)


def test_geolocation_country_codes(offers: list[dict[str, Any]]) -> None:
    def country(o: dict[str, Any]) -> str:
        return o["geolocation"].rsplit(",", 1)[1].strip()

    north_america = find(offers, {"geolocation": {"in": ["US", "CA"]}})
    assert north_america == expect(offers, lambda o: country(o) in ("US", "CA")) and north_america
    us = find(offers, {"geolocation": {"eq": "US"}})
    assert us == expect(offers, lambda o: country(o) == "US") and us < north_america
    assert find(offers, {"geolocation": {"eq": "us"}}) == us
    assert find(offers, {"geolocation": {"neq": "US"}}) == ids(offers) - us
    assert find(offers, {"geolocation": {"notin": ["US", "CA"]}}) == ids(offers) - north_america
    place = offers[0]["geolocation"]
    same_place = expect(offers, lambda o: o["geolocation"] == place)
    assert find(offers, {"geolocation": {"eq": place}}) == same_place


def test_order_ascending_descending_and_multi_key(offers: list[dict[str, Any]]) -> None:
    cheap = search_offers(offers, {"order": [["dph_total", "asc"]], "limit": ALL})
    assert [o["dph_total"] for o in cheap] == sorted(o["dph_total"] for o in offers)
    dear = search_offers(offers, {"order": [["dph_total", "desc"]], "limit": ALL})
    assert [o["dph_total"] for o in dear] == sorted((o["dph_total"] for o in offers), reverse=True)
    default = search_offers(offers, {"limit": ALL})
    assert [o["score"] for o in default] == sorted((o["score"] for o in offers), reverse=True)
    two_keys = [["num_gpus", "asc"], ["dph_total", "desc"]]
    multi = search_offers(offers, {"order": two_keys, "limit": ALL})
    keys = [(o["num_gpus"], -o["dph_total"]) for o in multi]
    assert keys == sorted(keys)
    unordered = search_offers(offers, {"order": [], "limit": 5})
    assert unordered == search_offers(offers[:5], {"order": []})


def test_limit(offers: list[dict[str, Any]]) -> None:
    assert len(search_offers(offers, {})) == DEFAULT_LIMIT == 64
    assert len(search_offers(offers, {"limit": 5})) == 5
    assert len(search_offers(offers, {"limit": "7"})) == 7
    assert search_offers(offers, {"limit": 0}) == []
    assert len(search_offers(offers, {"limit": 3000})) == len(offers)
    top = search_offers(offers, {"order": [["dph_total", "asc"]], "limit": 3})
    assert top == search_offers(offers, {"order": [["dph_total", "asc"]], "limit": ALL})[:3]
    for bad in ("abc", -1, 2.5):
        with pytest.raises(SearchError, match="limit"):
            search_offers(offers, {"limit": bad})


def test_type_bid_prices_from_min_bid(offers: list[dict[str, Any]]) -> None:
    results = search_offers(offers, {"type": "bid", "limit": ALL})
    by_id = {o["id"]: o for o in offers}
    for r in results:
        o = by_id[r["id"]]
        assert r["is_bid"] is True
        assert r["dph_total"] == pytest.approx(o["min_bid"] + 5 * o["storage_cost"] / 720)
        assert r["dph_total"] < o["dph_total"]
        assert r["search"]["totalHour"] == pytest.approx(r["dph_total"])
        assert r["instance"]["totalHour"] == pytest.approx(o["dph_total"])  # on-demand
    # The filter sees the bid price: offers too dear on demand pass as bids.
    bids = find(offers, {"type": "bid", "dph_total": {"lte": 0.15}})
    on_demand = find(offers, {"dph_total": {"lte": 0.15}})
    assert on_demand < bids
    assert bids == expect(offers, lambda o: o["min_bid"] + 5 * o["storage_cost"] / 720 <= 0.15)


@pytest.mark.parametrize("spelling", ["on-demand", "ondemand", "reserved", "On-Demand", None])
def test_on_demand_spellings(offers: list[dict[str, Any]], spelling: str | None) -> None:
    body = {"type": spelling, "dph_total": {"lt": 1}, "order": [["dph_total", "asc"]], "limit": 20}
    results = search_offers(offers, body)
    assert results == search_offers(offers, {**body, "type": "on-demand"})
    assert all(r["is_bid"] is False for r in results)
    cheapest = sorted(o["dph_total"] for o in offers if o["dph_total"] < 1)[:20]
    assert [r["dph_total"] for r in results] == cheapest


def test_bad_type_refused(offers: list[dict[str, Any]]) -> None:
    with pytest.raises(SearchError, match="type"):
        search_offers(offers, {"type": "spot"})


def test_allocated_storage_reprices_results_and_filters(offers: list[dict[str, Any]]) -> None:
    by_id = {o["id"]: o for o in offers}
    for r in search_offers(offers, {"allocated_storage": 200, "limit": ALL}):
        o = by_id[r["id"]]
        disk = 200 * o["storage_cost"] / 720
        assert r["dph_total"] == pytest.approx(o["dph_base"] + disk)
        assert r["storage_total_cost"] == pytest.approx(disk)
        assert r["dlperf_per_dphtotal"] == pytest.approx(o["dlperf"] / r["dph_total"])
        assert r["flops_per_dphtotal"] == pytest.approx(o["total_flops"] / r["dph_total"])
    as_string = search_offers(offers, {"allocated_storage": "5", "limit": 9})
    assert as_string == search_offers(offers, {"limit": 9})
    # A price cap that the default 5 GB meets but 500 GB of disk breaks.
    small = find(offers, {"dph_total": {"lte": 0.30}})
    large = find(offers, {"dph_total": {"lte": 0.30}, "allocated_storage": 500})
    assert large < small
    assert large == expect(offers, lambda o: o["dph_base"] + 500 * o["storage_cost"] / 720 <= 0.30)
    with pytest.raises(SearchError, match="allocated_storage"):
        search_offers(offers, {"allocated_storage": "lots"})


def test_order_by_recomputed_price(offers: list[dict[str, Any]]) -> None:
    results = search_offers(
        offers, {"type": "bid", "allocated_storage": 300, "order": [["dph_total", "asc"]], "limit": ALL}
    )
    assert [r["dph_total"] for r in results] == sorted(r["dph_total"] for r in results)
    expected = sorted(offers, key=lambda o: o["min_bid"] + 300 * o["storage_cost"] / 720)
    assert [r["id"] for r in results] == [o["id"] for o in expected]


def test_catalogue_never_mutated(offers: list[dict[str, Any]]) -> None:
    before = copy.deepcopy(offers)
    results = search_offers(offers, {"type": "bid", "allocated_storage": 100, "limit": ALL})
    results[0]["dph_total"] = -1.0
    results[0]["search"]["totalHour"] = -1.0
    search_offers(iter(offers), {"gpu_name": {"eq": "RTX_4090"}, "order": [["dph_total", "desc"]]})
    assert offers == before
    assert not {id(r) for r in results} & {id(o) for o in offers}


def test_unknown_fields_and_control_keys_are_not_filters(offers: list[dict[str, Any]]) -> None:
    body = {
        "no_such_field": {"eq": 1},
        "georegion": {"eq": True},
        "disable_bundling": True,
        "target_reliability": 0.99,
        "extra_ids": [1, 2],
        "has_avx": True,
        "template_id": 7,
    }
    assert find(offers, body) == ids(offers)


@pytest.mark.parametrize(
    "body",
    [
        {"num_gpus": {"ge": 1}},
        {"num_gpus": {"gte": "one"}},
        {"num_gpus": {"eq": [1, 2]}},
        {"num_gpus": {"in": [[1]]}},
        {"verified": {"eq": "maybe"}},
        {"dph_total": {"lt": {"x": 1}}},
        {"order": [["dph_total", "up"]]},
        {"order": "dph_total"},
        {"no_such_field": {"like": "x"}},
    ],
)
def test_invalid_bodies_raise_search_error(offers: list[dict[str, Any]], body: dict[str, Any]) -> None:
    with pytest.raises(SearchError) as info:
        search_offers(offers, body)
    assert isinstance(info.value, ValueError) and str(info.value)


def test_driver_version_as_the_cli_encodes_it(offers: list[dict[str, Any]]) -> None:
    new = expect(offers, lambda o: tuple(map(int, o["driver_version"].split("."))) >= (570, 0, 0))
    assert find(offers, {"driver_version": {"gte": 570000000}}) == new and new
    assert find(offers, {"driver_version": {"gte": "570.0.0"}}) == new
    assert find(offers, {"driver_version": {"gte": "570000000"}}) == new


def test_cli_example_body(offers: list[dict[str, Any]]) -> None:
    body = {
        "verified": {"eq": True},
        "rentable": {"eq": True},
        "rented": {"eq": False},
        "external": {"eq": False},
        "gpu_name": {"eq": "RTX 4090"},
        "num_gpus": {"gte": "1"},
        "reliability": {"gt": 0.98},
        "dph_total": {"lt": 2},
        "geolocation": {"in": ["US", "CA"]},
        "direct_port_count": {"gte": 1},
        "order": [["dph_total", "asc"]],
        "type": "on-demand",
        "limit": 5,
        "allocated_storage": 20,
    }
    results = search_offers(offers, body)
    assert 0 < len(results) <= 5
    for r in results:
        assert r["gpu_name"] == "RTX 4090" and r["reliability"] > 0.98 and r["verified"]
        assert r["geolocation"][-2:] in ("US", "CA") and r["direct_port_count"] >= 1
        assert r["dph_total"] == pytest.approx(r["dph_base"] + 20 * r["storage_cost"] / 720)


def test_ten_thousand_offers_searched_fast() -> None:
    big = generate_offers(1, 10_000)
    body = {
        "verified": {"eq": True},
        "rentable": {"eq": True},
        "rented": {"eq": False},
        "external": {"eq": False},
        "gpu_name": {"in": ["RTX_4090", "RTX_5090"]},
        "num_gpus": {"eq": "1"},
        "reliability": {"gte": "0.95"},
        "dph_total": {"lte": "0.6"},
        "order": [["dph_total", "asc"]],
        "limit": 64,
    }
    timings = []
    for _ in range(3):
        start = time.perf_counter()
        results = search_offers(big, body)
        timings.append(time.perf_counter() - start)
    assert results
    assert min(timings) < 0.2  # ~10-20 ms on a 2-core box; a generous bound
