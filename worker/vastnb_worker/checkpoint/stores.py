"""Where checkpoints are kept: one small interface, a local folder, and memory.

A store holds objects under keys relative to its root (``ckpt-000000000500-ab12cd34.json``,
``ckpt-000000000500-ab12cd34/model.pt``). Everything a checkpoint needs is these few
operations, so a new kind of store is a small class. S3 and every S3-compatible service
(MinIO, Cloudflare R2, GCS's interoperable endpoint) are in ``s3.py``.

``open_store(url)`` picks the store from the URL:

- a path or ``file:///path``: :class:`LocalStore` (the default);
- ``s3://bucket/prefix``: :class:`~vastnb_worker.checkpoint.s3.S3Store`; ``gs://`` is the same
  through GCS's S3-interoperable endpoint (HMAC keys);
- ``memory://name``: :class:`MemoryStore`, one per name in this process (for tests).

A store may be shared, or written by someone hostile, so what is read from it is read up to
a size known beforehand and no further: :meth:`Store.get_bytes_capped` for manifests,
:meth:`Store.get_file_sized` for data objects.
"""

from __future__ import annotations

import builtins
import os
import shutil
import tempfile
import threading
from abc import ABC, abstractmethod
from typing import Any, ClassVar, Optional, Union
from urllib.parse import unquote, urlparse

__all__ = ["Store", "LocalStore", "MemoryStore", "ObjectSizeError", "open_store"]

#: Bytes read or written at a time when copying an object.
_BLOCK = 8 << 20


class ObjectSizeError(Exception):
    """An object is not the size its reader allows: it holds ``found`` bytes (None: more
    than were read, and how many more is not known)."""

    def __init__(self, key: str, found: Optional[int]) -> None:
        super().__init__(f"{key} holds {'more bytes' if found is None else f'{found} bytes'}")
        self.key = key
        self.found = found


class Store(ABC):
    """The operations a checkpoint needs. Missing objects raise ``FileNotFoundError``; an
    object of another size than a reader allows, :class:`ObjectSizeError`; anything else
    the store refuses raises :class:`~vastnb_worker.errors.StorageError`. Implementations
    must be safe to call from several threads at once."""

    #: The store's address, as a user would write it (never with credentials).
    url: str = ""

    @abstractmethod
    def put_file(self, key: str, path: str, *, move: bool = False) -> None:
        """Store the file at ``path`` as ``key``. With ``move`` the store may take the file
        (rename it) instead of copying it."""

    @abstractmethod
    def put_bytes(self, key: str, data: bytes) -> None:
        """Store ``data`` as ``key``, replacing any object there in one step."""

    @abstractmethod
    def get_bytes(self, key: str) -> bytes:
        """The whole object ``key``."""

    @abstractmethod
    def get_file(self, key: str, path: str) -> None:
        """Write the object ``key`` to the local file ``path``."""

    @abstractmethod
    def list(self, folder: str = "") -> builtins.list[str]:
        """Names of the objects directly in ``folder`` (not in its sub-folders)."""

    @abstractmethod
    def delete_folder(self, folder: str) -> None:
        """Delete every object under ``folder``; nothing happens if there is none."""

    @abstractmethod
    def delete(self, key: str) -> None:
        """Delete one object; nothing happens if it is missing."""

    def folders(self, folder: str = "") -> builtins.list[str]:
        """Names of the sub-folders directly in ``folder`` (used to clean up after
        crashed uploads; a store that cannot tell returns [] and is not cleaned)."""
        return []

    def local_path(self, key: str) -> Optional[str]:
        """A local file holding the object, to read in place, or None to fetch it."""
        return None

    def get_bytes_capped(self, key: str, limit: int) -> bytes:
        """The whole object ``key``, which may hold at most ``limit`` bytes: a bigger one
        raises :class:`ObjectSizeError`, once no more than ``limit + 1`` bytes were read.
        (This default reads the whole object: a store that can stop sooner overrides it.)"""
        data = self.get_bytes(key)
        if len(data) > limit:
            raise ObjectSizeError(key, len(data))
        return data

    def get_file_sized(self, key: str, path: str, size: int) -> None:
        """Write the object ``key``, which must hold exactly ``size`` bytes, to the local file
        ``path``; another size raises :class:`ObjectSizeError`, and no more than ``size + 1``
        bytes are read. (This default downloads the whole object, then checks: a store that
        can stop sooner overrides it.)"""
        self.get_file(key, path)
        found = os.path.getsize(path)
        if found != size:
            raise ObjectSizeError(key, found)

    def close(self) -> None:  # noqa: B027 - optional: only some stores hold connections
        """Release connections. The store is not used afterwards."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.url!r})"


class LocalStore(Store):
    """A folder on a local or mounted disk. Objects are written to a temporary name and
    renamed, so a reader never sees half an object. (No fsync: checkpoints guard against
    a killed process, which loses nothing in the page cache, not against power loss.)"""

    def __init__(self, root: str) -> None:
        self.root = os.path.abspath(os.path.expanduser(root))
        self.url = self.root  # created by the first write: listing a mistyped path leaves no folder

    def _path(self, key: str) -> str:
        path = os.path.normpath(os.path.join(self.root, key))
        if not path.startswith(self.root + os.sep):
            raise ValueError(f"key {key!r} leaves the store's folder {self.root}")
        return path

    def _replace(self, key: str, write: Any) -> None:
        path = self._path(key)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".partial-", dir=os.path.dirname(path))
        try:
            with os.fdopen(fd, "wb") as file:
                write(file)
            os.replace(tmp, path)
        except BaseException:
            _unlink(tmp)
            raise

    def put_file(self, key: str, path: str, *, move: bool = False) -> None:
        dest = self._path(key)
        os.makedirs(os.path.dirname(dest), exist_ok=True)
        if move:
            try:
                os.replace(path, dest)
                return
            except OSError:  # another filesystem: copy instead
                pass
        try:
            # A hard link shares the cached file's bytes: no copy, and both names stay valid.
            tmp = os.path.join(os.path.dirname(dest), f".partial-link-{os.getpid()}-{threading.get_ident()}")
            _unlink(tmp)
            os.link(path, tmp)
            os.replace(tmp, dest)
        except OSError:
            self._replace(key, lambda file: _copy_into(path, file))

    def put_bytes(self, key: str, data: bytes) -> None:
        self._replace(key, lambda file: file.write(data))

    def get_bytes(self, key: str) -> bytes:
        with open(self._path(key), "rb") as file:
            return file.read()

    def get_file(self, key: str, path: str) -> None:
        shutil.copyfile(self._path(key), path)

    def get_bytes_capped(self, key: str, limit: int) -> bytes:
        with open(self._path(key), "rb") as file:
            data = file.read(limit + 1)
            if len(data) > limit:
                found = os.fstat(file.fileno()).st_size
                raise ObjectSizeError(key, found if found > limit else None)
        return data

    def get_file_sized(self, key: str, path: str, size: int) -> None:
        with open(self._path(key), "rb") as source:
            found = os.fstat(source.fileno()).st_size
            if found != size:
                raise ObjectSizeError(key, found)
            with open(path, "wb") as target:
                left = size
                while left:
                    block = source.read(min(left, _BLOCK))
                    if not block:
                        raise ObjectSizeError(key, size - left)  # cut short while it was read
                    target.write(block)
                    left -= len(block)
            if source.read(1):
                raise ObjectSizeError(key, None)  # grew while it was read

    def local_path(self, key: str) -> Optional[str]:
        path = self._path(key)
        if not os.path.isfile(path):
            raise FileNotFoundError(path)
        return path

    def list(self, folder: str = "") -> builtins.list[str]:
        return sorted(e.name for e in self._scan(folder) if e.is_file() and not e.name.startswith(".partial-"))

    def folders(self, folder: str = "") -> builtins.list[str]:
        return sorted(e.name for e in self._scan(folder) if e.is_dir() and not e.name.startswith("."))

    def _scan(self, folder: str) -> builtins.list[os.DirEntry[str]]:
        try:
            return list(os.scandir(self._path(folder) if folder else self.root))
        except FileNotFoundError:
            return []

    def delete_folder(self, folder: str) -> None:
        shutil.rmtree(self._path(folder), ignore_errors=True)

    def delete(self, key: str) -> None:
        _unlink(self._path(key))


class MemoryStore(Store):
    """Objects in a dict, for tests and notebooks. ``memory://name`` gives the same store
    for the same name, for the life of the process."""

    _named: ClassVar[dict[str, MemoryStore]] = {}
    _named_lock = threading.Lock()

    def __init__(self, name: str = "") -> None:
        self.url = f"memory://{name}"
        self.objects: dict[str, bytes] = {}
        self._lock = threading.Lock()

    @classmethod
    def named(cls, name: str) -> MemoryStore:
        """The process-wide store called ``name``, created on first use."""
        with cls._named_lock:
            if name not in cls._named:
                cls._named[name] = cls(name)
            return cls._named[name]

    def put_file(self, key: str, path: str, *, move: bool = False) -> None:
        with open(path, "rb") as file:
            self.put_bytes(key, file.read())

    def put_bytes(self, key: str, data: bytes) -> None:
        with self._lock:
            self.objects[key] = bytes(data)

    def get_bytes(self, key: str) -> bytes:
        with self._lock:
            if key not in self.objects:
                raise FileNotFoundError(f"{self.url}/{key}")
            return self.objects[key]

    def get_file(self, key: str, path: str) -> None:
        data = self.get_bytes(key)
        with open(path, "wb") as file:
            file.write(data)

    def get_file_sized(self, key: str, path: str, size: int) -> None:
        data = self.get_bytes(key)
        if len(data) != size:
            raise ObjectSizeError(key, len(data))
        with open(path, "wb") as file:
            file.write(data)

    def list(self, folder: str = "") -> builtins.list[str]:
        return sorted(k for k in self._below(folder) if "/" not in k)

    def folders(self, folder: str = "") -> builtins.list[str]:
        return sorted({k.split("/")[0] for k in self._below(folder) if "/" in k})

    def _below(self, folder: str) -> builtins.list[str]:
        """The keys under ``folder``, relative to it."""
        prefix = folder.rstrip("/") + "/" if folder else ""
        with self._lock:
            keys = list(self.objects)
        return [k[len(prefix) :] for k in keys if k.startswith(prefix)]

    def delete_folder(self, folder: str) -> None:
        prefix = folder.rstrip("/") + "/"
        with self._lock:
            for key in [k for k in self.objects if k.startswith(prefix)]:
                del self.objects[key]

    def delete(self, key: str) -> None:
        with self._lock:
            self.objects.pop(key, None)


def open_store(url: Union[str, os.PathLike[str]], **options: Any) -> Store:
    """The store for ``url`` (see the module's docstring; a ``pathlib.Path`` is a folder).
    ``options`` go to the store's constructor: for S3, ``endpoint_url``, ``region_name``,
    ``client``..."""
    url = os.fspath(url)
    parsed = urlparse(url)
    scheme = parsed.scheme.lower()
    if scheme in ("s3", "gs"):
        from .s3 import S3Store  # boto3 is needed only for these

        if scheme == "gs":
            options.setdefault("endpoint_url", "https://storage.googleapis.com")
        return S3Store(parsed.netloc, parsed.path.strip("/"), scheme=scheme, **options)
    if options:
        raise TypeError(f"unexpected options for {url!r}: {', '.join(sorted(options))}")
    if scheme == "memory":
        return MemoryStore.named(parsed.netloc + parsed.path)
    if scheme == "file":
        return LocalStore(unquote(parsed.path))
    if scheme and len(scheme) > 1:  # "c:" in a Windows path is a drive, not a scheme
        raise ValueError(f"unknown store {url!r}: use a folder path, file://, s3://, gs:// or memory://")
    return LocalStore(url)


def _copy_into(path: str, file: Any) -> None:
    with open(path, "rb") as source:
        shutil.copyfileobj(source, file, _BLOCK)


def _unlink(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
