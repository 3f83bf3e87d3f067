"""Self-destruct requests from simulated boxes: the embedded simulator's spool folder.

A real box's watchdog destroys its instance with ``DELETE /instances/{id}/`` and the
instance's own key. The embedded simulator serves no HTTP, so a box leaves a request
file in ``home/sim/selfdestruct/`` instead (``destroy-<id>-<random>.json``, written
atomically: ``{"instance_id", "key", "at", "reason"}``), and the market's next
transaction carries it out, under the state's lock, as the API would: the key must be
that instance's ``instance_api_key``, and billing stops at the request's moment.
"""

from __future__ import annotations

import json
import logging
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vastnb.sim.instances import retire

__all__ = ["FOLDER", "Handled", "folder_of", "url_of", "process", "finish"]

FOLDER = "selfdestruct"
log = logging.getLogger("vastnb.sim")

State = dict[str, Any]


def folder_of(store_path: Path | None) -> Path | None:
    """The spool folder next to the market's state file (None for an in-memory market)."""
    return None if store_path is None else store_path.parent / FOLDER


def url_of(store_path: Path | None) -> str | None:
    """The ``file://`` URL a box's watchdog is armed with; the folder is made if needed."""
    folder = folder_of(store_path)
    if folder is None:
        return None
    folder.mkdir(parents=True, exist_ok=True)
    return folder.resolve().as_uri()


@dataclass
class Handled:
    """What one transaction did with the spool: the request files it read, and the
    instances it destroyed."""

    paths: list[Path] = field(default_factory=list)
    destroyed: list[int] = field(default_factory=list)


def process(state: State, folder: Path | None, now: float, advance: Callable[[State, float], None]) -> Handled:
    """Carry out the pending requests in ``folder`` on ``state`` (inside a transaction);
    what was done, for :func:`finish` once the state is written. ``advance(state, t)``
    bills and steps the market up to simulated time ``t``."""
    handled = Handled()
    if folder is None:
        return handled
    try:
        paths = [p for p in folder.iterdir() if p.name.startswith("destroy-") and p.suffix == ".json"]
    except FileNotFoundError:
        return handled
    requests = []
    for path in paths:
        request = _read(path)
        if request is not None or path.exists():  # gone: another process handled it
            requests.append((path, request))
    # Oldest first: billing moves forward only.
    requests.sort(key=lambda pr: pr[1]["at"] if pr[1] else 0.0)
    for path, request in requests:
        handled.paths.append(path)
        if request is not None and _apply(state, request, now, advance, path.name):
            handled.destroyed.append(request["instance_id"])
    return handled


def finish(handled: Handled, end_machine: Callable[[int], None] | None = None) -> None:
    """Once the state that carried them out is saved: delete the request files (a crash
    in between replays them, which is harmless) and end each destroyed instance's
    machine with ``end_machine(instance_id)``, as a destroy does."""
    for path in handled.paths:
        path.unlink(missing_ok=True)
    if end_machine is not None:
        for instance_id in handled.destroyed:
            end_machine(instance_id)


def _read(path: Path) -> dict[str, Any] | None:
    try:
        request = json.loads(path.read_text())
        request["instance_id"] = int(request["instance_id"])
        request["at"] = float(request["at"])
        if not isinstance(request.get("key"), str):
            raise ValueError("no key")
        return request
    except FileNotFoundError:
        return None
    except (OSError, ValueError, TypeError, KeyError) as exc:
        log.warning("discarding the malformed self-destruct request %s: %s", path.name, type(exc).__name__)
        return None


def _apply(
    state: State, request: dict[str, Any], now: float, advance: Callable[[State, float], None], name: str
) -> bool:
    """Destroy the instance a valid request names; whether it did."""
    instance_id = request["instance_id"]
    inst = state["instances"].get(str(instance_id))
    if inst is None:
        return False  # already destroyed: nothing left to do
    if not secrets.compare_digest(request["key"].encode(), str(inst.get("instance_api_key") or "").encode()):
        # As the API answers a wrong key (401): refused, and never the key in a log.
        log.warning("discarding self-destruct request %s: its key is not instance %s's", name, instance_id)
        return False
    when = min(request["at"] + state["clock_offset"], now)
    if when > state["last_advanced"]:
        advance(state, when)  # bill up to the request's moment, and not a second after
    reason = str(request.get("reason") or "no reason given")[:200]
    retire(state, inst, state["last_advanced"], by=f"itself: {reason}")
    log.info("instance %s destroyed itself: %s", instance_id, reason)
    return True
