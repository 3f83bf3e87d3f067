"""Overlay networks on the simulated market: a private LAN over one physical cluster
(:mod:`vastnb.sim.clusters`), which instances join when created with ``env {"-n": name}``
(the CLI's ``--env "-n NAME"``), as on Vast.

Vast gives an overlay a private subnet (``10.0.0.0/24``, say) and each instance an
interface in it. The simulated boxes are processes on this machine, and the one network
they all share is its loopback, so a simulated overlay's ``internal_subnet`` is
``127.0.0.0/8``: everything that finds a box's address in the overlay, and the rendezvous
and collectives that use it, run as they would on Vast. Creating an instance that names an
overlay it cannot join is refused (the simulator's reading of Vast; its message is ours).

:class:`OverlaysMixin` is part of :class:`vastnb.sim.market.Market`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from vastnb.sim.errors import SimError

__all__ = ["OverlaysMixin", "SUBNET", "join_on_create", "leave_overlays"]

SUBNET = "127.0.0.0/8"
MAX_OVERLAYS = 64  # per account
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")

State = dict[str, Any]


class OverlaysMixin:
    """``/overlay/``: create, list, join, delete. Needs the host class's ``_tx()``,
    ``_get(state, instance_id)`` and ``catalogue``."""

    _tx: Any
    _get: Any
    if TYPE_CHECKING:

        @property
        def catalogue(self) -> list[dict[str, Any]]: ...

    def create_overlay(self, cluster_id: Any, name: Any) -> None:
        if not isinstance(name, str) or not _NAME.match(name):
            raise SimError(400, "invalid_args", "name must be 1-64 letters, digits, '.', '_' or '-'")
        if isinstance(cluster_id, bool) or not isinstance(cluster_id, int):
            raise SimError(400, "invalid_args", "cluster_id must be an integer")
        if not any(o.get("cluster_id") == cluster_id for o in self.catalogue):
            raise SimError(404, "no_such_cluster", f"Cluster {cluster_id} not found.")
        with self._tx() as (state, _):
            overlays = state.setdefault("overlays", {})
            if name in overlays:
                raise SimError(400, "overlay_exists", f"An overlay called {name!r} already exists.")
            if len(overlays) >= MAX_OVERLAYS:
                raise SimError(400, "too_many_overlays", f"At most {MAX_OVERLAYS} overlays per account.")
            state["next_overlay"] = state.get("next_overlay", 0) + 1
            overlays[name] = {
                "overlay_id": state["next_overlay"],
                "name": name,
                "cluster_id": cluster_id,
                "internal_subnet": SUBNET,
                "instances": [],
            }

    def overlays(self) -> list[dict[str, Any]]:
        with self._tx() as (state, _):
            return [dict(o, instances=list(o["instances"])) for o in state.get("overlays", {}).values()]

    def join_overlay(self, name: Any, instance_id: int) -> None:
        with self._tx() as (state, _):
            _join(state, name, self._get(state, instance_id))

    def delete_overlay(self, body: Mapping[str, Any]) -> None:
        with self._tx() as (state, _):
            overlays = state.get("overlays", {})
            wanted = [n for n, o in overlays.items() if o["overlay_id"] == body.get("overlay_id")]
            wanted += [n for n in overlays if n == body.get("overlay_name")]
            if not wanted:
                raise SimError(404, "no_such_overlay", "No such overlay: send overlay_id or overlay_name.")
            del overlays[wanted[0]]


def join_on_create(state: State, payload: Mapping[str, Any], inst: dict[str, Any]) -> None:
    """A create whose ``env`` names an overlay (``"-n": name``) puts the instance on it."""
    env = payload.get("env")
    if isinstance(env, Mapping) and "-n" in env:
        _join(state, env["-n"], inst)


def _join(state: State, name: Any, inst: dict[str, Any]) -> None:
    overlay = state.get("overlays", {}).get(name) if isinstance(name, str) else None
    if overlay is None:
        raise SimError(404, "no_such_overlay", f"No overlay called {name!r}: create it first (POST /overlay/).")
    if inst.get("cluster_id") != overlay["cluster_id"]:
        raise SimError(
            400,
            "invalid_args",
            f"Overlay {name!r} is on cluster {overlay['cluster_id']}; instance {inst['id']} is on machine "
            f"{inst['machine_id']}, which is not in it.",
        )
    if inst["id"] not in overlay["instances"]:
        overlay["instances"].append(inst["id"])


def leave_overlays(state: State, instance_id: int) -> None:
    """A destroyed instance leaves every overlay it was on."""
    for overlay in state.get("overlays", {}).values():
        if instance_id in overlay["instances"]:
            overlay["instances"].remove(instance_id)
