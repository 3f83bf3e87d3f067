"""Offload: run functions and notebook cells on a box's worker, over SSH or locally."""

from __future__ import annotations

from vastnb.offload.cells import CellResult
from vastnb.offload.output import print_output
from vastnb.offload.results import RemoteTask, ResultPolicy, safe, trusted
from vastnb.offload.session import Session
from vastnb.offload.transport import LocalTransport, SSHTransport, Transport

__all__ = [
    "Session",
    "CellResult",
    "RemoteTask",
    "Transport",
    "LocalTransport",
    "SSHTransport",
    "ResultPolicy",
    "trusted",
    "safe",
    "print_output",
]
