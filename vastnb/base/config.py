"""Where vastnb finds its settings: explicit argument > environment > config file > default.

An existing user of the official Vast CLI needs no setup: its key file is read too.
"""

from __future__ import annotations

import os
from pathlib import Path

import platformdirs

from vastnb.base.secret import Secret

__all__ = ["DEFAULT_VAST_URL", "user_config_dir", "vastnb_home", "vast_url", "find_api_key", "api_key_files"]

DEFAULT_VAST_URL = "https://console.vast.ai"


def user_config_dir() -> Path:
    """vastnb's per-user config folder (``VASTNB_CONFIG_DIR`` overrides it)."""
    override = os.environ.get("VASTNB_CONFIG_DIR")
    return Path(override) if override else platformdirs.user_config_path("vastnb")


def vastnb_home() -> Path:
    """Where vastnb keeps state: the simulator, the instance store (``VASTNB_HOME``)."""
    override = os.environ.get("VASTNB_HOME")
    return Path(override) if override else platformdirs.user_data_path("vastnb")


def vast_url(explicit: str | None = None) -> str:
    """The Vast API base URL: argument > ``VAST_URL`` (as the official CLI reads it) > default."""
    return (explicit or os.environ.get("VAST_URL") or DEFAULT_VAST_URL).rstrip("/")


def api_key_files() -> list[Path]:
    """The official Vast CLI's key files, in the order it reads them."""
    xdg = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return [Path(xdg) / "vastai" / "vast_api_key", Path.home() / ".vast_api_key"]


def find_api_key(explicit: str | Secret | None = None) -> Secret | None:
    """The Vast API key: argument > ``VAST_API_KEY`` > the Vast CLI's key file, or None."""
    if isinstance(explicit, Secret):
        return explicit
    if explicit:
        return Secret(explicit.strip())
    env = os.environ.get("VAST_API_KEY", "").strip()
    if env:
        return Secret(env)
    for path in api_key_files():
        try:
            text = path.read_text().strip()
        except OSError:
            continue
        if text:
            return Secret(text)
    return None
