"""A real training program without torch, for the crash, kill and SIGTERM tests: a
subprocess that starts in a fraction of a second (importing torch takes seconds here).

Its "model" is a list of floats nudged by Python's RNG at every step; with ``--big`` each
checkpoint also carries that many MiB of random bytes, so uploads take a while. It prints
``start <step>``, ``saved <step>`` after each save() that stored a checkpoint, and
``done``.

    python plain.py URL --steps 20 [--every 5] [--endpoint URL] [--crash-at N] ...
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import time

from vastnb_worker.checkpoint import CheckpointManager, Store, open_store


class CrashingStore(Store):
    """Another store, until its ``crash_at``-th write: there the process dies at once
    (``os._exit``), as if killed, before that write happens."""

    def __init__(self, inner: Store, crash_at: int) -> None:
        self.inner, self.crash_at, self.writes = inner, crash_at, 0
        self.url = inner.url

    def _write(self) -> None:
        self.writes += 1
        if self.writes == self.crash_at:
            os._exit(137)

    def put_file(self, key: str, path: str, *, move: bool = False) -> None:
        self._write()
        self.inner.put_file(key, path)

    def put_bytes(self, key: str, data: bytes) -> None:
        self._write()
        self.inner.put_bytes(key, data)

    def get_bytes(self, key: str) -> bytes:
        return self.inner.get_bytes(key)

    def get_file(self, key: str, path: str) -> None:
        self.inner.get_file(key, path)

    def list(self, folder: str = "") -> list[str]:
        return self.inner.list(folder)

    def folders(self, folder: str = "") -> list[str]:
        return self.inner.folders(folder)

    def delete_folder(self, folder: str) -> None:
        self.inner.delete_folder(folder)

    def delete(self, key: str) -> None:
        self.inner.delete(key)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("url")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--every", type=int, default=None, help="every_steps (default: every step)")
    parser.add_argument("--endpoint", default=None, help="S3 endpoint_url")
    parser.add_argument("--big", type=int, default=0, help="MiB of random bytes in every checkpoint")
    parser.add_argument("--chunk", type=int, default=None, help="S3 multipart part size, MiB")
    parser.add_argument("--hang-at", type=int, default=None, help="after this step, hang (never reach save again)")
    parser.add_argument("--grace", type=float, default=30.0)
    parser.add_argument("--crash-at", type=int, default=None, help="die before the store's n-th write")
    args = parser.parse_args()

    random.seed(0)
    options: dict = {"endpoint_url": args.endpoint} if args.endpoint else {}
    if args.chunk:
        from vastnb_worker.checkpoint.s3 import transfer_config

        options["config"] = transfer_config(chunk=args.chunk << 20)
    store: Store = open_store(args.url, **options)
    if args.crash_at:
        store = CrashingStore(store, args.crash_at)
    ckpt = CheckpointManager(store, every_steps=args.every, keep_last=None, grace_seconds=args.grace)
    state = ckpt.load_latest()
    weights = state.extras["weights"] if state else [0.0] * 8
    start = state.step + 1 if state else 0
    print(f"start {start}", flush=True)
    for step in range(start, args.steps):
        weights = [w + random.gauss(0, 1) for w in weights]
        extras = {"weights": weights, "big": os.urandom(args.big << 20) if args.big else b""}
        if ckpt.save(step, extras=extras, metrics={"norm": sum(w * w for w in weights)}):
            print(f"saved {step}", flush=True)
        if step == args.hang_at:
            print("hanging", flush=True)
            while True:  # a step that never ends: only the grace period ends the process
                time.sleep(1)
    ckpt.close()
    print("done", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
