"""The ``vastnb`` command line: the same calls as the Python API, printed for a terminal.

    vastnb profiles
    vastnb offers training-standard --limit 5 [--json]
    vastnb offers "gpu_name=RTX_4090 num_gpus>=1 dph<0.5"
    vastnb launch dev-test [--name exp1] [--interruptible] [--bid min]
    vastnb ps [--orphans] [--json]
    vastnb down exp1 | --all | --orphans
    vastnb demo
    vastnb sim serve --host 127.0.0.1 --port 8123
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence

import pandas as pd

from vastnb import __version__
from vastnb.client import Client
from vastnb.base.config import vastnb_home
from vastnb.errors import TeardownError, VastError
from vastnb.lifecycle.launch import LaunchEvent

__all__ = ["main"]


def _print_frame(frame: pd.DataFrame, *, as_json: bool, simulated: bool) -> None:
    if as_json:
        records = json.loads(frame.reset_index().to_json(orient="records"))
        print(json.dumps({"simulated": simulated, "rows": records}, indent=2))
        return
    if simulated:
        print("SIMULATED marketplace (no Vast API key found): prices are illustrative, nothing is billed.\n")
    with pd.option_context("display.width", 200, "display.max_columns", None, "display.max_colwidth", 60):
        print(frame.to_string() if not frame.empty else "(none)")


def _profiles(args: argparse.Namespace) -> int:
    with Client(profiles=args.profiles) as client:
        _print_frame(client.profiles(), as_json=args.json, simulated=False)
    return 0


def _offers(args: argparse.Namespace) -> int:
    with Client(profiles=args.profiles) as client:
        frame = client.offers(" ".join(args.spec), limit=args.limit, order=args.order)
        _print_frame(frame, as_json=args.json, simulated=client.simulated)
    return 0


def _launch(args: argparse.Namespace) -> int:
    from vastnb.lifecycle.fleet import BoxOptions

    box_options = BoxOptions(silence_s=args.silence * 60)
    with Client(profiles=args.profiles, box=box_options) as client:
        client.profile(args.profile)  # a bad name is refused before anything else is said
        if client.simulated:
            print("SIMULATED marketplace (no Vast API key found): nothing is billed.")
        # Launched from a terminal, a box outlives this command: it is kept.
        box = client.launch(args.profile, name=args.name, interruptible=args.interruptible or None,
                            bid=args.bid, keep=True, progress=LaunchEvent.print)  # fmt: skip
        print(f"{box.name} (#{box.id}) is running at ${box.price_per_hour:.3f}/h. "
              f"It destroys itself after {args.silence:g} min without a connection from vastnb; "
              f"end it now with `vastnb down {box.name}`.")  # fmt: skip
    return 0


def _ps(args: argparse.Namespace) -> int:
    with Client() as client:
        frame = client.orphans() if args.orphans else client.instances()
        _print_frame(frame, as_json=args.json, simulated=client.simulated)
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
                print(f"destroyed: {name}" if client.down(name) else f"{name}: already gone")
            except VastError as exc:
                print(f"vastnb: {name}: {exc}", file=sys.stderr)
                failed += 1
    return 1 if failed else 0


def _demo(args: argparse.Namespace) -> int:
    from vastnb.front.demo import run_demo

    run_demo()
    return 0


def _sim_serve(args: argparse.Namespace) -> int:
    from vastnb.sim import SimConfig, Simulator

    sim = Simulator(vastnb_home(), SimConfig(seed=args.seed), rate_limit_scale=args.rate_limits)
    server = sim.serve(args.host, args.port, verbose=args.verbose)
    print(f"Simulated Vast API on {server.url} (state in {vastnb_home() / 'sim'})")
    print("Point a Vast client at it with:")
    print(f"  export VAST_URL={server.url}")
    # The simulator's own key, not a real one: it opens nothing but this loopback server.
    print(f"  export VAST_API_KEY={sim.market.api_key}")
    print("Ctrl-C stops it.", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="vastnb", description="Rent Vast.ai GPUs for training, from a notebook or here.")
    parser.add_argument("--version", action="version", version=f"vastnb {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    profiles = commands.add_parser("profiles", help="list the GPU profiles")
    profiles.add_argument("--profiles", metavar="PATH", help="profile file or folder (default: the search order)")
    profiles.add_argument("--json", action="store_true", help="print JSON")
    profiles.set_defaults(run=_profiles)

    offers = commands.add_parser("offers", help="offers for a profile, or for a Vast CLI query, cheapest first")
    offers.add_argument("spec", nargs="+", help="a profile name, or a query like 'gpu_name=RTX_4090 dph<0.5'")
    offers.add_argument("--limit", type=int, default=20, help="show at most this many (default 20)")
    offers.add_argument("-o", "--order", help="sort a query's results, CLI style: 'dph_total,reliability-'")
    offers.add_argument("--profiles", metavar="PATH", help="profile file or folder")
    offers.add_argument("--json", action="store_true", help="print JSON")
    offers.set_defaults(run=_offers)

    launch = commands.add_parser("launch", help="rent the cheapest offer for a profile; the box is kept running")
    launch.add_argument("profile", help="a profile name (see `vastnb profiles`)")
    launch.add_argument("--name", help="a name for the box (default: profile-XXXX)")
    launch.add_argument("--interruptible", action="store_true", help="rent at a bid: cheaper, can be preempted")
    launch.add_argument("--bid", help="min (default), min+N%%, or a fixed $/h; implies --interruptible")
    launch.add_argument("--silence", type=float, default=30.0, metavar="MINUTES",
                        help="the box destroys itself after this long without vastnb connected (default 30)")  # fmt: skip
    launch.add_argument("--profiles", metavar="PATH", help="profile file or folder")
    launch.set_defaults(run=_launch)

    ps = commands.add_parser("ps", help="vastnb's instances: state, $/h, uptime, cost so far, owner")
    ps.add_argument("--orphans", action="store_true", help="only instances no live session owns")
    ps.add_argument("--json", action="store_true", help="print JSON")
    ps.set_defaults(run=_ps)

    down = commands.add_parser("down", help="destroy instances (billing stops)")
    down.add_argument("names", nargs="*", metavar="NAME", help="instance names or ids")
    down.add_argument("--all", action="store_true", help="every vastnb instance on the account")
    down.add_argument("--orphans", action="store_true", help="every instance no live session owns")
    down.set_defaults(run=_down)

    demo = commands.add_parser("demo", help="launch a simulated box, train on it, show the cost, tear down")
    demo.set_defaults(run=_demo)

    sim = commands.add_parser("sim", help="the simulated marketplace")
    sim_commands = sim.add_subparsers(dest="sim_command", required=True, metavar="COMMAND")
    serve = sim_commands.add_parser("serve", help="serve the simulated Vast API over HTTP on loopback")
    serve.add_argument("--host", default="127.0.0.1", help="127.0.0.1 (default) or ::1")
    serve.add_argument("--port", type=int, default=8123, help="0 picks a free port (default 8123)")
    serve.add_argument("--seed", type=int, default=0, help="catalogue seed for a new market (default 0)")
    serve.add_argument("--rate-limits", type=float, default=1.0, metavar="SCALE",
                       help="Vast's per-endpoint rate limits times SCALE; 0 turns them off (default 1)")  # fmt: skip
    serve.add_argument("--verbose", action="store_true", help="log every request")
    serve.set_defaults(run=_sim_serve)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
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
