"""``python -I worker.pyz relay|daemon --home DIR``: the worker's entry points on a box."""

from __future__ import annotations

import argparse
import os
import sys


def main() -> None:
    parser = argparse.ArgumentParser(prog="vastnb_worker")
    parser.add_argument("mode", choices=["relay", "daemon"])
    parser.add_argument("--home", required=True, help="the worker's folder on this box")
    parser.add_argument("--digest", default="source", help="the zipapp's sha256 (its identity)")
    parser.add_argument("--workdir", default=None, help="where tasks run (default: the home)")
    parser.add_argument("--idle-exit", type=float, default=12 * 3600, help="exit after this long unused (s)")
    args = parser.parse_args()
    home = os.path.abspath(os.path.expanduser(args.home))
    os.makedirs(home, exist_ok=True)
    if args.mode == "daemon":
        from .daemon import serve  # imported per mode: a relay starts with every connection
        from .metrics import ON_A_BOX

        os.environ[ON_A_BOX] = "1"  # its tasks' reports (vastnb_worker.report) become output

        serve(home, args.digest, workdir=args.workdir, idle_exit=args.idle_exit)
        return
    # The daemon runs from the same program as this relay: the zipapp, or this package.
    program = (
        [sys.executable, "-I", sys.argv[0]]
        if sys.argv[0].endswith(".pyz")
        else [sys.executable, "-I", "-m", "vastnb_worker"]
    )
    daemon_argv = [*program, "daemon", "--home", home, "--digest", args.digest, "--idle-exit", str(args.idle_exit)]
    if args.workdir:
        daemon_argv += ["--workdir", args.workdir]
    from .relay import relay

    relay(home, daemon_argv)


if __name__ == "__main__":
    main()
