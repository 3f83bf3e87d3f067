"""A month of activity on the simulated market: real rentals, driven on the simulator's clock.

Cost reports, budgets and their reconciliation need a history to work on. This module makes
one the way vastnb would have lived it, with no hand-written numbers: :func:`schedule` draws
the runs of a :class:`Plan` (seeded: the same seed, the same runs), and
:func:`simulate_month` rents each run's instance on the simulated market, as a job of the
job queue, and drives it through its life on the simulated clock, from the first day of the
next calendar month (UTC). Every change (a rental, its image loaded, data moved, a stop
overnight, a start, a box preempted and replaced on another machine, the end) is followed at
once by a reading of the account's instances, as a controller's poll is: so the ledger of
:mod:`vastnb.lifecycle.ledger` records each change when it happens, as the market bills it.
A run ends with a stop, then a destroy a minute later, as a job's box does: its GPUs' last
second is read as closely as its first, and the same seed gives the same report to the cent.

The generator stands in for the job controller and the code of each run: no worker is
contacted, and nothing is checked against budgets before a rental (a history, not a policy);
``watch``, called with the simulated time after every step, is where a budget enforcer
looks on (it must not end the month's boxes). No job controller may run on the market
meanwhile. Nothing is left billing: each box is destroyed when its run ends (all of them if
the month fails). The boxes' boot switches still guard them, so the fleet's ``silence_s``
and each profile's ``max_duration_hours`` must outlast the longest run.
"""

from __future__ import annotations

import heapq
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from vastnb.costs.guard import month_end
from vastnb.jobs.queue import JobQueue
from vastnb.jobs.states import JobState
from vastnb.jobs.submit import settings_of
from vastnb.lifecycle.fleet import Fleet
from vastnb.lifecycle.states import InstanceState
from vastnb.market.selection import Candidate
from vastnb.profiles.profile import Profile

if TYPE_CHECKING:
    from vastnb.sim import Simulator

__all__ = ["Workload", "Plan", "Run", "Month", "schedule", "simulate_month"]

HOUR = 3600.0
DAY = 86_400.0
GB = 1_000_000_000
SEEN_S = 0.05  # how soon after a change of the market it is read
RECOVERY_S = 300.0  # from a box lost to its replacement rented, as a controller would


@dataclass(frozen=True)
class Workload:
    """One kind of run a team does in a month, charged to its ``profile``'s team and project
    (``Profile.charged_to`` changes them): ``runs`` runs, each needing from ``hours[0]`` to
    ``hours[1]`` hours of GPU time. With ``pause_chance``, a run is stopped part-way for the
    plan's ``pause_hours`` (overnight) and started again; with ``interrupt_chance`` (an
    interruptible profile), its box is preempted part-way and the run goes on on another.
    Each run pulls ``download_gb`` at its start and pushes ``upload_gb`` at its end."""

    profile: Profile
    runs: int
    hours: tuple[float, float]
    name: str | None = None  # its jobs are <name>-01, <name>-02...; default: the project, else the profile
    pause_chance: float = 0.0
    interrupt_chance: float = 0.0
    download_gb: float = 0.0
    upload_gb: float = 0.0


@dataclass(frozen=True)
class Plan:
    """What two (or more) teams run in ``days`` days (28 fits in every calendar month)."""

    workloads: tuple[Workload, ...]
    days: int = 28
    pause_hours: float = 12.0


@dataclass(frozen=True)
class Run:
    """One run of a schedule: a job of ``profile`` from ``start`` (seconds into the month)
    for ``hours`` of GPU time; stopped after ``pause_after`` hours of it, or its box lost
    after ``interrupt_after`` hours (None: neither)."""

    job: str
    profile: Profile
    start: float
    hours: float
    pause_after: float | None
    pause_hours: float
    interrupt_after: float | None
    download_gb: float
    upload_gb: float

    @property
    def end(self) -> float:
        """When it ends, in seconds into the month."""
        return self.start + (self.hours + (0.0 if self.pause_after is None else self.pause_hours)) * HOUR


@dataclass(frozen=True)
class Month:
    """What :func:`simulate_month` did: from ``start`` to ``end`` (epoch seconds, on the
    simulated clock), ``runs`` as jobs on ``instances`` instances."""

    start: float
    end: float
    runs: tuple[Run, ...]
    instances: int
    pauses: int
    interruptions: int

    def __str__(self) -> str:
        return (
            f"{len(self.runs)} jobs on {self.instances} instances over {(self.end - self.start) / DAY:.1f} days: "
            f"{self.pauses} stopped overnight and started again, {self.interruptions} preempted and replaced"
        )


def schedule(plan: Plan, *, seed: int) -> list[Run]:
    """The runs of ``plan``, drawn with ``seed``, in the order they start. Each starts on a
    day of the month at a working hour (08:00 to 20:00 UTC) and ends within the month."""
    rng = random.Random(seed)
    runs: list[Run] = []
    for work in plan.workloads:
        if work.interrupt_chance and not work.profile.interruptible:
            raise ValueError(f"profile {work.profile.name!r} is on demand: only interruptible boxes are preempted")
        drawn = []
        for _ in range(work.runs):
            hours = round(rng.uniform(*work.hours), 2)
            pause = round(rng.uniform(0.3, 0.7) * hours, 2) if rng.random() < work.pause_chance else None
            lost = round(rng.uniform(0.2, 0.7) * hours, 2) if rng.random() < work.interrupt_chance else None
            lost = None if pause is not None or hours < 1 else lost  # one mishap at most, replaced in time
            span = hours + (plan.pause_hours if pause is not None else 0.0)
            last_day = int((plan.days * DAY - (span + 20) * HOUR) // DAY)
            if last_day < 0:
                raise ValueError(f"a run of {span:g} h of {work.profile.name!r} does not fit in {plan.days} days")
            start = rng.randint(0, last_day) * DAY + rng.randint(8 * 60, 20 * 60) * 60.0
            drawn.append((start, hours, pause, lost))
        name = work.name or work.profile.project or work.profile.name
        for n, (start, hours, pause, lost) in enumerate(sorted(drawn), 1):
            gb = (work.download_gb, work.upload_gb)
            runs.append(Run(f"{name}-{n:02d}", work.profile, start, hours, pause, plan.pause_hours, lost, *gb))
    return sorted(runs, key=lambda r: (r.start, r.job))


def simulate_month(
    fleet: Fleet, sim: Simulator, plan: Plan, *, seed: int, watch: Callable[[float], None] | None = None
) -> Month:
    """Live ``plan``'s month (see the module doc) on ``sim`` through ``fleet``, from the
    start of the next calendar month (UTC) on the simulated clock; ``watch`` is called with
    the simulated time after every step. What it did."""
    runs = schedule(plan, seed=seed)
    for run in runs:
        span = run.end - run.start
        if run.profile.max_duration_hours and span > run.profile.max_duration_hours * HOUR:
            raise ValueError(f"{run.job} spans {span / HOUR:g} h: over {run.profile.name!r}'s max_duration_hours")
        if span > fleet.backend.box.silence_s:
            raise ValueError(f"{run.job} spans {span / HOUR:g} h, over the boxes' silence_s: they would end themselves")
    month = _Month(fleet, sim)
    start = month_end(sim.market.now())
    steps: list[tuple[float, int, str, _Live]] = []  # the timeline: (when, order, action, run)
    for run in runs:
        each, at = _Live(run), start + run.start
        done = start + run.end  # stopped (its GPUs end first, as a job's box does), then destroyed
        todo = [(at, "rent"), (done, "finish"), (done + 60, "end")]
        if run.pause_after is not None:
            todo += [(at + run.pause_after * HOUR, "stop"), (at + (run.pause_after + run.pause_hours) * HOUR, "start")]
        if run.interrupt_after is not None:
            lost = at + run.interrupt_after * HOUR
            todo += [(lost, "lose"), (lost + RECOVERY_S, "rent")]  # a replacement, once the loss is seen
        for when, action in todo:
            heapq.heappush(steps, (when, len(steps), action, each))
    # No worker runs on these boxes: there is no watchdog whose budget deadline a stop or a
    # destroy would move (vastnb.costs.deadline), so the fleet's hook for that is held.
    held, fleet.on_change = fleet.on_change, None
    try:
        while steps:
            at, _, action, each = heapq.heappop(steps)
            if action == "rent":
                month.prepare(each)  # queued, an offer chosen: the rental itself comes on time
            month.advance(at - sim.market.now())
            getattr(month, action)(each)
            if watch is not None:
                watch(sim.market.now())
    except BaseException:
        month.abandon()
        raise
    finally:
        fleet.on_change = held
    return Month(start, sim.market.now(), tuple(runs), month.boxes, month.pauses, month.interruptions)


@dataclass
class _Live:
    """A run under way: its job, its box now and the offer for the next, the machines its boxes were lost on."""

    run: Run
    job: int = 0
    instance: int = 0
    boxes: int = 0
    offer: Candidate | None = None
    lost: list[int] = field(default_factory=list)


class _Month:
    """The actions of a month's timeline, each followed by a reading of the instances."""

    def __init__(self, fleet: Fleet, sim: Simulator) -> None:
        self.fleet, self.sim = fleet, sim
        self.queue = JobQueue(fleet.store, fleet.url)
        self.config = sim.market.config  # its delays: each change is read when it happens
        self.boxes = self.pauses = self.interruptions = 0
        self.live: set[int] = set()  # its instances not destroyed yet
        self.unfinished: set[int] = set()  # its jobs not succeeded yet

    def advance(self, seconds: float) -> None:
        if seconds > 0:  # the clock only moves on
            self.sim.advance(seconds)

    def read(self) -> None:
        self.fleet.api.list_instances()  # every instance read: the ledger sees the change

    def settle(self, since: float, *delays: float) -> None:
        """Read the instances just after each change the market makes ``delays`` (one after
        the other) from ``since``: the ledger sees each when it happens."""
        due = since
        for delay in delays:
            due += delay
            self.advance(due + SEEN_S - self.sim.market.now())
            self.read()

    def prepare(self, each: _Live) -> None:
        """Its job queued, and claimed at once by this stand-in for a controller; its offer chosen."""
        run = each.run
        if not each.job:
            settings = settings_of(run.profile, retry_on_error=0, trust=False)
            each.job = self.queue.submit(run.job, run.profile.name, b"", settings=settings).id
            self.unfinished.add(each.job)
            self.queue.transition(each.job, JobState.PROVISIONING, "claimed", "by the simulated month")
        offers = [c for c in self.fleet.select(run.profile) if c.offer.machine_id not in each.lost]
        if not offers:
            raise RuntimeError(f"no offer for {run.job} on a machine other than those it was preempted on")
        each.offer = offers[0]

    def rent(self, each: _Live) -> None:
        run, chosen = each.run, each.offer
        assert chosen is not None, "prepared first"
        each.boxes += 1
        self.boxes += 1
        at = self.sim.market.now()
        each.instance = self.fleet.create(run.profile, chosen, f"{run.job}-{each.boxes}", job=each.job).id
        self.live.add(each.instance)
        self.read()
        self.settle(at, self.config.create_delay, self.config.load_delay)  # its image pulled, then running
        self.fleet.transition(each.instance, InstanceState.RUNNING, "running (simulated month)")
        self.queue.place(each.job, instance_id=each.instance, task_id=None)
        self.queue.transition(
            each.job, JobState.RUNNING, "running", instance_id=each.instance, dph_total=chosen.price, attempt=True
        )
        if run.download_gb and each.boxes == 1:  # its data, pulled once
            self.sim.market.record_traffic(each.instance, down_bytes=int(run.download_gb * GB))
            self.read()

    def stop(self, each: _Live) -> None:
        self.fleet.api.stop_instance(each.instance)  # as Fleet.stop, read before it is recorded
        self.read()
        self.fleet.transition(each.instance, InstanceState.STOPPED)

    def start(self, each: _Live) -> None:
        at = self.sim.market.now()
        self.pauses += 1
        self.fleet.api.start_instance(each.instance)
        self.read()
        self.fleet.transition(each.instance, InstanceState.STARTING)
        self.settle(at, self.config.schedule_delay, self.config.load_delay)  # its GPUs free again, then loaded
        self.fleet.transition(each.instance, InstanceState.RUNNING, "running again")

    def lose(self, each: _Live) -> None:
        """A higher bid takes the box's GPUs: it is destroyed, and the run goes on on a box of
        another machine rented ``RECOVERY_S`` later."""
        self.sim.preempt(each.instance, resume_after=None)
        self.interruptions += 1
        self.read()
        lost = self.fleet.rental(each.instance)
        if lost is not None and lost.machine_id is not None:
            each.lost.append(lost.machine_id)
        self.queue.transition(each.job, JobState.RECOVERING, "preempted", instance_id=each.instance, recovery=True)
        self.fleet.destroy(each.instance, "preempted: replaced (simulated month)")
        self.live.discard(each.instance)
        self.queue.transition(each.job, JobState.PROVISIONING, "provisioning")

    def finish(self, each: _Live) -> None:
        """Done: stopped, and its results and checkpoints uploaded."""
        self.stop(each)
        if each.run.upload_gb:
            self.sim.market.record_traffic(each.instance, up_bytes=int(each.run.upload_gb * GB))
            self.read()

    def end(self, each: _Live) -> None:
        self.fleet.destroy(each.instance, "run finished (simulated month)")
        self.live.discard(each.instance)
        self.queue.transition(each.job, JobState.SUCCEEDED, "succeeded", instance_id=each.instance)
        self.unfinished.discard(each.job)
        self.read()

    def abandon(self) -> None:
        """The month failed: its boxes are destroyed, and their jobs failed (no controller adopts them)."""
        for job in sorted(self.unfinished):
            self.queue.transition(job, JobState.FAILED, "failed", "the simulated month failed", error="abandoned")
        self.fleet.destroy_every(sorted(self.live), "the simulated month failed")
