"""The fleet: the one owner of the instances vastnb rents.

A :class:`Fleet` belongs to a :class:`~vastnb.Client`. It is the only writer of instance
rows and of their state (every other part asks it): it records an instance right after
the create call answers, moves it through the state machine of
:mod:`~vastnb.lifecycle.states`, and destroys it. It registers its Python process as a
*session* in the state store before creating anything, labels every instance
``vastnb:<name>:<session>``, and at interpreter exit destroys what this session launched
(except boxes marked ``keep``, which it lists with their price). An *orphan* is a
``vastnb:`` instance on the account whose session has ended without keeping it:
``orphans()`` finds them, ``down_orphans()`` destroys them.
"""

from __future__ import annotations

import atexit
import contextlib
import dataclasses
import re
import secrets
import sys
import time
from collections.abc import Callable, Collection
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from vastnb.backends.base import Backend
from vastnb.base.procs import login_name
from vastnb.errors import ConfigError, InstanceCreateError, InstanceGoneError, TeardownError, VastError
from vastnb.lifecycle import onstart
from vastnb.lifecycle.launch import LaunchPolicy, Progress, launch
from vastnb.lifecycle.ledger import Ledger
from vastnb.lifecycle.readiness import NotReady, wait_ready
from vastnb.lifecycle.rental import Rental
from vastnb.lifecycle.states import InstanceState
from vastnb.lifecycle.store import SessionInfo, StateStore
from vastnb.lifecycle.watchdog import arm_watchdog
from vastnb.market.records import CreatedInstance, Instance
from vastnb.market.selection import Candidate
from vastnb.offload import Session, Transport
from vastnb.profiles.profile import Profile

if TYPE_CHECKING:
    from vastnb.lifecycle.box import Box

__all__ = ["Fleet", "FleetEntry", "LABEL_PREFIX", "parse_label"]

LABEL_PREFIX = "vastnb:"
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,62}\Z")


@dataclass(frozen=True)
class FleetEntry:
    """One ``vastnb:`` instance on the market, with vastnb's record of it and its owner."""

    instance: Instance
    rental: Rental | None
    owner: str  # "this session", "session <id> (pid N)", "kept", "job <id>", "orphan", "unknown"

    @property
    def orphan(self) -> bool:
        return self.owner == "orphan"


def parse_label(label: str | None) -> tuple[str, str | None] | None:
    """(name, session) from a ``vastnb:<name>:<session>`` label; None if not vastnb's."""
    if not label or not label.startswith(LABEL_PREFIX):
        return None
    rest = label[len(LABEL_PREFIX) :]
    name, _, session = rest.rpartition(":")
    return (name, session) if name else (rest, None)


class Fleet:
    """Launching, reattaching, listing and destroying a client's instances."""

    def __init__(
        self,
        backend: Backend,
        store: StateStore,
        *,
        select: Callable[[Profile], list[Candidate]],
        policy: LaunchPolicy | None = None,
    ) -> None:
        self.backend = backend
        self.api = backend.api
        self.url = backend.api.base_url
        self.store = store
        self.policy = policy or LaunchPolicy(poll=backend.poll)
        self.select = select  # profile -> ranked candidates (the client's offer search)
        self._session: SessionInfo | None = None
        self.ledger = Ledger(store, self.url, self.api.now)  # every read of an instance is a reading of its bill
        #: Seconds until an instance's budget runs out, and why; told when one starts or ends
        #: billing (both set by vastnb.costs: a box's watchdog holds its budget).
        self.deadline: Callable[[Rental], tuple[float, str] | None] | None = None
        self.on_change: Callable[[int], None] | None = None
        self.api.observers.append(self.ledger.observe)

    @property
    def simulated(self) -> bool:
        return self.backend.simulated

    @property
    def session_id(self) -> str:
        """This process's session, registered on first need (before any create)."""
        if self._session is None:
            self._session = self.store.new_session()
            atexit.register(self.at_exit)
        return self._session.id

    # -- the records: read by anyone, written here only ----------------------------------

    def rental(self, instance_id: int) -> Rental | None:
        """vastnb's record of ``instance_id`` (None if it never rented it)."""
        return self.store.get(self.url, instance_id)

    def transition(self, instance_id: int, state: InstanceState, note: str | None = None) -> Rental | None:
        """Move ``instance_id`` to ``state`` (checked against the state machine)."""
        return self.store.transition(self.url, instance_id, state, note)

    def set_keep(self, instance_id: int, keep: bool) -> None:
        self.store.update(self.url, instance_id, keep=int(bool(keep)))

    def forget(self, instance_id: int, note: str) -> None:
        """The market no longer has it: record it destroyed."""
        self.transition(instance_id, InstanceState.DESTROYED, note)

    # -- launching ------------------------------------------------------------------------

    def launch(
        self,
        profile: Profile,
        *,
        name: str | None,
        keep: bool,
        progress: Progress | None,
        avoid: Collection[int] = (),
        job: int | None = None,
    ) -> Box:
        """Rent and ready a box for ``profile``; never on the machines in ``avoid``. ``job``
        owns it from its first row: its controller adopts it, nobody sweeps it."""
        name = name or f"{profile.name}-{secrets.token_hex(2)}"
        if not _NAME.match(name):
            raise ConfigError(
                f"name {name!r} is not usable: 1-63 letters, digits, '.', '_' or '-', starting with a letter or digit."
            )
        existing = self.store.find(self.url, name)
        if existing is not None and existing.live and self._exists(existing.id):
            raise ConfigError(
                f"an instance called {name!r} is already running (#{existing.id}): pick another name, "
                f"or reattach to it with attach({name!r})."
            )
        return launch(self, profile, name, keep=keep, policy=self.policy, progress=progress, avoid=avoid, job=job)

    def create(self, profile: Profile, candidate: Candidate, name: str, job: int | None = None) -> CreatedInstance:
        """Rent ``candidate``, its boot switch in its onstart, and record it at once
        (before any waiting). Not kept: a launcher that dies before the box is ready
        leaves an orphan, which the boot switch and the orphan sweep both end."""
        label = f"{LABEL_PREFIX}{name}:{self.session_id}"
        try:
            created = self.api.create_instance(
                candidate.offer.id,
                image=profile.image,
                disk_gb=profile.disk_gb,
                label=label,
                price=candidate.bid,
                runtype="ssh_direct" if profile.direct_ssh else "ssh",
                onstart=self._boot_switch(profile),
                env={"-n": profile.overlay} if profile.overlay else None,  # joins that overlay network
            )
        except InstanceCreateError as exc:
            if exc.created_instance_id is not None:
                self._record(profile, candidate, name, label, exc.created_instance_id, None, job)
            raise
        self._record(profile, candidate, name, label, created.id, created.instance_api_key, job)
        return created

    def _boot_switch(self, profile: Profile) -> str:
        """The onstart that guards the instance from its container's first second."""
        max_s = profile.max_duration_hours * 3600 if profile.max_duration_hours else None
        end = self.backend.self_destruct()
        home = self.backend.worker_home()
        return onstart.boot_switch(
            url=end.url, home=home, silence_s=self.backend.box.silence_s, max_s=max_s, clock=end.clock
        )

    def _record(
        self,
        profile: Profile,
        candidate: Candidate,
        name: str,
        label: str,
        instance_id: int,
        key: str | None,
        job: int | None,
    ) -> None:
        offer = candidate.offer
        self.store.record(
            Rental(
                url=self.url,
                id=instance_id,
                name=name,
                profile=profile.name,
                label=label,
                session=self.session_id,
                keep=False,
                offer_id=offer.id,
                machine_id=offer.machine_id,
                gpu_name=offer.gpu_name,
                num_gpus=offer.num_gpus,
                dph_total=candidate.price,
                bid=candidate.bid,
                max_duration_hours=profile.max_duration_hours,
                instance_key=key,
                state=InstanceState.CREATED,
                created_at=time.time(),
                destroyed_at=None,
                job=job,
                team=profile.team,
                project=profile.project,
                user=login_name(),
            )
        )

    def ready(self, instance_id: int, *, keep: bool) -> Rental:
        """The worker answers: kept from now on if ``keep`` (only now: a launcher that
        died before this point left an orphan, not a kept box)."""
        self.store.update(self.url, instance_id, keep=int(keep), note="worker ready")
        rental = self.rental(instance_id)
        assert rental is not None
        self._changed(instance_id)
        return rental

    def transport(self, instance_id: int) -> Transport:
        """How to reach instance ``instance_id``'s worker."""
        return self.backend.transport(instance_id)

    def arm_watchdog(self, session: Session, instance_id: int) -> dict[str, Any]:
        """Arm the box's watchdog (see :func:`vastnb.lifecycle.watchdog.arm_watchdog`)."""
        return arm_watchdog(self, session, instance_id)

    # -- a rented instance ---------------------------------------------------------------

    def stop(self, instance_id: int) -> None:
        """Stop the instance: GPU billing stops, its disk (and its files) stay, billed."""
        self.api.stop_instance(instance_id)
        self.transition(instance_id, InstanceState.STOPPED)
        self._changed(instance_id)

    def start(self, box: Box, *, wait: bool, timeout: float) -> None:
        """Start a stopped instance again; with ``wait``, until its worker answers."""
        self.api.start_instance(box.id)
        self.transition(box.id, InstanceState.STARTING)
        if not wait:
            return
        try:
            wait_ready(self, box.id, self.policy, timeout=timeout)
        except NotReady as exc:
            if exc.gone:
                raise InstanceGoneError(f"instance {box.id} {exc}: destroy it with down().") from None
            raise TimeoutError(f"instance {box.id} did not start: {exc}; it is still billing its disk.") from None
        self.arm_watchdog(box.session, box.id)
        self._changed(box.id)

    def _changed(self, instance_id: int) -> None:
        """What a box of a budget costs per hour changed: the others' deadlines move."""
        if self.on_change is not None:
            self.on_change(instance_id)

    # -- teardown -------------------------------------------------------------------------

    def destroy(self, instance_id: int, note: str = "destroyed") -> bool:
        """Destroy (idempotent); True if this call did it. API errors propagate: an
        instance that may still bill is never reported as gone."""
        with contextlib.suppress(VastError):  # never in the way of a destroy
            self.api.show_instance(instance_id)  # the ledger's last reading of it, up to this moment
        done = self.api.destroy_instance(instance_id)
        self.transition(instance_id, InstanceState.DESTROYED, note if done else "already gone")
        self.ledger.gone(instance_id)
        self._changed(instance_id)
        return done

    def destroy_every(self, instance_ids: list[int], note: str) -> list[int]:
        """Destroy each of ``instance_ids``, going on past failures; the ids this call
        destroyed. Raises :class:`~vastnb.errors.TeardownError` once all were tried, if
        any could not be destroyed."""
        destroyed, failed = [], {}
        for instance_id in instance_ids:
            try:
                if self.destroy(instance_id, note):
                    destroyed.append(instance_id)
            except Exception as exc:  # noqa: BLE001 - whatever went wrong with one, the next is still tried
                failed[instance_id] = str(exc) if isinstance(exc, VastError) else f"{type(exc).__name__}: {exc}"
        if failed:
            raise TeardownError(destroyed, failed)
        return destroyed

    def close(self) -> None:
        """End this session now, as at interpreter exit (see :meth:`at_exit`)."""
        atexit.unregister(self.at_exit)
        self.at_exit()

    def at_exit(self) -> None:
        """At interpreter exit: destroy this session's boxes, except kept ones (listed)."""
        if self._session is None or self._session.ended_at is not None:
            return
        mine = {r.id: r for r in self.store.instances(self.url) if r.session == self._session.id}
        kept = [r for r in mine.values() if r.keep]
        doomed = [i for i, r in mine.items() if not r.keep]
        try:
            # Also what the market labels as ours but the store missed (a Ctrl-C that
            # landed between the create's answer and its row).
            for instance in self.api.list_instances():
                parsed = parse_label(instance.label)
                if parsed and parsed[1] == self._session.id and instance.id not in mine:
                    doomed.append(instance.id)
        except Exception as exc:  # noqa: BLE001 - the recorded instances are destroyed anyway
            print(f"vastnb: could not list instances at exit ({exc}); destroying the recorded ones", file=sys.stderr)
        try:
            self.destroy_every(doomed, "destroyed at interpreter exit")
        except TeardownError as exc:
            print(f"vastnb: at exit, {exc}", file=sys.stderr)
        for rental in kept:
            price = f"${rental.dph_total:.3f}/h" if rental.dph_total is not None else "price unknown"
            print(
                f"vastnb: kept running: {rental.name} (#{rental.id}, {price}); end it with `vastnb down {rental.name}`",
                file=sys.stderr,
            )
        self.store.end_session(self._session.id)
        self._session = dataclasses.replace(self._session, ended_at=time.time())

    # -- listing --------------------------------------------------------------------------

    def entries(self) -> list[FleetEntry]:
        """Every ``vastnb:`` instance on the account, with its owner. Store rows whose
        instance is gone from the market are marked destroyed on the way."""
        rentals = {r.id: r for r in self.store.instances(self.url)}
        out = []
        for instance in self.api.list_instances():
            parsed = parse_label(instance.label)
            if parsed is None:
                continue  # not ours: a user's own rentals are never touched
            rental = rentals.pop(instance.id, None)
            out.append(FleetEntry(instance, rental, self._owner(rental.session if rental else parsed[1], rental)))
        for gone in rentals.values():
            self.forget(gone.id, "gone from the market")
        return out

    def _owner(self, session: str | None, rental: Rental | None) -> str:
        if rental is not None and rental.job is not None:
            return f"job {rental.job}"  # its controller's, whichever process that is now
        if session is None:
            return "unknown"
        if self._session is not None and session == self._session.id:
            return "this session"
        if rental is not None and rental.keep:
            return "kept"
        info = self.store.session(session)
        if info is None:
            return "unknown"  # launched with another state store (another machine?)
        return f"session {info.id} (pid {info.pid})" if info.alive else "orphan"

    def orphans(self) -> list[FleetEntry]:
        return [e for e in self.entries() if e.orphan]

    def _exists(self, instance_id: int) -> bool:
        if self.api.show_instance(instance_id) is not None:
            return True
        self.forget(instance_id, "gone from the market")
        return False

    def resolve(self, ref: str | int) -> Rental:
        """The rental named ``ref`` (a name, or an instance id)."""
        rental = None
        if isinstance(ref, int) or str(ref).isdigit():
            rental = self.rental(int(ref))
        if rental is None:
            rental = self.store.find(self.url, str(ref))
        if rental is None:
            raise InstanceGoneError(
                f"no instance called {ref!r} in vastnb's state store ({self.store.path}); "
                "`vastnb ps` lists the ones that exist."
            )
        return rental

    def attach(self, ref: str | int) -> Box:
        """Adopt an instance launched earlier (by this or another session) as a Box (a job's is only used)."""
        from vastnb.lifecycle.box import Box

        rental = self.resolve(ref)
        if not rental.live or not self._exists(rental.id):
            raise InstanceGoneError(f"instance {rental.id} ({rental.name}) was destroyed: launch a new one.")
        if rental.job is not None:  # a job's box stays its controller's: used here, never taken over
            return Box(self, rental)
        self.store.update(self.url, rental.id, session=self.session_id, note=f"attached by session {self.session_id}")
        return Box(self, self.rental(rental.id) or rental)
