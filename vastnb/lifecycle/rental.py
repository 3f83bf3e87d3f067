"""``Rental``: what vastnb knows of an instance it rented, the one orchestrator-side
instance type. The market's own view is :class:`~vastnb.market.records.Instance`, a
faithful mirror of Vast's JSON; a Rental is vastnb's record (who owns it, what it cost
per hour when rented, where it is in its life) and crosses every layer above the store.
Field names follow Vast's where they mean the same thing (``gpu_name``, ``dph_total``).
"""

from __future__ import annotations

from dataclasses import dataclass

from vastnb.lifecycle.states import InstanceState

__all__ = ["Rental"]


@dataclass(frozen=True)
class Rental:
    """One instance vastnb rented, as its state store records it."""

    url: str  # the market's API: rows of different markets never mix
    id: int
    name: str
    profile: str
    label: str  # vastnb:<name>:<session>, as set on the instance
    session: str  # the session (Python process) that owns it
    keep: bool  # left running when its session ends
    offer_id: int | None
    machine_id: int | None
    gpu_name: str | None
    num_gpus: int | None
    dph_total: float | None  # $/hour as rented: GPU (or the bid) plus disk
    bid: float | None  # interruptible rentals: the bid, $/hour
    max_duration_hours: float | None
    instance_key: str | None  # the instance's own restricted API key, for its self-destruct
    state: InstanceState
    created_at: float
    destroyed_at: float | None
    job: int | None = None  # the job it runs (its controller owns it), if any
    team: str | None = None  # whose budget its spending counts against
    project: str | None = None
    user: str | None = None  # who rented it (the login name of the process that did)

    def __repr__(self) -> str:  # the instance key stays out of reprs and logs
        return f"Rental(id={self.id}, name={self.name!r}, state={self.state.value!r}, session={self.session!r})"

    @property
    def live(self) -> bool:
        """Not destroyed: it exists on the market, as far as vastnb knows."""
        return self.state is not InstanceState.DESTROYED

    @property
    def billing(self) -> bool:
        """Whether it costs money (see :attr:`InstanceState.billing`)."""
        return self.state.billing
