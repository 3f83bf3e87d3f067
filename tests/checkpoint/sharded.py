"""A sharded training program, started under torch's own launcher by the sharded tests.

``python -m torch.distributed.run --standalone --nproc-per-node N sharded.py URL ENDPOINT STEPS EVERY OUT``:
a small MLP sharded over the ranks with FSDP (``fully_shard``, gloo on the CPU), each rank
on its share of one fixed batch, checkpointed every EVERY steps to URL (an S3 bucket on
ENDPOINT, or a folder when ENDPOINT is ``-``), resumed from the latest checkpoint. Prints
``start <step>``; rank 0 saves the whole final weights to OUT (``torch.save``).
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "worker"))

import torch
from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict
from torch.distributed.fsdp import fully_shard

from vastnb_worker import distributed as dist
from vastnb_worker.checkpoint import CheckpointManager


def setup() -> tuple[torch.nn.Module, torch.Tensor, torch.Tensor]:
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(4, 16), torch.nn.Tanh(), torch.nn.Linear(16, 1))
    data = torch.randn(32, 4)
    return model, data, data.sum(dim=1, keepdim=True).sin()


def reference(steps: int) -> dict[str, torch.Tensor]:
    """The weights after ``steps`` steps in one process over the whole batch."""
    model, data, target = setup()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    for _ in range(steps):
        optimizer.zero_grad()
        torch.nn.functional.mse_loss(model(data), target).backward()
        optimizer.step()
    return {k: v.clone() for k, v in model.state_dict().items()}


def main(url: str, endpoint: str, steps: int, every: int, out: str) -> None:
    dist.setup()
    model, data, target = setup()
    fully_shard(model)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    share = slice(dist.rank() * 32 // dist.world_size(), (dist.rank() + 1) * 32 // dist.world_size())
    options = {} if endpoint == "-" else {"endpoint_url": endpoint}
    with CheckpointManager(url, every_steps=every, **options) as ckpt:
        state = ckpt.load_latest(model=model, optimizer=optimizer)
        start = state.step + 1 if state else 0
        print(f"start {start}", flush=True)
        for step in range(start, steps):
            optimizer.zero_grad()
            torch.nn.functional.mse_loss(model(data[share]), target[share]).backward()
            optimizer.step()
            ckpt.save(step, model=model, optimizer=optimizer)
    whole = get_model_state_dict(model, options=StateDictOptions(full_state_dict=True, cpu_offload=True))
    if dist.is_main():
        torch.save(whole, out)
    # Left to the interpreter's exit, gloo's threads can abort a rank ("terminate called
    # without an active exception"), and the launcher fails the run.
    torch.distributed.destroy_process_group()


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), sys.argv[5])
