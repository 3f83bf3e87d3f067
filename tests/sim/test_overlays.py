"""The simulator's physical clusters and ``/overlay/`` networks, through its REST routes: what
a group of nodes is rented on, and what refuses a create that cannot join."""

from __future__ import annotations

from typing import Any

import httpx

from vastnb.sim import Market
from vastnb.sim.clusters import CLUSTERS
from vastnb.sim.overlays import SUBNET

V0 = "/api/v0"


def cluster_offer(market: Market, cluster: int, num_gpus: int = 2) -> dict[str, Any]:
    return next(o for o in market.catalogue if o["cluster_id"] == cluster and o["num_gpus"] == num_gpus)


def test_clusters_are_identical_machines_listed_with_their_cluster_id(market: Market) -> None:
    by_cluster: dict[int, set[tuple[str, int]]] = {}
    for offer in market.catalogue:
        if offer["cluster_id"] is not None:
            by_cluster.setdefault(offer["cluster_id"], set()).add((offer["gpu_name"], offer["machine_id"]))
    assert sorted(len(m) for m in by_cluster.values()) == sorted(n for _, n, _ in CLUSTERS)
    assert all(len({gpu for gpu, _ in machines}) == 1 for machines in by_cluster.values())
    searched = market.search({"cluster_id": {"neq": None}, "num_gpus": {"eq": 8}, "limit": 100})
    assert len(searched) == sum(n for _, n, _ in CLUSTERS)  # the search filters on it


def test_an_overlay_is_created_joined_on_create_and_deleted(client: httpx.Client, market: Market) -> None:
    offer = cluster_offer(market, 7001)
    assert client.post(f"{V0}/overlay/", json={"cluster_id": 7001, "name": "net-a"}).json()["success"]
    created = client.put(f"{V0}/asks/{offer['id']}/", json={"image": "img", "env": {"-n": "net-a"}}).json()
    [overlay] = client.get(f"{V0}/overlay/").json()
    assert overlay["name"] == "net-a" and overlay["cluster_id"] == 7001 and overlay["internal_subnet"] == SUBNET
    assert overlay["instances"] == [created["new_contract"]]
    client.delete(f"{V0}/instances/{created['new_contract']}/")
    assert client.get(f"{V0}/overlay/").json()[0]["instances"] == []  # a destroyed instance leaves it
    assert client.request("DELETE", f"{V0}/overlay/", json={"overlay_name": "net-a"}).json()["success"]
    assert client.get(f"{V0}/overlay/").json() == []


def test_what_cannot_join_is_refused_and_nothing_is_created(client: httpx.Client, market: Market) -> None:
    client.post(f"{V0}/overlay/", json={"cluster_id": 7001, "name": "net-b"})
    outside = next(o for o in market.catalogue if o["cluster_id"] is None and o["num_gpus"] == 1)
    other = cluster_offer(market, 7002)
    for offer, env, status in (
        (outside, "net-b", 400),
        (other, "net-b", 400),
        (cluster_offer(market, 7001), "nope", 404),
    ):
        answer = client.put(f"{V0}/asks/{offer['id']}/", json={"image": "img", "env": {"-n": env}})
        assert answer.status_code == status
    assert market.instances() == []
    assert client.post(f"{V0}/overlay/", json={"cluster_id": 7001, "name": "net-b"}).status_code == 400  # taken
    assert client.post(f"{V0}/overlay/", json={"cluster_id": 12345, "name": "net-c"}).status_code == 404
    assert client.post(f"{V0}/overlay/", json={"cluster_id": 7001, "name": "bad name"}).status_code == 400
    assert client.request("DELETE", f"{V0}/overlay/", json={"overlay_id": 999}).status_code == 404
