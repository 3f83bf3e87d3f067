"""Training code the job tests submit: deterministic, checkpointed, plain Python.

Sent by value (the box has vastnb_worker, not the tests). ``train`` is a tiny model whose
state after N steps is the same bit for bit however often it was interrupted and resumed
from a checkpoint, so a recovered job's result can be compared with an uninterrupted run.
"""

from __future__ import annotations

import sys
import time
from typing import Any

import cloudpickle

cloudpickle.register_pickle_by_value(sys.modules[__name__])


def step_state(w: list[float], step: int) -> tuple[list[float], float]:
    """One step of the "model": a fixed, chaotic-enough update, and its loss."""
    w = [(x * 1.000001 + ((step * 2654435761 + i * 40503) % 1000) / 1e6) % 10.0 for i, x in enumerate(w)]
    return w, sum(x * x for x in w) / len(w)


def reference(steps: int, size: int = 8) -> list[float]:
    """The state after ``steps`` uninterrupted steps."""
    w = [0.5] * size
    for step in range(steps):
        w, _ = step_state(w, step)
    return w


def train(steps: int, every: int, delay: float = 0.0, size: int = 8) -> dict[str, Any]:
    """Train for ``steps``, checkpointing every ``every`` steps to the job's location,
    resuming from its latest checkpoint; the final state and where this attempt began."""
    from vastnb_worker.checkpoint import CheckpointManager
    from vastnb_worker.job import context

    ckpt = CheckpointManager(every_steps=every, grace_seconds=2.0)
    state = ckpt.load_latest()
    w = list(state.extras["w"]) if state else [0.5] * size
    start = state.step + 1 if state else 0
    job = context()
    print(f"attempt {job.attempt if job else '-'} starts at step {start}", flush=True)
    for step in range(start, steps):
        w, loss = step_state(w, step)
        print(f"step {step} loss {loss:.6f}", flush=True)
        ckpt.save(step, extras={"w": w}, metrics={"loss": loss})
        if delay:
            time.sleep(delay)
    ckpt.close()
    return {"w": w, "start": start, "attempt": job.attempt if job else None}


def fail(message: str) -> None:
    raise ValueError(message)


def sleep_then(seconds: float, value: Any) -> Any:
    time.sleep(seconds)
    return value


def train_torch(steps: int, every: int, delay: float = 0.0) -> dict[str, Any]:
    """A small torch model (a 2-layer MLP, SGD with momentum, a fixed synthetic batch):
    resumed from the job's checkpoints (weights, optimizer, RNG), it ends bit-identical to
    an uninterrupted run."""
    import torch

    from vastnb_worker.checkpoint import CheckpointManager

    model, optimizer, data, target = torch_setup()
    ckpt = CheckpointManager(every_steps=every, grace_seconds=2.0)
    state = ckpt.load_latest(model=model, optimizer=optimizer)
    start = state.step + 1 if state else 0
    for step in range(start, steps):
        optimizer.zero_grad()
        noise = torch.randn(data.shape) * 0.01  # the RNG state is part of the checkpoint
        loss = torch.nn.functional.mse_loss(model(data + noise), target)
        loss.backward()
        optimizer.step()
        print(f"step {step} loss {loss.item():.6f}", flush=True)
        ckpt.save(step, model=model, optimizer=optimizer, metrics={"loss": loss.item()})
        if delay:
            time.sleep(delay)
    ckpt.close()
    return {"w": {k: v.clone() for k, v in model.state_dict().items()}, "start": start}


def torch_setup() -> tuple[Any, Any, Any, Any]:
    import torch

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(4, 16), torch.nn.Tanh(), torch.nn.Linear(16, 1))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    data = torch.randn(32, 4)
    target = data.sum(dim=1, keepdim=True).sin()
    return model, optimizer, data, target


def torch_reference(steps: int) -> dict[str, Any]:
    """The torch model's weights after ``steps`` uninterrupted steps (run here)."""
    import torch

    model, optimizer, data, target = torch_setup()
    for _ in range(steps):
        optimizer.zero_grad()
        noise = torch.randn(data.shape) * 0.01
        torch.nn.functional.mse_loss(model(data + noise), target).backward()
        optimizer.step()
    return {k: v.clone() for k, v in model.state_dict().items()}


def train_fsdp(steps: int, every: int, delay: float = 0.0) -> dict[str, Any]:
    """The torch model sharded over the job's ranks with FSDP (``fully_shard``, gloo), each
    rank on its half of the batch; its sharded checkpoints go through DCP. Rank 0 returns
    the whole weights (gathered) and where this attempt began."""
    import torch
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict
    from torch.distributed.fsdp import fully_shard

    from vastnb_worker import distributed as dist
    from vastnb_worker.checkpoint import CheckpointManager

    dist.setup()
    model, _, data, target = torch_setup()
    fully_shard(model)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    part = slice(dist.rank() * 32 // dist.world_size(), (dist.rank() + 1) * 32 // dist.world_size())
    ckpt = CheckpointManager(every_steps=every, grace_seconds=5.0)
    state = ckpt.load_latest(model=model, optimizer=optimizer)
    start = state.step + 1 if state else 0
    print(f"starts at step {start}", flush=True)
    for step in range(start, steps):
        optimizer.zero_grad()
        loss = torch.nn.functional.mse_loss(model(data[part]), target[part])
        loss.backward()
        optimizer.step()
        print(f"step {step} loss {loss.item():.6f}", flush=True)
        ckpt.save(step, model=model, optimizer=optimizer, metrics={"loss": loss.item()})
        if delay:
            time.sleep(delay)
    ckpt.close()
    whole = get_model_state_dict(model, options=StateDictOptions(full_state_dict=True, cpu_offload=True))
    return {"w": {k: v.clone() for k, v in whole.items()}, "start": start}


def fsdp_reference(steps: int) -> dict[str, Any]:
    """What :func:`train_fsdp` ends with, from one process over the whole batch (run here)."""
    import torch

    model, optimizer, data, target = torch_setup()
    for _ in range(steps):
        optimizer.zero_grad()
        torch.nn.functional.mse_loss(model(data), target).backward()
        optimizer.step()
    return {k: v.clone() for k, v in model.state_dict().items()}
