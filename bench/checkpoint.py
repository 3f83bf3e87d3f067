"""Checkpoint speed: how long training stalls per checkpoint, and upload throughput.

Run: ``python bench/checkpoint.py [--size 1.0] [--device cpu|cuda]`` (needs the test extra:
torch, moto[s3], flask, flask-cors). A model of ``--size`` GiB of float32 parameters with
Adam (whose two moments make a checkpoint three times the parameters) is checkpointed to
moto's S3 server, run in a subprocess on 127.0.0.1 so that it does not share this
process's GIL, like a real remote store. Every figure is a ratio to a baseline measured in
the same run, on the same endpoint:

- stall per checkpoint: the time ``CheckpointManager.save()`` blocks the training loop,
  against the seed pattern (``torch.save`` to a file in /tmp, then a synchronous boto3
  ``upload_file`` with its default settings). Target: at most 10%.
- upload throughput: checkpoint bytes over the time from ``save()`` returning to the
  manifest being written (write, hash, upload: everything), against the best plain boto3
  ``upload_file`` of a file of the same size found by trying TransferConfig settings.
  Target: at least 80%.
- with ``--contention``: training speed while a checkpoint uploads, against the same steps
  with nothing in flight (on two cores, the uploads, hashing and the moto server take CPU
  from training, and training from them).

At ``--size 1`` a run takes about four minutes here (moto takes 60-90 MiB/s).
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Any

import torch

from vastnb import CheckpointManager
from vastnb_worker.checkpoint.s3 import transfer_config

GIB = 2**30
MIB = 2**20
MOTO = """
import logging, sys
from moto.server import ThreadedMotoServer
logging.getLogger("werkzeug").setLevel(logging.WARNING)
server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
server.start()
print(server.get_host_and_port()[1], flush=True)
sys.stdin.read()
"""
# (label, part size MiB, threads) tried for the boto3 baseline; the default is 8 MiB x 10.
CONFIGS = [
    ("default", 8, 10),
    ("16 MiB x 10", 16, 10),
    ("32 MiB x 8", 32, 8),
    ("64 MiB x 8", 64, 8),
    ("64 MiB x 4", 64, 4),
    ("128 MiB x 4", 128, 4),
]


def row(label: str, value: float, unit: str, baseline: float | None = None, base_label: str = "") -> None:
    ratio = f"{value / baseline:7.3f}x {base_label}" if baseline else ""
    print(f"  {label:<62} {value:9.2f} {unit:<6} {ratio}")


def build(size_gib: float, device: str) -> tuple[torch.nn.Module, torch.optim.Optimizer]:
    """Square bias-free layers holding ``size_gib`` GiB, with Adam's state filled by a step."""
    width = 8192 if size_gib >= 0.5 else 2048
    layers = max(1, round(size_gib * GIB / (width * width * 4)))
    model = torch.nn.Sequential(*[torch.nn.Linear(width, width, bias=False) for _ in range(layers)]).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-4)
    model(torch.randn(4, width, device=device)).sum().backward()
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return model, optimizer


def compute_step(x: torch.Tensor, w: torch.Tensor) -> float:
    """A stand-in training step (a few matmuls) whose time shows CPU contention."""
    start = time.perf_counter()
    for _ in range(4):
        x = torch.tanh(x @ w)
    if x.is_cuda:
        torch.cuda.synchronize()
    return time.perf_counter() - start


def seed_pattern(
    model: torch.nn.Module, optimizer: torch.optim.Optimizer, client: Any, bucket: str, folder: str, step: int
) -> tuple[float, int]:
    """The pattern to beat: torch.save to a fixed file, then a synchronous upload_file."""
    path = os.path.join(folder, "ckpt.pt")
    start = time.perf_counter()
    torch.save({"step": step, "model": model.state_dict(), "optimizer": optimizer.state_dict()}, path)
    client.upload_file(path, bucket, "seed/ckpt.pt")
    return time.perf_counter() - start, os.path.getsize(path)


def upload_seconds(client: Any, bucket: str, path: str, chunk_mib: int, threads: int) -> float:
    start = time.perf_counter()
    client.upload_file(path, bucket, "baseline/blob", Config=transfer_config(chunk_mib * MIB, threads))
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size", type=float, default=1.0, help="GiB of float32 parameters (default 1)")
    parser.add_argument("--device", default="cpu", help="where the model lives: cpu or cuda")
    parser.add_argument("--checkpoints", type=int, default=2, help="checkpoints saved by the manager")
    parser.add_argument(
        "--contention",
        action="store_true",
        help="one more checkpoint, saved while training steps run (on 2 cores: minutes more)",
    )
    parser.add_argument("--seed-checkpoints", type=int, default=1, help="checkpoints saved the seed way")
    args = parser.parse_args()

    import boto3
    from botocore.config import Config

    os.environ.setdefault("AWS_ACCESS_KEY_ID", "bench")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "bench")
    moto = subprocess.Popen([sys.executable, "-c", MOTO], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert moto.stdout is not None
    endpoint = f"http://127.0.0.1:{moto.stdout.readline().strip()}"
    scratch = tempfile.mkdtemp(prefix="vnb-ckpt-bench-", dir="/tmp")
    try:
        client = boto3.client(
            "s3", endpoint_url=endpoint, region_name="us-east-1", config=Config(max_pool_connections=64)
        )
        bucket = "bench"
        client.create_bucket(Bucket=bucket)
        model, optimizer = build(args.size, args.device)
        params = sum(p.numel() * p.element_size() for p in model.parameters())
        print(
            f"vastnb checkpoint bench, Python {sys.version.split()[0]}, torch {torch.__version__}, "
            f"{os.cpu_count()} CPUs, model on {args.device}: {params / GIB:.2f} GiB of parameters + Adam, "
            f"moto S3 at {endpoint}"
        )

        # The seed pattern.
        seed = [seed_pattern(model, optimizer, client, bucket, scratch, step) for step in range(args.seed_checkpoints)]
        seed_stall = statistics.median(s for s, _ in seed)
        size = seed[-1][1]

        # The best plain upload_file of a file of the same size: settings tried on 256 MiB
        # (a copy of the seed's file), the best one then timed on the whole file.
        probe = os.path.join(scratch, "probe")
        with open(os.path.join(scratch, "ckpt.pt"), "rb") as source, open(probe, "wb") as target:
            target.write(source.read(min(size, 256 * MIB)))
        probe_size = os.path.getsize(probe)
        tried = [
            (probe_size / upload_seconds(client, bucket, probe, chunk, threads) / MIB, label, chunk, threads)
            for label, chunk, threads in CONFIGS
        ]
        _, best_label, chunk, threads = max(tried)
        best = size / upload_seconds(client, bucket, os.path.join(scratch, "ckpt.pt"), chunk, threads) / MIB
        os.remove(probe)

        # The manager: stall of save(), then background throughput with the loop idle;
        # the last checkpoint is saved while training steps run, to see the contention.
        width = 2048
        x, w = torch.randn(256, width, device=args.device), torch.randn(width, width, device=args.device) / 50
        idle_step = statistics.median(compute_step(x, w) for _ in range(20))
        ckpt = CheckpointManager(
            f"s3://{bucket}/ours",
            client=client,
            keep_last=2,
            handle_sigterm=False,
            cache=os.path.join(scratch, "cache"),
        )
        stalls, rates, busy_steps = [], [], []
        for n in range(args.checkpoints + args.contention):
            start = time.perf_counter()
            future = ckpt.save(n, model=model, optimizer=optimizer, force=True)
            returned = time.perf_counter()
            assert future is not None
            finished: list[float] = []
            future.add_done_callback(lambda _, finished=finished: finished.append(time.perf_counter()))
            training = n == args.checkpoints
            while not finished:  # the callback's time, not future.done(): that turns true before it runs
                if training:
                    busy_steps.append(compute_step(x, w))
                else:
                    time.sleep(0.005)
            info = future.result()
            stalls.append(returned - start)
            rates.append((info.size / (finished[0] - returned) / MIB, training))
        ckpt.close()
        ours_size = info.size

        print(f"\ncheckpoint: {ours_size / GIB:.2f} GiB (seed file {size / GIB:.2f} GiB)")
        print("stall of the training loop per checkpoint")
        row("seed: torch.save to /tmp + upload_file, median", seed_stall, "s")
        row("save(), first (host buffers allocated)", stalls[0], "s", seed_stall, "seed")
        warm = stalls[1:] or stalls
        row("save(), later (buffers reused), median", statistics.median(warm), "s", seed_stall, "seed")
        print("upload throughput (on the same moto endpoint)")
        for n, (rate, training) in enumerate(rates):
            label = f"checkpoint {n}: save() return -> manifest written" + (", training" if training else "")
            row(label, rate, "MiB/s", best, "best boto3")
        for rate, label, _chunk_mib, _n_threads in tried:
            row(f"boto3 upload_file {probe_size / MIB:.0f} MiB, {label}", rate, "MiB/s")
        row(f"best boto3 upload_file ({best_label}), {size / GIB:.2f} GiB", best, "MiB/s")
        if busy_steps:
            print("training speed while a checkpoint uploads")
            row(
                "compute step, median, while uploading",
                statistics.median(busy_steps) * 1000,
                "ms",
                idle_step * 1000,
                "idle",
            )
            row("compute step, median, nothing in flight", idle_step * 1000, "ms")
    finally:
        moto.terminate()
        moto.wait()
        shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
