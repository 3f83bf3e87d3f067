"""A job's states and the transitions allowed between them.

::

    queued ──> provisioning ──> running ──> succeeded
      │  ↑          │  ↑           │
      │  └──────────┘  └──── recovering <──┘          (preempted, outbid, offline, lost)
      └────> cancelled, failed, budget_exceeded <── every active state

A job is *active* while a controller is (or must be) working on it: provisioning, running
or recovering. ``provisioning -> queued`` puts back a job whose controller died before it
had an instance. The four final states are final.
"""

from __future__ import annotations

import enum

from vastnb.errors import LifecycleError

__all__ = ["JobState", "TRANSITIONS", "check_transition"]


class JobState(str, enum.Enum):
    """Where a job is in its life."""

    QUEUED = "queued"  # waiting for a controller
    PROVISIONING = "provisioning"  # a controller claimed it and is renting its box
    RUNNING = "running"  # its code runs on a box
    RECOVERING = "recovering"  # its box was lost: a replacement is on its way
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"
    BUDGET_EXCEEDED = "budget_exceeded"

    @property
    def active(self) -> bool:
        """A controller is working on it (it may be renting a box)."""
        return self in (JobState.PROVISIONING, JobState.RUNNING, JobState.RECOVERING)

    @property
    def final(self) -> bool:
        return not TRANSITIONS[self]


S = JobState
_ENDS = frozenset({S.FAILED, S.CANCELLED, S.BUDGET_EXCEEDED})
TRANSITIONS: dict[JobState, frozenset[JobState]] = {
    S.QUEUED: frozenset({S.PROVISIONING, S.CANCELLED, S.FAILED}),
    S.PROVISIONING: frozenset({S.QUEUED, S.RUNNING, S.RECOVERING}) | _ENDS,
    S.RUNNING: frozenset({S.SUCCEEDED, S.RECOVERING}) | _ENDS,
    S.RECOVERING: frozenset({S.PROVISIONING}) | _ENDS,
    S.SUCCEEDED: frozenset(),
    S.FAILED: frozenset(),
    S.CANCELLED: frozenset(),
    S.BUDGET_EXCEEDED: frozenset(),
}
del S


def check_transition(job_id: int, old: JobState, new: JobState) -> None:
    """Raise :class:`~vastnb.errors.LifecycleError` unless ``old -> new`` is allowed."""
    if new is not old and new not in TRANSITIONS[old]:
        allowed = ", ".join(s.value for s in JobState if s in TRANSITIONS[old]) or "nothing: it is final"
        raise LifecycleError(f"job {job_id} cannot go from {old.value} to {new.value} (from {old.value}: {allowed}).")
