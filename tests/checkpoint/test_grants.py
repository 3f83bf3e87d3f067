"""Short-lived, prefix-scoped storage credentials, against moto's STS (served at the same
endpoint as its S3), a fake endpoint without STS, and a local worker."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import botocore.client
import pytest

from vastnb.errors import ConfigError, VastError
from vastnb.offload import LocalTransport, Session
from vastnb.storage.grants import OBJECT_ACTIONS, Grant, grant, keep_granted
from vastnb_worker.grants import installed

from .conftest import SECRET

CELL = """
from vastnb_worker.checkpoint import CheckpointManager
with CheckpointManager(URL, keep_last=None) as ckpt:
    for step in range(1, 3):
        ckpt.save(step, extras={"seen": step}, metrics={"loss": 1 / step})
"""


class NoSTS(BaseHTTPRequestHandler):
    """An S3-compatible endpoint (MinIO, R2) that has no STS: every POST is refused."""

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        body = b"<Error><Code>NotImplemented</Code><Message>not implemented</Message></Error>"
        self.send_response(501)
        self.send_header("Content-Type", "application/xml")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def no_sts(aws_env: None) -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), NoSTS)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@pytest.fixture
def sent(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, dict[str, Any]]]:
    """Every API call boto3 makes in this test, as ``(operation, parameters)``."""
    calls: list[tuple[str, dict[str, Any]]] = []
    original = botocore.client.BaseClient._make_api_call

    def record(self: Any, operation: str, params: dict[str, Any]) -> Any:
        calls.append((operation, dict(params)))
        return original(self, operation, params)

    monkeypatch.setattr(botocore.client.BaseClient, "_make_api_call", record)
    return calls


@pytest.fixture
def box(tmp_path: Path, aws_env: None, monkeypatch: pytest.MonkeyPatch) -> Iterator[Session]:
    """A local worker started with no AWS credentials at all, as a fresh box has."""
    session = Session(LocalTransport(tmp_path / "box"), on_output=lambda stream, text: None)
    with monkeypatch.context() as bare:
        for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
            bare.delenv(name)
        session.connect()  # the daemon starts now, with this environment
    try:
        yield session
    finally:
        session.restart_worker()
        session.close()


def secrets_of(credentials: Grant) -> list[str]:
    values = [credentials.secret_access_key.reveal(), SECRET]
    return values + ([credentials.session_token.reveal()] if credentials.session_token else [])


def test_the_policy_allows_only_the_prefix(moto_url: str, bucket: str, sent: list[tuple[str, dict[str, Any]]]) -> None:
    credentials = grant(f"s3://{bucket}/runs/exp1/", endpoint_url=moto_url)
    [params] = [call[1] for call in sent if call[0] == "GetFederationToken"]
    assert json.loads(params["Policy"]) == credentials.policy and params["DurationSeconds"] == 3600
    statements = credentials.policy["Statement"]  # type: ignore[index]
    assert all(s["Effect"] == "Allow" for s in statements)
    resources = {resource: s["Action"] for s in statements for resource in s["Resource"]}
    assert resources == {
        f"arn:aws:s3:::{bucket}/runs/exp1/*": list(OBJECT_ACTIONS),
        f"arn:aws:s3:::{bucket}": ["s3:ListBucket"],
    }
    assert sorted(OBJECT_ACTIONS) == sorted(
        ["s3:GetObject", "s3:PutObject", "s3:DeleteObject", "s3:AbortMultipartUpload", "s3:ListMultipartUploadParts"]
    )
    [listing] = [s for s in statements if s["Action"] == ["s3:ListBucket"]]
    assert listing["Condition"] == {"StringLike": {"s3:prefix": ["runs/exp1/*", "runs/exp1"]}}
    text = json.dumps(credentials.policy)
    assert "runs/exp2" not in text and '*"' not in text.replace('/*"', "") and text.count(bucket) == 2
    assert credentials.url == f"s3://{bucket}/runs/exp1" and credentials.session_token is not None


@pytest.mark.parametrize("url", ["s3://bucket", "s3://bucket/", "gs://bucket/runs", "s3://bucket/runs/*", "runs"])
def test_a_grant_covers_one_prefix_never_a_bucket(url: str) -> None:
    with pytest.raises(ConfigError, match="cannot grant"):
        grant(url)


def test_the_expiry_is_stss_and_about_duration_from_now(moto_url: str, bucket: str) -> None:
    credentials = grant(f"s3://{bucket}/runs", duration_s=1800, endpoint_url=moto_url)
    assert credentials.expiration is not None and credentials.expiration.tzinfo is not None
    left = credentials.expiration - datetime.now(timezone.utc)
    assert timedelta(seconds=1800 - 120) < left <= timedelta(seconds=1800 + 5)
    env = credentials.env()
    assert datetime.fromisoformat(env["AWS_CREDENTIAL_EXPIRATION"]) == credentials.expiration
    assert env["AWS_ENDPOINT_URL_S3"] == moto_url and env["AWS_ACCESS_KEY_ID"] == credentials.access_key_id
    with pytest.raises(ConfigError, match="900 to 129600"):
        grant(f"s3://{bucket}/runs", duration_s=60, endpoint_url=moto_url)


def test_no_secret_in_a_grants_repr_or_an_error(moto_url: str, bucket: str, no_sts: str) -> None:
    credentials = grant(f"s3://{bucket}/runs", endpoint_url=moto_url)
    shown = " ".join(
        [repr(credentials), str(credentials), repr(credentials.secret_access_key), str(credentials.session_token)]
    )
    assert credentials.access_key_id in shown
    assert not any(secret in shown for secret in secrets_of(credentials))
    with pytest.raises(ConfigError) as caught:
        grant(f"s3://{bucket}/runs", endpoint_url=no_sts)
    message = f"{caught.value!r} {caught.value}"
    assert isinstance(caught.value, VastError) and "no STS" in message and "own_keys=True" in message
    assert not any(secret in message for secret in secrets_of(credentials))


def test_own_keys_are_sent_only_on_opt_in_and_with_a_warning(bucket: str, no_sts: str) -> None:
    with pytest.warns(UserWarning, match="long-lived") as warned:
        credentials = grant(f"s3://{bucket}/runs", endpoint_url=no_sts, own_keys=True)
    assert credentials.access_key_id == "testing" and credentials.secret_access_key.reveal() == SECRET
    assert credentials.expiration is None and credentials.policy is None
    assert "AWS_SESSION_TOKEN" not in credentials.env() and "AWS_CREDENTIAL_EXPIRATION" not in credentials.env()
    assert SECRET not in str(warned[0].message) and SECRET not in repr(credentials)


def test_a_box_gets_the_grant_and_checkpoints_under_the_prefix(
    box: Session, moto_url: str, bucket: str, s3_client: Any
) -> None:
    assert box.control(installed)["key_id_end"] is None  # the box starts with no credentials
    url = f"s3://{bucket}/runs/exp1"
    renewal = keep_granted(box, url, endpoint_url=moto_url)
    try:
        report = renewal.installed
        assert set(report["installed"]) == set(renewal.grant.env())
        assert not any(secret in repr(report) for secret in secrets_of(renewal.grant))
        on_box = box.control(installed)
        assert on_box["key_id_end"] == renewal.grant.access_key_id[-4:] and on_box["endpoint"] == moto_url
        box.run_cell(CELL, push={"URL": url})  # no endpoint, no keys given: the grant's variables
    finally:
        renewal.stop()
    keys = [o["Key"] for o in s3_client.list_objects_v2(Bucket=bucket).get("Contents", [])]
    assert keys and all(key.startswith("runs/exp1/") for key in keys)


def test_renewal_replaces_the_credentials_before_expiry(box: Session, moto_url: str, bucket: str) -> None:
    # 900 s is STS's shortest grant; renewing with 99.9 % of it left comes after about a second.
    renewal = keep_granted(box, f"s3://{bucket}/runs", duration_s=900, endpoint_url=moto_url, margin=0.999)
    first = renewal.grant
    try:
        deadline = time.monotonic() + 60
        while renewal.renewals < 1 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert renewal.renewals >= 1 and renewal.error is None and renewal.grant is not first
    finally:
        renewal.stop()
    current = renewal.grant
    assert current.expiration is not None and first.expiration is not None
    assert first.expiration <= current.expiration
    assert box.control(installed)["expires"] == current.expiration.isoformat()


#: A cell that runs until a control call releases it (a gate shared by the box's worker process).
GATE = """
import sys, threading, types
gate = sys.modules.get("vastnb_test_gate") or sys.modules.setdefault(
    "vastnb_test_gate", types.SimpleNamespace(release=threading.Event()))
"""
BLOCK = GATE + "released = gate.release.wait(120)\n"
RELEASE = GATE + "gate.release.set()\n"


def test_a_grant_is_installed_and_renewed_while_a_cell_runs(box: Session, moto_url: str, bucket: str) -> None:
    task = box.submit_cell(BLOCK, pull=["released"])
    deadline = time.monotonic() + 60
    while task.state() != "running" and time.monotonic() < deadline:
        time.sleep(0.05)
    try:
        # Installed, then renewed after about a second, while the cell still runs.
        renewal = keep_granted(box, f"s3://{bucket}/runs", duration_s=900, endpoint_url=moto_url, margin=0.999)
        try:
            while renewal.renewals < 1 and renewal.error is None and time.monotonic() < deadline:
                time.sleep(0.05)
        finally:
            renewal.stop()
            renewal._thread.join(60)
        assert renewal.renewals >= 1 and renewal.error is None
        assert renewal.grant.expiration is not None
        assert box.control(installed)["expires"] == renewal.grant.expiration.isoformat()
        assert task.state() == "running"  # none of this waited for the cell
    finally:
        box.control(exec, RELEASE, {})
    assert task.result()["released"] is True


def test_renewal_is_scheduled_at_the_margin(box: Session, moto_url: str, bucket: str) -> None:
    now = [datetime.now(timezone.utc)]
    renewal = keep_granted(box, f"s3://{bucket}/runs", duration_s=1000, endpoint_url=moto_url)
    renewal.stop()
    renewal._clock = lambda: now[0]
    expiration = renewal.grant.expiration
    assert expiration is not None
    now[0] = expiration - timedelta(seconds=1000)
    assert renewal.delay() == pytest.approx(800)
    now[0] = expiration - timedelta(seconds=200)
    assert renewal.delay() == 0
    with pytest.raises(ConfigError, match="margin"):
        keep_granted(box, f"s3://{bucket}/runs", endpoint_url=moto_url, margin=1.5)


def test_a_launched_box_is_granted_its_prefix_until_it_goes(
    tmp_path: Path, moto_url: str, bucket: str, s3_client: Any
) -> None:
    from vastnb import Client
    from vastnb.sim import SimConfig

    with Client(
        backend="sim", home=tmp_path / "vastnb", sim_config=SimConfig(create_delay=0.05, load_delay=0.05)
    ) as vast:
        box = vast.launch("dev-test")
        renewal = box.grant_storage(f"s3://{bucket}/runs/exp2", endpoint_url=moto_url)
        box.run_cell(CELL, push={"URL": f"s3://{bucket}/runs/exp2"})
        box.down()
    assert renewal._stop.is_set()  # no renewal for a box that is gone
    keys = [o["Key"] for o in s3_client.list_objects_v2(Bucket=bucket).get("Contents", [])]
    assert keys and all(key.startswith("runs/exp2/") for key in keys)
