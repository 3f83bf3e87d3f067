"""The jobs side of :class:`~vastnb.Client`: ``submit``, ``jobs``, ``job`` and the controller."""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

from vastnb.jobs import submit as work
from vastnb.jobs.controller import ControllerProcess
from vastnb.jobs.job import Job
from vastnb.jobs.service import Jobs
from vastnb.lifecycle.box import ranks_for
from vastnb.offload.cells import CELL_NAME
from vastnb.profiles.profile import Profile

if TYPE_CHECKING:
    import pandas as pd

    from vastnb.lifecycle.fleet import Fleet
    from vastnb.market.selection import Candidate

__all__ = ["JobsMixin"]


class JobsMixin:
    """Needs of the client: its ``fleet``, ``home``, ``profile()`` and what a controller
    started from it runs with."""

    home: Path

    @property
    def fleet(self) -> Fleet:
        raise NotImplementedError

    def profile(self, name: str) -> Profile:
        raise NotImplementedError

    def select(self, profile: str | Profile) -> list[Candidate]:
        raise NotImplementedError

    def _check_budgets(self, profile: Profile, what: str) -> None:
        raise NotImplementedError

    def _controller_file(self) -> dict[str, Any]:
        raise NotImplementedError

    def _market_frame(self, frame: pd.DataFrame) -> pd.DataFrame:
        raise NotImplementedError

    def _controller_env(self) -> dict[str, str]:
        raise NotImplementedError

    @cached_property
    def _jobs(self) -> Jobs:
        return Jobs(self.fleet, self.home, controller_settings=self._controller_file, env=self._controller_env)

    def submit(
        self,
        fn: Callable[..., Any],
        *,
        args: Sequence[Any] = (),
        kwargs: Mapping[str, Any] | None = None,
        profile: str | Profile,
        name: str | None = None,
        checkpoint: str | None = None,
        max_recoveries: int = 3,
        priority: int = 0,
        retry_on_error: int = 0,
        interruptible: bool | None = None,
        bid: str | float | None = None,
        trust: bool = False,
        team: str | None = None,
        project: str | None = None,
        nproc: int | str | None = None,
    ) -> Job:
        """Queue ``fn(*args, **kwargs)`` as a job and return at once. A controller process
        (started if none runs) rents a box for ``profile``, runs it there, and when the box
        is lost (preempted, outbid, offline, silent) rents another, up to ``max_recoveries``
        times; inside, ``CheckpointManager()`` resumes from ``checkpoint``. Higher
        ``priority`` runs first. An exception of ``fn`` fails the job (run again up to
        ``retry_on_error`` times). ``trust`` decodes its result by full pickle. ``team`` and
        ``project`` (default: the profile's) say whose budget it spends: a job whose worst case
        breaks one is refused (:class:`~vastnb.errors.BudgetError`) and nothing is queued.
        ``nproc`` runs it in that many ranks under torch.distributed's launcher (``"gpu"``:
        one per GPU of the profile), rank 0's value its result; a recovery starts the whole
        group again on the new box."""
        gpus = (profile if isinstance(profile, Profile) else self.profile(profile)).num_gpus
        ranked = ranks_for(nproc, gpus, f"profile {getattr(profile, 'name', profile)!r}")
        if ranked is not None:
            from vastnb_worker import distributed

            fn, args, kwargs = distributed.run_ranks, (fn, tuple(args), dict(kwargs or {})), {"nproc": ranked}
        return self._submit(
            work.call_work(fn, args, kwargs),
            "call",
            profile,
            interruptible,
            bid,
            team,
            project,
            name=name,
            checkpoint=checkpoint,
            max_recoveries=max_recoveries,
            priority=priority,
            retry_on_error=retry_on_error,
            trust=trust,
        )

    def submit_cell(
        self,
        source: str,
        *,
        push: Mapping[str, Any] | None = None,
        pull: Sequence[str] = (),
        cell: str = CELL_NAME,
        profile: str | Profile,
        name: str | None = None,
        checkpoint: str | None = None,
        max_recoveries: int = 3,
        priority: int = 0,
        retry_on_error: int = 0,
        interruptible: bool | None = None,
        bid: str | float | None = None,
        trust: bool = False,
        team: str | None = None,
        project: str | None = None,
    ) -> Job:
        """Queue a notebook cell as a job (``%%vast job``): the ``push`` names are its inputs,
        stored with it so every attempt starts from the same ones. See :meth:`submit`."""
        return self._submit(
            work.cell_work(source, push or {}, pull, cell),
            "cell",
            profile,
            interruptible,
            bid,
            team,
            project,
            name=name,
            checkpoint=checkpoint,
            max_recoveries=max_recoveries,
            priority=priority,
            retry_on_error=retry_on_error,
            trust=trust,
        )

    def submit_script(
        self,
        path: str | os.PathLike[str],
        argv: Sequence[str] = (),
        *,
        profile: str | Profile,
        name: str | None = None,
        checkpoint: str | None = None,
        max_recoveries: int = 3,
        priority: int = 0,
        retry_on_error: int = 0,
        interruptible: bool | None = None,
        bid: str | float | None = None,
        team: str | None = None,
        project: str | None = None,
    ) -> Job:
        """Queue a script (``vastnb submit train.py -- args``), with the local modules it
        imports, run as ``__main__`` with ``sys.argv``. See :meth:`submit`."""
        return self._submit(
            work.script_work(path, argv),
            "call",
            profile,
            interruptible,
            bid,
            team,
            project,
            name=name or Path(path).stem,
            checkpoint=checkpoint,
            max_recoveries=max_recoveries,
            priority=priority,
            retry_on_error=retry_on_error,
            trust=False,
        )

    def _submit(
        self,
        payload: bytes,
        kind: str,
        profile: str | Profile,
        interruptible: bool | None,
        bid: str | float | None,
        team: str | None,
        project: str | None,
        **settings: Any,
    ) -> Job:
        chosen = profile if isinstance(profile, Profile) else self.profile(profile)
        chosen = chosen.rented_as(interruptible=interruptible, bid=bid).charged_to(team, project)
        self._check_budgets(chosen, "this job")  # before anything is queued
        self.select(chosen)  # no offer fits now: NoOffersError says why, and nothing is queued
        return self._jobs.submit(payload, chosen, kind=kind, **settings)

    def jobs(self) -> pd.DataFrame:
        """Every job of this market: name, state, profile, attempts, recoveries, box, runtime, cost."""
        return self._market_frame(self._jobs.frame())  # its costs come from the market

    def job(self, ref: str | int) -> Job:
        """The job called ``ref`` (the latest of that name) or of id ``ref``, from any process."""
        return self._jobs.job(ref)

    @property
    def controller(self) -> ControllerProcess:
        """The job controller of this market: ``status()``, ``ensure()`` (start one unless one runs), ``stop()``."""
        return self._jobs.controller
