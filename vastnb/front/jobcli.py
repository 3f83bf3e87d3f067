"""The job commands of the ``vastnb`` command line (the reference architecture's deploy
script): submit a script, list jobs, read their output, cancel them, run the controller."""

from __future__ import annotations

import argparse
import json
import signal
import sys
from pathlib import Path
from typing import Any

from vastnb.backends.base import BoxOptions
from vastnb.client import Client
from vastnb.errors import ConfigError, VastError
from vastnb.front.jobcommands import job_settings
from vastnb.front.notices import told_as
from vastnb.jobs.controller import Controller, ControllerSettings
from vastnb.lifecycle.launch import LaunchPolicy

__all__ = [
    "submit",
    "jobs",
    "checkpoints",
    "logs",
    "cancel",
    "controller_run",
    "controller_status",
    "controller_stop",
    "client_from",
]


def client_from(settings: dict[str, Any]) -> Client:
    """The client a settings file describes (what the first submit wrote for its controller)."""
    sim_config = None
    if settings.get("sim_config"):
        from vastnb.sim import SimConfig

        values = dict(settings["sim_config"])
        if values.get("ssh_address"):
            values["ssh_address"] = tuple(values["ssh_address"])
        if values.get("authorized_keys"):
            values["authorized_keys"] = Path(values["authorized_keys"])
        sim_config = SimConfig(**values)
    try:
        return Client(
            backend=settings.get("backend"),
            url=settings.get("url"),
            home=settings.get("home"),
            profiles=settings.get("profiles"),
            launch_policy=LaunchPolicy(**settings["launch_policy"]) if settings.get("launch_policy") else None,
            box=BoxOptions(**settings["box"]) if settings.get("box") else None,
            sim_config=sim_config,
            controller=ControllerSettings.from_dict(settings.get("controller") or {}),
        )
    except TypeError as exc:
        raise ConfigError(f"the controller's settings file does not match this vastnb: {exc}") from None


def controller_run(args: argparse.Namespace) -> int:
    if args.settings:
        try:
            settings = json.loads(Path(args.settings).read_text())
        except (OSError, ValueError) as exc:
            raise ConfigError(f"cannot read the controller settings {args.settings}: {exc}") from None
    else:
        settings = {"controller": {"timing": {"poll_s": args.poll}} if args.poll else {}}
    with client_from(settings) as client:
        controller = Controller(client.fleet, client.home, client.controller_settings)
        try:
            controller.every_poll.append(client.budget_enforcer(log=controller.log).check)
        except VastError as exc:  # a broken budgets.yaml: said loudly, and the jobs still run
            controller.log(f"budgets are NOT enforced: {exc}")
        # A plain `kill` (and `vastnb controller stop`) ends it as Ctrl-C does: boxes keep working.
        signal.signal(signal.SIGTERM, lambda *_: controller.stopping.set())
        try:
            controller.run()
        except KeyboardInterrupt:
            controller.stopping.set()
    return 0


def controller_status(args: argparse.Namespace) -> int:
    with Client() as client:
        info = client.controller.status()
        print(json.dumps(info) if args.json else _status_line(info))
    return 0


def _status_line(info: dict[str, Any]) -> str:
    if not info["running"]:
        return f"no controller runs (the first submit starts one; its log: {info['log']})"
    return f"the controller runs: pid {info['pid']}, session {info['id']}, log {info['log']}"


def controller_stop(args: argparse.Namespace) -> int:
    with Client() as client:
        stopped = client.controller.stop()
    print("controller stopped; its jobs' boxes keep working" if stopped else "no controller was running")
    return 0


def submit(args: argparse.Namespace) -> int:
    with Client(profiles=args.profiles) as client, told_as("vastnb: warning:"):
        job = client.submit_script(
            args.script,
            args.script_args,
            profile=args.profile,
            **job_settings(args),
        )
        print(f"job {job.name} queued (id {job.id}); `vastnb logs {job.name} -f` follows it")
    return 0


def jobs(args: argparse.Namespace) -> int:
    from vastnb.front.cli import print_frame

    with Client() as client:
        print_frame(client.jobs(), as_json=args.json, simulated=client.simulated)
    return 0


def checkpoints(args: argparse.Namespace) -> int:
    from vastnb.front.cli import print_frame
    from vastnb.front.widgets.dashboard import source_of

    with Client() as client:
        source = source_of(client, args.source)
        if source.checkpoint_url() is None:
            raise ConfigError(
                f"job {source.job} keeps no checkpoints (submit it with --checkpoint URL)"
                if source.job
                else "no job yet: name a job or a checkpoint URL (vastnb checkpoints s3://bucket/run)"
            )
        print_frame(source.checkpoints(), as_json=args.json, simulated=False, index=False)
    return 0


def logs(args: argparse.Namespace) -> int:
    with Client() as client:
        job = client.job(args.name)
        if args.follow:
            job.follow()
        else:
            sys.stdout.write(job.logs())
    return 0


def cancel(args: argparse.Namespace) -> int:
    with Client() as client:
        client.job(args.name).cancel()
        print(f"job {args.name} cancelled; its boxes are destroyed")
    return 0
