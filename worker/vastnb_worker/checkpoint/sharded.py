"""Sharded state (FSDP, or any DTensor state) through torch.distributed.checkpoint (DCP).

Each rank writes its own shards with DCP's FileSystemWriter into its local cache folder;
rank 0 also turns DCP's ``.metadata`` pickle into checked JSON (:mod:`.dcpmeta`). The
pipeline uploads them as parts of the checkpoint, every rank its own; rank 0 writes the
manifest once every rank has said (a small marker in the checkpoint's folder) which
shards it stored. Loading reads the JSON back into DCP's metadata, fetches (and checks
against the manifest) only the shard files this rank's plan reads, and decodes objects
with ``torch.load(weights_only=True)``, where DCP's own planner would unpickle anything.
DCP reshards on load, so a resume on another world size works where DCP supports it.

Whether to save is agreed by every rank (a one-integer all_reduce on a gloo group of its
own), as DCP's save is collective: a rank that alone decided to save, or alone saw
SIGTERM, would leave the others waiting.
"""

from __future__ import annotations

import io
import os
import warnings
from collections.abc import Mapping
from typing import Any, Callable, Optional

from ..errors import CheckpointError
from .dcpmeta import SHARD_FILE, to_json

__all__ = ["is_sharded", "Agreement", "write_shards", "load_shards", "METADATA_PART", "SHARDED"]

#: The part of a sharded checkpoint that holds DCP's metadata, as JSON.
METADATA_PART = "dcp_metadata"
#: The objects whose state DCP saves and loads in a sharded checkpoint.
SHARDED = ("model", "optimizer")


def is_sharded(objects: Mapping[str, Any]) -> bool:
    """Whether a model's state holds DTensors or ShardedTensors (FSDP, tensor parallel)."""
    model = objects.get("model")
    if model is None or not hasattr(model, "state_dict"):
        return False
    try:
        from torch.distributed.tensor import DTensor
    except ImportError:  # torch without distributed
        return False
    kinds: tuple[type, ...] = (DTensor,)
    try:
        from torch.distributed._shard.sharded_tensor import ShardedTensor

        kinds += (ShardedTensor,)
    except ImportError:
        pass
    return any(isinstance(value, kinds) for value in model.state_dict().values())


class Agreement:
    """Every rank's save decision, made together: a gloo group of its own, so that it
    works beside NCCL and costs no GPU synchronisation."""

    def __init__(self) -> None:
        import torch.distributed as td

        if not td.is_initialized():
            raise CheckpointError(
                "this model's state is sharded (DTensor), but no process group is initialised: "
                "call vastnb_worker.distributed.setup() (or init_process_group) first"
            )
        self.rank, self.world = td.get_rank(), td.get_world_size()
        self._group = td.new_group(backend="gloo")

    def decide(self, due: bool, preempted: bool, make_id: Callable[[], str]) -> tuple[Optional[str], bool]:
        """(the checkpoint id every rank uses, or None when no rank is due; whether any
        rank was preempted)."""
        import torch
        import torch.distributed as td

        flags = torch.tensor([int(due or preempted), int(preempted)])
        td.all_reduce(flags, op=td.ReduceOp.MAX, group=self._group)
        if not flags[0]:
            return None, False
        chosen = [make_id() if self.rank == 0 else None]
        td.broadcast_object_list(chosen, src=0, group=self._group)
        return chosen[0], bool(flags[1])


def write_shards(folder: str, objects: Mapping[str, Any], rank: int) -> list[tuple[str, str, str]]:
    """Save ``objects`` (``model`` and ``optimizer``; DCP's FQN-keyed state dicts) with DCP
    into ``folder``; a collective. This rank's files, as (part name, codec, path)."""
    import torch.distributed.checkpoint as dcp

    state = _state(objects["model"], objects.get("optimizer"))
    dcp.save(state, storage_writer=dcp.FileSystemWriter(folder, thread_count=1))
    files = []
    for name in sorted(os.listdir(folder)):
        match = SHARD_FILE.fullmatch(name)
        if match and int(match.group(1)) == rank:
            files.append((name[: -len(".distcp")], "dcp", os.path.join(folder, name)))
    pickled = os.path.join(folder, ".metadata")
    if rank == 0:
        with open(pickled, "rb") as file:
            data = to_json(file.read())
        path = os.path.join(folder, METADATA_PART + ".json")
        with open(path, "wb") as file:
            file.write(data)
        files.append((METADATA_PART, "dcp-metadata", path))
    if os.path.exists(pickled):
        os.unlink(pickled)
    return files


def load_shards(metadata: Any, folder: str, fetch: Callable[[str], str], objects: Mapping[str, Any]) -> None:
    """Load the sharded checkpoint described by ``metadata`` into ``objects`` (``model``,
    ``optimizer``); ``fetch(file)`` puts a checked copy of a shard file in ``folder``."""
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint.state_dict import set_state_dict

    model, optimizer = objects["model"], objects.get("optimizer")
    state = _state(model, optimizer)
    missing = [name for name in state if name not in {fqn.split(".", 1)[0] for fqn in metadata.state_dict_metadata}]
    if missing:
        raise CheckpointError(f"this sharded checkpoint holds no {' or '.join(missing)} state: do not pass it to load")
    with warnings.catch_warnings():  # "assuming the intent is to load in a single process": it is
        warnings.filterwarnings("ignore", message="torch.distributed is disabled")
        dcp.load(state, storage_reader=_reader(metadata, folder, fetch), planner=_planner())
    if optimizer is not None:
        set_state_dict(model, optimizer, model_state_dict=state["model"], optim_state_dict=state["optimizer"])
    else:
        model.load_state_dict(state["model"])


def _state(model: Any, optimizer: Any) -> dict[str, Any]:
    """The state dicts DCP saves and loads in place: FQN-keyed, sharded as the model is."""
    from torch.distributed.checkpoint.state_dict import get_state_dict

    if optimizer is None:
        return {"model": model.state_dict()}
    model_state, optimizer_state = get_state_dict(model, optimizer)
    return {"model": model_state, "optimizer": optimizer_state}


def _reader(metadata: Any, folder: str, fetch: Callable[[str], str]) -> Any:
    """DCP's FileSystemReader, given checked metadata instead of unpickling it, reading
    shard files fetched on demand into one local folder."""
    from torch.distributed.checkpoint import FileSystemReader

    class Reader(FileSystemReader):
        def read_metadata(self, *args: Any, **kwargs: Any) -> Any:
            return metadata

        def read_data(self, plan: Any, planner: Any) -> Any:
            for item in plan.items:
                fetch(self.storage_data[item.storage_index].relative_path)
            return super().read_data(plan, planner)

    return Reader(folder)


def _planner() -> Any:
    """DCP's default load planner, reading objects (not tensors) with weights_only=True."""
    import torch
    from torch.distributed.checkpoint import DefaultLoadPlanner

    class Planner(DefaultLoadPlanner):
        def load_bytes(self, read_item: Any, value: io.BytesIO) -> None:
            obj = torch.load(value, weights_only=True)
            super().load_bytes(read_item, io.BytesIO(_saved(obj)))

    return Planner()


def _saved(obj: Any) -> bytes:
    """``obj`` (already read safely) as bytes that DCP's planner reads back to the same."""
    import torch

    buffer = io.BytesIO()
    torch.save(obj, buffer)
    return buffer.getvalue()
