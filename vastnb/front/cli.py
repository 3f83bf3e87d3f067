"""The ``vastnb`` command line: the same calls as the Python API, printed for a terminal.
Its subcommands and flags are those of the command table (:mod:`vastnb.front.commands`),
shared with the ``%vast`` magics.

    vastnb profiles
    vastnb offers training-standard --limit 5 [--json]
    vastnb offers "gpu_name=RTX_4090 num_gpus>=1 dph<0.5" [-o "dph_total,reliability-"]
    vastnb launch dev-test [--name exp1] [--interruptible] [--bid min] [--silence 30]
    vastnb ps [--orphans] [--json]
    vastnb down exp1 | --all | --orphans
    vastnb cost --by team,project --since 2026-11-01 [--until DATE] [--freq week] [--csv FILE | --json]
    vastnb cost --reconcile [--since DATE] [--until DATE]    (also spelled vastnb cost-report)
    vastnb demo
    vastnb sim serve --host 127.0.0.1 --port 8123
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence

import pandas as pd

from vastnb.base.config import vastnb_home
from vastnb.client import Client
from vastnb.errors import TeardownError, VastError
from vastnb.front import costcommands, jobcli
from vastnb.front.commands import TABLE, Command, add_arguments
from vastnb.lifecycle.launch import LaunchEvent

__all__ = ["main", "print_frame"]


def print_frame(frame: pd.DataFrame, *, as_json: bool, simulated: bool, index: bool = True) -> None:
    """``frame`` as a table, or as JSON rows (NaN as null); ``index``: with its index."""
    if as_json:
        records = json.loads((frame.reset_index() if index else frame).to_json(orient="records"))
        print(json.dumps({"simulated": simulated, "rows": records}, indent=2))
        return
    if simulated:
        print("SIMULATED marketplace (no Vast API key found): prices are illustrative, nothing is billed.\n")
    with pd.option_context("display.width", 200, "display.max_columns", None, "display.max_colwidth", 60):
        print(frame.to_string(index=index) if not frame.empty else "(none)")


def _profiles(args: argparse.Namespace) -> int:
    with Client(profiles=args.profiles) as client:
        print_frame(client.profiles(), as_json=args.json, simulated=False)
    return 0


def _offers(args: argparse.Namespace) -> int:
    with Client(profiles=args.profiles) as client:
        frame = client.offers(" ".join(args.spec), limit=args.limit, order=args.order)
        print_frame(frame, as_json=args.json, simulated=client.simulated)
    return 0


def _launch(args: argparse.Namespace) -> int:
    from vastnb import BoxOptions  # the public name: wherever the lifecycle keeps it

    box_options = BoxOptions(silence_s=args.silence * 60)
    with Client(profiles=args.profiles, box=box_options) as client:
        client.profile(args.profile)  # a bad name is refused before anything else is said
        if client.simulated:
            print("SIMULATED marketplace (no Vast API key found): nothing is billed.")
        # Launched from a terminal, a box outlives this command: it is kept, --keep or not.
        box = client.launch(
            args.profile,
            name=args.name,
            interruptible=args.interruptible or None,
            bid=args.bid,
            keep=True,
            progress=LaunchEvent.print,
            team=args.team,
            project=args.project,
        )
        print(
            f"{box.name} (#{box.id}) is running at ${box.price_per_hour:.3f}/h. "
            f"It destroys itself after {args.silence:g} min without a connection from vastnb; "
            f"end it now with `vastnb down {box.name}`."
        )
    return 0


def _ps(args: argparse.Namespace) -> int:
    with Client() as client:
        frame = client.orphans() if args.orphans else client.instances()
        print_frame(frame, as_json=args.json, simulated=client.simulated)
    return 0


def _down(args: argparse.Namespace) -> int:
    if bool(args.names) + args.all + args.orphans != 1:
        print("vastnb down: name one or more instances, or --all, or --orphans", file=sys.stderr)
        return 2
    with Client() as client:
        if args.all or args.orphans:
            try:  # every instance is tried; the failures are told after the last
                gone = client.down_all() if args.all else client.down_orphans()
            except TeardownError as exc:
                if exc.destroyed:
                    print(f"destroyed: {', '.join(map(str, exc.destroyed))}")
                print(f"vastnb: {exc}", file=sys.stderr)
                return 1
            print(f"destroyed: {', '.join(map(str, gone))}" if gone else "nothing to destroy")
            return 0
        failed = 0
        for name in args.names:  # each on its own: a typo must not spare the others
            try:
                if client.down(name, cancel_job=args.cancel_job):
                    print(f"destroyed: {name}; it cost ${client.cost(name):,.4f} in all")
                else:
                    print(f"{name}: already gone")
            except VastError as exc:
                print(f"vastnb: {name}: {exc}", file=sys.stderr)
                failed += 1
    return 1 if failed else 0


def _cost(args: argparse.Namespace) -> int:
    problem = costcommands.usage_problem(args)
    if problem:
        print(f"vastnb cost: {problem}", file=sys.stderr)
        return 2
    with Client(profiles=args.profiles) as client:
        frame = costcommands.report(client, args)
        if args.csv:
            print(costcommands.save_csv(frame, args.csv))
        elif args.json:
            print_frame(costcommands.for_json(frame), as_json=True, simulated=client.simulated, index=False)
        else:
            print_frame(costcommands.rounded(frame), as_json=False, simulated=client.simulated, index=False)
    return 0


def _demo(args: argparse.Namespace) -> int:
    from vastnb.front.demo import run_demo

    run_demo()
    return 0


def _sim_serve(args: argparse.Namespace) -> int:
    import signal

    from vastnb.sim import SimConfig, Simulator
    from vastnb.sim.sshd import SSHServer

    # A plain `kill` ends the server as Ctrl-C does, its sshd with it.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    home = vastnb_home()
    # --ssh: a real sshd on loopback that every instance points at, so a client of this
    # server reaches its boxes by the SSH path, as on Vast.
    sshd = SSHServer(home / "sim" / "sshd").start() if args.ssh else None
    config = SimConfig(
        seed=args.seed,
        ssh_address=(sshd.host, sshd.port) if sshd else None,
        authorized_keys=sshd.authorized_keys if sshd else None,
    )
    try:
        sim = Simulator(home, config, rate_limit_scale=args.rate_limits)
        server = sim.serve(args.host, args.port, verbose=args.verbose)
        print(f"Simulated Vast API on {server.url} (state in {home / 'sim'})")
        print("Point a Vast client at it with:")
        print(f"  export VAST_URL={server.url}")
        # The simulator's own key, not a real one: it opens nothing but this loopback server.
        print(f"  export VAST_API_KEY={sim.market.api_key}")
        if sshd is not None:
            print(
                f"Its instances are reached by SSH at {sshd.user}@{sshd.host}:{sshd.port} (a real sshd, loopback only):"
            )
            print(
                f"  Client(backend='vast', url={server.url!r}, api_key=..., box=BoxOptions("
                f"home='~/.cache/vastnb-sim/{{id}}', ssh_user={sshd.user!r}))"
            )
        print("Ctrl-C stops it.", flush=True)
        try:
            server.serve_forever()
        except KeyboardInterrupt:
            pass
    finally:
        if sshd is not None:  # a server that exits leaves no sshd listening
            sshd.stop()
    return 0


#: What each of the table's commands runs, by its path of names.
_RUN: dict[str, Callable[[argparse.Namespace], int]] = {
    "profiles": _profiles,
    "offers": _offers,
    "launch": _launch,
    "ps": _ps,
    "down": _down,
    "cost": _cost,
    "demo": _demo,
    "sim serve": _sim_serve,
    "submit": jobcli.submit,
    "jobs": jobcli.jobs,
    "checkpoints": jobcli.checkpoints,
    "logs": jobcli.logs,
    "cancel": jobcli.cancel,
    "controller run": jobcli.controller_run,
    "controller status": jobcli.controller_status,
    "controller stop": jobcli.controller_stop,
}


def _add_commands(parser: argparse.ArgumentParser, command: Command, path: tuple[str, ...]) -> None:
    """``command``'s flags on ``parser``, then its subcommands, each as the table says."""
    add_arguments(parser, command, "cli")
    subcommands = command.subcommands_for("cli")
    if not subcommands:
        parser.set_defaults(run=_RUN[" ".join(path)])
        return
    dest = f"{path[-1]}_command" if path else "command"
    sub = parser.add_subparsers(dest=dest, required=True, metavar="COMMAND")
    for child in subcommands:
        # argparse lists an alias beside its command: "follow (attach)".
        child_parser = sub.add_parser(child.name, aliases=list(child.aliases), help=child.help.replace("%", "%%"))
        _add_commands(child_parser, child, (*path, child.name))


def build_parser() -> argparse.ArgumentParser:
    """The ``vastnb`` parser, built from the command table (:mod:`vastnb.front.commands`)."""
    parser = argparse.ArgumentParser(prog="vastnb", description=TABLE.help)
    _add_commands(parser, TABLE, ())
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    words = list(sys.argv[1:] if argv is None else argv)
    # `vastnb submit train.py --profile P -- --lr 0.1`: what follows `--` is the script's.
    tail = words[words.index("--") + 1 :] if "--" in words else []
    parser = build_parser()
    args = parser.parse_args(words[: len(words) - len(tail) - 1] if "--" in words else words)
    if "--" in words:
        if not hasattr(args, "script_args"):
            parser.error("`--` only separates a submitted script's own arguments: vastnb submit SCRIPT ... -- ARGS")
        args.script_args = [*args.script_args, *tail]
    try:
        return int(args.run(args))
    except VastError as exc:
        print(f"vastnb: {exc}", file=sys.stderr)
        return 1
    except ValueError as exc:  # bad --host and the like
        print(f"vastnb: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:  # what a launch created is destroyed on the way out
        print("vastnb: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
