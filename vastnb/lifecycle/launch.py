"""Launch: from a profile to a box whose worker answers.

select offers -> vastnb's SSH key on the account -> create (labelled ``vastnb:``) ->
the id into the state store -> wait through Vast's states, each phase with a deadline
(:mod:`~vastnb.lifecycle.readiness`) -> connect (retrying while the SSH key propagates)
-> arm the box's watchdog -> ready. Every record goes through the fleet.

Every attempt that fails destroys what it created and records whether that worked. An
offer taken between search and create, or priced out, is skipped; a machine that failed
is avoided for the rest of the launch. After a bounded number of attempts a
:class:`~vastnb.errors.ProvisionError` lists them all.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Collection
from dataclasses import dataclass
from typing import TYPE_CHECKING

from vastnb.errors import InstanceCreateError, OfferUnavailableError, ProvisionError, TransportError, VastError
from vastnb.lifecycle.box import Box
from vastnb.lifecycle.readiness import NotReady, wait_ready
from vastnb.market.selection import Candidate
from vastnb.offload import Session, safe
from vastnb.profiles.profile import Profile

if TYPE_CHECKING:
    from vastnb.lifecycle.fleet import Fleet

__all__ = ["LaunchPolicy", "LaunchEvent", "Progress", "Attempt", "launch"]


@dataclass(frozen=True)
class LaunchPolicy:
    """How hard a launch tries. Deadlines are seconds per phase."""

    attempts: int = 3  # instances created, at most
    offers: int = 12  # offers tried, at most (taken and priced-out ones included)
    create_deadline: float = 300.0  # created -> loading
    load_deadline: float = 1200.0  # loading -> running: the image pull
    connect_deadline: float = 180.0  # running -> the worker answers over SSH
    poll: float = 5.0  # seconds between status checks


@dataclass(frozen=True)
class LaunchEvent:
    """One step of a launch, for a progress display. ``elapsed`` counts from launch()."""

    stage: str  # offer, created, loading, running, connecting, ready, retry, cleanup
    message: str
    elapsed: float
    instance_id: int | None = None
    candidate: Candidate | None = None

    def line(self) -> str:
        """The event as one line of text: ``[   4.1s] running: instance 123 running``."""
        return f"[{self.elapsed:6.1f}s] {self.stage}: {self.message}"

    def print(self) -> None:
        """Print :meth:`line` at once: the progress callback of terminals and scripts."""
        print(self.line(), flush=True)


Progress = Callable[[LaunchEvent], None]


@dataclass
class Attempt:
    """One offer tried by a launch: the instance it created (if any), why it failed, and
    whether that instance was destroyed (None: there was nothing to destroy)."""

    offer_id: int
    machine_id: int
    gpu_name: str
    dph_total: float
    instance_id: int | None = None
    destroyed: bool | None = None
    error: str | None = None


def launch(
    fleet: Fleet,
    profile: Profile,
    name: str,
    *,
    keep: bool,
    policy: LaunchPolicy,
    progress: Progress | None,
    avoid: Collection[int] = (),
    job: int | None = None,
) -> Box:
    """Rent the cheapest offer for ``profile`` and return its box, ready (see module doc).
    Machines in ``avoid`` are never tried; ``job`` owns what is created."""
    return _Launch(fleet, profile, name, keep, policy, progress, avoid, job).run()


class _Launch:
    def __init__(
        self,
        fleet: Fleet,
        profile: Profile,
        name: str,
        keep: bool,
        policy: LaunchPolicy,
        progress: Progress | None,
        avoid: Collection[int],
        job: int | None,
    ) -> None:
        self.fleet, self.profile, self.name, self.keep, self.policy = fleet, profile, name, keep, policy
        self._progress = progress
        self.job = job
        self.t0 = time.monotonic()
        self.attempts: list[Attempt] = []
        self.avoid: set[int] = set(avoid)  # machines that failed us (before, or during this launch)

    def emit(
        self, stage: str, message: str, instance_id: int | None = None, candidate: Candidate | None = None
    ) -> None:
        if self._progress is not None:
            self._progress(LaunchEvent(stage, message, time.monotonic() - self.t0, instance_id, candidate))

    def run(self) -> Box:
        fleet = self.fleet
        fleet.backend.ensure_key()
        candidates = fleet.select(self.profile)
        created = tried = 0
        for candidate in candidates:
            if created >= self.policy.attempts or tried >= self.policy.offers:
                break
            if candidate.offer.machine_id in self.avoid:
                continue
            tried += 1
            box = self.attempt(candidate)
            if box is not None:
                return box
            created += self.attempts[-1].instance_id is not None
        raise self.failure(len(candidates))

    def attempt(self, candidate: Candidate) -> Box | None:
        offer = candidate.offer
        record = Attempt(offer.id, offer.machine_id, offer.gpu_name, candidate.price)
        self.attempts.append(record)
        bid = f", bid ${candidate.bid:.4f}/h" if candidate.bid is not None else ""
        self.emit(
            "offer",
            f"offer {offer.id}: {offer.num_gpus}x {offer.gpu_name}, ${candidate.price:.3f}/h{bid}, "
            f"{offer.country or '??'}, reliability {offer.reliability:.3f}",
            candidate=candidate,
        )
        try:
            created = self.fleet.create(self.profile, candidate, self.name, self.job)
        except OfferUnavailableError as exc:
            record.error = f"offer taken: {exc}"
            self.emit("retry", f"offer {offer.id} was rented by someone else; trying the next one")
            return None
        except InstanceCreateError as exc:
            record.error = str(exc)
            self.avoid.add(offer.machine_id)
            if exc.created_instance_id is None:
                raise  # it may or may not exist: the error says how to check; don't guess
            # Vast's spot pitfall: an error that still created (and bills) an instance.
            record.instance_id = exc.created_instance_id
            self.cleanup(record, exc.created_instance_id)
            return None
        record.instance_id = created.id
        try:
            self.emit("created", f"instance {created.id} created", created.id)
            wait_ready(
                self.fleet, created.id, self.policy, emit=lambda stage, message: self.emit(stage, message, created.id)
            )
            session = self.connect(created.id)
            self.fleet.arm_watchdog(session, created.id)
        except (NotReady, TransportError) as exc:
            record.error = f"the instance {exc}" if isinstance(exc, NotReady) else str(exc)
            self.avoid.add(offer.machine_id)
            self.emit("retry", f"instance {created.id} failed: {record.error}", created.id)
            self.cleanup(record, created.id)
            return None
        except BaseException as exc:  # Ctrl-C, or something unforeseen: never leave it billing
            record.error = repr(exc)
            self.cleanup(record, created.id)
            raise
        rental = self.fleet.ready(created.id, keep=self.keep)
        self.emit("ready", f"{self.name} ready: worker answers on instance {created.id}", created.id)
        return Box(self.fleet, rental, session=session)

    def connect(self, instance_id: int) -> Session:
        session = Session(self.fleet.transport(instance_id), results=safe, connect_timeout=self.policy.connect_deadline)
        session.connect()
        # Told once it is done, as every step is: the view times a step by when it ended.
        self.emit("connecting", f"SSH connected to instance {instance_id}", instance_id)
        return session

    def cleanup(self, record: Attempt, instance_id: int) -> None:
        try:
            self.fleet.destroy(instance_id, note="launch attempt failed")
            record.destroyed = True
            self.emit("cleanup", f"instance {instance_id} destroyed", instance_id)
        except VastError as exc:
            record.destroyed = False
            record.error = f"{record.error}; destroying it failed: {exc}"
            self.emit("cleanup", f"instance {instance_id} could NOT be destroyed: {exc}", instance_id)

    def failure(self, offers: int) -> ProvisionError:
        lines = [
            f"Could not launch {self.name!r} (profile {self.profile.name!r}) after {len(self.attempts)} "
            f"attempt(s) over {offers} matching offer(s):"
        ]
        for a in self.attempts:
            made = f"instance {a.instance_id}" if a.instance_id else "no instance"
            fate = {True: "destroyed", False: "NOT destroyed, still billing", None: ""}[a.destroyed]
            lines.append(f"  offer {a.offer_id} ({a.gpu_name}): {made}{', ' + fate if fate else ''}: {a.error or '?'}")
        left = [a.instance_id for a in self.attempts if a.instance_id is not None and self._billing(a.instance_id)]
        if left:
            lines.append(f"Destroy what is left with `vastnb down {' '.join(map(str, left))}` or at console.vast.ai.")
        else:
            lines.append("Nothing was left billing. Try again later, or relax the profile (see `vastnb offers`).")
        return ProvisionError(
            "\n".join(lines), attempts=[dataclasses.asdict(a) for a in self.attempts], left_billing=left
        )

    def _billing(self, instance_id: int) -> bool:
        rental = self.fleet.rental(instance_id)
        return rental is None or rental.billing  # not even recorded: it may bill
