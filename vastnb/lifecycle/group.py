"""A group of boxes for multi-node training: launched and torn down together, and a call run
in ranks across all of them (one torch.distributed launcher per node, meeting at a c10d
rendezvous hosted by node 0).

The nodes must reach each other on the rendezvous port and on the ports the collectives
open. On the simulated market the nodes are processes on this machine and everything runs
over loopback. On Vast, an instance's ports are mapped to other external ports and the
collectives' peer ports are not forwarded at all, so vastnb refuses a group there before
renting anything (see :func:`check_group_backend`).
"""

from __future__ import annotations

import contextlib
import threading
import uuid
from collections.abc import Callable, Sequence
from typing import Any

from vastnb.errors import ConfigError, VastError
from vastnb.lifecycle.box import Box, ranks_for

__all__ = ["BoxGroup", "GroupOptions", "check_group_backend"]


def check_group_backend(simulated: bool, nodes: int) -> None:
    """Refuse a group the market cannot connect, before anything is rented."""
    if isinstance(nodes, bool) or not isinstance(nodes, int) or nodes < 1:
        raise ConfigError(f"nodes must be a number of boxes from 1, not {nodes!r}")
    if not simulated and nodes > 1:
        raise ConfigError(
            "multi-node groups need the nodes to reach each other on the rendezvous port and on the "
            "collectives' peer ports; Vast maps an instance's ports to different external ones and "
            "forwards none of the peer ports, so vastnb does not rent a group there yet. Nothing was "
            "rented. Use one box with more GPUs (box.options(nproc='gpu')), or the simulated market."
        )


class BoxGroup:
    """Boxes launched together for one distributed run (see the module doc)."""

    def __init__(self, boxes: Sequence[Box]) -> None:
        self.boxes = list(boxes)

    def __repr__(self) -> str:
        return f"<BoxGroup of {len(self.boxes)}: {', '.join(b.name for b in self.boxes)}>"

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

    def down(self) -> list[int]:
        """Destroy every box of the group (each tried); the ids this call destroyed."""
        destroyed, failed = [], []
        for box in self.boxes:
            try:
                if box.down():
                    destroyed.append(box.id)
            except VastError as exc:
                failed.append(f"{box.name}: {exc}")
        if failed:
            raise VastError(f"could not destroy every box of the group: {'; '.join(failed)}; try down() again")
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

        boxes = self.group.boxes
        port = boxes[0].run(distributed.free_port)
        host = "127.0.0.1"  # simulated nodes share this machine's loopback (see the module doc)
        shared = {"nproc": self.nproc, "ranks": "all", "nnodes": len(boxes), "run_id": uuid.uuid4().hex}
        shared["endpoint"] = f"{host}:{port}"
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
