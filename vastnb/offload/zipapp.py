"""The worker as one zipapp: the ``vastnb_worker`` package plus this machine's
cloudpickle, so a box needs nothing but ``python3``. Built once per process, byte for
byte reproducible, and named by its sha256 so a box caches it across connections."""

from __future__ import annotations

import functools
import hashlib
import io
import zipfile
from pathlib import Path
from types import ModuleType

import cloudpickle

import vastnb_worker

__all__ = ["worker_zipapp", "bootstrap_source"]

_MAIN = b"from vastnb_worker.__main__ import main\nmain()\n"
_EPOCH = (1980, 1, 1, 0, 0, 0)  # fixed timestamps: the same sources give the same digest


def _add(archive: zipfile.ZipFile, name: str, data: bytes) -> None:
    info = zipfile.ZipInfo(name, date_time=_EPOCH)
    info.compress_type = zipfile.ZIP_DEFLATED
    info.external_attr = 0o644 << 16
    archive.writestr(info, data)


def _package_files(package: ModuleType) -> list[tuple[str, bytes]]:
    root = Path(package.__file__ or "").parent
    return [
        (f"{package.__name__}/{path.relative_to(root).as_posix()}", path.read_bytes())
        for path in sorted(root.rglob("*.py"))
    ]


@functools.lru_cache(maxsize=1)
def worker_zipapp() -> tuple[bytes, str]:
    """(the zipapp's bytes, their sha256 hex digest)."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, data in [*_package_files(vastnb_worker), *_package_files(cloudpickle)]:
            _add(archive, name, data)
        _add(archive, "__main__.py", _MAIN)
    data = buffer.getvalue()
    return data, hashlib.sha256(data).hexdigest()


@functools.lru_cache(maxsize=1)
def bootstrap_source() -> str:
    """The script a box runs first (``python3 -I -c``): see ``vastnb_worker/bootstrap.py``."""
    return (Path(vastnb_worker.__file__).parent / "bootstrap.py").read_text()
