"""The job subcommands of the command table: submitting, watching and cancelling jobs,
and the controller that runs them."""

from __future__ import annotations

import argparse
from typing import Any

from vastnb.front.spec import _JSON, _PROFILES, _PROJECT, _TEAM, CLI, MAGIC, Command, Flag

__all__ = ["JOB_COMMANDS", "CONTROLLER", "job_settings"]

_JOB_FLAGS = (
    _TEAM,
    _PROJECT,
    Flag(("--checkpoint",), "where CheckpointManager() inside saves and resumes: s3://bucket/prefix", metavar="URL"),
    Flag(("--max-recoveries",), "boxes lost and replaced, at most (default 3)", type=int, default=3, metavar="N"),
    Flag(("--priority",), "higher runs first (default 0)", type=int, default=0),
    Flag(
        ("--retry-on-error",),
        "run again after its own exception, at most N times (default 0)",
        type=int,
        default=0,
        metavar="N",
    ),
)
_SOURCE = Flag(
    ("source",),
    "a job's name or a checkpoint URL (s3://..., a folder); default: the latest job",
    nargs="?",
    metavar="JOB|URL",
)
_CTL_WHY = "a process of its own; in Python: vast.controller.status() and .stop()"


JOB_COMMANDS = (
    Command(
        "job",
        "submit the cell as a job: a controller runs it and recovers it when its box is lost",
        (
            Flag(("profile",), "a profile name (see profiles)"),
            Flag(("--name",), "the job's name (default: job-XXXXXX)"),
            *_JOB_FLAGS,
            Flag(("--push",), "names to send (default: those the cell reads), captured now", metavar="A,B"),
            Flag(("--pull",), "names the cell defines, kept with its result", metavar="A,B"),
        ),
        api="vastnb:Client.submit_cell",
        fronts=MAGIC,
        cell=True,
        why="it submits the notebook cell under it; a terminal submits a script (vastnb submit)",
    ),
    Command(
        "submit",
        "submit a script as a job, with the local modules it imports",
        (
            Flag(("script",), "the script to run, as `python SCRIPT ARGS...`"),
            Flag(("script_args",), "its arguments (after --)", nargs="*", metavar="ARGS"),
            Flag(("--profile",), "a profile name (see profiles)", default="training-standard"),
            Flag(("--name",), "the job's name (default: the script's name)"),
            *_JOB_FLAGS,
            _PROFILES,
        ),
        api="vastnb:Client.submit_script",
        fronts=CLI,
        why="a notebook submits a function (vast.submit) or a cell (%%vast job)",
    ),
    Command("jobs", "every job: state, attempts, box, runtime, cost", (_JSON,), api="vastnb:Client.jobs"),
    Command(
        "checkpoints",
        "a job's checkpoints, or those at a URL: step, time, size, metrics (live in a notebook)",
        (_SOURCE, _JSON),
        api="vastnb:Client.checkpoints",
    ),
    Command(
        "dashboard",
        "boxes, jobs, checkpoints and metrics, spend against budgets: one live widget",
        (_SOURCE,),
        api="vastnb:Client.dashboard",
        fronts=MAGIC,
        why="a widget; in a terminal `vastnb ps`, `jobs`, `checkpoints` and `cost` show the same",
    ),
    Command(
        "logs",
        "a job's output, every attempt (-f: follow it live)",
        (
            Flag(("name",), "the job's name"),
            Flag(("-f", "--follow"), "print new output as it comes until the job ends", action="store_true"),
        ),
        api="vastnb:Job.logs",
    ),
    Command(
        "cancel",
        "cancel a job: its task stops, its boxes go",
        (Flag(("name",), "the job's name"),),
        api="vastnb:Job.cancel",
    ),
)

CONTROLLER = Command(
    "controller",
    "the process that runs jobs (the first submit starts it)",
    subcommands=(
        Command(
            "run",
            "run the controller here, in the foreground (a server, CI)",
            (
                Flag(
                    ("--settings",),
                    "a settings file (what a submit writes for the one it starts)",
                    metavar="FILE",
                ),
                Flag(
                    ("--poll",),
                    "seconds between checks of each job's box (default 15)",
                    type=float,
                    metavar="S",
                ),
            ),
            fronts=CLI,
            why="it runs until stopped: it would hold the kernel",
        ),
        Command("status", "whether the controller runs, its pid and log", (_JSON,), fronts=CLI, why=_CTL_WHY),
        Command("stop", "stop it (jobs' boxes keep working; the next start adopts them)", fronts=CLI, why=_CTL_WHY),
    ),
    fronts=CLI,
    why=_CTL_WHY,
)


def job_settings(args: argparse.Namespace) -> dict[str, Any]:
    """A job's settings as both fronts parsed them (the ``_JOB_FLAGS`` and the name), for
    ``submit_cell`` and ``submit_script``."""
    keys = ("name", "checkpoint", "max_recoveries", "priority", "retry_on_error", "team", "project")
    return {key: getattr(args, key) for key in keys}
