"""Checkpoint fixtures: moto's S3 server on 127.0.0.1, buckets, stores two ways, and a
runner for the real training program in ``train.py``.

One moto server and one boto3 client serve the whole session (a client costs 150-250 ms);
each test gets its own bucket. Fake credentials are set in the environment for the whole
session, so the training subprocesses find them the way a box would.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

#: A fake secret, distinctive enough to prove that no message ever shows it.
SECRET = "FAKEsecretKEY0123456789abcdefSECRET"
HERE = Path(__file__).parent


@pytest.fixture(scope="session")
def aws_env() -> Iterator[None]:
    """Fake credentials, no metadata-service lookups, no user config files."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("AWS_ACCESS_KEY_ID", "testing")
        patch.setenv("AWS_SECRET_ACCESS_KEY", SECRET)
        patch.setenv("AWS_DEFAULT_REGION", "us-east-1")
        patch.setenv("AWS_EC2_METADATA_DISABLED", "true")
        for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3"):
            patch.delenv(name, raising=False)
        yield


@pytest.fixture(scope="session")
def moto_url(aws_env: None) -> Iterator[str]:
    """moto's S3 server, over HTTP on 127.0.0.1 only."""
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # one line per request otherwise
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@pytest.fixture(scope="session")
def s3_client(moto_url: str) -> Any:
    import boto3
    from botocore.config import Config

    config = Config(retries={"max_attempts": 2, "mode": "standard"}, max_pool_connections=32)
    return boto3.client("s3", endpoint_url=moto_url, region_name="us-east-1", config=config)


@pytest.fixture
def bucket(s3_client: Any) -> str:
    """A fresh, empty bucket for this test."""
    name = f"ckpt-{uuid.uuid4().hex[:12]}"
    s3_client.create_bucket(Bucket=name)
    return name


@pytest.fixture(params=["local", "s3"])
def where(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[str, dict[str, Any]]:
    """``(url, store options)`` for a manager: a local folder, or a bucket on moto."""
    if request.param == "local":
        return str(tmp_path / "store"), {}
    bucket = request.getfixturevalue("bucket")
    return f"s3://{bucket}/runs/exp1", {"client": request.getfixturevalue("s3_client")}


_started: list[subprocess.Popen[str]] = []


def run_program(program: str, *args: Any) -> subprocess.Popen[str]:
    """Start ``train.py`` (torch) or ``plain.py`` (no torch, starts fast) with ``args``
    (see their docstrings); stdout is a pipe of lines. Killed after the test if alive."""
    process = subprocess.Popen(
        [sys.executable, str(HERE / program), *map(str, args)], stdout=subprocess.PIPE, text=True, env=dict(os.environ)
    )
    _started.append(process)
    return process


@pytest.fixture(autouse=True)
def _end_programs() -> Iterator[None]:
    yield
    while _started:
        process = _started.pop()
        if process.poll() is None:
            process.kill()
        process.wait()
        if process.stdout:
            process.stdout.close()


def wait_for_line(process: subprocess.Popen[str], prefix: str) -> str:
    """Read the program's output until a line starts with ``prefix``."""
    assert process.stdout is not None
    for line in process.stdout:
        if line.startswith(prefix):
            return line.strip()
    raise AssertionError(f"train.py ended (status {process.wait()}) before printing {prefix!r}")
