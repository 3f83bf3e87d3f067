"""``Box``: a rented instance and the worker on it, as ``launch()`` and ``attach()`` give it.

Work goes to the box through an offload :class:`~vastnb.offload.Session` (connected on
first use, and again after a drop); the instance itself is managed through the fleet:
stop, start, down. ``down()`` is idempotent, and ``with vast.launch(...) as box:``
destroys the instance on every way out of the block, errors and Ctrl-C included.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any

from vastnb.errors import ConfigError, InstanceGoneError
from vastnb.lifecycle.rental import Rental
from vastnb.market.records import Instance
from vastnb.offload import CellResult, RemoteTask, ResultPolicy, Session, safe, trusted
from vastnb.offload.cells import CELL_NAME
from vastnb.offload.output import MetricLog

if TYPE_CHECKING:
    import pandas as pd

    from vastnb.lifecycle.fleet import Fleet
    from vastnb.storage.grants import Renewal

__all__ = ["ranks_for", "Box", "RunOptions"]


class Box:
    """A rented instance and the worker on it.

    ``run(fn, *args)`` runs ``fn`` on the box and returns its value; ``run_cell(source)``
    runs notebook source there. ``stop()``, ``start()`` and ``down()`` manage the rental.

    What comes back is decoded with the safe policy: plain data, numpy arrays and torch
    tensors (state_dicts included), never anything that runs code here, whatever the box
    sends. A box is a stranger's machine, whose operator can change what it returns.
    ``box.trust = True`` (or ``box.options(trust=True)`` for one call, ``%%vast run
    --trust`` for one cell) brings back any object (models, functions, your own classes)
    by full pickle: do it only for a box you trust, as such a result can run code in this
    notebook when it is unpickled.
    """

    def __init__(self, fleet: Fleet, record: Rental, *, session: Session | None = None) -> None:
        self._fleet = fleet
        self._record = record
        self._session = session
        self._metrics = session.metrics if session is not None else MetricLog()  # outlives each session
        self.trust = False
        self._grants: list[Renewal] = []

    def __repr__(self) -> str:
        r = self._record
        price = f" ${r.dph_total:.3f}/h" if r.dph_total is not None else ""
        mark = " SIMULATED" if self._fleet.simulated else ""
        return f"<Box {r.name!r} #{r.id} {r.num_gpus}x {r.gpu_name} {r.state.value}{price}{mark}>"

    # -- identity -----------------------------------------------------------------------

    @property
    def id(self) -> int:
        """The Vast instance id."""
        return self._record.id

    @property
    def name(self) -> str:
        return self._record.name

    @property
    def profile(self) -> str:
        return self._record.profile

    @property
    def price_per_hour(self) -> float | None:
        """What the rental costs per hour (the bid plus disk, for interruptible ones)."""
        return self._record.dph_total

    @property
    def rental(self) -> Rental:
        """vastnb's record of the instance: its state, owner, price as rented."""
        return self._record

    @property
    def simulated(self) -> bool:
        """True on the simulated market: its prices and costs are illustrative."""
        return self._fleet.simulated

    @property
    def keep(self) -> bool:
        """True: left running when this Python process exits (listed, with its $/h)."""
        return self._record.keep

    @keep.setter
    def keep(self, value: bool) -> None:
        self._fleet.set_keep(self.id, value)
        self._refresh()

    # -- the rental ---------------------------------------------------------------------

    def info(self) -> Instance:
        """The instance as the market reports it now. Raises if it is gone."""
        instance = self._fleet.api.show_instance(self.id)
        if instance is None:
            self._fleet.forget(self.id, "gone from the market")
            self._refresh()
            raise InstanceGoneError(
                f"instance {self.id} ({self.name}) no longer exists on the market: it was destroyed."
            )
        return instance

    @property
    def status(self) -> str:
        """``running``, ``loading``, ``stopped``, ... or ``destroyed``."""
        if not self._record.live:
            return "destroyed"
        try:
            return self.info().actual_status.value
        except InstanceGoneError:
            return "destroyed"

    def cost(self) -> float:
        """Dollars this instance has cost so far (GPU, disk and traffic), as the market
        charges it; after ``down()``, what it cost in all."""
        return round(self._fleet.api.charged_by_instance(self._record.created_at - 3600).get(self.id, 0.0), 6)

    def stop(self) -> None:
        """Stop the instance: GPU billing stops, its disk (and its files) stay, billed."""
        self._close_session()
        self._fleet.stop(self.id)
        self._refresh()

    def start(self, *, wait: bool = True, timeout: float = 600.0) -> None:
        """Start a stopped instance again and (by default) wait until its worker answers.
        The worker starts fresh: names defined by earlier runs are gone."""
        self._fleet.start(self, wait=wait, timeout=timeout)
        self._refresh()

    def down(self) -> bool:
        """Destroy the instance: billing stops for good, its disk is gone. Idempotent:
        True if this call destroyed it, False if it was already gone."""
        self._close_session()
        destroyed = self._fleet.destroy(self.id)
        self._refresh()
        return destroyed

    def __enter__(self) -> Box:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.down()

    # -- work ---------------------------------------------------------------------------

    @property
    def session(self) -> Session:
        """The offload session to this box's worker (connects on first use)."""
        if not self._record.live:
            raise InstanceGoneError(f"instance {self.id} ({self.name}) was destroyed: launch a new box.")
        if self._session is None:
            self._session = Session(self._fleet.transport(self.id), results=safe, metrics=self._metrics)
        return self._session

    def run(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Any:
        """``fn(*args, **kwargs)`` on the box, with its output streamed here; its value."""
        return self.options().run(fn, *args, **kwargs)

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> RemoteTask:
        """Start ``fn`` on the box and return at once: a handle to wait on or reattach."""
        return self.options().submit(fn, *args, **kwargs)

    def run_cell(
        self,
        source: str,
        *,
        push: Mapping[str, Any] | None = None,
        pull: Iterable[str] = (),
        name: str = CELL_NAME,
    ) -> CellResult:
        """Run notebook ``source`` on the box with ``push`` defined; the ``pull`` names
        come back, and ``.value`` is the last expression's value. ``name`` is how a
        traceback names the cell."""
        return self.options().run_cell(source, push=push, pull=pull, name=name)

    def options(self, *, trust: bool | None = None, nproc: int | str | None = None, ranks: str = "0") -> RunOptions:
        """This box with settings for the next calls, apart from their arguments:
        ``box.options(trust=True).run(fn, *args, **kwargs)``. ``trust`` (default: the
        box's ``trust``) brings results back by full pickle: see the class doc. ``nproc``
        runs a call in that many ranks under torch.distributed's elastic launcher (``"gpu"``:
        one per GPU of the box), returning rank 0's value, or every rank's in rank order
        with ``ranks="all"`` (see :mod:`vastnb_worker.distributed`)."""
        ranked = ranks_for(nproc, self.rental.num_gpus, self.name)
        return RunOptions(self, self.trust if trust is None else trust, nproc=ranked, ranks=ranks)

    def grant_storage(
        self,
        url: str,
        *,
        duration_s: int = 3600,
        endpoint_url: str | None = None,
        own_keys: bool = False,
    ) -> Renewal:
        """Give the box short-lived credentials for ``url`` (an ``s3://bucket/prefix``) and
        nothing else: STS credentials whose session policy allows that prefix's objects
        only, sent over this box's session (never through Vast's API), renewed before
        they expire until the box is closed or destroyed. Code on the box (a
        ``CheckpointManager(url)``) then needs no keys. A store without STS raises;
        ``own_keys=True`` sends your own long-lived keys instead, with a warning. See
        :mod:`vastnb.storage.grants`."""
        from vastnb.storage.grants import keep_granted

        renewal = keep_granted(self.session, url, duration_s=duration_s, endpoint_url=endpoint_url, own_keys=own_keys)
        self._grants.append(renewal)
        return renewal

    def metrics(self) -> pd.DataFrame:
        """What calls and cells on this box reported with ``vastnb_worker.report(step, loss=...)``
        (taken out of their output as it came): ``time`` (when it arrived), ``step``, ``rank``
        in ranks, a column per metric; the latest 100,000 reports."""
        return self._metrics.frame()

    def health(self) -> dict[str, Any]:
        """The box's Python, CUDA, GPUs, memory and disk, as its worker reports them."""
        return self.session.health

    # -- internals ----------------------------------------------------------------------

    def _close_session(self) -> None:
        for renewal in self._grants:
            renewal.stop()
        self._grants.clear()
        if self._session is not None:
            self._session.close()
            self._session.transport.close_master()
            self._session = None

    def _refresh(self) -> None:
        self._record = self._fleet.rental(self.id) or self._record


def ranks_for(nproc: int | str | None, gpus: int | None, what: str) -> int | None:
    """How many ranks ``nproc`` asks for on ``what`` with ``gpus`` GPUs (None: a plain call)."""
    if nproc is None:
        return None
    if nproc == "gpu":
        if not gpus:
            raise ConfigError(f"{what} has no GPU count on record: pass nproc=N (a number of ranks)")
        return int(gpus)
    if isinstance(nproc, bool) or not isinstance(nproc, int) or nproc < 1:
        raise ConfigError(f"nproc must be 'gpu' (one rank per GPU) or a number of ranks from 1, not {nproc!r}")
    return nproc


class RunOptions:
    """A box with settings for the calls made through it (see :meth:`Box.options`)."""

    def __init__(self, box: Box, trust: bool, *, nproc: int | None = None, ranks: str = "0") -> None:
        if ranks not in ("0", "all"):
            raise ConfigError(f"ranks must be '0' (rank 0's value) or 'all' (every rank's), not {ranks!r}")
        self.box, self.trust, self.nproc, self.ranks = box, trust, nproc, ranks
        self.results: ResultPolicy = trusted if trust else safe

    def __repr__(self) -> str:
        ranks = f" nproc={self.nproc} ranks={self.ranks}" if self.nproc else ""
        return f"<{self.box!r} options trust={self.trust}{ranks}>"

    def run(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Any:
        """``fn(*args, **kwargs)`` on the box; its value (see :meth:`Box.run`). With
        ``nproc``, in every rank: rank 0's value, or every rank's with ``ranks="all"``."""
        if self.nproc is not None:
            from vastnb_worker import distributed

            extra = {"nproc": self.nproc, "ranks": self.ranks}
            return self.box.session.invoke(distributed.run_ranks, (fn, args, kwargs), extra, results=self.results)
        return self.box.session.invoke(fn, args, kwargs, results=self.results)

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> RemoteTask:
        """Start ``fn`` detached (see :meth:`Box.submit`)."""
        return self.box.session.invoke(fn, args, kwargs, results=self.results, detach=True)

    def run_cell(
        self,
        source: str,
        *,
        push: Mapping[str, Any] | None = None,
        pull: Iterable[str] = (),
        name: str = CELL_NAME,
    ) -> CellResult:
        """Run notebook ``source`` on the box (see :meth:`Box.run_cell`)."""
        if self.nproc is not None:  # in every rank, each with a namespace of its own
            from vastnb_worker import distributed

            outcome = self.run(distributed.cell, source, dict(push or {}), tuple(pull), name)
            result = CellResult(outcome["pull"])
            result.value = outcome["value"]
            return result
        return self.box.session.run_cell(source, push=push, pull=pull, name=name, results=self.results)

    def submit_cell(
        self,
        source: str,
        *,
        push: Mapping[str, Any] | None = None,
        pull: Iterable[str] = (),
        name: str = CELL_NAME,
    ) -> RemoteTask:
        """Start notebook ``source`` detached; its task's ``result()`` is a :class:`CellResult`."""
        return self.box.session.submit_cell(source, push=push, pull=pull, name=name, results=self.results)
