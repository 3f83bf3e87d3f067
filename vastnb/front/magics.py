"""``%vast`` and ``%%vast run``: the notebook front, after ``%load_ext vastnb``.

The magics stay thin: parse the arguments, make one call on the :class:`~vastnb.Client`
or a :class:`~vastnb.Box`, display what comes back. Their help is the API's docstrings.
Bad arguments raise IPython's ``UsageError`` (a message, never a traceback), and a
:class:`~vastnb.VastError` shows its message alone.
"""

from __future__ import annotations

import argparse
import ast
import builtins
import inspect
import shlex
import sys
from collections.abc import Callable
from typing import Any

from IPython.core.error import UsageError
from IPython.core.magic import Magics, line_cell_magic, magics_class

from vastnb.lifecycle.box import Box
from vastnb.client import Client
from vastnb.offload import CellResult, RemoteTask
from vastnb.offload.session import CELL_NAME

__all__ = ["VastMagics", "load_ipython_extension", "free_names"]

#: A pushed value above this size gets a warning: it crosses the network on every run.
LARGE_PUSH = 256 * 2**20


class _Parser(argparse.ArgumentParser):
    """argparse that reports a bad argument as a usage message, not an exit."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise UsageError(f"{message}\n{self.format_usage().strip()}\n(%vast help {self.prog.split()[-1]} says more)")

    def exit(self, status: int = 0, message: str | None = None) -> None:  # type: ignore[override]
        raise UsageError(message or self.format_usage())


def _first_line(fn: Callable[..., Any]) -> str:
    """The first sentence of ``fn``'s docstring: what ``%vast help`` lists."""
    text = (inspect.getdoc(fn) or "").split("\n\n")[0].replace("\n", " ").replace("``", "")
    end = text.find(". ")
    return text if end < 0 else text[: end + 1]


def _names(text: str | None) -> list[str]:
    names = [n.strip() for n in (text or "").split(",") if n.strip()]
    for name in names:
        if not name.isidentifier():
            raise UsageError(f"{name!r} is not a Python name (give names separated by commas: --pull model,losses)")
    return names


def free_names(source: str) -> list[str]:
    """Names a cell reads before (or without) binding them itself, in order of first use:
    what must come from the notebook. Builtins are left out."""
    tree = ast.parse(source)
    # A comprehension binds its targets before its element reads them, though the element
    # comes first in the text: they are its own, never the notebook's.
    bound: set[str] = {n.id for c in ast.walk(tree) if isinstance(c, ast.comprehension)
                       for n in ast.walk(c.target) if isinstance(n, ast.Name)}  # fmt: skip
    free: list[str] = []
    nodes = sorted((n for n in ast.walk(tree) if isinstance(n, (ast.Name, ast.alias, ast.arg, ast.FunctionDef,
                    ast.AsyncFunctionDef, ast.ClassDef))), key=lambda n: (getattr(n, "lineno", 0), getattr(n, "col_offset", 0)))  # fmt: skip
    for node in nodes:
        if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Load):
            if node.id not in bound and node.id not in free and not hasattr(builtins, node.id):
                free.append(node.id)
        elif isinstance(node, ast.Name):
            bound.add(node.id)
        elif isinstance(node, ast.alias):
            bound.add((node.asname or node.name).split(".")[0])
        elif isinstance(node, ast.arg):
            bound.add(node.arg)
        else:
            bound.add(node.name)  # type: ignore[union-attr]
    return free


def _size(value: Any) -> int:
    """A cheap estimate of what pushing ``value`` costs, in bytes (arrays, tensors, bytes)."""
    nbytes = getattr(value, "nbytes", None)
    if isinstance(nbytes, int):
        return nbytes
    if hasattr(value, "element_size") and hasattr(value, "nelement"):
        return int(value.element_size() * value.nelement())
    return len(value) if isinstance(value, (bytes, bytearray, memoryview, str)) else 0


@magics_class
class VastMagics(Magics):
    """``%vast SUBCOMMAND ...`` and ``%%vast run``. ``%vast help`` lists the subcommands."""

    def __init__(self, shell: Any, client: Client | None = None) -> None:
        super().__init__(shell)
        self._client = client
        self.boxes: dict[str, Box] = {}
        self.current: str | None = None
        self.tasks: dict[int, RemoteTask] = {}
        self._commands: dict[str, tuple[Callable[[list[str], str | None], Any], Callable[..., Any], _Parser]] = {}
        for name, handler, doc in (
            ("help", self._help, self._help),
            ("profiles", self._profiles, Client.profiles),
            ("offers", self._offers, Client.offers),
            ("launch", self._launch, Client.launch),
            ("ps", self._ps, Client.instances),
            ("use", self._use, Client.attach),
            ("status", self._status, Box.info),
            ("down", self._down, Client.down),
            ("attach", self._attach, RemoteTask.result),
            ("run", self._run, Box.run_cell),
        ):
            self._commands[name] = (handler, doc, _Parser(prog=f"%vast {name}", description=inspect.getdoc(doc), add_help=False))
        self._arguments()

    def _arguments(self) -> None:
        p = {name: parser for name, (_, _, parser) in self._commands.items()}
        p["help"].add_argument("command", nargs="?", help="a subcommand")
        p["offers"].add_argument("spec", nargs="+", help="a profile name, or a Vast CLI query")
        p["offers"].add_argument("--limit", type=int, default=20)
        p["launch"].add_argument("profile")
        p["launch"].add_argument("--name")
        p["launch"].add_argument("--interruptible", action="store_true")
        p["launch"].add_argument("--bid", help="min, min+N%%, or $/h (implies --interruptible)")
        p["launch"].add_argument("--keep", action="store_true", help="leave it running when the kernel exits")
        p["use"].add_argument("name")
        p["status"].add_argument("name", nargs="?")
        p["down"].add_argument("name", nargs="?", help="default: the box in use")
        p["down"].add_argument("--all", action="store_true", help="every vastnb instance on the account")
        p["attach"].add_argument("task", type=int)
        p["attach"].add_argument("--on", metavar="NAME")
        p["run"].add_argument("--on", metavar="NAME", help="the box (default: the one in use)")
        p["run"].add_argument("--push", metavar="A,B", help="names to send (default: those the cell reads)")
        p["run"].add_argument("--pull", metavar="A,B", help="names to bring back into the notebook")
        p["run"].add_argument("-o", metavar="NAME", dest="out", help="store the run's handle in NAME")
        p["run"].add_argument("--detach", action="store_true", help="return at once; %%vast attach TASK brings it back")
        p["run"].add_argument("--trust", action="store_true",
                              help="bring back any object by full pickle (it can run code here): for a box you trust")  # fmt: skip

    @property
    def client(self) -> Client:
        """The notebook's client, made on first use (``vast`` with an API key, else ``sim``)."""
        if self._client is None:
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
        command, *rest = words
        if command not in self._commands:
            raise UsageError(f"no %vast subcommand {command!r}; %vast help lists them: {', '.join(self._commands)}")
        if (cell is not None) != (command == "run"):
            raise UsageError("run is a cell magic: %%vast run [options] on the first line of a cell"
                             if command == "run" else f"%%vast {command} is not a cell magic; use %vast {command}")  # fmt: skip
        handler, _, _ = self._commands[command]
        return handler(rest, cell)

    def _parse(self, command: str, words: list[str]) -> argparse.Namespace:
        return self._commands[command][2].parse_args(words)

    # -- subcommands ----------------------------------------------------------------------

    def _help(self, words: list[str], _: str | None) -> None:
        """Every %vast subcommand, one line each; %vast help COMMAND for one in full."""
        args = self._parse("help", words)
        if args.command:
            if args.command not in self._commands:
                raise UsageError(f"no %vast subcommand {args.command!r}")
            parser = self._commands[args.command][2]
            print(parser.format_help().replace("usage: ", "", 1).rstrip())
            return
        for name, (_, doc, parser) in self._commands.items():
            print(f"  %{'%vast run' if name == 'run' else 'vast ' + name:<16} {_first_line(doc)}")

    def _profiles(self, words: list[str], _: str | None) -> Any:
        self._parse("profiles", words)
        return self.client.profiles()

    def _offers(self, words: list[str], _: str | None) -> Any:
        args = self._parse("offers", words)
        return self.client.offers(" ".join(args.spec), limit=args.limit)

    def _launch(self, words: list[str], _: str | None) -> None:
        args = self._parse("launch", words)
        self.client.profile(args.profile)  # a typo is refused before any display
        from vastnb.front.widgets import LaunchProgress, StatusCard

        progress = LaunchProgress(args.profile, simulated=self.client.simulated)
        progress.display()
        try:
            box = self.client.launch(args.profile, name=args.name, interruptible=args.interruptible or None,
                                     bid=args.bid, keep=args.keep, progress=progress)  # fmt: skip
        except BaseException as exc:
            progress.finish(error=exc)
            raise
        progress.finish(box=box)
        self.boxes[box.name] = box
        self.current = box.name
        StatusCard(box).display()

    def _ps(self, words: list[str], _: str | None) -> Any:
        self._parse("ps", words)
        return self.client.instances()

    def _use(self, words: list[str], _: str | None) -> None:
        args = self._parse("use", words)
        box = self._box(args.name)
        self.current = box.name
        print(f"%%vast run now goes to {box.name} (#{box.id})")

    def _status(self, words: list[str], _: str | None) -> None:
        from vastnb.front.widgets import StatusCard

        args = self._parse("status", words)
        StatusCard(self._box(args.name)).display()

    def _down(self, words: list[str], _: str | None) -> None:
        args = self._parse("down", words)
        if args.all:
            if args.name:
                raise UsageError("%vast down takes a name or --all, not both")
            gone = self.client.down_all()
            self.boxes.clear()
            self.current = None
            print(f"destroyed: {', '.join(map(str, gone))}" if gone else "nothing to destroy")
            return
        box = self._box(args.name)
        done = box.down()
        self.boxes.pop(box.name, None)
        if self.current == box.name:
            self.current = None
        print(f"destroyed {box.name} (#{box.id}): billing stopped" if done else f"{box.name} was already gone")

    def _attach(self, words: list[str], _: str | None) -> Any:
        args = self._parse("attach", words)
        task = self.tasks.get(args.task)
        if task is None:
            task = RemoteTask(self._box(args.on).session, args.task, cell=True)
        return self._show(task.result())

    def _run(self, words: list[str], cell: str | None) -> Any:
        assert cell is not None
        args = self._parse("run", words)
        pull = _names(args.pull)
        user_ns = self.shell.user_ns
        try:
            wanted = _names(args.push) if args.push is not None else free_names(cell)
        except SyntaxError as exc:
            raise UsageError(f"the cell is not valid Python: {exc}") from None
        missing = [n for n in wanted if n not in user_ns] if args.push is not None else []
        if missing:
            raise UsageError(f"--push names what the notebook does not define: {', '.join(missing)}")
        push = {n: user_ns[n] for n in wanted if n in user_ns and not _internal(n)}
        for name, size in ((n, _size(v)) for n, v in push.items()):
            if size > LARGE_PUSH:
                print(f"[vastnb] pushing {name} ({size / 2**20:.0f} MiB) to the box on every run; "
                      "use --push to choose what to send", file=sys.stderr)  # fmt: skip
        box = self._box(args.on)
        # Tracebacks name the notebook's cell and its lines: line 1 is the %%vast line.
        cell, name = "\n" + cell, self._cell_name()
        run = box.options(trust=args.trust or None)
        if args.detach:
            task = run.submit_cell(cell, push=push, pull=pull, name=name)
            self.tasks[task.id] = task
            if args.out:
                user_ns[args.out] = task
            print(f"task {task.id} runs on {box.name}; %vast attach {task.id} brings its output and result back")
            return None
        result = run.run_cell(cell, push=push, pull=pull, name=name)
        if args.out:
            user_ns[args.out] = result
        return self._show(result, quiet=cell.rstrip().endswith(";"))

    # -- helpers --------------------------------------------------------------------------

    def _show(self, result: Any, *, quiet: bool = False) -> Any:
        """Pulled names into the notebook; the last expression's value, to display."""
        if not isinstance(result, CellResult):
            return result  # a function's value
        self.shell.user_ns.update(result)
        return None if quiet else result.value

    def _cell_name(self) -> str:
        """How IPython names the running cell in tracebacks: ``Cell In[3]``."""
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


def _internal(name: str) -> bool:
    """IPython's own names (In, Out, exit, _1...): never pushed. Modules are pushed: they
    travel by name and are imported on the box."""
    return name.startswith("_") or name in ("In", "Out", "get_ipython", "exit", "quit")


def load_ipython_extension(ipython: Any) -> None:
    """``%load_ext vastnb``: register ``%vast`` and ``%%vast``."""
    ipython.register_magics(VastMagics(ipython))
