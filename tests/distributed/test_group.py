"""Groups of boxes on the simulated market, rented as on Vast: the cheapest physical cluster
that holds them, an overlay network on it that every node joins, and one launcher per node
meeting at a c10d rendezvous on node 0's overlay address (the simulator's overlay is this
machine's loopback), gloo between the ranks of every node."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from vastnb import Client
from vastnb.errors import ConfigError, NoOffersError, ProvisionError, RemoteError
from vastnb.lifecycle.group import BoxGroup
from vastnb.lifecycle.launch import LaunchPolicy

PROFILES = """\
duo:
  gpu: H100_SXM
  num_gpus: 2
  max_price_per_hour: 2.5
  min_reliability: 0.99
  max_duration_hours: 2
consumer-duo:
  gpu: RTX_4090
  num_gpus: 2
  max_price_per_hour: 2.0
  min_reliability: 0.90
  max_duration_hours: 2
"""


def client_in(folder: Path, **kwargs: object) -> Client:
    (folder / "gpu_profiles.yaml").write_text(PROFILES)
    return Client(backend="sim", home=folder / "vastnb", profiles=folder / "gpu_profiles.yaml", **kwargs)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Client]:
    vast = client_in(tmp_path_factory.mktemp("group"))
    try:
        yield vast
    finally:
        vast.close()


@pytest.fixture(scope="module")
def group(client: Client) -> BoxGroup:
    return client.launch_group("duo", nodes=2)


def where_am_i() -> tuple[int, int, int, float, str | None]:
    import os

    import torch
    import torch.distributed as td

    from vastnb_worker import distributed as dist

    dist.setup()
    total = torch.tensor([float(dist.rank())])
    td.all_reduce(total)
    print(f"rank {dist.rank()} local {dist.local_rank()}", flush=True)
    return dist.rank(), dist.local_rank(), dist.world_size(), float(total.item()), os.environ.get("NCCL_SOCKET_IFNAME")


def test_a_group_is_rented_on_one_cluster_and_joined_by_one_overlay_network(client: Client, group: BoxGroup) -> None:
    instances = {i["id"]: i for i in client.sim.market.instances()}
    ids = [box.id for box in group.boxes]
    assert len({instances[i]["machine_id"] for i in ids}) == 2  # a machine each
    clusters = {instances[i]["cluster_id"] for i in ids}
    assert len(clusters) == 1 and None not in clusters
    [overlay] = client.api.overlays()
    assert overlay.cluster_id in clusters and sorted(overlay.instances) == sorted(ids)
    assert group.overlay is not None and group.overlay.name == overlay.name
    # The cluster's two cheapest machines that fit (the simulator's one H100 SXM cluster).
    pairs = [o for o in client.sim.market.catalogue if o["cluster_id"] in clusters and o["num_gpus"] == 2]
    cheapest = sorted(pairs, key=lambda o: o["dph_base"])[:2]
    assert sorted(box.rental.machine_id for box in group.boxes) == sorted(o["machine_id"] for o in cheapest)


def test_two_nodes_of_two_ranks_form_one_group(group: BoxGroup, capsys: pytest.CaptureFixture[str]) -> None:
    every = group.options(nproc="gpu", ranks="all").run(where_am_i)
    # Every rank reaches the others through the overlay's interface (loopback on the simulator).
    assert every == [(0, 0, 4, 6.0, "lo"), (1, 1, 4, 6.0, "lo"), (2, 0, 4, 6.0, "lo"), (3, 1, 4, 6.0, "lo")]
    assert group.run(where_am_i) == (0, 0, 4, 6.0, "lo")
    printed = capsys.readouterr().out
    assert "[r3] rank 3 local 1" in printed and "[r0] rank 0 local 0" in printed


def fails_on_node_1() -> None:
    import os
    import time

    if os.environ["RANK"] == "3":
        raise RuntimeError("node 1 gave up")
    time.sleep(60)


def test_a_rank_failing_on_one_node_ends_the_group_everywhere(group: BoxGroup) -> None:
    with pytest.raises(RemoteError, match=r"rank 3 of 4 failed(.|\n)*node 1 gave up"):
        group.options(nproc=2).run(fails_on_node_1)
    assert [box.run(sum, [1, 1]) for box in group.boxes] == [2, 2]  # both workers go on


def test_down_destroys_every_node_and_deletes_the_network(client: Client, group: BoxGroup) -> None:
    ids = group.down()
    assert sorted(ids) == sorted(box.id for box in group.boxes)
    assert client.sim.market.instances() == [] and client.api.overlays() == []


def test_no_cluster_to_hold_the_group_rents_nothing(tmp_path: Path) -> None:
    vast = client_in(tmp_path)
    try:
        assert vast.select("consumer-duo")  # one box of it could be rented
        with pytest.raises(NoOffersError, match=r"No physical cluster has 2 machines(.|\n)*Nothing was rented"):
            vast.launch_group("consumer-duo", nodes=2)
        with pytest.raises(NoOffersError, match="No physical cluster has 5 machines"):
            vast.launch_group("duo", nodes=5)  # the largest H100 cluster has four
        assert vast.sim.market.instances() == [] and vast.api.overlays() == []
        with pytest.raises(ConfigError, match="nodes must be"):
            vast.launch_group("duo", nodes=0)
    finally:
        vast.close()


def test_a_node_that_cannot_come_up_takes_the_group_and_its_network_down(tmp_path: Path) -> None:
    vast = client_in(tmp_path, launch_policy=LaunchPolicy(attempts=2, load_deadline=3.0, poll=0.2))
    try:
        vast.sim.stall_loading(10, after=1)  # node 0 comes up; every box after it never does
        with pytest.raises(ProvisionError, match="duo-pair-1"):
            vast.launch_group("duo", nodes=2, name="duo-pair")
        assert vast.sim.market.instances() == [] and vast.api.overlays() == []
    finally:
        vast.close()
