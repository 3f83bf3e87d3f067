"""Where settings come from: argument > environment > the Vast CLI's key file > none."""

from __future__ import annotations

from pathlib import Path

import pytest

from vastnb.base.config import find_api_key, vast_url, vastnb_home
from vastnb.base.secret import Secret


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def test_no_key_anywhere_is_none() -> None:
    assert find_api_key() is None


def test_key_precedence_argument_env_xdg_file_legacy_file(isolated: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _write(isolated / ".vast_api_key", "legacy\n")
    assert find_api_key() == Secret("legacy")
    _write(isolated / "config" / "vastai" / "vast_api_key", " xdg \n")
    assert find_api_key() == Secret("xdg")
    monkeypatch.setenv("VAST_API_KEY", "from-env")
    assert find_api_key() == Secret("from-env")
    assert find_api_key("explicit") == Secret("explicit")


def test_an_empty_key_file_is_skipped(isolated: Path) -> None:
    _write(isolated / "config" / "vastai" / "vast_api_key", "\n")
    _write(isolated / ".vast_api_key", "legacy")
    assert find_api_key() == Secret("legacy")


def test_vast_url_like_the_official_cli(monkeypatch: pytest.MonkeyPatch) -> None:
    assert vast_url() == "https://console.vast.ai"
    monkeypatch.setenv("VAST_URL", "http://127.0.0.1:8123/")
    assert vast_url() == "http://127.0.0.1:8123"
    assert vast_url("http://127.0.0.1:9000") == "http://127.0.0.1:9000"


def test_vastnb_home_override(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VASTNB_HOME", str(tmp_path / "state"))
    assert vastnb_home() == tmp_path / "state"


def test_a_secret_never_shows_itself() -> None:
    secret = Secret("do-not-show-me")
    assert "do-not-show-me" not in repr(secret) + str(secret) + f"{secret}" + repr([secret])
