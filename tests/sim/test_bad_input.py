"""Bad input to the simulator gets a clear Vast-shaped error, never a crash or a poisoned state:
request bodies are capped before they are read, Content-Length must be a byte count, and every
number a request carries must be finite and in its field's range."""

from __future__ import annotations

import json
import math
import re
import socket
from pathlib import Path
from typing import Any

import httpx
import pytest

from vastnb.sim import Simulator
from vastnb.sim.routes import MAX_BODY_BYTES

from .conftest import BOOT, body_of, call, one_gpu_offers, rent

V0 = "/api/v0"


def raw_request(url: str, head: str, body: bytes = b"", *, timeout: float = 5.0) -> tuple[int, dict[str, str], Any]:
    """Send ``head`` (request line and headers, no blank line) and ``body`` as they are, on
    a fresh connection; the status, headers and JSON body of the answer."""
    host, port = url.removeprefix("http://").rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=timeout) as sock:
        sock.sendall(head.replace("\n", "\r\n").encode() + b"\r\n\r\n" + body)
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = sock.recv(65536)
            assert chunk, f"the server hung up without answering (got {data!r})"
            data += chunk
        header_block, rest = data.split(b"\r\n\r\n", 1)
        status_line, *lines = header_block.decode("latin-1").split("\r\n")
        headers = {k.strip().lower(): v.strip() for k, v in (line.split(":", 1) for line in lines)}
        length = int(headers["content-length"])
        while len(rest) < length:
            chunk = sock.recv(65536)
            assert chunk, "the server hung up mid-answer"
            rest += chunk
    return int(status_line.split()[1]), headers, json.loads(rest[:length])


def strict_json(text: str) -> Any:
    """JSON as the standard has it: NaN and Infinity are not numbers."""

    def refuse(constant: str) -> Any:
        raise ValueError(f"{constant} in the state")

    return json.loads(text, parse_constant=refuse)


def finite_numbers(value: Any) -> bool:
    if isinstance(value, float):
        return math.isfinite(value)
    if isinstance(value, dict):
        return all(map(finite_numbers, value.values()))
    if isinstance(value, list):
        return all(map(finite_numbers, value))
    return True


# -- request bodies and Content-Length, over real HTTP ---------------------------------------------


@pytest.mark.parametrize("path", [f"{V0}/bundles/", f"{V0}/asks/1/"])
def test_an_oversized_body_is_refused_with_413_before_it_is_read(sim: Simulator, path: str) -> None:
    method = "POST" if "bundles" in path else "PUT"
    with sim.serve() as server:
        # Announce 1 GiB and send none of it: the answer must come anyway, without the body.
        head = (
            f"{method} {path} HTTP/1.1\nHost: x\nContent-Type: application/json\n"
            f"Authorization: Bearer {sim.market.api_key}\nContent-Length: {2**30}"
        )
        status, headers, body = raw_request(server.url, head)
        assert status == 413
        assert headers["content-type"].startswith("application/json")
        assert body["success"] is False and body["error"] == "request_too_large"
        assert str(MAX_BODY_BYTES) in body["msg"] and str(2**30) in body["msg"]
        # The server is still up, and a body at the limit is served.
        with httpx.Client(base_url=server.url, timeout=10) as c:
            padded = b'{"limit": 2}'.ljust(MAX_BODY_BYTES)
            r = c.post(f"{V0}/bundles/", content=padded, headers={"Content-Type": "application/json"})
            assert r.status_code == 200 and len(r.json()["offers"]) == 2
            over = c.post(f"{V0}/bundles/", content=padded + b" ", headers={"Content-Type": "application/json"})
            assert over.status_code == 413 and over.json()["error"] == "request_too_large"


def test_the_cap_is_generous_for_real_use() -> None:
    assert MAX_BODY_BYTES >= 1024 * 1024


@pytest.mark.parametrize("length", ["abc", "-1", "1e3", "0x10", "12 34", "+5", "١٢"])
def test_a_content_length_that_is_not_a_byte_count_is_refused(sim: Simulator, length: str) -> None:
    with sim.serve() as server:
        head = f"POST {V0}/bundles/ HTTP/1.1\nHost: x\nContent-Length: {length}"
        status, headers, body = raw_request(server.url, head, b"{}")
        assert status == 400 and headers["content-type"].startswith("application/json")
        assert body["success"] is False and body["error"] == "invalid_request"
        assert "Content-Length" in body["msg"]
        with httpx.Client(base_url=server.url, timeout=10) as c:
            assert c.post(f"{V0}/bundles/", json={"limit": 1}).status_code == 200


def test_two_different_content_lengths_are_refused(sim: Simulator) -> None:
    with sim.serve() as server:
        head = f"POST {V0}/bundles/ HTTP/1.1\nHost: x\nContent-Length: 2\nContent-Length: 10"
        status, _, body = raw_request(server.url, head, b"{}")
        assert status == 400 and "Content-Length" in body["msg"]


def test_a_client_waiting_for_100_continue_gets_the_413_instead(sim: Simulator) -> None:
    with sim.serve() as server:
        head = f"POST {V0}/bundles/ HTTP/1.1\nHost: x\nExpect: 100-continue\nContent-Length: {MAX_BODY_BYTES + 1}"
        status, _, body = raw_request(server.url, head)
        assert status == 413 and body["error"] == "request_too_large"


def test_a_chunked_body_is_refused_with_411(sim: Simulator) -> None:
    with sim.serve() as server:
        head = f"POST {V0}/bundles/ HTTP/1.1\nHost: x\nTransfer-Encoding: chunked"
        status, _, body = raw_request(server.url, head, b"2\r\n{}\r\n0\r\n\r\n")
        assert status == 411 and body["success"] is False and "Content-Length" in body["msg"]


def test_an_oversized_body_is_refused_in_process_too(sim: Simulator) -> None:
    r = call(sim.api, "POST", f"{V0}/bundles/", raw=b"{}".ljust(MAX_BODY_BYTES + 1))
    assert r.status == 413 and body_of(r)["error"] == "request_too_large"


# -- numbers in requests ---------------------------------------------------------------------------


def test_an_absurd_disk_leaves_the_account_and_the_state_intact(
    client: httpx.Client, sim: Simulator, tmp_path: Path
) -> None:
    offer = one_gpu_offers(sim.market)[0]
    r = client.put(f"{V0}/asks/{offer['id']}/", json={"image": "vastai/base", "disk": 1.7e308})
    assert r.status_code == 400 and r.json()["error"] == "invalid_args"
    assert "disk" in r.json()["msg"] and "8" in r.json()["msg"] and "100000" in r.json()["msg"]
    client.post("/_sim/advance", json={"seconds": 3600})
    assert client.get(f"{V0}/users/current/").json()["balance"] == 25.0
    state = strict_json((tmp_path / "sim" / "market.json").read_text())
    assert state["instances"] == {} and finite_numbers(state)


# (method, path template, body, the field named in the message); {iid} is a bid instance.
BAD_NUMBERS: list[tuple[str, str, dict[str, Any], str]] = [
    *[
        ("PUT", f"{V0}/asks/{{offer}}/", {"image": "x", "disk": v}, "disk")
        for v in (1.7e308, 1e6, -1, 7.9, "1e400", "nan", "-inf", True, "big")
    ],
    *[
        ("PUT", f"{V0}/asks/{{offer}}/", {"image": "x", "price": v}, "price")
        for v in (1.7e308, 129, 0, -0.5, "inf", "NaN")
    ],
    *[
        ("PUT", f"{V0}/instances/bid_price/{{iid}}/", {"price": v}, "price")
        for v in (1.7e308, 33, 0, -0.5, "inf", "nan")
    ],
    *[("POST", "/_sim/advance", {"seconds": v}, "seconds") for v in (1.7e308, 1e9, -1, "inf", "nan")],
    *[("POST", "/_sim/preempt/{iid}", {"resume_after": v}, "resume_after") for v in (1.7e308, 1e9, -5, "nan")],
    *[("POST", "/_sim/faults", {"kind": "status", "times": v}, "times") for v in (10**12, 0)],
]


@pytest.mark.parametrize(
    ("method", "path", "body", "field"), BAD_NUMBERS, ids=[f"{f}={b.get(f)!r}" for _, _, b, f in BAD_NUMBERS]
)
def test_numbers_out_of_range_get_400_naming_the_field_and_range(
    client: httpx.Client, sim: Simulator, tmp_path: Path, method: str, path: str, body: dict[str, Any], field: str
) -> None:
    offer, other = one_gpu_offers(sim.market, 2)
    iid = rent(sim.market, other, price=other["min_bid"])
    before = strict_json((tmp_path / "sim" / "market.json").read_text())
    r = client.request(method, path.format(offer=offer["id"], iid=iid), json=body)
    assert r.status_code == 400, r.text
    answer = r.json()
    assert answer["success"] is False
    # A bid out of Vast's range on create is Vast's invalid_price; every other field, invalid_args.
    create_price = path.startswith(f"{V0}/asks/") and field == "price"
    assert answer["error"] == ("invalid_price" if create_price else "invalid_args")
    assert answer["msg"].startswith(f"{field} must be"), answer["msg"]
    assert re.search(r"from [0-9.e+]+ to [0-9.e+]+", answer["msg"]), answer["msg"]  # the allowed range
    after = strict_json((tmp_path / "sim" / "market.json").read_text())
    assert after["instances"].keys() == before["instances"].keys() and finite_numbers(after)
    assert after["clock_offset"] == before["clock_offset"]


def test_numbers_in_range_still_work(client: httpx.Client, sim: Simulator) -> None:
    offer, other = one_gpu_offers(sim.market, 2)
    r = client.put(f"{V0}/asks/{offer['id']}/", json={"image": "x", "disk": "8", "price": str(offer["min_bid"])})
    assert r.status_code == 200, r.text
    iid = r.json()["new_contract"]
    assert client.put(f"{V0}/instances/bid_price/{iid}/", json={"price": 32}).status_code == 200
    assert client.post("/_sim/advance", json={"seconds": "0"}).status_code == 200
    assert client.post("/_sim/advance", json={"seconds": BOOT + 1}).status_code == 200
    assert client.post(f"/_sim/preempt/{iid}", json={"resume_after": 0}).status_code == 200
    assert client.post(f"/_sim/preempt/{iid}", json={"resume_after": None}).status_code == 200
    assert client.put(f"{V0}/asks/{other['id']}/", json={"image": "x", "disk": 100_000}).status_code == 200


@pytest.mark.parametrize(
    "raw",
    [
        b'{"image": "x", "disk": NaN}',
        b'{"image": "x", "disk": Infinity}',
        b'{"image": "x", "disk": 1e999}',
        b'{"image": "x", "label": -Infinity}',
        b'{"image": "x", "disk": 1' + b"0" * 400 + b"}",
    ],
)
def test_non_finite_json_numbers_are_refused_before_any_route(client: httpx.Client, sim: Simulator, raw: bytes) -> None:
    offer = one_gpu_offers(sim.market)[0]
    r = client.put(f"{V0}/asks/{offer['id']}/", content=raw, headers={"Content-Type": "application/json"})
    assert r.status_code == 400 and r.json()["error"] == "invalid_request", r.text
    assert "number" in r.json()["msg"]
    assert sim.market.instances() == []


def test_search_with_a_huge_integer_is_a_400_not_a_500(client: httpx.Client) -> None:
    r = client.post(
        f"{V0}/bundles/", content=b'{"limit": 1' + b"0" * 400 + b"}", headers={"Content-Type": "application/json"}
    )
    assert r.status_code == 400 and r.json()["success"] is False
    q = '{"limit": 1' + "0" * 400 + "}"
    assert client.get(f"{V0}/bundles/", params={"q": q}).status_code == 400


@pytest.mark.parametrize("day", [{"gte": "nan", "lte": 10}, {"gte": 0, "lte": 1.7e308}, {"gte": -1, "lte": 10}])
def test_charges_window_must_be_finite_epoch_times(client: httpx.Client, day: dict[str, Any]) -> None:
    r = client.get(f"{V0}/charges/", params={"select_filters": json.dumps({"day": day})})
    assert r.status_code == 400 and r.json()["error"] == "invalid_args"
    assert r.json()["msg"].startswith("day.") and " to " in r.json()["msg"]


def test_python_hooks_keep_the_state_finite(sim: Simulator) -> None:
    iid = rent(sim.market)
    for bad in (math.inf, math.nan, 1.7e308, -1.0):
        with pytest.raises(ValueError):
            sim.market.advance(bad)
    with pytest.raises(ValueError):
        sim.market.set_balance(math.inf)
    with pytest.raises(ValueError):
        sim.market.record_traffic(iid, up_bytes=10**400)
    assert sim.market.user()["balance"] == 25.0
