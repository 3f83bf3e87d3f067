"""A quick, never-failing report on the box the worker runs on.

`health()` gathers what a user needs to know about a rented box (Python, library versions, GPUs,
CPUs, memory, disk) in a JSON-serialisable dict; `format_health()` turns one into a line of text.
Standard library only: torch is never imported (its version comes from package metadata), and
`nvidia-smi` is run with a timeout, so a broken driver costs at most a few seconds, never a hang.
Sizes use binary units named as nvidia-smi names them: "MB" is MiB and "GB" is GiB.
"""

from __future__ import annotations

import os
import platform
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any, Optional

__all__ = [
    "format_health",
    "health",
    "measure_in_background",
    "measured",
    "parse_nvidia_smi_gpus",
    "parse_nvidia_smi_header",
]

#: Seconds the nvidia-smi calls may take, together: they run side by side.
TIMEOUT = 3.0
#: The per-GPU fields asked of nvidia-smi, in the order of the keys of each entry in `gpus`.
GPU_QUERY = "index,name,memory.total,memory.used,utilization.gpu,temperature.gpu"

_measured: Optional[dict[str, Any]] = None  # the worker's report, once measure_in_background() ends
_ready = threading.Event()


def measure_in_background(path: str) -> None:
    """Measure :func:`health` once, on a thread of its own: the worker's daemon does at its
    start, and answers HELLO without waiting for it (nvidia-smi can take seconds)."""

    def measure() -> None:
        global _measured
        try:
            _measured = health(path)
        except Exception as exc:  # noqa: BLE001 - health is a report, never a reason to fail
            _measured = {"error": repr(exc)}
        finally:
            _ready.set()

    threading.Thread(target=measure, name="vastnb-health", daemon=True).start()


def measured(timeout: float = TIMEOUT + 10.0) -> Optional[dict[str, Any]]:
    """The report :func:`measure_in_background` made, waiting up to ``timeout`` s for it
    (None if it has not ended by then, or never started)."""
    _ready.wait(timeout)
    return _measured


def parse_nvidia_smi_header(text: str | None) -> dict[str, str | None]:
    """Driver and CUDA versions from plain `nvidia-smi` output, each None when absent."""
    found: dict[str, str | None] = {"cuda_driver": None, "cuda_version": None}
    for key, label in (("cuda_driver", "Driver Version"), ("cuda_version", "CUDA Version")):
        match = re.search(label + r":\s*([0-9][0-9.]*)", text or "")
        found[key] = match.group(1) if match else None
    return found


def parse_nvidia_smi_gpus(text: str | None) -> list[dict[str, Any]]:
    """GPUs from `nvidia-smi --query-gpu=<GPU_QUERY> --format=csv,noheader,nounits` output.
    Lines that are not GPU rows (error messages, a GPU that fell off the bus) are skipped;
    values nvidia-smi cannot give ("[N/A]", "[Not Supported]") become None."""
    gpus: list[dict[str, Any]] = []
    for line in (text or "").splitlines():
        fields = [f.strip() for f in line.split(",")]
        if len(fields) < 6 or not fields[0].isdigit():
            continue
        name = ", ".join(fields[1:-4])  # a name holding a comma would have been split
        total, used, util, temp = (int(f) if f.isdigit() else None for f in fields[-4:])
        gpus.append(
            {
                "index": int(fields[0]),
                "name": name,
                "memory_total_mb": total,
                "memory_used_mb": used,
                "utilization_pct": util,
                "temperature_c": temp,
            }
        )
    return gpus


def health(path: str = ".", *, timeout: float = TIMEOUT) -> dict[str, Any]:
    """Report on this box. Never raises: a part that cannot be found is None (or [] for `gpus`).
    `path` is the folder whose disk is measured; `timeout` bounds the nvidia-smi calls."""
    header, query = _run_all(
        [["nvidia-smi"], ["nvidia-smi", "--query-gpu=" + GPU_QUERY, "--format=csv,noheader,nounits"]], timeout
    )
    from importlib import metadata  # here, not at import: it pulls in email, zipfile, csv

    memory = _safe(_meminfo, {})
    disk = _safe(lambda: shutil.disk_usage(path), None)
    report: dict[str, Any] = {
        "python": platform.python_version(),
        "python_executable": sys.executable or None,
        "platform": _safe(lambda: "-".join([platform.system(), platform.release(), platform.machine()]), None),
        "hostname": _safe(socket.gethostname, None),
        # Ask the module, not its metadata: a copy bundled in the zipapp has none.
        "cloudpickle": _safe(lambda: str(__import__("cloudpickle").__version__), None),
        "torch": _safe(lambda: metadata.version("torch"), None),  # never `import torch`: seconds
        "numpy": _safe(lambda: metadata.version("numpy"), None),
        "gpus": _safe(lambda: parse_nvidia_smi_gpus(query), []),
        "cpu_count": os.cpu_count(),
        "cpu_usable": _safe(_cpu_usable, None),
        "memory_total_mb": memory.get("MemTotal"),
        "memory_available_mb": memory.get("MemAvailable"),
        "disk_total_gb": round(disk.total / 2**30, 1) if disk else None,
        "disk_free_gb": round(disk.free / 2**30, 1) if disk else None,
        "load_avg": _safe(lambda: [round(x, 2) for x in os.getloadavg()], None),
    }
    report.update(_safe(lambda: parse_nvidia_smi_header(header), {}))
    return report


def format_health(report: dict[str, Any]) -> str:
    """One line for a person, e.g. "Python 3.11.7, cloudpickle 3.1.2, torch 2.5.1, CUDA 12.4
    (driver 550.54); 1x NVIDIA A100 80GB (81920 MB); 16 CPUs, 62.5 GB RAM (58.1 free), 120 GB
    disk free". The report comes from a box, maybe another worker version: what is missing or
    of the wrong type is left out rather than failing."""
    r = report if isinstance(report, dict) else {}
    soft = [
        f"Python {r.get('python') or '?'}",
        f"cloudpickle {r.get('cloudpickle') or 'missing'}",
        f"torch {r['torch']}" if r.get("torch") else "no torch",
    ]
    if r.get("cuda_version") or r.get("cuda_driver"):
        soft.append(f"CUDA {r.get('cuda_version') or '?'} (driver {r.get('cuda_driver') or '?'})")
    counts: dict[str, list[Any]] = {}  # name -> [how many, memory of the first]
    listed = r.get("gpus")
    for gpu in listed if isinstance(listed, list) else []:
        if isinstance(gpu, dict):
            counts.setdefault(str(gpu.get("name")), [0, _num(gpu.get("memory_total_mb"))])[0] += 1
    gpus = ", ".join(f"{n}x {name}" + (f" ({mb:.0f} MB)" if mb is not None else "") for name, (n, mb) in counts.items())
    box, cpus, usable = [], r.get("cpu_count"), r.get("cpu_usable")
    if cpus:
        box.append(f"{usable} of {cpus} CPUs" if usable and usable != cpus else f"{cpus} CPUs")
    total, free, disk = (_num(r.get(k)) for k in ("memory_total_mb", "memory_available_mb", "disk_free_gb"))
    if total is not None:
        box.append(f"{total / 1024:.1f} GB RAM" + (f" ({free / 1024:.1f} free)" if free is not None else ""))
    if disk is not None:
        box.append(f"{disk:.0f} GB disk free")
    return "; ".join([", ".join(soft), gpus or "no GPU"] + ([", ".join(box)] if box else []))


def _run_all(argvs: Sequence[Sequence[str]], timeout: float) -> list[str | None]:
    """Run the commands side by side; the stdout of each, or None where it failed or ran past
    `timeout` (killed with its whole process group, so a hung child cannot hold the pipe)."""
    procs: list[subprocess.Popen[str] | None] = []
    for argv in argvs:
        try:
            procs.append(
                subprocess.Popen(
                    list(argv),
                    stdin=subprocess.DEVNULL,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.DEVNULL,
                    encoding="utf-8",
                    errors="replace",
                    start_new_session=True,
                )
            )  # a group of its own, to kill
        except (OSError, ValueError):  # not installed, not executable
            procs.append(None)
    deadline = time.monotonic() + timeout
    outputs: list[str | None] = []
    for proc in procs:
        try:
            outputs.append(proc.communicate(timeout=max(0.0, deadline - time.monotonic()))[0] if proc else None)
        except Exception:  # noqa: BLE001 - TimeoutExpired, or anything odd: give up on this one
            outputs.append(None)
            _kill(proc)
    return outputs


def _kill(proc: subprocess.Popen[str] | None) -> None:
    """Kill a command and its whole group (a shell script's children too); never wait on its pipe."""
    if proc is None:
        return
    try:
        if hasattr(os, "killpg"):
            os.killpg(proc.pid, signal.SIGKILL)
        else:
            proc.kill()
        proc.wait(timeout=1.0)
        if proc.stdout:
            proc.stdout.close()
    except Exception:  # noqa: BLE001 - already gone, or stuck in the kernel: nothing more to do
        pass


def _meminfo() -> dict[str, int]:
    """/proc/meminfo in MB, by name ("MemTotal: 65843212 kB"); Linux only."""
    rows = [line.split() for line in _read("/proc/meminfo").splitlines()]
    return {row[0].rstrip(":"): int(row[1]) // 1024 for row in rows if len(row) > 1 and row[1].isdigit()}


def _cpu_usable() -> int | None:
    """CPUs this process may really use: its affinity mask, capped by a cgroup CPU quota
    (a container often sees every core of the host but may use only a few)."""
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    for files in (
        ["/sys/fs/cgroup/cpu.max"],  # cgroup v2: "200000 100000", or "max 100000"
        ["/sys/fs/cgroup/cpu/cpu.cfs_quota_us", "/sys/fs/cgroup/cpu/cpu.cfs_period_us"],
    ):
        try:
            words = " ".join(_read(name) for name in files).split()
            quota, period = int(words[0]), int(words[1])
        except (OSError, ValueError, IndexError):
            continue
        if quota > 0 and period > 0 and usable:
            return min(usable, -(-quota // period))  # a quota of 1.5 CPUs can keep 2 busy
        break
    return usable


def _read(path: str) -> str:
    with open(path, encoding="ascii", errors="replace") as f:
        return f.read()


def _safe(fn: Callable[[], Any], default: Any) -> Any:
    try:
        return fn()
    except Exception:  # noqa: BLE001 - a figure missing from a report, never a failure
        return default


def _num(value: Any) -> float | None:
    """A number from an untrusted report, or None."""
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


if __name__ == "__main__":  # python3 -m vastnb_worker.health [PATH]: the report, as JSON
    import json

    print(json.dumps(health(sys.argv[1] if len(sys.argv) > 1 else "."), indent=2))
