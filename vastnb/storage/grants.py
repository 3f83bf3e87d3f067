"""Short-lived storage credentials for a box, scoped to one S3 prefix.

:func:`grant` asks STS (with the user's own credentials, from boto3's usual chain) for a
federation token whose session policy allows objects under ``s3://bucket/prefix/`` and
nothing else. :func:`keep_granted` installs one on a box through the session's control
calls (never in an onstart script or the instance's environment: Vast's API shows
those) and renews it before it expires, even while a cell runs.

Where the endpoint has no STS (MinIO, R2...), :func:`grant` raises; ``own_keys=True`` is
the explicit opt-in to send the user's own, long-lived keys instead.
"""

from __future__ import annotations

import json
import re
import threading
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

from vastnb.base.secret import Secret, redact
from vastnb.errors import ConfigError

__all__ = ["OBJECT_ACTIONS", "Grant", "Renewal", "grant", "keep_granted"]

#: What a grant allows on the objects under its prefix.
OBJECT_ACTIONS = (
    "s3:GetObject",
    "s3:PutObject",
    "s3:DeleteObject",
    "s3:AbortMultipartUpload",
    "s3:ListMultipartUploadParts",
)
MIN_DURATION, MAX_DURATION = 900, 129600  # what GetFederationToken accepts
#: Error codes (or HTTP statuses) that mean "this endpoint has no STS", not "STS said no".
_NO_STS = {
    "InvalidAction",
    "NotImplemented",
    "UnknownOperation",
    "UnknownOperationException",
    "MethodNotAllowed",
    "404",
    "405",
    "501",
}


@dataclass(frozen=True)
class Grant:
    """Credentials for one ``s3://`` prefix. The secret key and token show only a mask;
    :meth:`env` reveals them, for the one place that sends them to the box."""

    url: str
    access_key_id: str
    secret_access_key: Secret
    session_token: Secret | None
    expiration: datetime | None  # aware; None for the user's own keys
    policy: dict[str, Any] | None  # the session policy sent to STS; None for own keys
    endpoint_url: str | None = None

    def env(self) -> dict[str, str]:
        """The variables boto3 reads on the box."""
        env = {"AWS_ACCESS_KEY_ID": self.access_key_id, "AWS_SECRET_ACCESS_KEY": self.secret_access_key.reveal()}
        if self.session_token is not None:
            env["AWS_SESSION_TOKEN"] = self.session_token.reveal()
        if self.expiration is not None:  # botocore then re-reads the variables before expiry
            env["AWS_CREDENTIAL_EXPIRATION"] = self.expiration.isoformat()
        if self.endpoint_url:
            env["AWS_ENDPOINT_URL_S3"] = self.endpoint_url
        return env


def scope_policy(bucket: str, prefix: str) -> dict[str, Any]:
    """The session policy: the listed object actions under ``prefix/``, and listing only there."""
    return {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Sid": "ObjectsUnderPrefix",
                "Effect": "Allow",
                "Action": list(OBJECT_ACTIONS),
                "Resource": [f"arn:aws:s3:::{bucket}/{prefix}/*"],
            },
            {
                "Sid": "ListPrefix",
                "Effect": "Allow",
                "Action": ["s3:ListBucket"],
                "Resource": [f"arn:aws:s3:::{bucket}"],
                "Condition": {"StringLike": {"s3:prefix": [f"{prefix}/*", prefix]}},
            },
        ],
    }


def _parse(url: str) -> tuple[str, str]:
    match = re.fullmatch(r"s3://([a-z0-9][a-z0-9.\-]{1,61}[a-z0-9])/(.+)", url)
    prefix = match.group(2).strip("/") if match else ""
    if not match or not prefix:
        raise ConfigError(
            f"cannot grant {url!r}: write s3://BUCKET/PREFIX (a grant covers one prefix, never a whole bucket)"
        )
    if re.search(r"[*?$\[\]]", prefix):
        raise ConfigError(f"cannot grant {url!r}: the prefix has a wildcard character, which would widen the grant")
    return match.group(1), prefix


def grant(
    url: str,
    *,
    duration_s: int = 3600,
    endpoint_url: str | None = None,
    own_keys: bool = False,
) -> Grant:
    """Credentials for ``url`` (``s3://bucket/prefix``) that last ``duration_s`` seconds.

    ``endpoint_url`` is the S3 endpoint (STS is asked there too). ``own_keys=True``: where
    the endpoint has no STS, return the user's own keys (with a warning) instead of raising.
    """
    bucket, prefix = _parse(url)
    if not MIN_DURATION <= duration_s <= MAX_DURATION:
        raise ConfigError(
            f"duration_s={duration_s}: STS gives credentials for {MIN_DURATION} to {MAX_DURATION} seconds"
        )
    import boto3
    from botocore.exceptions import (
        BotoCoreError,
        ClientError,
        EndpointConnectionError,
        NoCredentialsError,
    )

    session = boto3.session.Session()
    policy = scope_policy(bucket, prefix)
    name = re.sub(r"[^\w+=,.@-]", "-", f"vastnb-{bucket}")[:32]
    where = endpoint_url or "AWS"
    try:
        sts = session.client("sts", endpoint_url=endpoint_url)
        answer = sts.get_federation_token(Name=name, DurationSeconds=duration_s, Policy=json.dumps(policy))
    except ClientError as exc:
        error = exc.response.get("Error", {})
        code = str(error.get("Code") or exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode"))
        if code not in _NO_STS:
            detail = redact(str(error.get("Message") or code), _own_secret(session))
            raise ConfigError(
                f"STS at {where} refused a token for {url} ({code}: {detail}); check that your "
                "credentials are long-lived IAM user keys allowed sts:GetFederationToken"
            ) from None
        if not own_keys:
            raise ConfigError(
                f"{where} has no STS (GetFederationToken answered {code}), so no short-lived credentials "
                f"can be made for {url}; pass own_keys=True to send your own long-lived keys to the box "
                "instead (anyone with root on that machine can read them)"
            ) from None
        return _own_grant(session, url, endpoint_url)
    except NoCredentialsError:
        raise ConfigError(
            "no AWS credentials found (boto3's chain: environment, AWS_PROFILE, config files); "
            "set them on this machine, not on the box"
        ) from None
    except EndpointConnectionError:
        raise ConfigError(f"could not reach STS at {where}; check endpoint_url and the network") from None
    except BotoCoreError as exc:
        raise ConfigError(f"asking STS at {where} for {url} failed: {type(exc).__name__}") from None
    credentials = answer["Credentials"]
    return Grant(
        url=f"s3://{bucket}/{prefix}",
        access_key_id=credentials["AccessKeyId"],
        secret_access_key=Secret(credentials["SecretAccessKey"]),
        session_token=Secret(credentials["SessionToken"]),
        expiration=_aware(credentials["Expiration"]),
        policy=policy,
        endpoint_url=endpoint_url,
    )


def _aware(value: datetime | str) -> datetime:
    when = value if isinstance(value, datetime) else datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    return when.replace(tzinfo=timezone.utc) if when.tzinfo is None else when.astimezone(timezone.utc)


def _own_secret(session: Any) -> Secret | None:
    credentials = session.get_credentials()
    return Secret(credentials.secret_key) if credentials is not None and credentials.secret_key else None


def _own_grant(session: Any, url: str, endpoint_url: str | None) -> Grant:
    credentials = session.get_credentials()
    if credentials is None:
        raise ConfigError("own_keys=True, but no AWS credentials were found on this machine to send")
    frozen = credentials.get_frozen_credentials()
    warnings.warn(
        f"sending your own long-lived AWS keys (key id ...{frozen.access_key[-4:]}) to a stranger's machine "
        f"for {url}: they are not limited to that prefix nor in time; rotate them after the run",
        UserWarning,
        stacklevel=3,
    )
    token = Secret(frozen.token) if frozen.token else None
    return Grant(
        url=url,
        access_key_id=frozen.access_key,
        secret_access_key=Secret(frozen.secret_key),
        session_token=token,
        expiration=None,
        policy=None,
        endpoint_url=endpoint_url,
    )


class Renewal:
    """A grant kept installed on a box: re-granted and re-installed when ``margin`` of
    its duration is left, by a daemon thread, until :meth:`stop`. ``grant`` is the
    current one; ``error`` the last renewal's failure (retried until expiry), or None.

    A renewal is a control call (:meth:`Session.control`): the box installs it at once,
    while a cell runs, not after it; it is none of the box's tasks.
    """

    def __init__(
        self,
        session: Any,
        url: str,
        *,
        duration_s: int = 3600,
        endpoint_url: str | None = None,
        own_keys: bool = False,
        margin: float = 0.2,
        clock: Callable[[], datetime] = lambda: datetime.now(timezone.utc),
    ) -> None:
        if not 0 < margin < 1:
            raise ConfigError(f"margin={margin}: give the fraction of the duration left at renewal, between 0 and 1")
        self._make = lambda: grant(url, duration_s=duration_s, endpoint_url=endpoint_url, own_keys=own_keys)
        self.duration_s, self.margin, self._clock = duration_s, margin, clock
        self.grant = self._make()
        self.installed = _install(session, self.grant)  # in the caller's thread: its errors surface here
        self.renewals = 0
        self.error: Exception | None = None
        self._session = session
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"vastnb-grant {url}", daemon=True)
        self._thread.start()

    def __repr__(self) -> str:
        return f"<Renewal {self.grant.url} expires {self.grant.expiration} renewals={self.renewals}>"

    def delay(self) -> float:
        """Seconds until the next renewal."""
        expiration = self.grant.expiration or self._clock() + timedelta(seconds=self.duration_s)
        return max(0.0, (expiration - self._clock()).total_seconds() - self.margin * self.duration_s)

    def _left(self) -> float:
        """Seconds until the current grant expires."""
        if self.grant.expiration is None:
            return float(self.duration_s)
        return (self.grant.expiration - self._clock()).total_seconds()

    def stop(self) -> None:
        """Renew no more (what is installed stays until it expires)."""
        self._stop.set()

    def _run(self) -> None:
        from vastnb.offload import Session

        try:  # a connection of its own: the user's may be waiting on a cell in another thread
            session = Session(
                self._session.transport,
                on_output=lambda stream, text: None,
                connect_timeout=self._session.connect_timeout,
            )
        except Exception as exc:  # noqa: BLE001 - kept for the user
            self.error = exc
            return
        try:
            wait = self.delay()
            while not self._stop.wait(wait):
                try:
                    fresh = self._make()
                    self.installed = _install(session, fresh)
                    self.grant, self.error = fresh, None
                    self.renewals += 1
                    wait = self.delay()
                except Exception as exc:  # noqa: BLE001 - kept for the user, retried
                    self.error = exc
                    wait = min(60.0, max(1.0, self._left() / 10))
        finally:
            session.close()


def _install(session: Any, credentials: Grant) -> dict[str, Any]:
    from vastnb_worker.grants import install

    return dict(session.control(install, credentials.env()))


def keep_granted(
    session: Any,
    url: str,
    *,
    duration_s: int = 3600,
    endpoint_url: str | None = None,
    own_keys: bool = False,
    margin: float = 0.2,
) -> Renewal:
    """Install a grant for ``url`` on the box behind ``session`` and keep it fresh."""
    return Renewal(session, url, duration_s=duration_s, endpoint_url=endpoint_url, own_keys=own_keys, margin=margin)
