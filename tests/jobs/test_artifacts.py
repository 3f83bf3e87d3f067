"""A job's files: payloads and results round trip, damaged ones are refused, output is bounded."""

from __future__ import annotations

from pathlib import Path

import pytest

from vastnb.errors import ConfigError
from vastnb.jobs import artifacts
from vastnb.jobs.artifacts import JobFiles, pack, unpack


def test_a_pickle_and_its_buffers_round_trip() -> None:
    body, buffers = unpack(pack(b"body", [b"one", bytearray(b"two"), memoryview(b"")]))
    assert body == b"body" and [bytes(b) for b in buffers] == [b"one", b"two", b""]


@pytest.mark.parametrize(
    "blob", [b"", b"\x00\x00", pack(b"x", [b"y"])[:-1], pack(b"x", [b"y"]) + b"z", b"\x00\x00\x00\x00"]
)
def test_a_damaged_blob_is_refused(blob: bytes) -> None:
    with pytest.raises(ConfigError, match="damaged"):
        unpack(blob)


def test_output_is_kept_per_attempt_in_order_and_bounded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(artifacts, "MAX_LOG_BYTES", 100)
    files = JobFiles(tmp_path, 7)
    files.start_log(2, "=== attempt 2 ===\n")
    files.start_log(1, "=== attempt 1 ===\n")
    files.append(1, "hello\n")
    files.append(2, "x" * 500)
    files.append(2, "more\n")
    logs = files.logs()
    assert logs.startswith("=== attempt 1 ===\nhello\n=== attempt 2 ===\n")
    assert logs.count("x") <= 100 and "output cut at" in logs and "more" not in logs
    assert (files.folder.stat().st_mode & 0o777) == 0o700
