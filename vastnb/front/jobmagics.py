"""``%%vast job``, ``%vast jobs``, ``%vast logs``, ``%vast cancel``, ``%vast checkpoints`` and
``%vast dashboard``: jobs from a notebook. What shows live in a notebook (a widget kept current
by the client's poller) is the DataFrame the Python API returns where no widget can be drawn
(nbval, a terminal IPython), so stored outputs stay comparable."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, Any

from vastnb.front.cellvars import cell_push, names
from vastnb.front.jobcommands import job_settings
from vastnb.front.notices import told_as

if TYPE_CHECKING:
    from vastnb.client import Client

__all__ = ["JobMagicsMixin", "rich_frontend"]


def rich_frontend() -> bool:
    """True when widgets can be drawn (:func:`vastnb.front.widgets.base.rich_frontend`), asked
    when a subcommand shows something: the widgets package, which imports the lifecycle and
    the offload sessions, loads then, not with ``%load_ext vastnb``."""
    from vastnb.front.widgets import base

    return base.rich_frontend()


class JobMagicsMixin:
    """The job subcommands of :class:`~vastnb.front.magics.VastMagics`."""

    shell: Any

    @property
    def client(self) -> Client:
        raise NotImplementedError

    def _parse(self, command: str, words: list[str]) -> argparse.Namespace:
        raise NotImplementedError

    def _cell_name(self) -> str:
        raise NotImplementedError

    def _job(self, words: list[str], cell: str | None) -> Any:
        """Submit the cell: the names it reads are captured now and stored with the job,
        so every attempt (on whatever box) starts from the same inputs."""
        assert cell is not None
        args = self._parse("job", words)
        self.client.profile(args.profile)  # a typo is refused before anything is queued
        with told_as("[vastnb] warning:"):
            job = self.client.submit_cell(
                "\n" + cell,  # line 1 is the %%vast line: tracebacks give the cell's own line numbers
                push=cell_push(cell, args.push, self.shell.user_ns),
                pull=names(args.pull),
                cell=self._cell_name(),
                profile=args.profile,
                **job_settings(args),
            )
        print(f"job {job.name} queued; %vast logs {job.name} -f follows it, vast.job({job.name!r}) is its handle")
        return job

    def _jobs(self, words: list[str], _: str | None) -> Any:
        """A live table in a notebook; elsewhere (nbval, a terminal) the DataFrame."""
        self._parse("jobs", words)
        if not rich_frontend():
            return self.client.jobs()
        from vastnb.front.widgets.dashboard import JOBS_EVERY, jobs_view, live_view

        return live_view(self.client, "jobs", lambda: jobs_view(self.client), JOBS_EVERY)

    def _checkpoints(self, words: list[str], _: str | None) -> Any:
        """The curve and table of a job's checkpoints, live; elsewhere the DataFrame."""
        from vastnb.front.widgets.dashboard import CheckpointsView, live_view, source_of

        source = source_of(self.client, self._parse("checkpoints", words).source)
        if not rich_frontend():
            return source.checkpoints()
        key = f"checkpoints {source.job or source.url}"
        return live_view(self.client, key, lambda: CheckpointsView(source), CheckpointsView.every)

    def _dashboard(self, words: list[str], _: str | None) -> Any:
        from vastnb.front.widgets.dashboard import source_of

        source = source_of(self.client, self._parse("dashboard", words).source)
        return self.client.dashboard(job=source.job, checkpoints=source.url)

    def _logs(self, words: list[str], _: str | None) -> None:
        args = self._parse("logs", words)
        job = self.client.job(args.name)
        if args.follow:
            job.follow()
        else:
            print(job.logs(), end="")

    def _cancel(self, words: list[str], _: str | None) -> None:
        args = self._parse("cancel", words)
        self.client.job(args.name).cancel()
        print(f"job {args.name} cancelled; its boxes are destroyed")
