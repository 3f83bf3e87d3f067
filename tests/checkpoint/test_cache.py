"""The local cache: a restart on the same machine resumes without downloading, a damaged
cached file is fetched again, and the cache holds only the latest checkpoint."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch

from vastnb import CheckpointManager


@pytest.fixture
def data_downloads(s3_client: Any) -> Iterator[list[str]]:
    """The keys of checkpoint data objects fetched through ``s3_client`` (manifests aside),
    seen as S3 requests, at the boundary."""
    keys: list[str] = []

    def seen(params: dict[str, Any], **_: Any) -> None:
        if not params["Key"].endswith(".json"):
            keys.append(params["Key"])

    s3_client.meta.events.register("before-parameter-build.s3.GetObject", seen)
    yield keys
    s3_client.meta.events.unregister("before-parameter-build.s3.GetObject", seen)


def train_and_save(url: str, s3_client: Any, steps: range) -> torch.nn.Module:
    model = torch.nn.Linear(32, 32)
    with CheckpointManager(url, client=s3_client) as ckpt:
        for step in steps:
            with torch.no_grad():
                model.weight.add_(1.0)
            ckpt.save(step, model=model)
    return model


def cached(tmp_path: Path) -> list[Path]:
    """Checkpoint folders in the cache (HOME is tmp_path, see tests/conftest.py)."""
    return sorted((tmp_path / ".cache" / "vastnb" / "checkpoints").glob("*/ckpt-*"))


def test_a_restart_on_the_same_machine_resumes_without_downloading(
    tmp_path: Path, bucket: str, s3_client: Any, data_downloads: list[str]
) -> None:
    url = f"s3://{bucket}/runs/exp1"
    trained = train_and_save(url, s3_client, range(1, 4))
    assert [p.name[:17] for p in cached(tmp_path)] == ["ckpt-000000000003"]  # the latest only

    model = torch.nn.Linear(32, 32)
    with CheckpointManager(url, client=s3_client) as ckpt:
        state = ckpt.load_latest(model)
    assert state is not None and state.step == 3 and torch.equal(model.weight, trained.weight)
    assert data_downloads == []


def test_a_damaged_cached_file_is_downloaded_again(
    tmp_path: Path, bucket: str, s3_client: Any, data_downloads: list[str]
) -> None:
    url = f"s3://{bucket}/runs/exp1"
    trained = train_and_save(url, s3_client, range(1, 3))
    model_file = cached(tmp_path)[0] / "model.pt"
    data = bytearray(model_file.read_bytes())
    data[-50] ^= 0xFF
    model_file.write_bytes(bytes(data))

    model = torch.nn.Linear(32, 32)
    with CheckpointManager(url, client=s3_client) as ckpt:
        state = ckpt.load_latest(model)
    assert state is not None and state.step == 2 and torch.equal(model.weight, trained.weight)
    assert [key.rsplit("/", 1)[1] for key in data_downloads] == ["model.pt"]  # only what was damaged


def test_without_a_cache_nothing_stays_on_disk(
    tmp_path: Path, bucket: str, s3_client: Any, data_downloads: list[str]
) -> None:
    url = f"s3://{bucket}/runs/exp1"
    model = torch.nn.Linear(32, 32)
    with CheckpointManager(url, client=s3_client, cache=False) as ckpt:
        ckpt.save(1, model=model)
    with CheckpointManager(url, client=s3_client, cache=False) as ckpt:
        assert ckpt.load_latest(torch.nn.Linear(32, 32)) is not None
    assert cached(tmp_path) == [] and len(data_downloads) == 2  # model and state, downloaded


def test_resuming_a_long_run_reads_only_the_newest_manifest(bucket: str, s3_client: Any) -> None:
    url = f"s3://{bucket}/runs/long"
    with CheckpointManager(url, client=s3_client, keep_last=None) as ckpt:
        for step in range(1, 9):
            ckpt.save(step, extras={"step": step})
    manifests: list[str] = []

    def seen(params: dict[str, Any], **_: Any) -> None:
        if params["Key"].endswith(".json"):
            manifests.append(params["Key"])

    s3_client.meta.events.register("before-parameter-build.s3.GetObject", seen)
    try:
        with CheckpointManager(url, client=s3_client) as ckpt:
            state = ckpt.load_latest()
    finally:
        s3_client.meta.events.unregister("before-parameter-build.s3.GetObject", seen)
    assert state is not None and state.step == 8
    assert [key.rsplit("/", 1)[1][:17] for key in manifests] == ["ckpt-000000000008"]
