"""torch.distributed on the box: a call run in every rank under PyTorch's elastic launcher
(what ``torchrun`` runs), and the helpers a training function wants in its ranks.

In a rank (``box.options(nproc=4).run(train)`` on the notebook's side)::

    from vastnb_worker import distributed as dist

    def train(cfg):
        dist.setup()                      # init_process_group from the launcher's environment
        model = DDP(build(cfg))           # NCCL on GPUs, gloo on CPUs
        ...
        if dist.is_main():
            print("done")

:func:`run_ranks` is what the worker runs for such a call: ``torch.distributed.launcher``'s
``elastic_launch`` with a c10d rendezvous on this box's loopback, one process per rank
(``LOCAL_RANK``, ``RANK``, ``WORLD_SIZE``, ``MASTER_ADDR``/``MASTER_PORT`` set by the launcher),
each rank's output teed through the launcher with its rank in front (``[r2]``). A rank that
fails tears the group down, and the error names the rank with its traceback.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import ipaddress
import os
import shutil
import signal
import socket
import struct
import sys
import tempfile
import time
import uuid
from typing import Any, Callable, Optional

from . import job

__all__ = [
    "setup",
    "is_main",
    "barrier",
    "rank",
    "world_size",
    "local_rank",
    "run_ranks",
    "cell",
    "free_port",
    "address_in",
    "RankError",
]


_LAUNCHER_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT)
# Where NCCL and gloo look for the interface to reach other nodes by (Vast's overlay
# network: its docs name NCCL_SOCKET_IFNAME; without it NCCL may pick the NAT bridge).
_SOCKET_INTERFACE = ("NCCL_SOCKET_IFNAME", "GLOO_SOCKET_IFNAME")


class RankError(RuntimeError):
    """A rank of a distributed call failed: which one, and its traceback."""


def rank() -> int:
    """This process's global rank (0 outside a distributed call)."""
    return int(os.environ.get("RANK", "0"))


def local_rank() -> int:
    """This process's rank on its machine (its GPU index)."""
    return int(os.environ.get("LOCAL_RANK", "0"))


def world_size() -> int:
    """How many ranks the call runs in (1 outside a distributed call)."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def is_main() -> bool:
    """Whether this is rank 0: the one that logs, saves and returns the call's value."""
    return rank() == 0


def setup(backend: Optional[str] = None) -> str:
    """``torch.distributed.init_process_group`` from the launcher's environment, once: NCCL
    when this box has CUDA (and this rank's GPU made the current device), else gloo. The
    backend in use."""
    import torch
    import torch.distributed as td

    if not td.is_initialized():
        chosen = backend or ("nccl" if torch.cuda.is_available() else "gloo")
        if chosen == "nccl":
            torch.cuda.set_device(local_rank())
        td.init_process_group(backend=chosen)
    return str(td.get_backend())


def barrier() -> None:
    """Wait for every rank (nothing to wait for outside a distributed call)."""
    import torch.distributed as td

    if td.is_initialized():
        td.barrier()


def cell(source: str, push: dict, pull: tuple, filename: str) -> Any:
    """A notebook cell in one rank, in a namespace of its own holding the pushed names:
    ``{"value": its last expression, "pull": the pulled names}`` (``%%vast run --nproc``)."""
    from .tasks import cell_result

    return cell_result((source, push, pull, filename), {"__name__": "__main__"})


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def rank_main(folder: str, interface: str = "") -> None:
    """One rank, a process of its own started by the launcher: the call from ``folder``,
    its value pickled back there as ``r<RANK>.pkl``. An exception is recorded for the
    launcher, which tells it with the rank. NCCL and gloo reach other nodes through
    ``interface`` when one is named."""
    from torch.distributed.elastic.multiprocessing.errors import record

    for name in _SOCKET_INTERFACE if interface else ():
        os.environ[name] = interface

    record(_call)(folder)


def _call(folder: str) -> None:
    import cloudpickle
    import torch.distributed as td

    with open(os.path.join(folder, "call.pkl"), "rb") as f:
        fn, args, kwargs, job_meta = cloudpickle.load(f)
    try:
        with job.bound(job_meta):  # the job the call runs as, in every rank
            value = fn(*args, **kwargs)
    finally:
        if td.is_available() and td.is_initialized():
            td.destroy_process_group()
    with open(os.path.join(folder, f"r{local_rank()}.pkl"), "wb") as f:
        cloudpickle.dump(value, f)


def _package_root() -> str:
    """Where ``vastnb_worker`` is imported from (the worker's zip on a box)."""
    return os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def free_port() -> int:
    """A TCP port free on this box now (for a group's rendezvous on node 0)."""
    return _free_port()


STRAGGLER_WAIT = 5.0  # seconds a killed rank has to be gone


def _end_stragglers(folder: str) -> None:
    """Kill any rank of this call still alive once its launcher is done (one it started
    while a Ctrl-C or a failure was tearing the group down): a rank left behind would hold
    its GPU and memory until the box is gone. Ranks are found by ``folder`` in their
    command line (Linux's /proc)."""
    mark = folder.encode()
    mine = []
    for entry in filter(str.isdigit, os.listdir("/proc") if os.path.isdir("/proc") else ()):
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                if mark in f.read().split(b"\0") and int(entry) != os.getpid():
                    mine.append(int(entry))
        except OSError:  # gone already, or not ours to read
            continue
    for pid in mine:
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + STRAGGLER_WAIT
    for pid in mine:
        while time.monotonic() < deadline and os.path.exists(f"/proc/{pid}") and not _zombie(pid):
            time.sleep(0.05)


def _zombie(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            return f.read().rsplit(b")", 1)[-1].split()[0] == b"Z"
    except (OSError, IndexError):
        return True


_SIOCGIFADDR = 0x8915  # Linux: an interface's IPv4 address


def address_in(subnet: str) -> Optional[tuple[str, str]]:
    """This box's network interface in ``subnet`` (a group's overlay network, as the market
    reports it) and its IPv4 address: ``("eth0", "10.0.0.1")``; None if it has none. What
    the rendezvous listens on, and what NCCL and gloo are told to use."""
    network = ipaddress.ip_network(subnet, strict=False)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        for _, name in socket.if_nameindex():
            try:
                answer = fcntl.ioctl(s.fileno(), _SIOCGIFADDR, struct.pack("256s", name[:15].encode()))
            except OSError:  # no IPv4 address on it
                continue
            address = socket.inet_ntoa(answer[20:24])
            if ipaddress.ip_address(address) in network:
                return name, address
    return None


def run_ranks(
    fn: Callable[..., Any],
    args: tuple,
    kwargs: dict,
    *,
    nproc: int,
    ranks: str = "0",
    nnodes: int = 1,
    node_rank: int = 0,
    endpoint: Optional[str] = None,
    run_id: Optional[str] = None,
    subnet: Optional[str] = None,
) -> Any:
    """``fn(*args, **kwargs)`` in ``nproc`` ranks on this box under torch's elastic
    launcher; rank 0's value, or (``ranks="all"``) every rank's of this box, in rank order.
    With ``nnodes`` > 1 this box is node ``node_rank`` of a group whose launchers meet at
    the c10d rendezvous ``endpoint`` (hosted by node 0) under one ``run_id``, over the
    group's network ``subnet``: the ranks' NCCL and gloo use this box's interface in it."""
    import cloudpickle
    from torch.distributed.elastic.multiprocessing import DefaultLogsSpecs, SignalException, Std
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.launcher.api import LaunchConfig, elastic_launch

    if isinstance(nproc, bool) or not isinstance(nproc, int) or nproc < 1:
        raise ValueError(f"nproc must be a number of processes (1 or more), not {nproc!r}")
    if ranks not in ("0", "all"):
        raise ValueError(f"ranks must be '0' (rank 0's value) or 'all', not {ranks!r}")
    folder = tempfile.mkdtemp(prefix="vastnb-ranks-")
    current = job.context()
    job_meta = dataclasses.asdict(current) if current is not None else None
    with open(os.path.join(folder, "call.pkl"), "wb") as f:
        cloudpickle.dump((fn, args, kwargs, job_meta), f)
    if nnodes > 1 and not (endpoint and run_id):
        raise ValueError("a group of nodes needs the rendezvous endpoint and run_id of its node 0")
    interface, address = "", "127.0.0.1"
    if subnet is not None:
        found = address_in(subnet)
        if found is None:
            raise RankError(
                f"this box has no network interface in the group's network {subnet}: it did not join the "
                "overlay network (or it was deleted). Destroy the group and launch it again."
            )
        interface, address = found
    config = LaunchConfig(
        min_nodes=nnodes,
        max_nodes=nnodes,
        nproc_per_node=nproc,
        run_id=run_id or uuid.uuid4().hex,
        rdzv_backend="c10d",
        rdzv_endpoint=endpoint or f"127.0.0.1:{_free_port()}",
        rdzv_configs={"is_host": node_rank == 0, "join_timeout": 120},
        max_restarts=0,
        logs_specs=DefaultLogsSpecs(log_dir=os.path.join(folder, "logs"), redirects=Std.ALL, tee=Std.ALL),
        log_line_prefix_template="[r${rank}] ",
        local_addr=address,
    )
    start = f"import sys; sys.path.insert(0, {_package_root()!r}); from vastnb_worker.distributed import rank_main; rank_main(*sys.argv[1:])"
    # The launcher handles these signals itself while it runs (ending every rank); the
    # worker's own handlers (Ctrl-C for the next task) are put back after it.
    handlers = {sig: signal.getsignal(sig) for sig in _LAUNCHER_SIGNALS}
    try:
        try:
            elastic_launch(config, sys.executable)("-c", start, folder, interface)
        except SignalException as exc:
            if exc.sigval == signal.SIGINT:  # Ctrl-C: every rank ended, the call interrupted
                raise KeyboardInterrupt from None
            raise
        except ChildFailedError as exc:
            first, failure = exc.get_first_failure()  # the rank that failed first: the cause
            message = failure.message
            if isinstance(message, dict):
                message = message.get("message", "")
            raise RankError(
                f"rank {first} of {nproc * nnodes} failed (exit code {failure.exitcode}); the group was torn down.\n"
                f"{str(message).strip() or '(no traceback: the rank was killed)'}"
            ) from None
        finally:
            for sig, handler in handlers.items():
                signal.signal(sig, handler)
            _end_stragglers(folder)
        values = []
        for r in range(nproc):
            with open(os.path.join(folder, f"r{r}.pkl"), "rb") as f:
                values.append(cloudpickle.load(f))
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    return values if ranks == "all" else values[0]
