"""What a submit stores: the work as the box will run it, checked before it is queued.

A job's work is encoded once, in the submitting process (its functions and local modules
by value, as ``box.run`` sends them), and stored with the job: every attempt, on every
box, runs the same bytes with the same inputs. A script (``vastnb submit train.py``)
travels as its source and the sources of the local modules it imports.
"""

from __future__ import annotations

import ast
import dataclasses
import os
import warnings
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from vastnb.errors import ConfigError, JobWarning
from vastnb.jobs.artifacts import pack
from vastnb.offload.cells import cell_payload
from vastnb.offload.localmods import is_local
from vastnb.offload.session import encode_task
from vastnb.profiles.profile import Profile
from vastnb_worker.job import run_script

__all__ = ["call_work", "cell_work", "script_work", "check_checkpoint", "settings_of"]

MAX_SCRIPT_BYTES = 4 << 20  # a script and its local modules, together


def call_work(fn: Any, args: Iterable[Any], kwargs: Mapping[str, Any] | None) -> bytes:
    if not callable(fn):
        raise ConfigError(f"submit() runs a function; {type(fn).__name__} is not callable.")
    return pack(*encode_task((fn, tuple(args), dict(kwargs or {}))))


def cell_work(source: str, push: Mapping[str, Any], pull: Iterable[str], name: str) -> bytes:
    return pack(*encode_task(cell_payload(source, push, pull, name)))


def script_work(path: str | os.PathLike[str], argv: Sequence[str] = ()) -> bytes:
    """A script run as ``python path argv...`` on the box, with the modules next to it
    that it imports (and those they import)."""
    script = Path(path).resolve()
    if not script.is_file():
        raise ConfigError(f"no script at {path}: give the path of a .py file.")
    source = script.read_text()
    modules = _local_modules(source, script.parent)
    if len(source) + sum(len(s) for s in modules.values()) > MAX_SCRIPT_BYTES:
        raise ConfigError(f"{script.name} and its local modules exceed {MAX_SCRIPT_BYTES >> 20} MiB of source.")
    return pack(*encode_task((run_script, (source, script.name, [script.name, *argv], modules), {})))


def _local_modules(source: str, root: Path) -> dict[str, str]:
    """Module name -> source, for every module under ``root`` that ``source`` imports, transitively."""
    found: dict[str, str] = {}
    pending = [source]
    while pending:
        try:
            tree = ast.parse(pending.pop())
        except SyntaxError:
            continue
        for node in ast.walk(tree):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else []
            if isinstance(node, ast.ImportFrom) and node.module and not node.level:
                names = [node.module, *(f"{node.module}.{a.name}" for a in node.names)]
            for name in names:
                for file, module in _candidates(name, root):
                    if module not in found and file.is_file() and is_local(str(file), root):
                        found[module] = file.read_text()
                        pending.append(found[module])
    return found


def _candidates(name: str, root: Path) -> list[tuple[Path, str]]:
    """The files under ``root`` that could hold module ``name`` and its parent packages."""
    parts = name.split(".")
    out = []
    for i in range(1, len(parts) + 1):
        base = root.joinpath(*parts[:i])
        module = ".".join(parts[:i])
        out += [(base.with_suffix(".py"), module), (base / "__init__.py", module)]
    return out


def check_checkpoint(url: str | None) -> None:
    """Refuse a checkpoint location no box could use; warn when there is none."""
    if url is None:
        warnings.warn(
            "this job has no checkpoint location: if its box is lost, the replacement starts it from the "
            "beginning. Give it one (s3://bucket/runs/NAME) and use CheckpointManager() inside to resume instead.",
            JobWarning,
            stacklevel=5,  # the caller of vast.submit(...)
        )
        return
    if not isinstance(url, str) or not url.strip():
        raise ConfigError(f"checkpoint must be a URL such as 's3://bucket/runs/exp1', not {url!r}")
    parsed = urlparse(url)
    if parsed.scheme in ("s3", "gs"):
        if not parsed.netloc:
            raise ConfigError(f"checkpoint {url!r} names no bucket: write {parsed.scheme}://BUCKET/prefix")
        return
    if parsed.scheme == "file" or (not parsed.scheme and url.startswith("/")):
        return  # a folder on the box (the simulator's boxes share this machine's disk)
    raise ConfigError(
        f"checkpoint {url!r} is not a location every box of the job can reach: use s3://bucket/prefix "
        "(AWS, MinIO, R2), gs://bucket/prefix, or an absolute path (file://...) on a shared disk."
    )


def settings_of(profile: Profile, *, retry_on_error: int, trust: bool) -> dict[str, Any]:
    """The settings stored with a job: the profile as it was at submit, and how to run it."""
    if not isinstance(retry_on_error, int) or retry_on_error < 0:
        raise ConfigError(f"retry_on_error must be a whole number from 0, not {retry_on_error!r}")
    return {"profile": dataclasses.asdict(profile), "retry_on_error": retry_on_error, "trust": bool(trust)}
