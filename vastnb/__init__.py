"""vastnb: train on rented Vast.ai GPUs from a notebook.

    import vastnb
    vast = vastnb.Client()            # "vast" with an API key, else the simulated market
    vast.offers("training-standard")  # DataFrame, cheapest first
    with vast.launch("dev-test") as box:  # a ready box; destroyed when the block ends
        box.run(train, epochs=3)
    vastnb.checkpoints("s3://bucket/runs/exp1")   # DataFrame of a run's checkpoints

The public names load on first use (PEP 562): ``import vastnb`` stays light, and pandas,
httpx or boto3 load only when something that needs them is used. The packages and what
each may import are in docs/architecture.md.
"""

from __future__ import annotations

import importlib
import typing

from vastnb import errors
from vastnb.errors import *  # noqa: F403  (the error tree is public, all of it)

__version__ = "0.1.0"

#: public name -> the module that defines it
_LAZY = {
    "Client": "vastnb.client",
    "Box": "vastnb.lifecycle.box",
    "RunOptions": "vastnb.lifecycle.box",
    "BoxOptions": "vastnb.backends.base",
    "LaunchPolicy": "vastnb.lifecycle.launch",
    "LaunchEvent": "vastnb.lifecycle.launch",
    "InstanceState": "vastnb.lifecycle.states",
    "VastAPI": "vastnb.market.api",
    "RetryPolicy": "vastnb.market.retry",
    "Offer": "vastnb.market.records",
    "Instance": "vastnb.market.records",
    "ActualStatus": "vastnb.market.records",
    "Profile": "vastnb.profiles.profile",
    "load_profiles": "vastnb.profiles.profile",
    "Budget": "vastnb.profiles.budgets",
    "load_budgets": "vastnb.profiles.budgets",
    "CheckpointManager": "vastnb.storage.checkpoints",
    "load_latest": "vastnb.storage.checkpoints",
    "checkpoints": "vastnb.storage.checkpoints",
    "Job": "vastnb.jobs.job",
    "JobState": "vastnb.jobs.states",
    "ControllerSettings": "vastnb.jobs.controller",
    "Timing": "vastnb.jobs.watch",
}

__all__ = ["__version__", "load_ipython_extension", *_LAZY, *errors.__all__]  # noqa: PLE0604 - _LAZY's keys and the error tree's names: strings

if typing.TYPE_CHECKING:
    from vastnb.backends.base import BoxOptions as BoxOptions
    from vastnb.client import Client as Client
    from vastnb.jobs.controller import ControllerSettings as ControllerSettings
    from vastnb.jobs.job import Job as Job
    from vastnb.jobs.states import JobState as JobState
    from vastnb.jobs.watch import Timing as Timing
    from vastnb.lifecycle.box import Box as Box, RunOptions as RunOptions
    from vastnb.lifecycle.launch import LaunchEvent as LaunchEvent, LaunchPolicy as LaunchPolicy
    from vastnb.lifecycle.states import InstanceState as InstanceState
    from vastnb.market.api import VastAPI as VastAPI
    from vastnb.market.records import ActualStatus as ActualStatus, Instance as Instance, Offer as Offer
    from vastnb.market.retry import RetryPolicy as RetryPolicy
    from vastnb.profiles.budgets import Budget as Budget, load_budgets as load_budgets
    from vastnb.profiles.profile import Profile as Profile, load_profiles as load_profiles
    from vastnb.storage.checkpoints import (
        CheckpointManager as CheckpointManager,
        checkpoints as checkpoints,
        load_latest as load_latest,
    )


def __getattr__(name: str) -> typing.Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'vastnb' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # once: later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))


def load_ipython_extension(ipython: object) -> None:
    """``%load_ext vastnb``: the ``%vast`` and ``%%vast run`` magics."""
    from vastnb.front.magics import load_ipython_extension as load

    load(ipython)
