"""A group of boxes for multi-node training: launched and torn down together, and a call run
in ranks across all of them (one torch.distributed launcher per node, meeting at a c10d
rendezvous hosted by node 0).

The nodes must reach each other on the rendezvous port and on every port the collectives
open. On Vast an instance's ports are mapped to other external ones and peer ports are not
forwarded at all; what connects instances on every port is an **overlay network**: a private
LAN over one physical cluster (offers with a ``cluster_id``). So a group of two or more is
rented as Vast's multi-node guide does it: the cluster whose N cheapest fitting machines cost
least, an overlay created on it, each node created on it (``env {"-n": overlay}``), node 0's
address in the overlay's subnet as the rendezvous, and NCCL and gloo told the interface
(``NCCL_SOCKET_IFNAME``). With no cluster to hold the group, nothing is rented. The
simulated market has clusters too; its overlay is this machine's loopback.
"""

from __future__ import annotations

import contextlib
import dataclasses
import threading
import uuid
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from vastnb.errors import ConfigError, NoOffersError, VastError
from vastnb.lifecycle.box import Box, ranks_for
from vastnb.market.api import VastAPI
from vastnb.market.records import Overlay
from vastnb.market.selection import cheapest_cluster, cluster_query, rank
from vastnb.profiles.profile import Profile

if TYPE_CHECKING:
    from vastnb.lifecycle.fleet import Fleet

__all__ = ["BoxGroup", "GroupOptions", "check_nodes", "launch_group"]


def check_nodes(nodes: int) -> None:
    """Refuse a number of nodes that is not one."""
    if isinstance(nodes, bool) or not isinstance(nodes, int) or nodes < 1:
        raise ConfigError(f"nodes must be a number of boxes from 1, not {nodes!r}")


def launch_group(fleet: Fleet, profile: Profile, nodes: int, name: str, *, keep: bool) -> BoxGroup:
    """``nodes`` (2 or more) boxes of ``profile`` on one overlay network (see the module
    doc). If any cannot be launched, every one launched is destroyed and the overlay deleted
    before the error is raised; with no cluster to hold them, nothing is rented."""
    api = fleet.api
    found = cheapest_cluster(rank(profile, api.search_offers(cluster_query(profile))), nodes)
    if found is None:
        raise NoOffersError(
            f"No physical cluster has {nodes} machines with offers that fit profile {profile.name!r}. "
            f"The nodes of a group must reach each other on every port, which on Vast takes an overlay "
            f"network on one cluster (offers with a cluster_id). Nothing was rented. Launch fewer nodes, "
            f'relax the profile (`vastnb offers "cluster_id!=None gpu_name=..."` lists the offers in '
            f"clusters), or use one box with more GPUs (box.options(nproc='gpu'))."
        )
    cluster, _ = found
    overlay = api.create_overlay(cluster, name)
    placed = dataclasses.replace(profile, cluster_id=cluster, overlay=overlay.name)
    boxes: list[Box] = []
    try:
        for node in range(nodes):  # each on a machine of its own
            avoid = {box.rental.machine_id for box in boxes if box.rental.machine_id is not None}
            boxes.append(fleet.launch(placed, name=f"{name}-{node}", keep=keep, progress=None, avoid=avoid))
    except BaseException:
        for box in boxes:
            with contextlib.suppress(Exception):
                box.down()
        with contextlib.suppress(Exception):
            api.delete_overlay(overlay.overlay_id)
        raise
    return BoxGroup(boxes, overlay=overlay, api=api)


class BoxGroup:
    """Boxes launched together for one distributed run (see the module doc); ``overlay``
    is the network joining them (None for a group of one)."""

    def __init__(self, boxes: Sequence[Box], *, overlay: Overlay | None = None, api: VastAPI | None = None) -> None:
        self.boxes = list(boxes)
        self.overlay, self._api = overlay, api

    def __repr__(self) -> str:
        network = f" on overlay {self.overlay.name}" if self.overlay else ""
        return f"<BoxGroup of {len(self.boxes)}{network}: {', '.join(b.name for b in self.boxes)}>"

    def __len__(self) -> int:
        return len(self.boxes)

    def options(self, *, trust: bool | None = None, nproc: int | str | None = "gpu", ranks: str = "0") -> GroupOptions:
        """The group with settings for the next calls: ``nproc`` ranks per node (``"gpu"``:
        one per GPU), rank 0's value back, or every rank's with ``ranks="all"``."""
        first = self.boxes[0]
        per_node = ranks_for(nproc, first.rental.num_gpus, first.name) or 1
        return GroupOptions(self, first.trust if trust is None else trust, per_node, ranks)

    def run(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Any:
        """``fn(*args, **kwargs)`` in one rank per GPU on every node; rank 0's value."""
        return self.options().run(fn, *args, **kwargs)

    def subnet(self) -> str | None:
        """The overlay network's subnet, as the market reports it (None for a group of one)."""
        if self.overlay is None:
            return None
        if self.overlay.internal_subnet is None and self._api is not None:  # assigned late: ask again
            self.overlay = next((o for o in self._api.overlays() if o.name == self.overlay.name), self.overlay)
        if self.overlay.internal_subnet is None:
            raise VastError(
                f"the market has not given overlay {self.overlay.name!r} a subnet yet, so the nodes cannot "
                "find each other; try again in a minute, or destroy the group (group.down()) and launch it again."
            )
        return self.overlay.internal_subnet

    def down(self) -> list[int]:
        """Destroy every box of the group (each tried), then its overlay network; the ids
        this call destroyed."""
        destroyed, failed = [], []
        for box in self.boxes:
            try:
                if box.down():
                    destroyed.append(box.id)
            except VastError as exc:
                failed.append(f"{box.name}: {exc}")
        if failed:
            raise VastError(f"could not destroy every box of the group: {'; '.join(failed)}; try down() again")
        if self.overlay is not None and self._api is not None:
            if any(o.overlay_id == self.overlay.overlay_id for o in self._api.overlays()):
                self._api.delete_overlay(self.overlay.overlay_id)
        return destroyed

    def __enter__(self) -> BoxGroup:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.down()


class GroupOptions:
    """A group with settings for the calls made through it (see :meth:`BoxGroup.options`)."""

    def __init__(self, group: BoxGroup, trust: bool, nproc: int, ranks: str) -> None:
        if ranks not in ("0", "all"):
            raise ConfigError(f"ranks must be '0' (rank 0's value) or 'all' (every rank's), not {ranks!r}")
        self.group, self.trust, self.nproc, self.ranks = group, trust, nproc, ranks

    def run(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Any:
        """``fn(*args, **kwargs)`` in every rank of every node; rank 0's value, or every
        rank's in rank order. A failed rank ends the whole group; its error is raised."""
        from vastnb_worker import distributed

        boxes, subnet = self.group.boxes, self.group.subnet()
        port = boxes[0].run(distributed.free_port)
        host = "127.0.0.1"  # a group of one
        if subnet is not None:  # node 0's address on the overlay network
            found = boxes[0].run(distributed.address_in, subnet)
            if found is None:
                raise VastError(
                    f"{boxes[0].name} has no network interface in the group's overlay network ({subnet}): "
                    "it did not join it. Destroy the group (group.down()) and launch it again."
                )
            host = found[1]
        shared = {"nproc": self.nproc, "ranks": "all", "nnodes": len(boxes), "run_id": uuid.uuid4().hex}
        shared.update(endpoint=f"{host}:{port}", subnet=subnet)
        values: list[Any] = [None] * len(boxes)
        errors: list[BaseException | None] = [None] * len(boxes)
        tasks = [
            box.options(trust=self.trust).submit(distributed.run_ranks, fn, args, kwargs, node_rank=i, **shared)
            for i, box in enumerate(boxes)
        ]

        def interrupt_all() -> None:
            for task in tasks:
                with contextlib.suppress(Exception):
                    task.interrupt()

        def node(index: int) -> None:
            try:
                values[index] = tasks[index].result()
            except BaseException as exc:  # noqa: BLE001 - handed to the caller below
                errors[index] = exc
                interrupt_all()  # a node that failed ends the others' launchers at once

        threads = [threading.Thread(target=node, args=(i,), name=f"vastnb-node-{i}") for i in range(len(boxes))]
        for thread in threads:
            thread.start()
        try:
            for thread in threads:
                thread.join()
        except KeyboardInterrupt:  # Ctrl-C here: every node's ranks end
            interrupt_all()
            raise
        failed = [e for e in errors if e is not None]
        if failed:  # the one that names a failed rank, if any: the others only saw the group end
            raise next((e for e in failed if "failed (exit code" in str(e)), failed[0])
        every = [value for node_values in values for value in node_values]
        return every if self.ranks == "all" else every[0]
