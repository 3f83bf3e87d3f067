"""Two simulated nodes of two ranks each: one launcher per node, meeting at a c10d
rendezvous on node 0 over loopback, gloo between all four ranks."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from vastnb import Client
from vastnb.errors import ConfigError, RemoteError
from vastnb.lifecycle.group import BoxGroup, check_group_backend

PROFILE = """\
duo:
  gpu: RTX_4090
  num_gpus: 2
  max_price_per_hour: 2.0
  min_reliability: 0.90
  max_duration_hours: 2
"""


@pytest.fixture(scope="module")
def group(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BoxGroup]:
    folder = tmp_path_factory.mktemp("group")
    (folder / "gpu_profiles.yaml").write_text(PROFILE)
    client = Client(backend="sim", home=folder / "vastnb", profiles=folder / "gpu_profiles.yaml")
    try:
        yield client.launch_group("duo", nodes=2)
    finally:
        client.close()


def where_am_i() -> tuple[int, int, int, float]:
    import torch
    import torch.distributed as td

    from vastnb_worker import distributed as dist

    dist.setup()
    total = torch.tensor([float(dist.rank())])
    td.all_reduce(total)
    print(f"rank {dist.rank()} local {dist.local_rank()}", flush=True)
    return dist.rank(), dist.local_rank(), dist.world_size(), float(total.item())


def test_two_nodes_of_two_ranks_form_one_group(group: BoxGroup, capsys: pytest.CaptureFixture[str]) -> None:
    assert len(group) == 2
    every = group.options(nproc="gpu", ranks="all").run(where_am_i)
    assert every == [(0, 0, 4, 6.0), (1, 1, 4, 6.0), (2, 0, 4, 6.0), (3, 1, 4, 6.0)]
    assert group.run(where_am_i) == (0, 0, 4, 6.0)
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


def test_a_group_is_refused_on_vast_before_anything_is_rented(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="Nothing was rented"):
        check_group_backend(simulated=False, nodes=2)
    check_group_backend(simulated=False, nodes=1)  # one node needs no peers
    with pytest.raises(ConfigError, match="nodes must be"):
        check_group_backend(simulated=True, nodes=0)
