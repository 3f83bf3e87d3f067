"""The command table (``vastnb.front.commands``) against both fronts' real parsers: what the
table declares for a front is there, nothing else is, and a flag both fronts have is the same
flag in both. Then the alias, through the fronts themselves."""

from __future__ import annotations

import argparse
from collections.abc import Iterator
from typing import Any

import pytest
from IPython.core.interactiveshell import InteractiveShell

from vastnb.front import cli, magics
from vastnb.front.commands import BOTH, Command, Flag, Front, commands, find, walk

#: A flag, as the table and a parser both name it: its option strings, or a positional's dest.
Key = tuple[str, ...]


def _key(action: argparse.Action) -> Key:
    return tuple(action.option_strings) or (action.dest,)


def _flag_key(flag: Flag) -> Key:
    return (flag.dest or flag.names[0],) if flag.positional else flag.names


def _flags(parser: argparse.ArgumentParser) -> dict[Key, argparse.Action]:
    """A parser's own flags: argparse's -h and the subcommand slot left out."""
    return {
        _key(a): a for a in parser._actions if not isinstance(a, (argparse._HelpAction, argparse._SubParsersAction))
    }


def _subparsers(parser: argparse.ArgumentParser) -> argparse._SubParsersAction | None:  # type: ignore[type-arg]
    return next((a for a in parser._actions if isinstance(a, argparse._SubParsersAction)), None)


def _cli_tree(
    parser: argparse.ArgumentParser, path: tuple[str, ...] = ()
) -> Iterator[tuple[tuple[str, ...], argparse.ArgumentParser, list[str]]]:
    """Every parser of ``vastnb``, with its path and the aliases it is reached by."""
    yield path, parser, []
    sub = _subparsers(parser)
    if sub is None:
        return
    for choice in sub._choices_actions:  # one per command; its aliases share its parser
        child = sub.choices[choice.dest]
        aliases = sorted(name for name, p in sub.choices.items() if p is child and name != choice.dest)
        for sub_path, sub_parser, sub_aliases in _cli_tree(child, (*path, choice.dest)):
            yield sub_path, sub_parser, aliases if sub_path == (*path, choice.dest) else sub_aliases


def cli_parsers() -> dict[tuple[str, ...], tuple[argparse.ArgumentParser, list[str]]]:
    return {path: (parser, aliases) for path, parser, aliases in _cli_tree(cli.build_parser())}


def magic_parsers() -> dict[tuple[str, ...], argparse.ArgumentParser]:
    return {(name,): parser for name, parser in magics.build_parsers().items()}


def declared(front: Front) -> dict[tuple[str, ...], set[Key]]:
    """What the table says ``front`` has: each command's path, and its flags."""
    # A command's fronts are within its parent's (the table checks), so its own say it all.
    found = {path: {_flag_key(f) for f in c.flags_for(front)} for path, c in walk() if front in c.fronts}
    if front == "magic":
        assert not found.pop(())  # %vast itself takes no flags: the root's are the command line's
    return found


def test_the_command_line_has_exactly_the_tables_commands_and_flags() -> None:
    parsers = cli_parsers()
    assert {path: set(_flags(p)) for path, (p, _) in parsers.items()} == declared("cli")
    assert {path: aliases for path, (_, aliases) in parsers.items()} == {
        path: sorted(c.aliases) for path, c in walk() if path in parsers
    }


def test_the_magics_have_exactly_the_tables_commands_and_flags() -> None:
    assert {path: set(_flags(p)) for path, p in magic_parsers().items()} == declared("magic")


def test_a_flag_in_both_fronts_is_the_same_flag_in_both() -> None:
    cli_side, magic_side = cli_parsers(), magic_parsers()
    shared = 0
    for command in commands("cli"):
        if "magic" not in command.fronts:
            continue
        there, here = _flags(cli_side[(command.name,)][0]), _flags(magic_side[(command.name,)])
        for flag in command.flags:
            if flag.fronts != BOTH:
                continue
            a, b = there[_flag_key(flag)], here[_flag_key(flag)]
            fields = ("dest", "type", "default", "nargs", "choices", "const", "required", "help", "metavar")
            assert {f: getattr(a, f) for f in fields} == {f: getattr(b, f) for f in fields}, (command.name, flag.names)
            assert type(a) is type(b)
            shared += 1
    assert shared >= 10  # --limit, --order, --keep, --orphans, --all among them


def test_what_one_front_lacks_is_said_and_explained() -> None:
    one_front = [(p, c.why) for p, c in walk() if c.fronts != BOTH]
    one_front += [(p + f.names, f.why) for p, c in walk() for f in c.flags if f.fronts != BOTH]
    assert one_front and all(why for _, why in one_front)
    with pytest.raises(ValueError, match="say why"):
        Flag(("--x",), fronts=frozenset({"cli"}))
    with pytest.raises(ValueError, match="fronts"):
        Command("x", "x", fronts=frozenset({"web"}))  # type: ignore[arg-type]


def test_every_spelling_is_taken_once() -> None:
    for front in ("magic", "cli"):
        spellings = [n for c in commands(front) for n in (c.name, *c.aliases)]  # type: ignore[arg-type]
        assert len(spellings) == len(set(spellings)), front
    for path, command in walk():
        options = [n for f in command.flags for n in f.names if n.startswith("-")]
        assert len(options) == len(set(options)), path


def test_the_flags_the_fronts_lacked_are_in_both() -> None:
    """The drift the table ended: --order, --orphans in the magics; --keep on the command line."""
    magic, command_line = magic_parsers(), cli_parsers()
    assert ("-o", "--order") in _flags(magic[("offers",)]) and ("-o", "--order") in _flags(command_line[("offers",)][0])
    assert ("--keep",) in _flags(magic[("launch",)]) and ("--keep",) in _flags(command_line[("launch",)][0])
    assert ("--orphans",) in _flags(magic[("ps",)]) and ("--orphans",) in _flags(magic[("down",)])
    assert cli.build_parser().parse_args(["launch", "dev-test", "--keep"]).keep is True


# -- the alias ---------------------------------------------------------------------------------------


def test_attach_is_follow_in_the_table_and_only_where_follow_is() -> None:
    follow = find("follow", "magic")
    assert follow is not None and find("attach", "magic") is follow and follow.aliases == ("attach",)
    assert find("attach", "cli") is None and find("follow", "cli") is None  # follow is the notebook's
    top = _subparsers(cli.build_parser())
    assert top is not None and "attach" not in top.choices and "follow" not in top.choices


class _Task:
    """Stands for a detached run: ``follow`` asks it for its value."""

    id = 7

    def result(self) -> Any:
        return "the value"


@pytest.fixture
def ip() -> Iterator[InteractiveShell]:
    shell = InteractiveShell.instance()
    shell.reset()
    vast = magics.VastMagics(shell)  # no client is made: follow finds the task it was given
    vast.tasks[_Task.id] = _Task()  # type: ignore[assignment]
    shell.register_magics(vast)
    yield shell


def _cell(ip: InteractiveShell, source: str) -> Any:
    result = ip.run_cell(source, store_history=True)
    result.raise_error()
    return result.result


def test_the_alias_runs_the_same_command_and_says_nothing_more(
    ip: InteractiveShell, capsys: pytest.CaptureFixture[str]
) -> None:
    assert _cell(ip, "%vast attach 7") == "the value"  # follow's old name, as earlier notebooks spell it
    capsys.readouterr()
    # The magic itself, without IPython's Out[n]: the alias prints nothing of its own.
    assert ip.run_line_magic("vast", "follow 7") == ip.run_line_magic("vast", "attach 7") == "the value"
    assert capsys.readouterr() == ("", "")


def test_help_lists_the_alias_and_the_alias_has_the_commands_help(
    ip: InteractiveShell, capsys: pytest.CaptureFixture[str]
) -> None:
    _cell(ip, "%vast help")
    (line,) = [ln for ln in capsys.readouterr().out.splitlines() if "attach" in ln]
    assert line.strip().startswith("%vast follow ")
    _cell(ip, "%vast help attach")
    alias = capsys.readouterr().out
    _cell(ip, "%vast help follow")
    assert alias == capsys.readouterr().out and alias.startswith("%vast follow ") and "%vast attach" in alias


def test_the_alias_reports_bad_arguments_as_its_command_does(
    ip: InteractiveShell, capsys: pytest.CaptureFixture[str]
) -> None:
    for spelling in ("follow", "attach"):
        result = ip.run_cell(f"%vast {spelling} seven", store_history=True)
        assert not result.success
        out, err = capsys.readouterr()
        assert "invalid int value" in out + err and "Traceback" not in out + err
