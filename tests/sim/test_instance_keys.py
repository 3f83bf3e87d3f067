"""An instance's own key (``instance_api_key``), and self-destruct requests from boxes.

Vast's create call returns a restricted key that can only start, stop or destroy that
one instance; a box's watchdog uses it to destroy itself. The embedded simulator, which
serves no HTTP, takes the same request as a file in its spool folder.
"""

from __future__ import annotations

import json
import os
import secrets
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from vastnb.sim import Market, Simulator
from vastnb.sim.routes import SimAPI

from .conftest import BOOT, CONFIG, body_of, call, one_gpu_offers


def create(market: Market, offer: dict[str, Any] | None = None) -> tuple[int, str]:
    """Rent an offer (the cheapest single GPU by default): (instance id, its own key)."""
    offer = offer or one_gpu_offers(market)[0]
    result = market.create(offer["id"], {"image": "pytorch/pytorch:latest", "disk": 20})
    return int(result["new_contract"]), str(result["instance_api_key"])


def two(market: Market) -> tuple[tuple[int, str], tuple[int, str]]:
    first, second = one_gpu_offers(market, 2)
    return create(market, first), create(market, second)


# -- the REST API -----------------------------------------------------------------------------


def test_an_instance_key_stops_starts_and_destroys_its_own_instance(sim: Simulator, api: SimAPI) -> None:
    instance_id, key = create(sim.market)
    sim.advance(BOOT)
    path = f"/api/v0/instances/{instance_id}/"
    assert body_of(call(api, "PUT", path, {"state": "stopped"}, key=key)) == {"success": True}
    assert sim.market.show(instance_id)["actual_status"] == "stopped"  # type: ignore[index]
    assert call(api, "PUT", path, {"state": "running", "client_id": "me"}, key=key).status == 200
    assert sim.market.show(instance_id)["intended_status"] == "running"  # type: ignore[index]
    assert body_of(call(api, "DELETE", path, key=key)) == {"success": True}
    assert sim.market.show(instance_id) is None


def test_an_instance_key_cannot_touch_another_instance(sim: Simulator, api: SimAPI) -> None:
    (mine, key), (other, _) = two(sim.market)
    for method, body in (("DELETE", None), ("PUT", {"state": "stopped"})):
        response = call(api, method, f"/api/v0/instances/{other}/", body, key=key)
        assert response.status == 401 and body_of(response)["error"] == "auth_error"
    assert sim.market.show(other) is not None and sim.market.show(mine) is not None


@pytest.mark.parametrize(
    "method, path, body",
    [
        ("GET", "/api/v0/instances/{id}/", None),  # not even its own record
        ("PUT", "/api/v0/instances/{id}/", {"label": "renamed"}),
        ("PUT", "/api/v0/instances/{id}/", {"state": "stopped", "label": "renamed"}),
        ("PUT", "/api/v0/instances/bid_price/{id}/", {"price": 1.0}),
        ("POST", "/api/v0/instances/{id}/ssh/", {"ssh_key": "ssh-ed25519 AAAA test"}),
        ("GET", "/api/v0/instances/", None),
        ("GET", "/api/v1/instances/", None),
        ("PUT", "/api/v0/asks/{offer}/", {"image": "pytorch/pytorch:latest"}),
        ("GET", "/api/v0/users/current/", None),
        ("POST", "/api/v0/ssh/", {"ssh_key": "ssh-ed25519 AAAA test"}),
        ("POST", "/_sim/advance", {"seconds": 60}),
    ],
)
def test_an_instance_key_can_do_nothing_else(sim: Simulator, api: SimAPI, method: str, path: str, body: Any) -> None:
    instance_id, key = create(sim.market)
    offer = one_gpu_offers(sim.market, 3)[-1]
    response = call(api, method, path.format(id=instance_id, offer=offer["id"]), body, key=key)
    assert response.status == 401 and body_of(response) == {
        "success": False,
        "error": "auth_error",
        "msg": "Invalid user key",
    }
    assert len(sim.market.instances()) == 1 and sim.market.show(instance_id)["label"] is None  # type: ignore[index]


def test_an_instance_key_cannot_search(sim: Simulator, api: SimAPI) -> None:
    _, key = create(sim.market)
    # Search is open to anyone, but a key that is not an account's is refused (404), as Vast does.
    assert call(api, "POST", "/api/v0/bundles/", {}, key=key).status == 404
    assert call(api, "POST", "/api/v0/bundles/", {}).status == 200


def test_wrong_and_dead_keys_are_refused(sim: Simulator, api: SimAPI) -> None:
    instance_id, key = create(sim.market)
    path = f"/api/v0/instances/{instance_id}/"
    assert call(api, "DELETE", path, key=secrets.token_hex(32)).status == 401
    assert call(api, "DELETE", path, key=key[:-1]).status == 401
    assert call(api, "DELETE", path).status == 403  # no key at all
    assert call(api, "DELETE", path, key=key).status == 200
    # Once the instance is gone, so is its key.
    assert sim.market.instance_for_key(key) is None
    assert call(api, "DELETE", path, key=key).status == 401


def test_the_key_lookup_and_records_keep_keys_hidden(sim: Simulator) -> None:
    (first, key1), (second, key2) = two(sim.market)
    assert sim.market.instance_for_key(key1) == first and sim.market.instance_for_key(key2) == second
    assert sim.market.instance_for_key("") is None and sim.market.instance_for_key("nope") is None
    listed = json.dumps(sim.market.instances())
    assert key1 not in listed and key2 not in listed


def test_an_instance_key_destroys_over_real_http(sim: Simulator) -> None:
    instance_id, key = create(sim.market)
    with sim.serve("127.0.0.1", 0) as server:
        url = f"{server.url}/api/v0/instances/{instance_id}/"
        assert httpx.get(url, headers={"Authorization": f"Bearer {key}"}).status_code == 401
        response = httpx.delete(url, headers={"Authorization": f"Bearer {key}"})
        assert response.status_code == 200 and response.json() == {"success": True}
    assert sim.market.show(instance_id) is None


# -- the embedded simulator's spool folder ------------------------------------------------------


def request_file(market: Market, instance_id: int, key: str, at: float, name: str | None = None) -> Path:
    """A self-destruct request as a box's watchdog leaves it (temp file, then rename)."""
    url = market.selfdestruct_url()
    assert url is not None and url.startswith("file://")
    folder = Path(url[len("file://") :])
    path = folder / (name or f"destroy-{instance_id}-{secrets.token_hex(4)}.json")
    tmp = folder / f".{path.name}.tmp"
    tmp.write_text(json.dumps({"instance_id": instance_id, "key": key, "at": at, "reason": "test"}))
    os.replace(tmp, path)
    return path


def test_a_request_file_destroys_the_instance_and_billing_stops_at_its_time(market: Market) -> None:
    instance_id, key = create(market)
    market.advance(BOOT + 600)  # running, billing GPU time
    at = time.time()
    path = request_file(market, instance_id, key, at)
    assert market.show(instance_id) is None  # the next transaction carried it out
    assert not path.exists()
    saved = market.store._read()  # no API shows a destroyed instance's ledger
    destroyed, moment = saved["destroyed"][str(instance_id)], at + saved["clock_offset"]
    # Billing ended at the request's own moment, not when the market got to it.
    assert destroyed["destroyed_at"] == moment
    assert max(segment[1] for segment in destroyed["ledger"]) == moment
    assert destroyed["ledger"][-1][2] > 0  # GPU time was billed up to there
    balance = market.user()["balance"]
    market.advance(3600)
    assert market.user()["balance"] == balance


def test_a_request_with_a_wrong_key_is_discarded(market: Market, caplog: pytest.LogCaptureFixture) -> None:
    (first, key1), (second, key2) = two(market)
    wrong = request_file(market, first, key2, time.time())  # another instance's key
    forged = request_file(market, second, "f" * 64, time.time())
    with caplog.at_level("WARNING", logger="vastnb.sim"):
        assert market.show(first) is not None and market.show(second) is not None
    assert not wrong.exists() and not forged.exists()
    assert "key" in caplog.text and key1 not in caplog.text and key2 not in caplog.text


def test_malformed_and_stale_requests_are_dropped(market: Market) -> None:
    instance_id, key = create(market)
    folder = Path(str(market.selfdestruct_url())[len("file://") :])
    (folder / "destroy-1-bad.json").write_text("{not json")
    (folder / "destroy-2-bad.json").write_text(json.dumps({"instance_id": "x", "key": key, "at": 0}))
    gone = request_file(market, 12345, key, time.time())  # no such instance (any more)
    unrelated = folder / "notes.txt"
    unrelated.write_text("left alone")
    assert market.show(instance_id) is not None
    assert sorted(p.name for p in folder.iterdir()) == ["notes.txt"] and not gone.exists()


def test_requests_are_safe_with_several_markets_on_one_home(tmp_path: Path) -> None:
    """Two markets on one home, as two kernels have: each request is carried out once."""
    first, second = Market(tmp_path, CONFIG), Market(tmp_path, CONFIG)
    (a, key_a), (b, key_b) = two(first)
    request_file(first, a, key_a, time.time())
    request_file(second, b, key_b, time.time())
    assert second.show(a) is None and first.show(b) is None
    destroyed = first.store._read()["destroyed"]
    assert set(destroyed) == {str(a), str(b)}


def test_an_in_memory_market_has_no_spool(tmp_path: Path) -> None:
    assert Market(None, CONFIG).selfdestruct_url() is None
    url = Market(tmp_path, CONFIG).selfdestruct_url()
    assert url == (tmp_path / "sim" / "selfdestruct").resolve().as_uri()
