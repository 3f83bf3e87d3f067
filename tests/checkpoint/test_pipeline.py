"""The background pipeline: bounded in-flight saves that wait and never drop, retries,
failures reported to the training loop, retention."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest

from vastnb import CheckpointManager
from vastnb.errors import CheckpointError, StorageError
from vastnb_worker.checkpoint import CheckpointWarning, LocalStore, list_checkpoints


class GatedStore(LocalStore):
    """A folder store whose uploads wait until the test opens the gate."""

    def __init__(self, root: str) -> None:
        super().__init__(root)
        self.gate = threading.Event()
        self.uploading = threading.Event()

    def put_file(self, key: str, path: str, *, move: bool = False) -> None:
        self.uploading.set()
        self.gate.wait(30)
        super().put_file(key, path, move=move)


class FlakyStore(LocalStore):
    """A folder store whose first ``failures`` uploads fail, like a network that drops."""

    def __init__(self, root: str, failures: int, *, retryable: bool = True) -> None:
        super().__init__(root)
        self.failures, self.retryable = failures, retryable

    def put_file(self, key: str, path: str, *, move: bool = False) -> None:
        if self.failures:
            self.failures -= 1
            raise StorageError(
                f"upload of {key} failed: connection reset", url=self.url, operation="upload", retryable=self.retryable
            )
        super().put_file(key, path, move=move)


def test_saves_beyond_max_in_flight_wait_and_none_is_dropped(tmp_path: Path) -> None:
    store = GatedStore(str(tmp_path / "store"))
    ckpt = CheckpointManager(store, max_in_flight=2, keep_last=None)
    first = ckpt.save(1, extras={"n": 1})
    assert store.uploading.wait(30)  # checkpoint 1 is uploading, and stuck there
    second = ckpt.save(2, extras={"n": 2})  # queued: the second slot
    third_returned = threading.Event()
    third = threading.Thread(target=lambda: (ckpt.save(3, extras={"n": 3}), third_returned.set()))
    third.start()
    third.join(0.3)
    assert not third_returned.is_set()  # no free slot: save(3) waits for one
    assert first is not None and second is not None and not first.done() and not second.done()
    store.gate.set()
    third.join(30)
    assert third_returned.is_set()
    ckpt.close()
    assert [c.step for c in list_checkpoints(str(tmp_path / "store"))] == [3, 2, 1]
    assert first.result().step == 1 and second.result().step == 2


def test_saves_from_several_threads_all_land(tmp_path: Path) -> None:
    url = str(tmp_path / "store")
    with CheckpointManager(url, max_in_flight=1, keep_last=None) as ckpt:
        threads = [threading.Thread(target=ckpt.save, args=(n,), kwargs={"extras": {"n": n}}) for n in range(1, 9)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)
    stored = list_checkpoints(url)
    assert sorted(c.step for c in stored) == list(range(1, 9))


def test_a_dropped_upload_is_retried(tmp_path: Path) -> None:
    store = FlakyStore(str(tmp_path / "store"), failures=1)
    with CheckpointManager(store) as ckpt:
        info = ckpt.save(1, extras={"n": 1})
        assert info is not None and info.result(timeout=30).step == 1
    assert [c.step for c in list_checkpoints(str(tmp_path / "store"))] == [1]


def test_a_checkpoint_that_finally_fails_is_reported_to_the_training_loop(tmp_path: Path) -> None:
    store = FlakyStore(str(tmp_path / "store"), failures=100, retryable=False)
    ckpt = CheckpointManager(store)
    with pytest.warns(CheckpointWarning, match="step 1 was not saved"):  # at once, from the background
        future = ckpt.save(1, extras={"n": 1})
        assert future is not None
        with pytest.raises(CheckpointError, match="connection reset"):
            future.result(timeout=30)
    # ...and raised by the loop's next call, so a run never goes on without checkpoints unaware.
    with pytest.raises(CheckpointError, match=r"checkpoint of step 1 was not saved: .*connection reset") as raised:
        ckpt.save(2, extras={"n": 2})
    assert raised.value.step == 1
    store.failures = 0
    ckpt.save(3, extras={"n": 3})
    ckpt.close()  # the failure was reported once; later checkpoints still work
    assert [c.step for c in list_checkpoints(str(tmp_path / "store"))] == [3]
    assert not any((tmp_path / "store" / ".staging").glob("*"))  # nothing left behind


@pytest.mark.parametrize("backend", ["local", "s3"])
def test_retention_keeps_the_last_n_and_every_kth(tmp_path: Path, backend: str, request: pytest.FixtureRequest) -> None:
    if backend == "local":
        url, options = str(tmp_path / "store"), {}
    else:
        url = f"s3://{request.getfixturevalue('bucket')}/runs/r"
        options = {"client": request.getfixturevalue("s3_client")}
    with CheckpointManager(url, keep_last=2, keep_every=4, **options) as ckpt:
        for step in range(1, 11):
            ckpt.save(step, extras={"step": step})
    assert [c.step for c in list_checkpoints(url, **options)] == [10, 9, 8, 4]
    if backend == "local":  # the data of deleted checkpoints is gone too
        folders = sorted(p.name[:17] for p in (tmp_path / "store").iterdir() if p.is_dir() and p.name != ".staging")
        assert folders == ["ckpt-000000000004", "ckpt-000000000008", "ckpt-000000000009", "ckpt-000000000010"]
    else:
        client: Any = options["client"]
        bucket = url[5:].split("/")[0]
        keys = [o["Key"] for o in client.list_objects_v2(Bucket=bucket)["Contents"]]
        assert sorted({k.split("/")[2][:17] for k in keys}) == [f"ckpt-{s:012d}" for s in (4, 8, 9, 10)]
