"""The one readiness loop: from created (or starting) to running with its worker reachable.

Launching and starting a stopped box both wait here. Each phase has its deadline (the
launch policy's, and an overall ``timeout`` if given); a state that never becomes
running on its own, a container that failed to start, or an instance stopped or gone
while starting fails at once rather than at the deadline. The fleet records each phase
(loading, running) as it is seen.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from vastnb.lifecycle.states import InstanceState
from vastnb.market.records import ActualStatus, Instance

if TYPE_CHECKING:
    from vastnb.lifecycle.fleet import Fleet
    from vastnb.lifecycle.launch import LaunchPolicy

__all__ = ["NotReady", "wait_ready", "FAILURE_SIGNS"]

#: ``status_msg`` fragments that mean the container will not come up (dstack, Vast's CLI).
FAILURE_SIGNS = ("oci runtime", "error response from daemon", "permission denied")


class NotReady(Exception):
    """The instance did not become ready; ``gone``: it never will on its own."""

    def __init__(self, reason: str, *, gone: bool) -> None:
        super().__init__(reason)
        self.gone = gone


def wait_ready(
    fleet: Fleet,
    instance_id: int,
    policy: LaunchPolicy,
    *,
    timeout: float | None = None,
    emit: Callable[[str, str], None] | None = None,
) -> Instance:
    """Poll until ``instance_id`` runs and can be reached; the instance then. ``emit(stage,
    message)`` is told of each phase (loading, running). Raises :class:`NotReady`."""
    rental = fleet.rental(instance_id)
    phase = rental.state if rental is not None else InstanceState.CREATED
    now = time.monotonic()
    deadline, limit = now + policy.create_deadline, policy.create_deadline
    overall = now + timeout if timeout is not None else None
    while True:
        instance = fleet.api.show_instance(instance_id)
        if instance is None:
            raise NotReady("disappeared from the market while starting", gone=True)
        status, msg = instance.actual_status, (instance.status_msg or "").strip()
        if status is ActualStatus.RUNNING and fleet.backend.reachable(instance):
            fleet.transition(instance_id, InstanceState.RUNNING, msg or None)
            if emit:
                emit("running", f"instance {instance_id} running")
            return instance
        if status.is_failed:
            raise NotReady(f"is {status.value} ({msg or 'no message'}): it will not start", gone=True)
        # A new instance that shows stopped was stopped (or outbid); a restarted one shows
        # stopped until its start is carried out, unless it was stopped again.
        stopped = status in (ActualStatus.STOPPED, ActualStatus.FROZEN) and phase is InstanceState.CREATED
        if stopped or instance.intended_status == "stopped":
            raise NotReady(f"was stopped while starting ({msg or 'no message'})", gone=False)
        if any(sign in msg.lower() for sign in FAILURE_SIGNS):
            raise NotReady(f"failed to start its container: {msg}", gone=True)
        if status is ActualStatus.LOADING and phase is not InstanceState.LOADING:
            phase, deadline, limit = (
                InstanceState.LOADING,
                time.monotonic() + policy.load_deadline,
                policy.load_deadline,
            )
            fleet.transition(instance_id, InstanceState.LOADING, msg or None)
            if emit:
                emit("loading", f"instance {instance_id} loading ({msg or 'pulling the image'})")
        now = time.monotonic()
        if now > deadline or (overall is not None and now > overall):
            why = f"the {phase.value} phase's deadline" if now > deadline else "the timeout"
            waited = limit if now > deadline else timeout
            raise NotReady(f"is still {status.value} after {waited:.0f} s ({why}; {msg or 'no message'})", gone=False)
        time.sleep(policy.poll)
