"""The fleet: the instances vastnb launched, who owns them, and their teardown.

A :class:`Fleet` belongs to a :class:`~vastnb.Client`. It registers its Python process
as a *session* in the state store before creating anything, labels every instance
``vastnb:<name>:<session>``, and at interpreter exit destroys what this session
launched (except boxes marked ``keep``, which it lists with their price). An *orphan* is
a ``vastnb:`` instance on the account whose session has ended without keeping it:
``orphans()`` finds them, ``down_orphans()`` destroys them.
"""

from __future__ import annotations

import atexit
import dataclasses
import os
import re
import secrets
import sys
import tempfile
import time
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

from vastnb.lifecycle import onstart
from vastnb.lifecycle.box import Box
from vastnb.errors import ConfigError, InstanceCreateError, InstanceGoneError, TeardownError, VastError
from vastnb.backends.keys import KeyPair, ensure_keypair, ensure_registered
from vastnb.lifecycle.launch import LaunchPolicy, Progress, launch
from vastnb.offload import Session, SSHTransport, Transport
from vastnb.base.private import private_folder
from vastnb.profiles.profile import Profile
from vastnb.market.records import ActualStatus, CreatedInstance, Instance
from vastnb.market.selection import Candidate
from vastnb.lifecycle.store import SessionInfo, StateStore, StoredInstance

if TYPE_CHECKING:
    from vastnb.client import Client

__all__ = ["Fleet", "BoxOptions", "FleetEntry", "LABEL_PREFIX"]

LABEL_PREFIX = "vastnb:"
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,62}\Z")


@dataclass(frozen=True)
class BoxOptions:
    """How boxes are reached and guarded. ``home`` may contain ``{id}``."""

    home: str = "~/.cache/vastnb"  # where the worker lives on the box
    python: str = "python3"  # the box's Python (3.9 or newer)
    ssh_options: tuple[str, ...] = ()  # extra OpenSSH options, e.g. ("-F", "/dev/null")
    silence_s: float = 1800.0  # the box destroys itself after this long with no orchestrator


@dataclass(frozen=True)
class FleetEntry:
    """One ``vastnb:`` instance: what the market says, what the store says, who owns it."""

    instance: Instance
    stored: StoredInstance | None
    owner: str  # "this session", "session <id> (pid N)", "kept", "orphan", "unknown"

    @property
    def orphan(self) -> bool:
        return self.owner == "orphan"


def parse_label(label: str | None) -> tuple[str, str | None] | None:
    """(name, session) from a ``vastnb:<name>:<session>`` label; None if not vastnb's."""
    if not label or not label.startswith(LABEL_PREFIX):
        return None
    rest = label[len(LABEL_PREFIX):]
    name, _, session = rest.rpartition(":")
    return (name, session) if name else (rest, None)


class Fleet:
    """Launching, reattaching, listing and destroying a client's instances."""

    def __init__(self, client: Client, *, box: BoxOptions | None = None, policy: LaunchPolicy | None = None) -> None:
        self.client = client
        self.api = client.api
        self.url = client.api.base_url
        self.store = StateStore(client.home / "state.db")
        self.box = box or BoxOptions()
        # The simulator's boxes answer in milliseconds: poll it often.
        self.policy = policy or (LaunchPolicy(poll=0.1) if client.sim is not None else LaunchPolicy())
        self._session: SessionInfo | None = None
        self._keys: KeyPair | None = None

    @property
    def simulated(self) -> bool:
        return self.client.simulated

    @property
    def session_id(self) -> str:
        """This process's session, registered on first need (before any create)."""
        if self._session is None:
            self._session = self.store.new_session()
            atexit.register(self.at_exit)
        return self._session.id

    # -- launching ------------------------------------------------------------------------

    def launch(self, profile: Profile, *, name: str | None, keep: bool, progress: Progress | None) -> Box:
        name = name or f"{profile.name}-{secrets.token_hex(2)}"
        if not _NAME.match(name):
            raise ConfigError(f"name {name!r} is not usable: 1-63 letters, digits, '.', '_' or '-', starting with a letter or digit.")
        existing = self.store.find(self.url, name)
        if existing is not None and existing.live and self._exists(existing.id):
            raise ConfigError(f"an instance called {name!r} is already running (#{existing.id}): pick another name, "
                              f"or reattach to it with attach({name!r}).")  # fmt: skip
        return launch(self, profile, name, keep=keep, policy=self.policy, progress=progress)

    def ensure_key(self) -> KeyPair:
        """vastnb's key pair, registered on the account (Vast installs it on new instances)."""
        if self._keys is None:
            keys = ensure_keypair()
            ensure_registered(self.api, keys)
            self._keys = keys
        return self._keys

    def create(self, profile: Profile, candidate: Candidate, name: str) -> CreatedInstance:
        """Rent ``candidate``, its boot switch in its onstart, and record it at once
        (before any waiting). Not kept: a launcher that dies before the box is ready
        leaves an orphan, which the boot switch and the orphan sweep both end."""
        label = f"{LABEL_PREFIX}{name}:{self.session_id}"
        try:
            created = self.api.create_instance(
                candidate.offer.id, image=profile.image, disk_gb=profile.disk_gb, label=label, price=candidate.bid,
                runtype="ssh_direct" if profile.direct_ssh else "ssh", onstart=self._boot_switch(profile),
            )  # fmt: skip
        except InstanceCreateError as exc:
            if exc.created_instance_id is not None:
                self._record(profile, candidate, name, label, exc.created_instance_id, None)
            raise
        self._record(profile, candidate, name, label, created.id, created.instance_api_key)
        return created

    def _boot_switch(self, profile: Profile) -> str:
        """The onstart that guards the instance from its container's first second."""
        max_s = profile.max_duration_hours * 3600 if profile.max_duration_hours else None
        url, clock = self._self_destruct()
        home = str(self._sim_boxes.root / "{id}") if self._sim_boxes is not None else self.box.home
        return onstart.boot_switch(url=url, home=home, silence_s=self.box.silence_s, max_s=max_s, clock=clock)

    def _self_destruct(self) -> tuple[str, str | None]:
        """How a box destroys itself: (the API base, or the embedded simulator's spool
        folder; the simulator's clock file, which a simulated box's time follows)."""
        if self._sim_boxes is None:
            return self.api.base_url, None
        market = self.client.sim.market
        return str(market.selfdestruct_url()), str(market.clock_path)

    def _record(self, profile: Profile, candidate: Candidate, name: str, label: str, instance_id: int,
                key: str | None) -> None:  # fmt: skip
        offer = candidate.offer
        self.store.record(StoredInstance(
            url=self.url, id=instance_id, name=name, profile=profile.name, label=label, session=self.session_id,
            keep=False, offer_id=offer.id, machine_id=offer.machine_id, gpu=offer.gpu_name, num_gpus=offer.num_gpus,
            price_per_hour=candidate.price, bid=candidate.bid, max_duration_hours=profile.max_duration_hours,
            instance_key=key, state="created", created_at=time.time(), destroyed_at=None,
        ))  # fmt: skip

    def reachable(self, instance: Instance) -> bool:
        """Whether a running instance can take connections yet."""
        boxes = self._sim_boxes
        if boxes is not None:
            return boxes.powered(instance.id)
        return instance.ssh_address() is not None

    @cached_property
    def _sim_boxes(self) -> Any:
        """The simulator's local machines, when instances are local worker processes."""
        sim = self.client.sim
        return sim.market.boxes if sim is not None and sim.market.config.ssh_address is None else None

    def transport(self, instance_id: int) -> Transport:
        """How to reach instance ``instance_id``'s worker."""
        if self._sim_boxes is not None:
            return self._sim_boxes.transport(instance_id)
        instance = self.api.show_instance(instance_id)
        address = instance.ssh_address() if instance else None
        if address is None:
            state = instance.actual_status.value if instance else "gone"
            raise InstanceGoneError(f"instance {instance_id} has no SSH address ({state}): start it first.")
        hosts = self.client.home / "known_hosts"
        hosts.mkdir(parents=True, exist_ok=True)
        return SSHTransport(
            host=address[0], port=address[1], user="root", identity=self.ensure_key().private,
            known_hosts=hosts / str(instance_id), control_dir=_control_dir(),
            home=self.box.home.format(id=instance_id), python=self.box.python, options=list(self.box.ssh_options),
        )  # fmt: skip

    def arm_watchdog(self, session: Session, instance_id: int) -> dict[str, Any]:
        """Tell the box to destroy itself past the profile's max duration, or after
        ``silence_s`` without any orchestrator. It gets the instance's own restricted
        key, never the account's."""
        from vastnb_worker import watchdog

        stored = self.store.get(self.url, instance_id)
        if stored is None or not stored.instance_key:
            return {}
        remaining = None
        if stored.max_duration_hours:
            remaining = stored.max_duration_hours * 3600 - (time.time() - stored.created_at)
        url, clock = self._self_destruct()
        return session.control(watchdog.arm, instance_id, url, stored.instance_key, remaining_s=remaining,
                               silence_s=self.box.silence_s, clock=clock)  # type: ignore[no-any-return]  # fmt: skip

    def wait_ready(self, box: Box, *, timeout: float) -> None:
        """After a start: wait until the instance runs and its worker answers."""
        deadline = time.monotonic() + timeout
        while True:
            instance = box.info()
            if instance.actual_status is ActualStatus.RUNNING and self.reachable(instance):
                break
            if instance.actual_status.is_failed:
                raise InstanceGoneError(f"instance {box.id} is {instance.actual_status.value}: it will not start; destroy it with down().")
            if time.monotonic() > deadline:
                raise TimeoutError(f"instance {box.id} did not start within {timeout:.0f} s ({instance.status_msg}); it is still billing its disk.")
            time.sleep(self.policy.poll)
        self.store.update(self.url, box.id, state="running")
        self.arm_watchdog(box.session, box.id)

    # -- teardown -------------------------------------------------------------------------

    def destroy(self, instance_id: int, note: str = "destroyed") -> bool:
        """Destroy (idempotent); True if this call did it. API errors propagate: an
        instance that may still bill is never reported as gone."""
        done = self.api.destroy_instance(instance_id)
        self.store.destroyed(self.url, instance_id, note if done else "already gone")
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
            except Exception as exc:  # whatever went wrong with one, the next is still tried
                failed[instance_id] = str(exc) if isinstance(exc, VastError) else f"{type(exc).__name__}: {exc}"
        if failed:
            raise TeardownError(destroyed, failed)
        return destroyed

    def forget(self, instance_id: int, note: str) -> None:
        self.store.destroyed(self.url, instance_id, note)

    def close(self) -> None:
        """End this session now, as at interpreter exit (see :meth:`at_exit`)."""
        atexit.unregister(self.at_exit)
        self.at_exit()

    def at_exit(self) -> None:
        """At interpreter exit: destroy this session's boxes, except kept ones (listed)."""
        if self._session is None or self._session.ended_at is not None:
            return
        mine = {s.id: s for s in self.store.instances(self.url) if s.session == self._session.id}
        kept = [s for s in mine.values() if s.keep]
        doomed = [i for i, s in mine.items() if not s.keep]
        try:
            # Also what the market labels as ours but the store missed (a Ctrl-C that
            # landed between the create's answer and its row).
            for instance in self.api.list_instances():
                parsed = parse_label(instance.label)
                if parsed and parsed[1] == self._session.id and instance.id not in mine:
                    doomed.append(instance.id)
        except Exception as exc:
            print(f"vastnb: could not list instances at exit ({exc}); destroying the recorded ones", file=sys.stderr)
        try:
            self.destroy_every(doomed, "destroyed at interpreter exit")
        except TeardownError as exc:
            print(f"vastnb: at exit, {exc}", file=sys.stderr)
        for stored in kept:
            price = f"${stored.price_per_hour:.3f}/h" if stored.price_per_hour is not None else "price unknown"
            print(f"vastnb: kept running: {stored.name} (#{stored.id}, {price}); "
                  f"end it with `vastnb down {stored.name}`", file=sys.stderr)  # fmt: skip
        self.store.end_session(self._session.id)
        self._session = dataclasses.replace(self._session, ended_at=time.time())

    # -- listing --------------------------------------------------------------------------

    def entries(self) -> list[FleetEntry]:
        """Every ``vastnb:`` instance on the account, with its owner. Store rows whose
        instance is gone from the market are marked destroyed on the way."""
        stored = {s.id: s for s in self.store.instances(self.url)}
        out = []
        for instance in self.api.list_instances():
            parsed = parse_label(instance.label)
            if parsed is None:
                continue  # not ours: a user's own rentals are never touched
            row = stored.pop(instance.id, None)
            out.append(FleetEntry(instance, row, self._owner(row.session if row else parsed[1], row)))
        for gone in stored.values():
            self.forget(gone.id, "gone from the market")
        return out

    def _owner(self, session: str | None, row: StoredInstance | None) -> str:
        if session is None:
            return "unknown"
        if self._session is not None and session == self._session.id:
            return "this session"
        if row is not None and row.keep:
            return "kept"
        info = self.store.session(session)
        if info is None:
            return "unknown"  # launched with another state store (another machine?)
        return f"session {info.id} (pid {info.pid})" if info.alive else "orphan"

    def costs(self, since: float) -> dict[int, float]:
        """Dollars charged per instance id since ``since`` (epoch), from the market's
        own charges."""
        out: dict[int, float] = {}
        for charge in self.api.charges(since, time.time() + 366 * 86400):
            if charge.instance_id is not None:
                out[charge.instance_id] = out.get(charge.instance_id, 0.0) + charge.amount
        return out

    def orphans(self) -> list[FleetEntry]:
        return [e for e in self.entries() if e.orphan]

    def _exists(self, instance_id: int) -> bool:
        if self.api.show_instance(instance_id) is not None:
            return True
        self.forget(instance_id, "gone from the market")
        return False

    def resolve(self, ref: str | int) -> StoredInstance:
        """The stored instance named ``ref`` (a name, or an instance id)."""
        stored = None
        if isinstance(ref, int) or str(ref).isdigit():
            stored = self.store.get(self.url, int(ref))
        if stored is None:
            stored = self.store.find(self.url, str(ref))
        if stored is None:
            raise InstanceGoneError(f"no instance called {ref!r} in vastnb's state store ({self.store.path}); "
                                    "`vastnb ps` lists the ones that exist.")  # fmt: skip
        return stored

    def attach(self, ref: str | int) -> Box:
        """Adopt an instance launched earlier (by this or another session) as a Box."""
        stored = self.resolve(ref)
        if not stored.live or not self._exists(stored.id):
            raise InstanceGoneError(f"instance {stored.id} ({stored.name}) was destroyed: launch a new one.")
        self.store.update(self.url, stored.id, session=self.session_id, note=f"attached by session {self.session_id}")
        return Box(self, self.store.get(self.url, stored.id) or stored)


def _control_dir() -> Path:
    """A short folder for OpenSSH ControlMaster sockets (a socket path must stay under
    ~100 bytes, and VASTNB_HOME may be deep)."""
    return private_folder(Path(tempfile.gettempdir()) / f"vastnb-{os.getuid()}", what="the SSH control-socket folder")
