"""A checkpoint is used only when complete and intact: crashes mid-upload, corrupted and
missing objects all leave the previous complete checkpoint as the latest."""

from __future__ import annotations

import random
import signal
import time
from pathlib import Path
from typing import Any

import pytest
import torch

from vastnb import CheckpointManager, load_latest
from vastnb.errors import CheckpointCorruptError
from vastnb_worker.checkpoint import CheckpointWarning, list_checkpoints

from .conftest import run_program, wait_for_line


def save_steps(url: str, steps: list[int], **options: Any) -> torch.nn.Module:
    model = torch.nn.Linear(16, 16)
    with CheckpointManager(url, keep_last=None, **options) as ckpt:
        for step in steps:
            with torch.no_grad():
                model.weight.fill_(step)
            ckpt.save(step, model=model)
    return model


def loaded_step(url: str, **options: Any) -> int | None:
    model = torch.nn.Linear(16, 16)
    state = load_latest(url, model=model, **options)
    if state is None:
        return None
    assert torch.all(model.weight == state.step)  # the weights are those of that step
    return state.step


def test_a_corrupted_object_is_skipped_with_a_warning(where: tuple[str, dict[str, Any]], s3_client: Any) -> None:
    url, options = where
    save_steps(url, [1, 2], **options)
    latest = list_checkpoints(url, **options)[0]
    key = next(p.key for p in latest.parts if p.name == "model")
    if url.startswith("s3://"):  # someone overwrote the object in the bucket
        bucket, prefix = url[5:].split("/", 1)
        body = bytearray(s3_client.get_object(Bucket=bucket, Key=f"{prefix}/{key}")["Body"].read())
        body[-100] ^= 0xFF
        s3_client.put_object(Bucket=bucket, Key=f"{prefix}/{key}", Body=bytes(body))
    else:  # a disk error flipped a byte
        path = Path(url) / key
        data = bytearray(path.read_bytes())
        data[-100] ^= 0xFF
        path.write_bytes(bytes(data))

    with pytest.warns(CheckpointWarning, match=r"step 2 .*does not match its manifest"):
        assert loaded_step(url, **options) == 1
    # (Without the local cache, which holds an intact copy of step 2 and would be used.)
    with CheckpointManager(url, cache=False, **options) as ckpt, pytest.raises(CheckpointCorruptError):
        ckpt.load(2, model=torch.nn.Linear(16, 16))


def test_a_missing_object_is_skipped_with_a_warning(tmp_path: Path) -> None:
    url = str(tmp_path / "store")
    save_steps(url, [5, 10])
    latest = list_checkpoints(url)[0]
    (Path(url) / latest.parts[0].key).unlink()
    with pytest.warns(CheckpointWarning, match=r"step 10 .*missing"):
        assert loaded_step(url) == 5


def test_an_unreadable_manifest_is_skipped_with_a_warning(tmp_path: Path) -> None:
    url = str(tmp_path / "store")
    save_steps(url, [5, 10])
    latest = list_checkpoints(url)[0]
    (Path(url) / latest.manifest_key).write_text('{"format": "vastnb-checkpoint", "step": ')
    with pytest.warns(CheckpointWarning, match="unreadable checkpoint manifest"):
        assert loaded_step(url) == 5


# The store's writes for one checkpoint of plain.py: its state object, then the manifest.
WRITES_PER_CHECKPOINT = 2


@pytest.mark.parametrize("crash_at", [1, 2, 3])
def test_a_process_dying_at_any_write_leaves_the_previous_checkpoint(tmp_path: Path, crash_at: int) -> None:
    """The process dies (os._exit, no cleanup) right before the n-th write to the store
    after its first checkpoint: before the data object, before the manifest, and (3) once
    the second checkpoint is complete."""
    url = str(tmp_path / "store")
    process = run_program("plain.py", url, "--steps", 5, "--every", 1, "--crash-at", WRITES_PER_CHECKPOINT + crash_at)
    assert process.wait(timeout=60) == 137
    expected = 1 if crash_at <= WRITES_PER_CHECKPOINT else 2
    assert [c.step for c in list_checkpoints(url)] == list(range(expected, 0, -1))
    state = load_latest(url)
    assert state is not None and state.step == expected

    # The restarted run resumes there, and clears the data the crash left without a manifest.
    again = run_program("plain.py", url, "--steps", 5, "--every", 1)
    assert wait_for_line(again, "start") == f"start {expected + 1}"
    assert again.wait(timeout=60) == 0
    folders = sorted(p.name for p in Path(url).iterdir() if p.is_dir() and not p.name.startswith("."))
    assert folders == [c.id for c in reversed(list_checkpoints(url))] and len(folders) == 4


def test_sigkill_at_random_points_of_an_s3_upload(moto_url: str, bucket: str, s3_client: Any) -> None:
    """A real process uploading 24 MiB checkpoints to S3 (in 8 MiB parts) is killed with
    SIGKILL at random moments, and started again, three times. Whatever the moment, the
    next load_latest returns a complete checkpoint, the last that got its manifest, and
    the restarted program resumes from it."""
    url = f"s3://{bucket}/run"
    rng = random.Random(5)
    for _attempt in range(3):
        process = run_program(
            "plain.py", url, "--endpoint", moto_url, "--steps", 100, "--every", 1, "--big", 24, "--chunk", 8
        )
        start = int(wait_for_line(process, "start").split()[1])
        wait_for_line(process, "saved")
        time.sleep(rng.uniform(0.0, 0.5))  # somewhere in that upload, or the next one
        process.send_signal(signal.SIGKILL)
        assert process.wait(timeout=30) == -signal.SIGKILL
        steps = [c.step for c in list_checkpoints(url, endpoint_url=moto_url)]
        state = load_latest(url, endpoint_url=moto_url)
        assert (state.step if state else None) == (steps[0] if steps else None)
        assert state is None or state.step >= start - 1  # never older than what this run resumed from

    # A run to the end clears what the kills left: objects without a manifest, and the
    # parts of multipart uploads that were never completed (S3 bills those).
    latest = state.step if state else -1
    finish = run_program("plain.py", url, "--endpoint", moto_url, "--steps", latest + 3, "--every", 1, "--chunk", 8)
    assert finish.wait(timeout=60) == 0
    complete = {c.id for c in list_checkpoints(url, endpoint_url=moto_url)}
    keys = [o["Key"] for o in s3_client.list_objects_v2(Bucket=bucket)["Contents"]]
    assert {key.split("/")[1].removesuffix(".json") for key in keys} == complete
    assert s3_client.list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []
