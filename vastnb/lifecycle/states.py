"""An instance's states as vastnb records them, and the transitions allowed between them.

::

    created ──> loading ──> running <──> stopped
       │           │          ↑  │          │
       │           └──────────┼──┼──────────┤        starting: a start was asked
       │                   starting <───────┘        (from stopped, or to restart)
       └──────── every state ──> destroyed (final)

:data:`TRANSITIONS` is the whole table; the fleet (the one writer of instance rows) checks
every change against it inside the store's transaction. "Billing" has one definition,
:attr:`InstanceState.billing`: every state but ``destroyed`` costs money (a stopped
instance still pays for its disk).
"""

from __future__ import annotations

import enum

from vastnb.errors import LifecycleError

__all__ = ["InstanceState", "TRANSITIONS", "LifecycleError", "check_transition"]


class InstanceState(str, enum.Enum):
    """Where an instance vastnb rented is in its life."""

    CREATED = "created"  # rented; its container is not up yet
    LOADING = "loading"  # its image is being pulled
    RUNNING = "running"  # running, and its worker reachable
    STOPPED = "stopped"  # stopped: the GPU is not billed, the disk is
    STARTING = "starting"  # a start was asked; not running yet
    DESTROYED = "destroyed"  # gone for good: nothing is billed

    @property
    def billing(self) -> bool:
        """Whether an instance in this state costs money: every state but destroyed."""
        return self is not InstanceState.DESTROYED

    @property
    def final(self) -> bool:
        return not TRANSITIONS[self]


S = InstanceState
TRANSITIONS: dict[InstanceState, frozenset[InstanceState]] = {
    S.CREATED: frozenset({S.LOADING, S.RUNNING, S.STOPPED, S.DESTROYED}),
    S.LOADING: frozenset({S.RUNNING, S.STOPPED, S.DESTROYED}),
    S.RUNNING: frozenset({S.STOPPED, S.STARTING, S.DESTROYED}),
    S.STOPPED: frozenset({S.STARTING, S.DESTROYED}),
    S.STARTING: frozenset({S.LOADING, S.RUNNING, S.STOPPED, S.DESTROYED}),
    S.DESTROYED: frozenset(),
}
del S


def check_transition(instance_id: int, old: InstanceState, new: InstanceState) -> None:
    """Raise :class:`LifecycleError` unless ``old -> new`` is allowed (staying put is)."""
    if new is not old and new not in TRANSITIONS[old]:
        allowed = ", ".join(s.value for s in sorted(TRANSITIONS[old], key=list(InstanceState).index)) or "nothing"
        raise LifecycleError(
            f"instance {instance_id} cannot go from {old.value} to {new.value} (from {old.value}: {allowed})."
        )
