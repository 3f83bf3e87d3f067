"""The ``vast`` backend end to end, without Vast: REST over HTTP to the simulator on
loopback, whose instances point at a real OpenSSH sshd on 127.0.0.1. Everything else is
the real path: vastnb's key registered through the API and installed by the "market",
ssh with a pinned host key, the worker bootstrapped over the connection, the watchdog
armed with the instance's own key, destroy."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from offload.conftest import end_processes  # tests/ is on sys.path (rootdir conftest)

from vastnb import Client
from vastnb.backends.base import BoxOptions
from vastnb.backends.keys import ensure_keypair
from vastnb.errors import ProvisionError
from vastnb.lifecycle.launch import LaunchPolicy
from vastnb.sim import SimConfig, Simulator

from .conftest import QUICK_RETRY


def served(home: Path, address: tuple[str, int], authorized_keys: Path | None) -> Iterator[tuple[Simulator, str]]:
    sim = Simulator(
        home, SimConfig(create_delay=0.2, load_delay=0.3, ssh_address=address, authorized_keys=authorized_keys)
    )
    server = sim.serve("127.0.0.1", 0).start()
    try:
        yield sim, server.url
    finally:
        for inst in sim.market.instances():
            sim.market.destroy(int(inst["id"]))
        server.stop()


def vast_client(sim: Simulator, url: str, tmp: Path, **kwargs: object) -> Client:
    return Client(
        api_key=sim.market.api_key,
        backend="vast",
        url=url,
        home=tmp / "client",
        retry=QUICK_RETRY,
        box=BoxOptions(home=str(tmp / "box-{id}"), python=sys.executable, ssh_options=("-F", "/dev/null")),
        launch_policy=kwargs.pop("launch_policy", LaunchPolicy(poll=0.05, connect_deadline=60)),
        **kwargs,  # type: ignore[arg-type]
    )


def test_launch_run_down_over_http_and_real_ssh(sshd: object, tmp_path: Path) -> None:
    for sim, url in served(tmp_path / "market", (sshd.host, sshd.port), sshd.authorized_keys):  # type: ignore[attr-defined]
        vast = vast_client(sim, url, tmp_path)
        box = vast.launch("dev-test", name="e2e")
        try:
            # The work really ran in another process, reached over ssh.
            assert box.run(os.getpid) != os.getpid()
            assert box.run_cell("import socket\nsocket.gethostname()").value == __import__("socket").gethostname()
            # vastnb's key reached the box through the API (the market installed it).
            assert " ".join(ensure_keypair().public.split()[:2]) in sshd.authorized_keys.read_text()  # type: ignore[attr-defined]
            # The host key is pinned for this instance alone.
            pinned = (vast.home / "known_hosts" / str(box.id)).read_text()
            assert sshd.host_public_key.split()[1] in pinned  # type: ignore[attr-defined]
            from vastnb_worker import watchdog

            status = box.run(watchdog.status)
            assert status["armed"] and status["instance_id"] == box.id
            assert vast.instances().loc[box.id, "owner"] == "this session"
        finally:
            box.down()
            end_processes(tmp_path / f"box-{box.id}")
        assert sim.market.instances() == []
        vast.close()


def test_ssh_that_never_answers_fails_the_launch_and_destroys(tmp_path: Path) -> None:
    import socket

    with socket.socket() as closed:  # a port with nothing behind it
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    for sim, url in served(tmp_path / "market", ("127.0.0.1", port), None):
        vast = vast_client(sim, url, tmp_path, launch_policy=LaunchPolicy(poll=0.05, attempts=1, connect_deadline=2))
        with pytest.raises(ProvisionError, match=r"refused|Connection"):
            vast.launch("dev-test")
        assert sim.market.instances() == []
        vast.close()


def test_vastnb_sim_serve_with_ssh_runs_code_for_a_vast_client(sshd: object, tmp_path: Path) -> None:
    """`vastnb sim serve --ssh` in its own process: a Client of the vast backend pointed at
    it launches, runs a function over real SSH, and destroys, as it would on Vast.
    (``sshd``: openssh-server is installed, or the test skipped/failed, by that fixture.)"""
    import re
    import subprocess

    env = {**os.environ, "VASTNB_HOME": str(tmp_path / "served")}
    command = [sys.executable, "-m", "vastnb", "sim", "serve", "--port", "0", "--rate-limits", "0", "--ssh"]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True, env=env)
    try:
        assert process.stdout is not None
        banner = "".join(process.stdout.readline() for _ in range(6))
        url, key = re.search(r"http://127\.0\.0\.1:\d+", banner), re.search(r"VAST_API_KEY=(\S+)", banner)
        login = re.search(r"reached by SSH at (\S+)@127\.0\.0\.1:\d+", banner)
        assert url and key and login, banner
        vast = Client(
            api_key=key.group(1),
            backend="vast",
            url=url.group(0),
            home=tmp_path / "client",
            retry=QUICK_RETRY,
            box=BoxOptions(home=str(tmp_path / "box-{id}"), ssh_user=login.group(1), ssh_options=("-F", "/dev/null")),
            launch_policy=LaunchPolicy(poll=0.1, connect_deadline=60),
        )
        box = vast.launch("dev-test", name="served")
        try:
            assert not vast.simulated  # the vast backend: real REST and SSH paths, nothing simulated in process
            assert box.run(os.getpid) != os.getpid()
        finally:
            box.down()
            end_processes(tmp_path / f"box-{box.id}")
            vast.close()
    finally:
        process.terminate()
        process.wait(timeout=20)
    pid_file = tmp_path / "served" / "sim" / "sshd" / "sshd.pid"
    assert not pid_file.exists() or not Path(f"/proc/{pid_file.read_text().strip()}").exists(), "its sshd outlived it"
