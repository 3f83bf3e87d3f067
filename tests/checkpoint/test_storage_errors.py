"""What a user sees when S3 says no: a missing bucket (moto), missing credentials (boto3's
own chain, emptied), refused permission or a key the endpoint does not know (a loopback
endpoint that answers 403 as S3 does: moto does not check credentials by default). Each
error names the bucket, the operation and the fix, and never the secret."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from vastnb import CheckpointManager, load_latest
from vastnb.errors import CheckpointError, StorageError
from vastnb_worker.checkpoint import CheckpointWarning, open_store

from .conftest import SECRET


@pytest.fixture
def refusing_endpoint(request: pytest.FixtureRequest) -> Iterator[str]:
    """An HTTP endpoint on 127.0.0.1 that answers every request with 403 and the S3 error
    code given by the test's parameter."""
    code = request.param

    class Refuse(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # answers botocore's "Expect: 100-continue" on uploads

        def answer(self) -> None:
            self.rfile.read(int(self.headers.get("Content-Length") or 0))
            body = (
                f'<?xml version="1.0" encoding="UTF-8"?><Error><Code>{code}</Code><Message>refused</Message>'
                "<RequestId>1</RequestId></Error>"
            ).encode()
            self.send_response(403)
            self.send_header("Content-Type", "application/xml")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)

        do_GET = do_PUT = do_POST = do_HEAD = do_DELETE = answer

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Refuse)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def check_message(error: BaseException, *words: str) -> None:
    text = str(error)
    for word in words:
        assert word in text, f"{word!r} not in: {text}"
    assert SECRET not in text and "testing" not in text


def test_missing_bucket_on_load(s3_client: Any) -> None:
    with pytest.raises(StorageError) as raised:
        load_latest("s3://no-such-bucket/runs/x", client=s3_client)
    check_message(raised.value, "bucket 'no-such-bucket' does not exist", "list", "aws s3 mb s3://no-such-bucket")
    assert raised.value.bucket == "no-such-bucket" and raised.value.operation == "list" and not raised.value.retryable


def test_missing_bucket_on_save_is_reported_once_and_not_retried(s3_client: Any) -> None:
    ckpt = CheckpointManager("s3://no-such-bucket/runs/x", client=s3_client)
    with pytest.warns(CheckpointWarning, match="step 1 was not saved"):
        ckpt.save(1, extras={"loss": 0.5})
        with pytest.raises(CheckpointError) as raised:
            ckpt.close()
    check_message(raised.value, "step 1", "upload of s3://no-such-bucket/runs/x/ckpt-", "does not exist", "Create it")
    assert isinstance(raised.value.__cause__, StorageError)


def test_no_credentials(monkeypatch: pytest.MonkeyPatch, moto_url: str, bucket: str, tmp_path: Path) -> None:
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    with pytest.raises(StorageError) as raised:
        load_latest(f"s3://{bucket}/runs/x", endpoint_url=moto_url)
    check_message(raised.value, f"s3://{bucket}/runs/x", "no S3 credentials", "AWS_ACCESS_KEY_ID")
    assert raised.value.operation == "list" and not raised.value.retryable


@pytest.mark.parametrize(
    "refusing_endpoint, words",
    [
        ("AccessDenied", ["access denied", "s3:ListBucket", "bucket 'locked'"]),
        ("InvalidAccessKeyId", ["does not accept the credentials", "InvalidAccessKeyId"]),
    ],
    indirect=["refusing_endpoint"],
)
def test_refused_on_load(refusing_endpoint: str, words: list[str]) -> None:
    with pytest.raises(StorageError) as raised:
        load_latest("s3://locked/runs/x", endpoint_url=refusing_endpoint)
    check_message(raised.value, "list of s3://locked/runs/x", refusing_endpoint, *words)
    assert not raised.value.retryable


@pytest.mark.parametrize("refusing_endpoint", ["AccessDenied"], indirect=True)
def test_access_denied_on_upload(refusing_endpoint: str) -> None:
    store = open_store("s3://locked/runs/x", endpoint_url=refusing_endpoint)
    with pytest.raises(StorageError) as raised:
        store.put_bytes("probe.json", b"{}")
    check_message(raised.value, "upload of s3://locked/runs/x/probe.json", "access denied", "s3:PutObject")
    ckpt = CheckpointManager(store)
    with pytest.warns(CheckpointWarning), pytest.raises(CheckpointError, match=r"access denied.*s3:PutObject"):
        ckpt.save(3, extras={"n": 3})
        ckpt.close()


def test_urls_that_name_no_store() -> None:
    with pytest.raises(ValueError, match="unknown store 'ftp://host/x'"):
        open_store("ftp://host/x")
    with pytest.raises(ValueError, match="no bucket"):
        open_store("s3:///runs")
    with pytest.raises(TypeError, match="endpoint_url"):
        open_store("/tmp/folder", endpoint_url="http://x")
