"""What a subcommand and a flag are, for the command table (:mod:`vastnb.front.commands`)."""

from __future__ import annotations

import argparse
import importlib
import inspect
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from vastnb import __version__

__all__ = ["Front", "BOTH", "CLI", "MAGIC", "Flag", "Command"]

Front = Literal["magic", "cli"]
BOTH: frozenset[Front] = frozenset(("magic", "cli"))
MAGIC: frozenset[Front] = frozenset(("magic",))
CLI: frozenset[Front] = frozenset(("cli",))


def _check_fronts(what: str, fronts: frozenset[Front], why: str) -> None:
    if not fronts or not fronts <= BOTH:
        raise ValueError(f"{what}: fronts must be a non-empty subset of {sorted(BOTH)}, not {sorted(fronts)}")
    if fronts != BOTH and not why:
        raise ValueError(f"{what} is in one front only: say why")


@dataclass(frozen=True)
class Flag:
    """One argument: an option (``("-o", "--order")``) or a positional (``("spec",)``)."""

    names: tuple[str, ...]
    help: str = ""
    type: Callable[[str], Any] | None = None
    default: Any = None
    action: str | None = None  # "store_true", "version"
    nargs: str | None = None
    metavar: str | None = None
    dest: str | None = None
    choices: tuple[Any, ...] | None = None
    fronts: frozenset[Front] = BOTH
    why: str = ""  # why it is in one front only

    def __post_init__(self) -> None:
        _check_fronts(f"flag {'/'.join(self.names)}", self.fronts, self.why)

    @property
    def positional(self) -> bool:
        return not self.names[0].startswith("-")

    def add_to(self, parser: argparse.ArgumentParser) -> argparse.Action:
        """Declare this flag on ``parser``."""
        options: dict[str, Any] = {
            "help": self.help or None,
            "type": self.type,
            "default": self.default,
            "action": self.action,
            "nargs": self.nargs,
            "metavar": self.metavar,
            "dest": self.dest,
            "choices": self.choices,
        }
        if self.action == "version":
            options["version"] = f"vastnb {__version__}"
        return parser.add_argument(*self.names, **{k: v for k, v in options.items() if v is not None})


@dataclass(frozen=True)
class Command:
    """A subcommand: its flags, its other spellings, the fronts that have it."""

    name: str
    help: str  # one line: the CLI's listing
    flags: tuple[Flag, ...] = ()
    aliases: tuple[str, ...] = ()  # older spellings: accepted quietly, listed in the help
    api: str = ""  # "module:Qual.name", the Python call it makes: its docstring is the magic's help
    fronts: frozenset[Front] = BOTH
    why: str = ""  # why it is in one front only
    cell: bool = False  # a cell magic: %%vast NAME on a cell's first line
    subcommands: tuple[Command, ...] = ()

    def __post_init__(self) -> None:
        _check_fronts(f"command {self.name}", self.fronts, self.why)
        for sub in self.subcommands:
            if not sub.fronts <= self.fronts:
                raise ValueError(f"command {self.name} {sub.name} is in a front {self.name} is not")

    def flags_for(self, front: Front) -> tuple[Flag, ...]:
        return tuple(f for f in self.flags if front in f.fronts)

    def subcommands_for(self, front: Front) -> tuple[Command, ...]:
        return tuple(c for c in self.subcommands if front in c.fronts)

    def doc(self) -> str:
        """The API call's docstring (the Python API is the one source of truth); else ``help``."""
        if not self.api:
            return self.help
        module, _, path = self.api.partition(":")
        target: Any = importlib.import_module(module)
        for part in path.split("."):
            target = getattr(target, part)
        return inspect.getdoc(target) or self.help


# Flags several commands share.
_JSON = Flag(
    ("--json",),
    "print JSON",
    action="store_true",
    fronts=CLI,
    why="for scripts: a notebook displays the DataFrame itself",
)
_PROFILES = Flag(
    ("--profiles",),
    "profile file or folder (default: the search order)",
    metavar="PATH",
    fronts=CLI,
    why="a notebook's client is made once: Client(profiles=PATH)",
)
_TEAM = Flag(("--team",), "whose budget it spends (default: the profile's team)", metavar="TEAM")
_PROJECT = Flag(("--project",), "the team's project it is charged to (default: the profile's)", metavar="PROJECT")
