"""vastnb: train on rented Vast.ai GPUs from a notebook.

    import vastnb
    vast = vastnb.Client()            # "vast" with an API key, else the simulated market
    vast.offers("training-standard")  # DataFrame, cheapest first
    with vast.launch("dev-test") as box:  # a ready box; destroyed when the block ends
        box.run(train, epochs=3)
"""

from __future__ import annotations

__version__ = "0.1.0"

from .api import VastAPI
from .box import Box
from .budgets import Budget, load_budgets
from .checkpoints import CheckpointManager, load_latest
from .client import Client
from .fleet import BoxOptions
from .launch import LaunchEvent, LaunchPolicy
from . import errors
from .errors import *  # noqa: F403  (the error tree is public, all of it)
from .profiles import Profile, load_profiles
from .records import ActualStatus, Instance, Offer
from .retry import RetryPolicy

__all__ = [
    "__version__",
    "Client",
    "Box",
    "BoxOptions",
    "LaunchPolicy",
    "LaunchEvent",
    "VastAPI",
    "load_ipython_extension",
    "RetryPolicy",
    "Profile",
    "load_profiles",
    "Budget",
    "load_budgets",
    "CheckpointManager",
    "load_latest",
    "Offer",
    "Instance",
    "ActualStatus",
    *errors.__all__,
]


def load_ipython_extension(ipython: object) -> None:
    """``%load_ext vastnb``: the ``%vast`` and ``%%vast run`` magics."""
    from .magics import load_ipython_extension as load

    load(ipython)
