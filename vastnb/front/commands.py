"""The one table of subcommands and their flags, for both fronts.

``%vast`` (:mod:`~vastnb.front.magics`) and ``vastnb`` (:mod:`~vastnb.front.cli`) build their
argparse parsers from :data:`TABLE`: every subcommand and flag is declared once, here, with its
help, type, default and choices. One that makes sense in a single front says which
(``fronts``) and why (``why``); nothing is left out of a front silently. The fronts own what
a command does; tests/test_commands.py holds both fronts' real parsers to this table.

A flag's help goes to argparse as it is (a literal ``%`` is written ``%%``); a command's
``help`` is plain text.
"""

from __future__ import annotations

import argparse
from collections.abc import Iterator

from vastnb.front.costcommands import COST_COMMAND
from vastnb.front.jobcommands import CONTROLLER, JOB_COMMANDS
from vastnb.front.spec import _JSON, _PROFILES, _PROJECT, _TEAM, BOTH, CLI, MAGIC, Command, Flag, Front

__all__ = ["Front", "BOTH", "CLI", "MAGIC", "Flag", "Command", "TABLE", "commands", "find", "add_arguments", "walk"]

_ON = Flag(("--on",), "the box (default: the one in use)", metavar="NAME")
#: Every subcommand of ``%vast`` and ``vastnb``, in the order their help lists them. The root
#: stands for the ``vastnb`` command itself (its own flags) and ``%vast``.
TABLE = Command(
    "vastnb",
    "Rent Vast.ai GPUs for training, from a notebook or here.",
    flags=(
        Flag(
            ("--version",),
            "show the version and exit",
            action="version",
            fronts=CLI,
            why="in a notebook, vastnb.__version__",
        ),
    ),
    subcommands=(
        Command(
            "help",
            "Every %vast subcommand, one line each; %vast help COMMAND for one in full.",
            (Flag(("command",), "a subcommand", nargs="?"),),
            fronts=MAGIC,
            why="the command line has --help",
        ),
        Command("profiles", "list the GPU profiles", (_PROFILES, _JSON), api="vastnb:Client.profiles"),
        Command(
            "offers",
            "offers for a profile, or for a Vast CLI query, cheapest first",
            (
                Flag(("spec",), "a profile name, or a query like 'gpu_name=RTX_4090 dph<0.5'", nargs="+"),
                Flag(("--limit",), "show at most this many (default 20)", type=int, default=20),
                Flag(("-o", "--order"), "sort a query's results, CLI style: 'dph_total,reliability-'"),
                _PROFILES,
                _JSON,
            ),
            api="vastnb:Client.offers",
        ),
        Command(
            "launch",
            "rent the cheapest offer for a profile",
            (
                Flag(("profile",), "a profile name (see profiles)"),
                Flag(("--name",), "a name for the box (default: PROFILE-XXXX)"),
                Flag(("--interruptible",), "rent at a bid: cheaper, can be preempted", action="store_true"),
                Flag(("--bid",), "min (default), min+N%%, or a fixed $/h; implies --interruptible"),
                Flag(
                    ("--keep",),
                    "leave it running when this kernel exits (from the command line it always is)",
                    action="store_true",
                ),
                Flag(
                    ("--silence",),
                    "the box destroys itself after this long without vastnb connected (default 30)",
                    type=float,
                    default=30.0,
                    metavar="MINUTES",
                    fronts=CLI,
                    why="a notebook sets it for its client: Client(box=BoxOptions(silence_s=...))",
                ),
                _TEAM,
                _PROJECT,
                _PROFILES,
            ),
            api="vastnb:Client.launch",
        ),
        Command(
            "ps",
            "vastnb's instances: state, $/h, uptime, cost so far, owner",
            (
                Flag(("--orphans",), "only instances no live session owns", action="store_true"),
                _JSON,
            ),
            api="vastnb:Client.instances",
        ),
        Command(
            "use",
            "adopt a box launched earlier; %%vast run goes to it",
            (Flag(("name",), "a box's name or instance id"),),
            api="vastnb:Client.attach",
            fronts=MAGIC,
            why="a terminal keeps no box in use between commands",
        ),
        Command(
            "status",
            "a box's status card",
            (Flag(("name",), "default: the box in use", nargs="?"),),
            api="vastnb:Box.info",
            fronts=MAGIC,
            why="one box's card, a widget; in a terminal `vastnb ps` lists them",
        ),
        Command(
            "down",
            "destroy instances (billing stops)",
            (
                Flag(
                    ("names",),
                    "instance names or ids (in a notebook, default: the box in use)",
                    nargs="*",
                    metavar="NAME",
                ),
                Flag(("--all",), "every vastnb instance on the account", action="store_true"),
                Flag(("--orphans",), "every instance no live session owns", action="store_true"),
                Flag(
                    ("--cancel-job",),
                    "a job's box: cancel its job too (else a job's box is refused)",
                    action="store_true",
                ),
            ),
            api="vastnb:Client.down",
        ),
        *JOB_COMMANDS,
        COST_COMMAND,
        Command(
            "follow",
            "a detached run's output so far, then live, then its value",
            (
                Flag(("task",), "the task number that %%%%vast run --detach printed", type=int),
                _ON,
            ),
            aliases=("attach",),
            api="vastnb.offload:RemoteTask.result",
            fronts=MAGIC,
            why="it follows a cell started by %%vast run --detach; its pulled names land in the notebook",
        ),
        Command(
            "run",
            "run the cell on a box",
            (
                _ON,
                Flag(("--push",), "names to send (default: those the cell reads)", metavar="A,B"),
                Flag(("--pull",), "names to bring back into the notebook", metavar="A,B"),
                Flag(("-o",), "store the run's handle in NAME", metavar="NAME", dest="out"),
                Flag(("--detach",), "return at once; %%vast follow TASK brings it back", action="store_true"),
                Flag(
                    ("--trust",),
                    "bring back any object by full pickle (it can run code here): for a box you trust",
                    action="store_true",
                ),
                Flag(
                    ("--nproc",),
                    "run the cell in N ranks under torch.distributed (gpu: one per GPU); rank 0's names come back",
                    metavar="N|gpu",
                ),
            ),
            api="vastnb:Box.run_cell",
            fronts=MAGIC,
            cell=True,
            why="it runs the notebook cell under it",
        ),
        Command(
            "demo",
            "launch a simulated box, train on it, show the cost, tear down",
            fronts=CLI,
            why="a terminal walkthrough; in a notebook, notebooks/01-quickstart.ipynb is the demo",
        ),
        CONTROLLER,
        Command(
            "sim",
            "the simulated marketplace",
            subcommands=(
                Command(
                    "serve",
                    "serve the simulated Vast API over HTTP on loopback",
                    (
                        Flag(("--host",), "127.0.0.1 (default) or ::1", default="127.0.0.1"),
                        Flag(("--port",), "0 picks a free port (default 8123)", type=int, default=8123),
                        Flag(("--seed",), "catalogue seed for a new market (default 0)", type=int, default=0),
                        Flag(
                            ("--rate-limits",),
                            "Vast's per-endpoint rate limits times SCALE; 0 turns them off (default 1)",
                            type=float,
                            default=1.0,
                            metavar="SCALE",
                        ),
                        Flag(("--verbose",), "log every request", action="store_true"),
                        Flag(
                            ("--ssh",),
                            "run a real sshd on loopback that the instances point at, so clients reach boxes by SSH",
                            action="store_true",
                        ),
                    ),
                    fronts=CLI,
                    why="a server that runs until Ctrl-C: it would hold the kernel",
                ),
            ),
            fronts=CLI,
            why="a server that runs until Ctrl-C: it would hold the kernel",
        ),
    ),
)


def commands(front: Front) -> tuple[Command, ...]:
    """The top-level subcommands ``front`` has, in the table's order."""
    return TABLE.subcommands_for(front)


def find(name: str, front: Front) -> Command | None:
    """The subcommand ``front`` calls ``name``, or by one of its aliases; None if none."""
    return next((c for c in commands(front) if name == c.name or name in c.aliases), None)


def add_arguments(parser: argparse.ArgumentParser, command: Command, front: Front) -> None:
    """Declare ``command``'s flags for ``front`` on ``parser``."""
    for flag in command.flags_for(front):
        flag.add_to(parser)


def walk(command: Command = TABLE, path: tuple[str, ...] = ()) -> Iterator[tuple[tuple[str, ...], Command]]:
    """Every command under ``command``, with its path of names (the root's is ``()``)."""
    yield path, command
    for sub in command.subcommands:
        yield from walk(sub, (*path, sub.name))
