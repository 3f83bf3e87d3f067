"""Secrets stay the user's: folders that hold keys are 0700 and refused when someone else
could get in, files that hold keys are 0600, and a simulated box sees none of the
notebook's environment."""

from __future__ import annotations

import os
import stat
import tempfile
from pathlib import Path

import pytest

from vastnb import Client, ConfigError
from vastnb.backends.base import control_dir
from vastnb.base.private import private_folder
from vastnb.lifecycle.launch import LaunchPolicy
from vastnb.sim import SimConfig

NOBODY = 65534


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_a_folder_others_can_write_to_is_refused(tmp_path: Path) -> None:
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o777)
    with pytest.raises(ConfigError, match=r"can be written by other users \(mode 777\).*chmod 700"):
        private_folder(shared, what="vastnb's state folder")


@pytest.mark.skipif(os.getuid() != 0, reason="making a folder another user's needs root")
def test_a_folder_of_another_user_is_refused(tmp_path: Path) -> None:
    theirs = tmp_path / "theirs"
    theirs.mkdir(mode=0o700)
    os.chown(theirs, NOBODY, NOBODY)
    with pytest.raises(ConfigError, match=f"belongs to another user \\(uid {NOBODY}\\)"):
        private_folder(theirs, what="the SSH control-socket folder")


def test_an_open_folder_of_ones_own_is_closed(tmp_path: Path) -> None:
    mine = tmp_path / "mine"
    mine.mkdir(mode=0o755)
    mine.chmod(0o755)
    assert private_folder(mine, what="x") == mine and mode(mine) == 0o700
    assert mode(private_folder(tmp_path / "new" / "deeper", what="x")) == 0o700


def test_the_ssh_control_folder_made_by_someone_else_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))  # as TMPDIR would
    planted = tmp_path / f"vastnb-{os.getuid()}"
    planted.mkdir()
    planted.chmod(0o777)  # made first by another user, open to all
    with pytest.raises(ConfigError, match="SSH control-socket folder"):
        control_dir()


def test_state_files_holding_keys_are_the_users_alone(isolated: Path) -> None:
    home = isolated / "vastnb"
    with Client(backend="sim", home=home) as vast:
        vast.fleet.rental(1)  # the store exists
        vast.sim.market.now()  # type: ignore[union-attr]  # so does the market's state
    assert mode(home) == 0o700 and mode(home / "state.db") == 0o600
    assert mode(home / "sim") == 0o700 and mode(home / "sim" / "market.json") == 0o600


def test_a_simulated_box_sees_nothing_of_the_notebooks_environment(
    isolated: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("VAST_API_KEY", "the-notebooks-own-key-0123456789")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "the-notebooks-s3-secret")
    with Client(
        backend="sim",
        home=isolated / "vastnb",
        sim_config=SimConfig(create_delay=0.05, load_delay=0.05),
        launch_policy=LaunchPolicy(poll=0.02),
    ) as vast:
        box = vast.launch("dev-test")
        seen = box.run(lambda: dict(os.environ))
    assert "the-notebooks-own-key-0123456789" not in repr(seen) and "the-notebooks-s3-secret" not in repr(seen)
    assert seen["HOME"].endswith(f"/sim/boxes/{box.id}/home")  # in the box's own folder
