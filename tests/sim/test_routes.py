"""The simulator's HTTP face: Vast's routes, shapes, auth, rate limits and injected faults, over
``SimAPI.handle``, the in-process httpx transport and a real loopback server."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest

from vastnb.sim import Simulator
from vastnb.sim.routes import SimAPI, SimRequest

from .conftest import BOOT, CONFIG, body_of, call, one_gpu_offers, rent

V0 = "/api/v0"


def create(client: httpx.Client, offer_id: int, **payload: Any) -> httpx.Response:
    return client.put(f"{V0}/asks/{offer_id}/", json={"image": "vastai/base", "disk": 16, **payload})


# -- instances ------------------------------------------------------------------------------------


def test_create_show_manage_destroy_over_http(client: httpx.Client, sim: Simulator) -> None:
    offer = one_gpu_offers(sim.market)[0]
    r = create(client, offer["id"], label="web", env={"A": "1"})
    assert r.status_code == 200 and r.headers["content-type"].startswith("application/json")
    iid = r.json()["new_contract"]
    assert r.json()["success"] is True and r.json()["instance_api_key"]

    shown = client.get(f"{V0}/instances/{iid}/", params={"owner": "me"}).json()
    assert set(shown) == {"instances"} and isinstance(shown["instances"], dict)
    assert shown["instances"]["id"] == iid and shown["instances"]["actual_status"] is None
    assert shown["instances"]["extra_env"] == [["A", "1"]]

    assert client.post("/_sim/advance", json={"seconds": BOOT + 1}).json()["success"] is True
    inst = client.get(f"{V0}/instances/{iid}/").json()["instances"]
    assert inst["actual_status"] == "running"
    assert isinstance(inst["ports"]["22/tcp"][0]["HostPort"], str)

    assert client.put(f"{V0}/instances/{iid}/", json={"label": "renamed"}).json() == {"success": True}
    assert client.put(f"{V0}/instances/{iid}/", json={"state": "stopped"}).json() == {"success": True}
    inst = client.get(f"{V0}/instances/{iid}/").json()["instances"]
    assert (inst["label"], inst["actual_status"], inst["cur_state"]) == ("renamed", "stopped", "stopped")
    assert client.put(f"{V0}/instances/{iid}/", json={}).status_code == 400
    assert client.put(f"{V0}/instances/{iid}/", json={"state": "paused"}).status_code == 400

    assert client.delete(f"{V0}/instances/{iid}/").json() == {"success": True}
    assert client.get(f"{V0}/instances/{iid}/").json() == {"instances": None}
    again = client.delete(f"{V0}/instances/{iid}/")
    assert again.status_code == 404 and again.json()["error"] == "no_such_instance"
    assert again.json()["success"] is False
    assert client.put(f"{V0}/instances/{iid}/", json={"state": "running"}).status_code == 404


def test_create_errors_over_http(client: httpx.Client, sim: Simulator) -> None:
    offer = one_gpu_offers(sim.market)[0]
    gone = client.put(f"{V0}/asks/1/", json={"image": "x"})
    assert gone.status_code == 404 and gone.json()["error"] == "no_such_ask"
    low = create(client, offer["id"], price=offer["min_bid"] / 2)
    assert low.status_code == 400 and low.json()["success"] is False
    iid = low.json()["new_contract"]
    inst = client.get(f"{V0}/instances/{iid}/").json()["instances"]
    assert (inst["actual_status"], inst["intended_status"], inst["cur_state"]) == ("stopped",) * 3
    raise_bid = client.put(f"{V0}/instances/bid_price/{iid}/", json={"client_id": "me", "price": offer["min_bid"]})
    assert raise_bid.json() == {"success": True}
    client.post("/_sim/advance", json={"seconds": CONFIG.schedule_delay + CONFIG.load_delay + 1})
    assert client.get(f"{V0}/instances/{iid}/").json()["instances"]["actual_status"] == "running"
    for bad in ({"price": "cheap"}, {}, {"price": None}):
        r = client.put(f"{V0}/instances/bid_price/{iid}/", json=bad)
        assert r.status_code == 400 and r.json()["error"] == "invalid_args"


def test_v1_list_pages_with_next_token(api: SimAPI, sim: Simulator, key: str) -> None:
    ids = [rent(sim.market, o) for o in one_gpu_offers(sim.market, 30)]

    def page(**query: Any) -> dict[str, Any]:
        r = call(api, "GET", "/api/v1/instances/", key=key, query=query)
        assert r.status == 200, r.body
        return body_of(r)

    first = page()
    assert len(first["instances"]) == 25 and first["total_instances"] == 30 and first["next_token"]
    assert first["success"] is True and "label_counts" in first and "instances_found" in first
    assert len(page(limit=100)["instances"]) == 25
    assert len(page(limit=0)["instances"]) == 5
    assert len(page(limit=-3)["instances"]) == 5

    seen: list[int] = []
    token = None
    for _ in range(20):
        got = page(limit=7, **({"after_token": token} if token else {}))
        seen += [i["id"] for i in got["instances"]]
        token = got["next_token"]
        if not token:
            break
    assert seen == sorted(ids)

    desc = page(order_by=[{"col": "id", "dir": "desc"}], limit=3)["instances"]
    assert [i["id"] for i in desc] == sorted(ids, reverse=True)[:3]
    sim.market.advance(BOOT + 1)
    sim.market.set_state(ids[0], "stopped")
    running = page(select_filters={"actual_status": {"in": ["running", "loading"]}}, limit=25)
    assert running["total_instances"] == 29 and ids[0] not in [i["id"] for i in running["instances"]]

    bad = call(api, "GET", "/api/v1/instances/", key=key, query={"after_token": "not-a-token"})
    assert bad.status == 400 and body_of(bad)["error"] == "invalid_token"
    computed = call(api, "GET", "/api/v1/instances/", key=key, query={"select_filters": {"dph_total": {"lt": 1}}})
    assert computed.status == 400 and "is not a valid search key" in body_of(computed)["msg"]
    for query in ({"limit": "many"}, {"select_filters": "{nope"}, {"order_by": [{"col": "num_gpus"}]}):
        assert call(api, "GET", "/api/v1/instances/", key=key, query=query).status == 400


def test_v0_list_is_still_served(client: httpx.Client, sim: Simulator) -> None:
    assert client.get(f"{V0}/instances/", params={"owner": "me"}).json() == {"instances_found": 0, "instances": []}
    iid = rent(sim.market)
    listed = client.get(f"{V0}/instances/", params={"owner": "me"}).json()
    assert listed["instances_found"] == 1 and listed["instances"][0]["id"] == iid


def test_ssh_keys_instance_list_is_a_json_string(client: httpx.Client, sim: Simulator) -> None:
    iid = rent(sim.market)
    pub = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIC7 me@laptop"
    assert client.post(f"{V0}/instances/{iid}/ssh/", json={"ssh_key": pub}).json()["success"] is True
    body = client.get(f"{V0}/instances/{iid}/ssh/").json()
    assert body["success"] is True and isinstance(body["ssh_keys"], str)
    keys = json.loads(body["ssh_keys"])
    assert [k["public_key"] for k in keys] == [pub] and {"id", "name", "public_key"} <= set(keys[0])
    assert client.post(f"{V0}/instances/{iid}/ssh/", json={"ssh_key": "not a key"}).status_code == 400
    # Account keys reach instances created after them.
    added = client.post(f"{V0}/ssh/", json={"ssh_key": "ssh-rsa AAAAB3Nza acct"}).json()
    assert added["success"] is True
    assert [k["key"] for k in client.get(f"{V0}/ssh/").json()] == ["ssh-rsa AAAAB3Nza acct"]
    later = rent(sim.market, one_gpu_offers(sim.market, 2)[1])
    later_keys = json.loads(client.get(f"{V0}/instances/{later}/ssh/").json()["ssh_keys"])
    assert [k["public_key"] for k in later_keys] == ["ssh-rsa AAAAB3Nza acct"]


def test_users_current_echoes_the_api_key(client: httpx.Client, key: str) -> None:
    user = client.get(f"{V0}/users/current/").json()
    assert user["api_key"] == key
    assert user["balance"] == CONFIG.starting_credit and user["credit"] == CONFIG.starting_credit
    assert {"id", "email", "username"} <= set(user)


def test_charges_need_a_day_window(client: httpx.Client, sim: Simulator) -> None:
    iid = rent(sim.market)
    sim.market.advance(BOOT + 3600)
    now = sim.market.now()
    for params in (
        {},
        {"select_filters": json.dumps({"day": {"gte": now - 86400}})},
        {"select_filters": json.dumps({"type": {"in": ["instance"]}})},
    ):
        r = client.get(f"{V0}/charges/", params=params)
        assert r.status_code == 400 and r.json()["success"] is False
    window = {"day": {"gte": now - 86400, "lte": now}, "type": {"in": ["instance"]}}
    got = client.get(
        f"{V0}/charges/",
        params={"select_filters": json.dumps(window), "format": "table", "latest_first": "true", "limit": 100},
    ).json()
    assert got["success"] is True and got["count"] == 1 and got["next_token"] is None
    (record,) = got["results"]
    assert record["source"] == f"instance-{iid}" and record["amount"] == pytest.approx(got["total"])
    assert got["total"] == pytest.approx(CONFIG.starting_credit - sim.market.user()["balance"], abs=1e-4)
    bad = {"select_filters": json.dumps({"day": {"gte": "yesterday", "lte": now}})}
    assert client.get(f"{V0}/charges/", params=bad).status_code == 400
    for limit in ("0", "-1", "many"):
        r = client.get(f"{V0}/charges/", params={"select_filters": json.dumps(window), "limit": limit})
        assert r.status_code == 400 or (r.json()["count"] == 1 and r.json()["next_token"] is None), limit


# -- auth -----------------------------------------------------------------------------------------


def test_auth_bearer_or_query_key(api: SimAPI, key: str) -> None:
    path = f"{V0}/users/current/"
    assert call(api, "GET", path, key=key).status == 200
    assert call(api, "GET", path, query={"api_key": key}).status == 200
    none = call(api, "GET", path)
    assert none.status == 403 and body_of(none)["msg"] == "This action requires login."
    wrong = call(api, "GET", path, key="sim_wrong")
    assert wrong.status == 401 and body_of(wrong)["error"] == "auth_error"
    assert call(api, "GET", path, query={"api_key": "sim_wrong"}).status == 401


def test_auth_over_http(sim: Simulator, key: str) -> None:
    with sim.serve() as server, httpx.Client(base_url=server.url, timeout=10) as c:
        assert c.get(f"{V0}/users/current/").status_code == 403
        assert c.get(f"{V0}/users/current/", headers={"Authorization": "Bearer nope"}).status_code == 401
        assert c.get(f"{V0}/users/current/", params={"api_key": key}).json()["api_key"] == key
        # Offer search needs no key at all.
        offers = c.post(f"{V0}/bundles/", json={"num_gpus": {"eq": 1}, "limit": 3}).json()["offers"]
        assert len(offers) == 3 and all(o["num_gpus"] == 1 for o in offers)
        q = json.dumps({"num_gpus": {"eq": 2}, "limit": 2})
        assert all(o["num_gpus"] == 2 for o in c.get(f"{V0}/bundles/", params={"q": q}).json()["offers"])


def test_bundles_without_auth_and_bad_bodies(api: SimAPI) -> None:
    r = call(api, "POST", f"{V0}/bundles/", {"gpu_name": {"eq": "RTX 4090"}, "limit": 5})
    assert r.status == 200 and len(body_of(r)["offers"]) == 5
    assert call(api, "POST", f"{V0}/bundles/", [1, 2]).status == 400
    assert call(api, "POST", f"{V0}/bundles/", {"num_gpus": {"like": 1}}).status == 400


def test_server_refuses_non_loopback_hosts(sim: Simulator) -> None:
    with pytest.raises(ValueError):
        sim.serve("0.0.0.0")


# -- rate limits and faults -----------------------------------------------------------------------


def test_rate_limit_is_plain_text_without_retry_after(tmp_path: Path) -> None:
    sim = Simulator(tmp_path, CONFIG, rate_limit_scale=1)
    first, second = one_gpu_offers(sim.market, 2)
    headers = {"Authorization": f"Bearer {sim.market.api_key}"}
    with sim.serve() as server, httpx.Client(base_url=server.url, headers=headers, timeout=10) as c:
        assert create(c, first["id"]).status_code == 200
        limited = create(c, second["id"])
        assert limited.status_code == 429
        assert limited.text == "API requests too frequent endpoint threshold=4.5"
        assert limited.headers["content-type"].startswith("text/plain")
        assert "retry-after" not in limited.headers
        # Other endpoints have their own budget.
        assert c.get(f"{V0}/users/current/").status_code == 200
    # The refused create did not rent anything.
    assert len(sim.market.instances()) == 1


def test_status_faults_then_normal_service(client: httpx.Client, sim: Simulator) -> None:
    r = client.post("/_sim/faults", json={"kind": "status", "status": 503, "times": 2, "path": "/users/current"})
    assert r.json() == {"success": True}
    assert client.get(f"{V0}/instances/").status_code == 200  # another path: untouched
    for _ in range(2):
        assert client.get(f"{V0}/users/current/").status_code == 503
    assert client.get(f"{V0}/users/current/").status_code == 200
    sim.api.faults.inject("status", status=429, method="GET")
    r = client.get(f"{V0}/users/current/")
    assert r.status_code == 429 and r.headers["content-type"].startswith("text/plain")
    assert "retry-after" not in r.headers


def test_faults_do_not_hit_the_control_routes(client: httpx.Client) -> None:
    client.post("/_sim/faults", json={"kind": "status", "status": 502})
    assert client.post("/_sim/advance", json={"seconds": 1}).status_code == 200
    assert client.get(f"{V0}/users/current/").status_code == 502


def test_timeout_in_process_raises_read_timeout(sim: Simulator, key: str) -> None:
    sim.api.faults.inject("timeout", path="/users/current")
    with httpx.Client(transport=sim.transport(), base_url="http://sim.test") as c:
        with pytest.raises(httpx.ReadTimeout):
            c.get(f"{V0}/users/current/", headers={"Authorization": f"Bearer {key}"})
        assert c.get(f"{V0}/users/current/", headers={"Authorization": f"Bearer {key}"}).status_code == 200


def test_timeout_over_http_hangs_up(sim: Simulator, key: str) -> None:
    headers = {"Authorization": f"Bearer {key}"}
    sim.api.faults.inject("timeout", path="/users/current", times=2)
    with sim.serve(timeout_delay=0.5) as server:
        with httpx.Client(base_url=server.url, headers=headers, timeout=0.2) as c:
            with pytest.raises(httpx.ReadTimeout):
                c.get(f"{V0}/users/current/")
        with httpx.Client(base_url=server.url, headers=headers, timeout=5) as c:
            with pytest.raises(httpx.RemoteProtocolError):  # the server hangs up, unanswered
                c.get(f"{V0}/users/current/")
            assert c.get(f"{V0}/users/current/").status_code == 200


@pytest.mark.parametrize("fault", [{"kind": "race", "path": "/asks/"}, {"kind": "race"}])
def test_race_fault_takes_the_offer_before_create(client: httpx.Client, sim: Simulator, fault: dict[str, Any]) -> None:
    offer = one_gpu_offers(sim.market)[0]
    client.post("/_sim/faults", json=fault)
    assert client.get(f"{V0}/users/current/").status_code == 200  # not a create: the race waits
    r = create(client, offer["id"])
    assert r.status_code == 404 and r.json()["error"] == "no_such_ask"
    assert sim.market.instances() == []


def test_bad_fault_requests(client: httpx.Client) -> None:
    for body in (
        {"kind": "meteor"},
        {"kind": "status", "times": "twice"},
        {"kind": "status", "status": "bad"},
        {"kind": "status", "path": "("},
        {"kind": "status", "colour": "red"},
        [1, 2],
    ):
        r = client.post("/_sim/faults", json=body)
        assert r.status_code == 400, body
    assert client.get(f"{V0}/users/current/").status_code == 200


# -- control routes -------------------------------------------------------------------------------


def test_control_routes_need_the_key(api: SimAPI) -> None:
    for path, body in (
        ("/_sim/advance", {"seconds": 5}),
        ("/_sim/preempt/1", {}),
        ("/_sim/status/1", {}),
        ("/_sim/take/1", {}),
        ("/_sim/faults", {"kind": "status"}),
    ):
        assert call(api, "POST", path, body).status == 403
        assert call(api, "POST", path, body, key="wrong").status == 401
    assert api.faults.take("GET", "/api/v0/users/current/") is None


def test_control_routes_drive_the_market(client: httpx.Client, sim: Simulator) -> None:
    offer, other = one_gpu_offers(sim.market, 2)
    iid = create(client, offer["id"], price=offer["min_bid"]).json()["new_contract"]
    t = sim.market.now()
    now = client.post("/_sim/advance", json={"seconds": BOOT + 1}).json()["now"]
    assert now >= t + BOOT + 1
    assert client.post("/_sim/advance", json={"seconds": -1}).status_code == 400
    assert client.post("/_sim/advance", json={"seconds": "soon"}).status_code == 400

    assert client.post(f"/_sim/preempt/{iid}", json={"resume_after": 30}).json() == {"success": True}
    inst = client.get(f"{V0}/instances/{iid}/").json()["instances"]
    assert (inst["actual_status"], inst["intended_status"], inst["cur_state"], inst["next_state"]) == ("stopped",) * 4
    client.post("/_sim/advance", json={"seconds": 31 + CONFIG.load_delay})
    assert client.get(f"{V0}/instances/{iid}/").json()["instances"]["actual_status"] == "running"
    assert client.post(f"/_sim/preempt/{iid}", json={"resume_after": "later"}).status_code == 400

    assert client.post(f"/_sim/status/{iid}", json={"status": "offline"}).json() == {"success": True}
    assert client.get(f"{V0}/instances/{iid}/").json()["instances"]["actual_status"] == "offline"
    assert client.post(f"/_sim/status/{iid}", json={"status": "melted"}).status_code == 400
    assert client.post("/_sim/status/1", json={"status": "offline"}).status_code == 404

    assert client.post(f"/_sim/take/{other['id']}").json() == {"success": True}
    assert create(client, other["id"]).status_code == 404


# -- protocol errors ------------------------------------------------------------------------------


def test_unknown_path_wrong_method_and_malformed_json(client: httpx.Client, sim: Simulator) -> None:
    assert client.get(f"{V0}/nothing/here/").status_code == 404
    assert client.get("/").status_code == 404
    assert client.post(f"{V0}/users/current/").status_code == 405
    assert client.delete(f"{V0}/asks/1/").status_code == 405
    offer = one_gpu_offers(sim.market)[0]
    for raw in (b"{not json", b"\xff\xfe", b'"a string"', b"[1, 2]"):
        r = client.put(f"{V0}/asks/{offer['id']}/", content=raw, headers={"Content-Type": "application/json"})
        assert r.status_code == 400 and r.json()["success"] is False, raw
    iid = rent(sim.market, offer)
    for raw in (b"{oops", b'"state"', b"[]"):
        assert client.put(f"{V0}/instances/{iid}/", content=raw).status_code == 400, raw
        assert client.post(f"{V0}/instances/{iid}/ssh/", content=raw).status_code == 400, raw
    assert client.put(f"{V0}/instances/{iid}/", json={"state": "stopped"}).status_code == 200


def test_search_needs_no_key_but_refuses_a_wrong_one_with_404(tmp_path: Path) -> None:
    api = Simulator(tmp_path).api
    body = b'{"gpu_name": {"eq": "RTX 4090"}, "limit": 3}'
    anonymous = api.handle(SimRequest("POST", "/api/v0/bundles/", body=body))
    assert anonymous.status == 200
    wrong = api.handle(SimRequest("POST", "/api/v0/bundles/", headers={"authorization": "Bearer nope"}, body=body))
    assert wrong.status == 404 and b"Invalid user key" in wrong.body
