"""``%vast`` and ``%%vast run``: the notebook front, after ``%load_ext vastnb``.

The magics stay thin: parse the arguments, make one call on the :class:`~vastnb.Client`
or a :class:`~vastnb.Box`, display what comes back. Their subcommands and flags are those of
the command table (:mod:`vastnb.front.commands`), shared with the ``vastnb`` command; their
help is the API's docstrings.
Bad arguments raise IPython's ``UsageError`` (a message, never a traceback), and a
:class:`~vastnb.VastError` shows its message alone.
"""

from __future__ import annotations

import argparse
import shlex
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, NoReturn

from IPython.core.error import UsageError
from IPython.core.interactiveshell import InteractiveShell
from IPython.core.magic import Magics, line_cell_magic, magics_class

from vastnb.errors import VastError
from vastnb.front import costcommands
from vastnb.front.cellvars import cell_push, free_names, names
from vastnb.front.commands import Command, add_arguments, commands, find
from vastnb.front.jobmagics import JobMagicsMixin, rich_frontend

if TYPE_CHECKING:
    # The client and what it brings (pandas, httpx, the offload sessions, the widgets) load on
    # the first %vast line that needs them: %load_ext vastnb stays light (tests/test_imports.py).
    from vastnb.client import Client
    from vastnb.lifecycle.box import Box
    from vastnb.offload import RemoteTask

__all__ = ["VastMagics", "load_ipython_extension", "free_names", "build_parsers"]  # free_names: tests


class _Parser(argparse.ArgumentParser):
    """argparse that reports a bad argument as a usage message, not an exit."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{message}\n{self.format_usage().strip()}\n(%vast help {self.prog.split()[-1]} says more)")

    def exit(self, status: int = 0, message: str | None = None) -> NoReturn:
        raise UsageError(message or self.format_usage())


def _first_line(doc: str) -> str:
    """The first sentence of a docstring: what ``%vast help`` lists."""
    text = doc.split("\n\n")[0].replace("\n", " ").replace("``", "")
    end = text.find(". ")
    return text if end < 0 else text[: end + 1]


def _spelling(command: Command) -> str:
    return f"%%vast {command.name}" if command.cell else f"%vast {command.name}"


def build_parser(command: Command) -> _Parser:
    """The parser of one ``%vast`` subcommand. Its help is the API call's docstring (reading
    it imports the client); its last line names the command's other spellings (aliases)."""
    also = ", ".join(f"%vast {alias}" for alias in command.aliases)
    parser = _Parser(
        prog=f"%vast {command.name}",
        description=command.doc(),
        epilog=f"Also spelled {also}." if also else None,
        add_help=False,
    )
    add_arguments(parser, command, "magic")
    return parser


def build_parsers() -> dict[str, _Parser]:
    """A parser for each ``%vast`` subcommand of the command table, by name."""
    return {command.name: build_parser(command) for command in commands("magic")}


@magics_class
class VastMagics(JobMagicsMixin, Magics):
    """``%vast SUBCOMMAND ...`` and ``%%vast run``. ``%vast help`` lists the subcommands."""

    shell: InteractiveShell  # never None: the magics are made for a running shell

    def __init__(self, shell: Any, client: Client | None = None) -> None:
        super().__init__(shell)
        self._client = client
        self.boxes: dict[str, Box] = {}
        self.current: str | None = None
        self.tasks: dict[int, RemoteTask] = {}
        self._handlers: dict[str, Callable[[list[str], str | None], Any]] = {
            "help": self._help,
            "profiles": self._profiles,
            "offers": self._offers,
            "launch": self._launch,
            "ps": self._ps,
            "use": self._use,
            "status": self._status,
            "down": self._down,
            "follow": self._follow,
            "run": self._run,
            "job": self._job,
            "jobs": self._jobs,
            "logs": self._logs,
            "cancel": self._cancel,
            "checkpoints": self._checkpoints,
            "dashboard": self._dashboard,
            "cost": self._cost,
        }
        self._parsers: dict[str, _Parser] = {}  # each made on its first use: see _parser
        assert self._handlers.keys() == {c.name for c in commands("magic")}, (
            "a %vast subcommand of the table without its handler"
        )

    @property
    def client(self) -> Client:
        """The notebook's client, made on first use (``vast`` with an API key, else ``sim``)."""
        if self._client is None:
            from vastnb.client import Client

            self._client = Client()
        return self._client

    @line_cell_magic
    def vast(self, line: str, cell: str | None = None) -> Any:
        """GPU boxes on Vast.ai from this notebook: ``%vast help`` lists the subcommands."""
        try:
            words = shlex.split(line)
        except ValueError as exc:
            raise UsageError(f"cannot parse the arguments: {exc}") from None
        if not words:
            return self._help([], None)
        name, *rest = words
        command = find(name, "magic")  # an alias runs its command, and says nothing of it
        if command is None:
            raise UsageError(f"no %vast subcommand {name!r}; %vast help lists them: {', '.join(self._handlers)}")
        if (cell is not None) != command.cell:
            raise UsageError(
                f"{name} is a cell magic: %%vast {name} [options] on the first line of a cell"
                if command.cell
                else f"%%vast {name} is not a cell magic; use %vast {name}"
            )
        return self._handlers[command.name](rest, cell)

    def _parser(self, name: str) -> _Parser:
        """The parser of subcommand ``name``, made on first use: its help is read from the API's
        docstrings, which imports the client, so ``%load_ext vastnb`` makes none."""
        parser = self._parsers.get(name)
        if parser is None:
            command = find(name, "magic")
            assert command is not None and command.name == name, name
            parser = self._parsers[name] = build_parser(command)
        return parser

    def _parse(self, command: str, words: list[str]) -> argparse.Namespace:
        return self._parser(command).parse_args(words)

    # -- subcommands ----------------------------------------------------------------------

    def _help(self, words: list[str], _: str | None) -> None:
        """Every %vast subcommand, one line each; %vast help COMMAND for one in full."""
        args = self._parse("help", words)
        if args.command:
            command = find(args.command, "magic")
            if command is None:
                raise UsageError(f"no %vast subcommand {args.command!r}")
            print(self._parser(command.name).format_help().replace("usage: ", "", 1).rstrip())
            return
        for command in commands("magic"):
            also = f" (also spelled %vast {', '.join(command.aliases)})" if command.aliases else ""
            print(f"  {_spelling(command):<17} {_first_line(command.doc())}{also}")

    def _profiles(self, words: list[str], _: str | None) -> Any:
        self._parse("profiles", words)
        return self.client.profiles()

    def _offers(self, words: list[str], _: str | None) -> Any:
        args = self._parse("offers", words)
        return self.client.offers(" ".join(args.spec), limit=args.limit, order=args.order)

    def _launch(self, words: list[str], _: str | None) -> None:
        args = self._parse("launch", words)
        self.client.profile(args.profile)  # a typo is refused before any display
        from vastnb.front.widgets import LaunchProgress, live_boxes

        progress = LaunchProgress(args.profile, simulated=self.client.simulated)
        progress.display()
        try:
            box = self.client.launch(
                args.profile,
                name=args.name,
                interruptible=args.interruptible or None,
                bid=args.bid,
                keep=args.keep,
                progress=progress,
                team=args.team,
                project=args.project,
            )
        except BaseException as exc:
            progress.finish(error=exc)
            raise
        progress.finish(box=box)
        self.boxes[box.name] = box
        self.current = box.name
        live_boxes(self.client).card(box).display()

    def _ps(self, words: list[str], _: str | None) -> Any:
        args = self._parse("ps", words)
        return self.client.orphans() if args.orphans else self.client.instances()

    def _use(self, words: list[str], _: str | None) -> None:
        args = self._parse("use", words)
        box = self._box(args.name)
        self.current = box.name
        print(f"%%vast run now goes to {box.name} (#{box.id})")

    def _status(self, words: list[str], _: str | None) -> None:
        from vastnb.front.widgets import live_boxes

        args = self._parse("status", words)
        live_boxes(self.client).card(self._box(args.name)).display()

    def _down(self, words: list[str], _: str | None) -> None:
        args = self._parse("down", words)
        if bool(args.names) + args.all + args.orphans > 1:
            raise UsageError("%vast down takes names, or --all, or --orphans: one of them")
        if args.all or args.orphans:
            gone = self.client.down_all() if args.all else self.client.down_orphans()
            for name in [n for n, box in self.boxes.items() if args.all or box.id in gone]:
                self._forget(name)
            print(f"destroyed: {', '.join(map(str, gone))}" if gone else "nothing to destroy")
            return
        failed: list[VastError] = []
        for name in args.names or [None]:  # none: the box in use; each on its own, a typo spares none
            try:
                # Never adopted on the way: a job's box stays its controller's if refused.
                rental = self.client.fleet.resolve(name or self._box(None).name)
                done = self.client.down(rental.id, cancel_job=args.cancel_job)
            except VastError as exc:
                if failed or len(args.names) > 1:
                    print(f"{name}: {exc}", file=sys.stderr)
                failed.append(exc)
                continue
            if rental.name in self.boxes:
                self.boxes[rental.name].session.close()
            self._forget(rental.name)
            cost = f"; it cost ${self.client.cost(rental.id):,.4f} in all" if done else ""
            print(
                f"destroyed {rental.name} (#{rental.id}): billing stopped{cost}"
                if done
                else f"{rental.name} was already gone"
            )
        if failed:
            raise failed[0]

    def _cost(self, words: list[str], _: str | None) -> Any:
        args = self._parse("cost", words)
        problem = costcommands.usage_problem(args)
        if problem:
            raise UsageError(problem)
        frame = costcommands.report(self.client, args)
        if args.csv:
            print(costcommands.save_csv(frame, args.csv))
        if not rich_frontend():  # nbval, a terminal IPython: the report itself
            return frame
        from vastnb.front.widgets.dashboard import SPEND_EVERY, live_view
        from vastnb.front.widgets.spend import CostView

        title = f"cost {' '.join(words)}".strip()

        def read() -> Any:  # for reading, as the CLI prints it: dollars to four decimals
            return costcommands.rounded(costcommands.report(self.client, args))

        return live_view(self.client, title, lambda: CostView(self.client, read, title=title), SPEND_EVERY)

    def _forget(self, name: str) -> None:
        self.boxes.pop(name, None)
        if self.current == name:
            self.current = None

    def _follow(self, words: list[str], _: str | None) -> Any:
        args = self._parse("follow", words)
        task = self.tasks.get(args.task)
        if task is None:
            from vastnb.offload import RemoteTask

            task = RemoteTask(self._box(args.on).session, args.task, cell=True)
        return self._show(task.result())

    def _run(self, words: list[str], cell: str | None) -> Any:
        assert cell is not None
        args = self._parse("run", words)
        pull = names(args.pull)
        user_ns = self.shell.user_ns
        push = cell_push(cell, args.push, user_ns)
        box = self._box(args.on)
        # Tracebacks name the notebook's cell and its lines: line 1 is the %%vast line.
        cell, name = "\n" + cell, self._cell_name()
        run = box.options(trust=args.trust or None, nproc=_nproc(args.nproc))
        if args.detach and run.nproc is not None:
            raise UsageError("--detach and --nproc do not go together yet: run the ranks attached, or submit a job")
        if args.detach:
            task = run.submit_cell(cell, push=push, pull=pull, name=name)
            self.tasks[task.id] = task
            if args.out:
                user_ns[args.out] = task
            print(f"task {task.id} runs on {box.name}; %vast follow {task.id} brings its output and result back")
            return None
        result = run.run_cell(cell, push=push, pull=pull, name=name)
        if args.out:
            user_ns[args.out] = result
        return self._show(result, quiet=cell.rstrip().endswith(";"))

    # -- helpers --------------------------------------------------------------------------

    def _show(self, result: Any, *, quiet: bool = False) -> Any:
        """Pulled names into the notebook; the last expression's value, to display."""
        from vastnb.offload.cells import CellResult

        if not isinstance(result, CellResult):
            return result  # a function's value
        self.shell.user_ns.update(result)
        return None if quiet else result.value

    def _cell_name(self) -> str:
        """How IPython names the running cell in tracebacks: ``Cell In[3]``."""
        from vastnb.offload.cells import CELL_NAME

        running = getattr(self.shell.displayhook, "exec_result", None)
        count = getattr(running, "execution_count", None)
        return f"Cell In[{count}]" if count else CELL_NAME

    def _box(self, name: str | None) -> Box:
        name = name or self.current
        if name is None:
            raise UsageError("no box in use: %vast launch PROFILE, or %vast use NAME for one launched earlier")
        if name not in self.boxes:
            self.boxes[name] = self.client.attach(name)
        return self.boxes[name]


def load_ipython_extension(ipython: Any) -> None:
    """``%load_ext vastnb``: register ``%vast`` and ``%%vast``."""
    ipython.register_magics(VastMagics(ipython))


def _nproc(value: str | None) -> int | str | None:
    """``--nproc``: ``gpu`` or a number of ranks."""
    if value is None or value == "gpu":
        return value
    if not value.isdigit():
        raise UsageError(f"--nproc takes a number of ranks or gpu, not {value!r}")
    return int(value)
