"""S3 and every S3-compatible store, through boto3.

AWS, MinIO, Cloudflare R2 and GCS (through its S3-interoperable endpoint, with HMAC keys)
all work with ``endpoint_url``. Credentials come from boto3's usual chain (environment,
``AWS_PROFILE``, ``~/.aws``, an instance role); ``AWS_ENDPOINT_URL_S3`` is honoured too.
boto3 is imported here only, when an ``s3://`` or ``gs://`` store is opened.

Large objects go up as concurrent multipart uploads, and come down as concurrent ranged
downloads, never past the size the caller expects (the object's size is asked first, and
the file refuses any byte past it). The errors a user can fix (no bucket, no permission,
no credentials) become a :class:`StorageError` that names the bucket, the operation and the
fix, and is not retried.
"""

from __future__ import annotations

import builtins
import os
import threading
from typing import Any, Callable, Optional, TypeVar

from ..errors import StorageError
from .stores import ObjectSizeError, Store

__all__ = ["S3Store", "transfer_config"]

T = TypeVar("T")

#: Multipart part size. boto3 grows it when an object would need more than S3's 10,000
#: parts. Bigger parts cost memory per part in flight, and gained nothing here.
CHUNK = 16 << 20
#: Parts in flight for the whole store, whatever the number of objects uploading at once:
#: one pool, so two objects uploading side by side do not double the load on the endpoint.
CONCURRENCY = 10

_DENIED = {"AccessDenied", "AllAccessDisabled", "403", "Forbidden", "AccountProblem"}
_BAD_KEY = {"InvalidAccessKeyId", "SignatureDoesNotMatch", "InvalidToken", "ExpiredToken", "TokenRefreshRequired"}
_MISSING = {"NoSuchKey", "404", "NotFound"}


def transfer_config(chunk: int = CHUNK, concurrency: int = CONCURRENCY) -> Any:
    """The boto3 ``TransferConfig`` checkpoints upload and download with."""
    from boto3.s3.transfer import TransferConfig

    return TransferConfig(
        multipart_threshold=chunk, multipart_chunksize=chunk, max_concurrency=concurrency, use_threads=True
    )


class S3Store(Store):
    """Objects under ``s3://bucket/prefix``.

    ``client`` is a ready boto3 S3 client (made once and shared: each costs 150-250 ms);
    otherwise one is made from ``endpoint_url``, ``region_name`` and the other keyword
    arguments of ``boto3.client``. ``config`` is a boto3 ``TransferConfig`` for uploads
    and downloads (default: :func:`transfer_config`).
    """

    def __init__(
        self,
        bucket: str,
        prefix: str = "",
        *,
        scheme: str = "s3",
        client: Any = None,
        endpoint_url: Optional[str] = None,
        region_name: Optional[str] = None,
        config: Any = None,
        **client_options: Any,
    ) -> None:
        if not bucket:
            raise ValueError(f"no bucket in the URL: write {scheme}://BUCKET/prefix")
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self.url = f"{scheme}://{bucket}/{self.prefix}".rstrip("/")
        self._owns_client = client is None
        if client is None:
            import boto3
            from botocore.config import Config

            # Standard retries back off on throttling and 5xx; the checkpoint pipeline
            # retries whole objects on top of that.
            options: dict[str, Any] = {}
            endpoint = endpoint_url or os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")
            if endpoint and "amazonaws.com" not in endpoint:
                # boto3 >= 1.36 sends CRC32 checksums (as aws-chunked trailers) by default,
                # which R2, GCS and older MinIO refuse. The manifest's sha256 checks the data
                # end to end anyway.
                options = {
                    "request_checksum_calculation": "when_required",
                    "response_checksum_validation": "when_required",
                }
            botocore_config = Config(
                retries={"max_attempts": 5, "mode": "standard"}, max_pool_connections=4 * CONCURRENCY, **options
            )
            # A session of its own: boto3's default one keeps the credentials it found first,
            # so credentials set after a failure (in a notebook, say) would never be seen.
            client = boto3.session.Session().client(
                "s3", endpoint_url=endpoint_url, region_name=region_name, config=botocore_config, **client_options
            )
        self.client = client
        self.endpoint = getattr(getattr(client, "meta", None), "endpoint_url", endpoint_url)
        self.config = config if config is not None else transfer_config()
        self._transfers: Any = None  # made on first use: listing and loading need no threads
        self._transfers_lock = threading.Lock()

    def _transfer(self) -> Any:
        """The store's one transfer manager (boto3's upload_file makes one a call)."""
        with self._transfers_lock:
            if self._transfers is None:
                from boto3.s3.transfer import create_transfer_manager

                self._transfers = create_transfer_manager(self.client, self.config)
            return self._transfers

    def _key(self, key: str) -> str:
        return f"{self.prefix}/{key}" if self.prefix else key

    def _call(self, operation: str, key: str, call: Callable[[], T]) -> T:
        try:
            return call()
        except ObjectSizeError:
            raise
        except Exception as exc:  # boto3's exceptions are only importable with boto3
            raise self._translate(exc, operation, key) from exc

    def put_file(self, key: str, path: str, *, move: bool = False) -> None:
        self._call("upload", key, lambda: self._transfer().upload(path, self.bucket, self._key(key)).result())

    def put_bytes(self, key: str, data: bytes) -> None:
        self._call("upload", key, lambda: self.client.put_object(Bucket=self.bucket, Key=self._key(key), Body=data))

    def get_bytes(self, key: str) -> bytes:
        answer = self._call("download", key, lambda: self.client.get_object(Bucket=self.bucket, Key=self._key(key)))
        return self._call("download", key, answer["Body"].read)

    def get_file(self, key: str, path: str) -> None:
        self._call("download", key, lambda: self._transfer().download(self.bucket, self._key(key), path).result())

    def get_bytes_capped(self, key: str, limit: int) -> bytes:
        answer = self._call("download", key, lambda: self.client.get_object(Bucket=self.bucket, Key=self._key(key)))
        body = answer["Body"]
        try:
            length = answer.get("ContentLength")
            if length is not None and length > limit:
                raise ObjectSizeError(key, length)  # closing the body hangs up: the rest is never read
            data = self._call("download", key, lambda: _read_at_most(body, limit + 1))
        finally:
            body.close()
        if len(data) > limit:
            raise ObjectSizeError(key, None)
        return data

    def get_file_sized(self, key: str, path: str, size: int) -> None:
        head = self._call("download", key, lambda: self.client.head_object(Bucket=self.bucket, Key=self._key(key)))
        if head["ContentLength"] != size:
            raise ObjectSizeError(key, head["ContentLength"])
        # The object may be replaced between the HEAD and the download: the file takes no
        # byte past ``size``, which stops the download there.
        with open(path, "wb") as file:
            target = _Capped(file, size, key)
            self._call("download", key, lambda: self._transfer().download(self.bucket, self._key(key), target).result())

    def list(self, folder: str = "") -> builtins.list[str]:
        prefix = self._prefix(folder)

        def list_all() -> list[str]:
            pages = self._pages(prefix)
            return sorted(o["Key"][len(prefix) :] for page in pages for o in page.get("Contents", []))

        return self._call("list", folder, list_all)

    def folders(self, folder: str = "") -> builtins.list[str]:
        """Sub-folders holding objects, or only the parts of an upload a crash cut short
        (S3 keeps, and bills, those until they are aborted)."""
        prefix = self._prefix(folder)

        def list_all() -> list[str]:
            pages = self._pages(prefix)
            return [p["Prefix"][len(prefix) :].rstrip("/") for page in pages for p in page.get("CommonPrefixes", [])]

        found = set(self._call("list", folder, list_all))
        found.update(
            key[len(prefix) :].split("/")[0] for key, _ in self._unfinished(prefix) if "/" in key[len(prefix) :]
        )
        return sorted(found)

    def delete_folder(self, folder: str) -> None:
        prefix = self._prefix(folder)

        def delete_all() -> None:
            for page in self.client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=prefix):
                keys = [{"Key": o["Key"]} for o in page.get("Contents", [])]
                if keys:  # at most 1000 a page, as delete_objects takes
                    self.client.delete_objects(Bucket=self.bucket, Delete={"Objects": keys, "Quiet": True})
            for key, upload_id in self._unfinished(prefix):
                self.client.abort_multipart_upload(Bucket=self.bucket, Key=key, UploadId=upload_id)

        self._call("delete", folder, delete_all)

    def _pages(self, prefix: str) -> Any:
        """The listing of what is directly under ``prefix``: the delimiter leaves the
        objects of sub-folders out (the sub-folders come back as CommonPrefixes)."""
        return self.client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=prefix, Delimiter="/")

    def _prefix(self, folder: str) -> str:
        return self._key(folder.strip("/")).rstrip("/") + "/" if (folder or self.prefix) else ""

    def _unfinished(self, prefix: str) -> builtins.list[tuple[str, str]]:
        """``(key, upload id)`` of multipart uploads begun and never completed under
        ``prefix``; [] where listing them is not allowed (it is housekeeping only)."""
        try:
            pages = self.client.get_paginator("list_multipart_uploads").paginate(Bucket=self.bucket, Prefix=prefix)
            return [(u["Key"], u["UploadId"]) for page in pages for u in page.get("Uploads", [])]
        except Exception:  # noqa: BLE001 - e.g. no s3:ListBucketMultipartUploads permission
            return []

    def delete(self, key: str) -> None:
        self._call("delete", key, lambda: self.client.delete_object(Bucket=self.bucket, Key=self._key(key)))

    def close(self) -> None:
        with self._transfers_lock:
            if self._transfers is not None:
                self._transfers.shutdown()
                self._transfers = None
        if self._owns_client:  # a client passed in may serve other stores
            self.client.close()

    def _translate(self, exc: Exception, operation: str, key: str) -> Exception:
        """A StorageError saying what failed and how to fix it, or FileNotFoundError."""
        # upload_file wraps the ClientError in S3UploadFailedError, keeping it as the context.
        cause: BaseException = exc
        while type(cause).__name__ == "S3UploadFailedError" and cause.__context__ is not None:
            cause = cause.__context__
        name = type(cause).__name__
        response = getattr(cause, "response", None) or {}
        code = str(response.get("Error", {}).get("Code", ""))
        status = response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        where = f"s3://{self.bucket}/{self._key(key)}".rstrip("/")
        via = f" at {self.endpoint}" if self.endpoint else ""

        def fail(message: str, retryable: bool = False) -> StorageError:
            return StorageError(message, url=self.url, operation=operation, bucket=self.bucket, retryable=retryable)

        if code in _MISSING and operation != "upload" and code != "NoSuchBucket":
            return FileNotFoundError(where)
        if code == "NoSuchBucket":
            return fail(
                f"{operation} of {where} failed: bucket '{self.bucket}' does not exist{via}. Create it "
                f"(aws s3 mb s3://{self.bucket}) or fix the bucket name; for MinIO, R2 or GCS, check "
                "endpoint_url."
            )
        if name in ("NoCredentialsError", "PartialCredentialsError", "CredentialRetrievalError"):
            return fail(
                f"{operation} of {where} failed: no S3 credentials found. Set AWS_ACCESS_KEY_ID and "
                "AWS_SECRET_ACCESS_KEY (or AWS_PROFILE) in the environment of the process that saves "
                "checkpoints, or give the machine a role that may use the bucket."
            )
        if code in _BAD_KEY:
            return fail(
                f"{operation} of {where} failed: the endpoint{via} does not accept the credentials "
                f"({code}). Check AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (or the profile), and "
                "that they belong to this endpoint."
            )
        if code in _DENIED or status == 403:
            action = {
                "upload": "s3:PutObject",
                "download": "s3:GetObject",
                "list": "s3:ListBucket",
                "delete": "s3:DeleteObject",
            }.get(operation, "access")
            return fail(
                f"{operation} of {where} failed: access denied{via}. The credentials need {action} on "
                f"bucket '{self.bucket}' (prefix '{self.prefix or '/'}'): grant it in the bucket's "
                "policy or the key's permissions, or use a bucket you own."
            )
        if name in (
            "EndpointConnectionError",
            "ConnectTimeoutError",
            "ConnectionClosedError",
            "ReadTimeoutError",
            "ResponseStreamingError",
        ):
            return fail(
                f"{operation} of {where} failed: cannot reach the S3 endpoint{via} ({name}). Check "
                "endpoint_url and the network; the upload is retried.",
                retryable=True,
            )
        detail = f"{code} (HTTP {status})" if code else f"{name}: {cause}"
        return fail(f"{operation} of {where} failed: {detail}.", retryable=status is None or status >= 500)


class _Capped:
    """A file that takes no byte past ``size``: what a download writes into. boto3's
    transfer manager seeks and writes from one thread at a time."""

    def __init__(self, file: Any, size: int, key: str) -> None:
        self._file, self._size, self._key = file, size, key

    def seekable(self) -> bool:
        return True

    def seek(self, offset: int, whence: int = 0) -> int:
        return int(self._file.seek(offset, whence))

    def tell(self) -> int:
        return int(self._file.tell())

    def write(self, data: bytes) -> int:
        if self._file.tell() + len(data) > self._size:
            raise ObjectSizeError(self._key, None)
        return int(self._file.write(data))


def _read_at_most(body: Any, limit: int) -> bytes:
    """Up to ``limit`` bytes of a response body, never more."""
    blocks: list[bytes] = []
    left = limit
    while left > 0:
        block = body.read(min(left, 1 << 20))
        if not block:
            break
        blocks.append(block)
        left -= len(block)
    return b"".join(blocks)
