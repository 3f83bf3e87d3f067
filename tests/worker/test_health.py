"""The box report: vastnb_worker.health.

Most tests run the worker the way it runs on a box: `python -I -S`, with nothing importable but a
zip holding the worker package and cloudpickle (as the zipapp ships them), and with fake
`nvidia-smi` scripts put first on PATH where a GPU, a broken driver or a hang is needed.
"""

from __future__ import annotations

import glob
import json
import os
import shutil
import subprocess
import sys
import textwrap
import time
import zipfile
from pathlib import Path
from typing import Any

import cloudpickle
import pytest

import vastnb_worker
from vastnb_worker.health import (
    TIMEOUT,
    format_health,
    health,
    parse_nvidia_smi_gpus,
    parse_nvidia_smi_header,
)

posix_only = pytest.mark.skipif(os.name != "posix", reason="fake nvidia-smi is a shell script")

# Captured nvidia-smi outputs: (plain `nvidia-smi`, `--query-gpu=... --format=csv,noheader,nounits`).
A100_SMI = """\
Tue Mar 12 10:21:33 2024
+-----------------------------------------------------------------------------------------+
| NVIDIA-SMI 550.54.15              Driver Version: 550.54.15      CUDA Version: 12.4     |
|-----------------------------------------+------------------------+----------------------+
| GPU  Name                 Persistence-M | Bus-Id          Disp.A | Volatile Uncorr. ECC |
| Fan  Temp   Perf          Pwr:Usage/Cap |           Memory-Usage | GPU-Util  Compute M. |
|                                         |                        |               MIG M. |
|=========================================+========================+======================|
|   0  NVIDIA A100-SXM4-80GB          On  |   00000000:07:00.0 Off |                    0 |
| N/A   32C    P0             62W /  400W |       4MiB /  81920MiB |      0%      Default |
|                                         |                        |             Disabled |
+-----------------------------------------+------------------------+----------------------+

+-----------------------------------------------------------------------------------------+
| Processes:                                                                              |
|  GPU   GI   CI        PID   Type   Process name                              GPU Memory |
|        ID   ID                                                               Usage      |
|=========================================================================================|
|  No running processes found                                                             |
+-----------------------------------------------------------------------------------------+
"""
A100_QUERY = "0, NVIDIA A100-SXM4-80GB, 81920, 4, 0, 32\n"

# An older driver: the header is laid out differently (pre-535 nvidia-smi).
H100X8_SMI = """\
Wed Jun  7 14:02:11 2023
+-----------------------------------------------------------------------------+
| NVIDIA-SMI 525.105.17   Driver Version: 525.105.17   CUDA Version: 12.0     |
|-------------------------------+----------------------+----------------------+
| GPU  Name        Persistence-M| Bus-Id        Disp.A | Volatile Uncorr. ECC |
| Fan  Temp  Perf  Pwr:Usage/Cap|         Memory-Usage | GPU-Util  Compute M. |
|                               |                      |               MIG M. |
|===============================+======================+======================|
|   0  NVIDIA H100 80G...  On   | 00000000:18:00.0 Off |                    0 |
| N/A   41C    P0   312W / 700W |  72345MiB / 81559MiB |     98%      Default |
|                               |                      |             Disabled |
+-------------------------------+----------------------+----------------------+
"""
H100X8_QUERY = (
    "".join(f"{i}, NVIDIA H100 80GB HBM3, 81559, {72345 - i}, {98 - i}, {41 + i}\n" for i in range(7))
    + "7, NVIDIA H100 80GB HBM3, 81559, 0, [N/A], [N/A]\n"
)  # MIG mode: no utilization figure

FAILED_SMI = (
    "NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA driver. "
    "Make sure that the latest NVIDIA driver is installed and running.\n\n"
)

REPORT_KEYS = {
    "python": str,
    "python_executable": str,
    "platform": str,
    "hostname": str,
    "cloudpickle": str,
    "torch": (str, type(None)),
    "numpy": (str, type(None)),
    "cuda_driver": (str, type(None)),
    "cuda_version": (str, type(None)),
    "gpus": list,
    "cpu_count": int,
    "cpu_usable": int,
    "memory_total_mb": int,
    "memory_available_mb": int,
    "disk_total_gb": float,
    "disk_free_gb": float,
    "load_avg": list,
}


@pytest.mark.parametrize(
    ("header", "driver", "cuda"),
    [(A100_SMI, "550.54.15", "12.4"), (H100X8_SMI, "525.105.17", "12.0"), (FAILED_SMI, None, None), ("", None, None)],
)
def test_driver_and_cuda_versions_come_from_the_header(header: str, driver: str | None, cuda: str | None) -> None:
    assert parse_nvidia_smi_header(header) == {"cuda_driver": driver, "cuda_version": cuda}


def test_gpu_rows_are_parsed_from_the_query_output() -> None:
    assert parse_nvidia_smi_gpus(A100_QUERY) == [
        {
            "index": 0,
            "name": "NVIDIA A100-SXM4-80GB",
            "memory_total_mb": 81920,
            "memory_used_mb": 4,
            "utilization_pct": 0,
            "temperature_c": 32,
        }
    ]
    h100s = parse_nvidia_smi_gpus(H100X8_QUERY)
    assert [g["index"] for g in h100s] == list(range(8))
    assert {g["name"] for g in h100s} == {"NVIDIA H100 80GB HBM3"}
    assert h100s[3] == {
        "index": 3,
        "name": "NVIDIA H100 80GB HBM3",
        "memory_total_mb": 81559,
        "memory_used_mb": 72342,
        "utilization_pct": 95,
        "temperature_c": 44,
    }
    assert h100s[7]["utilization_pct"] is None and h100s[7]["temperature_c"] is None


@pytest.mark.parametrize("text", [FAILED_SMI, "No devices were found\n", "", None])
def test_a_failed_query_gives_no_gpus(text: str | None) -> None:
    assert parse_nvidia_smi_gpus(text) == []


def test_health_reports_every_key_with_its_type(tmp_path: Path) -> None:
    started = time.monotonic()
    report = health(str(tmp_path))
    elapsed = time.monotonic() - started

    assert set(report) == set(REPORT_KEYS)
    for key, kind in REPORT_KEYS.items():
        assert isinstance(report[key], kind), (key, report[key])
    assert json.loads(json.dumps(report)) == report
    assert report["python"] == ".".join(map(str, sys.version_info[:3]))
    assert report["cloudpickle"] == cloudpickle.__version__
    assert 1 <= report["cpu_usable"] <= report["cpu_count"]
    assert 0 < report["memory_available_mb"] <= report["memory_total_mb"]
    assert 0 <= report["disk_free_gb"] <= report["disk_total_gb"]
    assert len(report["load_avg"]) == 3
    if shutil.which("nvidia-smi") is None:  # this project's machines: no GPU
        assert report["gpus"] == [] and report["cuda_driver"] is None and report["cuda_version"] is None
        assert elapsed < TIMEOUT  # typically well under 0.3 s; loose, as timings here are noisy


@pytest.fixture(scope="module")
def shipped(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The worker package and cloudpickle in one zip, as the zipapp carries them to a box."""
    path = tmp_path_factory.mktemp("ship") / "worker.zip"
    with zipfile.ZipFile(path, "w") as zf:
        for package in (Path(vastnb_worker.__file__).parent, Path(cloudpickle.__file__).parent):
            for file in sorted(package.rglob("*.py")):
                zf.write(file, file.relative_to(package.parent).as_posix())
    return path


def run_on_box(
    shipped: Path,
    code: str,
    *,
    python: str = sys.executable,
    path: list[str] | None = None,
    env: dict[str, str] | None = None,
) -> dict[str, Any]:
    """Run `code` under `python -I -S` with only the zip (and `path`) importable; its JSON output."""
    prelude = f"import sys; sys.path[:0] = {[str(shipped), *(path or [])]!r}\n"
    done = subprocess.run(
        [python, "-I", "-S", "-c", prelude + textwrap.dedent(code)], capture_output=True, text=True, timeout=60, env=env
    )
    assert done.returncode == 0, done.stderr
    result: dict[str, Any] = json.loads(done.stdout)
    return result


def fake_torch(folder: Path) -> str:
    """A `torch` 2.5.1 that is installed (it has metadata) but fails loudly if imported."""
    (folder / "torch").mkdir(parents=True)
    (folder / "torch" / "__init__.py").write_text("raise SystemExit('health() imported torch')\n")
    (folder / "torch-2.5.1.dist-info").mkdir()
    (folder / "torch-2.5.1.dist-info" / "METADATA").write_text("Metadata-Version: 2.1\nName: torch\nVersion: 2.5.1\n")
    return str(folder)


CHECK_IMPORTS = """
    import json, time
    try:
        import vastnb
        isolated = False
    except ImportError:
        isolated = True
    from vastnb_worker.health import health
    started = time.monotonic()
    report = health()
    elapsed = time.monotonic() - started
    banned = ("vastnb", "httpx", "pandas", "yaml", "ipywidgets", "torch", "numpy", "boto3")
    loaded = sorted(m for m in sys.modules if m.split(".")[0] in banned)
    print(json.dumps({"report": report, "loaded": loaded, "isolated": isolated, "elapsed": elapsed}))
"""


def python39() -> str | None:
    """A Python 3.9 interpreter, the oldest a box may have, if this machine has one that runs."""
    roots = [os.environ.get("PYENV_ROOT", ""), "/root/.pyenv", "/opt/pyenv"]
    found = [
        shutil.which("python3.9"),
        "/usr/bin/python3.9",
        *(p for root in roots if root for p in glob.glob(f"{root}/versions/3.9*/bin/python3")),
    ]
    for candidate in filter(None, found):
        try:
            if subprocess.run([candidate, "-c", "pass"], capture_output=True, timeout=30).returncode == 0:
                return candidate
        except OSError:
            continue
    return None


@pytest.mark.parametrize("version", ["this", "3.9"])
def test_health_runs_isolated_with_only_the_shipped_worker_and_never_imports_torch(
    shipped: Path, tmp_path: Path, version: str
) -> None:
    python = sys.executable if version == "this" else python39()
    if python is None:
        pytest.skip("no Python 3.9 on this machine")
    out = run_on_box(shipped, CHECK_IMPORTS, python=python, path=[fake_torch(tmp_path / "site")])

    assert out["isolated"], "vastnb was importable: the test does not isolate the worker"
    assert out["loaded"] == []
    report = out["report"]
    assert set(report) == set(REPORT_KEYS)
    assert report["torch"] == "2.5.1"  # read from its metadata, without importing it
    assert report["numpy"] is None  # not importable here, so not reported
    assert report["cloudpickle"] == cloudpickle.__version__  # the bundled copy, which has no metadata
    if version == "3.9":
        assert report["python"].startswith("3.9.")


def fake_nvidia_smi(folder: Path, script: str) -> dict[str, str]:
    """An environment whose PATH finds `folder/nvidia-smi` (running `script`) first."""
    folder.mkdir(parents=True, exist_ok=True)
    tool = folder / "nvidia-smi"
    tool.write_text("#!/bin/sh\n" + textwrap.dedent(script))
    tool.chmod(0o755)
    return {**os.environ, "PATH": f"{folder}{os.pathsep}{os.environ.get('PATH', '')}"}


@posix_only
def test_a_hung_nvidia_smi_costs_the_timeout_and_leaves_nothing_running(shipped: Path, tmp_path: Path) -> None:
    # The script's child holds stdout open: a naive wait for end-of-output would hang too.
    env = fake_nvidia_smi(tmp_path / "bin", f"sleep 60 &\necho $! >> {tmp_path}/pids\nwait\n")
    out = run_on_box(shipped, CHECK_IMPORTS, env=env)

    report = out["report"]
    assert report["gpus"] == [] and report["cuda_driver"] is None and report["cuda_version"] is None
    assert TIMEOUT - 0.5 < out["elapsed"] < TIMEOUT + 2.5
    pids = (tmp_path / "pids").read_text().split()
    assert len(pids) == 2  # both calls ran, side by side
    deadline = time.monotonic() + 5
    while any(_alive(int(pid)) for pid in pids) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not any(_alive(int(pid)) for pid in pids), "a killed nvidia-smi left its sleep behind"


def _alive(pid: int) -> bool:
    """Running, not merely a zombie waiting for a parent to reap it."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


@posix_only
def test_gpus_and_versions_come_through_a_working_nvidia_smi(shipped: Path, tmp_path: Path) -> None:
    (tmp_path / "header.txt").write_text(A100_SMI)
    (tmp_path / "query.txt").write_text(A100_QUERY)
    env = fake_nvidia_smi(
        tmp_path / "bin",
        f"""\
        case "$1" in
          --query-gpu=index,name,memory.total,memory.used,utilization.gpu,temperature.gpu) cat {tmp_path}/query.txt ;;
          "") cat {tmp_path}/header.txt ;;
          *) echo "unexpected arguments: $*" >&2; exit 2 ;;
        esac
        """,
    )
    report = run_on_box(shipped, CHECK_IMPORTS, env=env)["report"]
    assert report["gpus"] == parse_nvidia_smi_gpus(A100_QUERY)
    assert (report["cuda_version"], report["cuda_driver"]) == ("12.4", "550.54.15")


@posix_only
def test_a_failing_driver_gives_no_gpus(shipped: Path, tmp_path: Path) -> None:
    env = fake_nvidia_smi(tmp_path / "bin", f"cat <<'EOF'\n{FAILED_SMI}EOF\nexit 9\n")
    report = run_on_box(shipped, CHECK_IMPORTS, env=env)["report"]
    assert report["gpus"] == [] and report["cuda_driver"] is None and report["cuda_version"] is None


SAMPLE = {
    "python": "3.11.7",
    "cloudpickle": "3.1.2",
    "torch": "2.5.1",
    "numpy": "2.1.3",
    "cuda_version": "12.4",
    "cuda_driver": "550.54",
    "gpus": [
        {
            "index": 0,
            "name": "NVIDIA A100 80GB",
            "memory_total_mb": 81920,
            "memory_used_mb": 0,
            "utilization_pct": 0,
            "temperature_c": 30,
        }
    ],
    "cpu_count": 16,
    "cpu_usable": 16,
    "memory_total_mb": 64000,
    "memory_available_mb": 59494,
    "disk_total_gb": 200.0,
    "disk_free_gb": 120.4,
}


def test_format_health_is_one_readable_line() -> None:
    assert format_health(SAMPLE) == (
        "Python 3.11.7, cloudpickle 3.1.2, torch 2.5.1, CUDA 12.4 (driver 550.54); "
        "1x NVIDIA A100 80GB (81920 MB); 16 CPUs, 62.5 GB RAM (58.1 free), 120 GB disk free"
    )


def test_format_health_groups_gpus_and_shows_limits() -> None:
    report = {**SAMPLE, "gpus": parse_nvidia_smi_gpus(H100X8_QUERY), "cpu_count": 128, "cpu_usable": 32}
    line = format_health(report)
    assert "; 8x NVIDIA H100 80GB HBM3 (81559 MB); 32 of 128 CPUs," in line


@pytest.mark.parametrize(
    ("report", "expected"),
    [
        ({}, "Python ?, cloudpickle missing, no torch; no GPU"),
        (
            {"python": "3.9.18", "gpus": "lots", "memory_total_mb": "64 GB", "cpu_count": None},
            "Python 3.9.18, cloudpickle missing, no torch; no GPU",
        ),
        (
            {"gpus": [None, {"name": "RTX 4090"}], "disk_free_gb": True, "cuda_version": "12.2"},
            "Python ?, cloudpickle missing, no torch, CUDA 12.2 (driver ?); 1x RTX 4090",
        ),
        ("not a report", "Python ?, cloudpickle missing, no torch; no GPU"),
    ],
)
def test_format_health_survives_a_partial_or_odd_report(report: Any, expected: str) -> None:
    """A report is untrusted input from a box, maybe from another worker version."""
    assert format_health(report) == expected
