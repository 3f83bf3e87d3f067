"""The monitor's judgement: is a job's box still working for it, and if not, why.

The controller asks the market for the instance every poll and hands the answer here.
vastnb never stops a job's box itself, so a box that is not running was stopped by
someone else: the market (an interruptible box outbid: *preempted*, or *outbid* when the
market says another renter's bid took it), its host (*offline*, *exited*, *unknown*), the
account running dry, or a person at the console. The first ones are recovered from; a
person's stop and an empty account are not (recovering would spend against their wish).
A worker that stops answering on a running box is judged by the controller's heartbeat
(:data:`LOST`).
"""

from __future__ import annotations

from dataclasses import dataclass

from vastnb.market.records import ActualStatus, Instance

__all__ = ["Verdict", "judge", "LOST", "GONE"]

LOST = "unreachable"  # the worker stopped answering on a box the market says runs
GONE = "destroyed"  # the instance is no longer on the market (not by vastnb)

_HOST_TROUBLE = {ActualStatus.OFFLINE, ActualStatus.EXITED, ActualStatus.UNKNOWN}
_STARTING = {ActualStatus.PROVISIONING, ActualStatus.CREATED, ActualStatus.LOADING, ActualStatus.REBOOTING}


@dataclass(frozen=True)
class Verdict:
    """Why a box no longer works for its job: the event to record, the market's words,
    and whether the job is recovered (``recover``) or ends (a person's or the account's stop)."""

    event: str
    detail: str
    recover: bool


def judge(instance: Instance | None) -> Verdict | None:
    """None while the box works (or is still starting); else what happened to it."""
    if instance is None:
        return Verdict(GONE, "the instance is gone from the market (destroyed outside vastnb)", True)
    status, message = instance.actual_status, (instance.status_msg or "").strip()[:300]
    if status is ActualStatus.RUNNING or (status in _STARTING and instance.intended_status == "running"):
        return None
    if status in _HOST_TROUBLE:
        return Verdict("offline", f"the host reports {status.value}: {message or 'no message'}", True)
    lowered = message.lower()
    if "outbid" in lowered or (instance.is_bid and "stopped by user" not in lowered):
        event = "outbid" if "another renter" in lowered else "preempted"
        return Verdict(event, message or f"interruptible instance {instance.id} lost its GPUs", True)
    if "balance" in lowered or "credit" in lowered:
        return Verdict("stopped", f"the market stopped it: {message}", False)
    return Verdict("stopped", f"it was stopped outside vastnb ({message or status.value}): not a preemption", False)
