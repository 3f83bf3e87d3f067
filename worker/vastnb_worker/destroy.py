"""How the watchdog destroys its instance: ``DELETE`` through the API with the instance's
own key (:func:`http_destroy`), or, for the embedded simulator, a request file in its
spool folder (:func:`request_destroy`)."""

from __future__ import annotations

import json
import os
import secrets
import time
import urllib.parse
from typing import Any, Callable, Optional

from . import __version__
from .files import write_private

__all__ = ["http_destroy", "request_destroy", "DESTROY_WINDOW"]

#: How long one attempt to destroy keeps retrying 429s, 5xx and network errors.
DESTROY_WINDOW = 180.0
HTTP_TIMEOUT = 30.0


def http_destroy(config: dict[str, Any], say: Callable[[str], None]) -> str:
    """``DELETE {api}/instances/{id}/`` with the instance's key, retrying what may pass
    (429, 5xx, network errors) for up to :data:`DESTROY_WINDOW`; the outcome, in words."""
    import urllib.error  # here: it costs the daemon's start ~30 ms (http.client, ssl, email)
    import urllib.request

    url = f"{config['api_url'].rstrip('/')}/instances/{config['instance_id']}/"
    headers = {
        "Authorization": f"Bearer {config['key']}",
        "Accept": "application/json",
        "Content-Type": "application/json",
        "User-Agent": f"vastnb-worker/{__version__}",
    }
    give_up = time.monotonic() + DESTROY_WINDOW
    delay = 0.5
    while True:
        request = urllib.request.Request(url, data=b"{}", headers=headers, method="DELETE")
        try:
            with urllib.request.urlopen(request, timeout=HTTP_TIMEOUT) as response:
                status, body = response.status, response.read(4096)
        except urllib.error.HTTPError as exc:
            status, body = exc.code, exc.read(4096)
        except (OSError, ValueError) as exc:  # URLError, timeouts, resets
            status, body = 0, repr(exc).encode()
        error, message = _error_of(body)
        if error == "no_such_instance":
            return "already gone"
        if 200 <= status < 300 and error is None:
            return "destroyed"
        problem = " ".join(p for p in (f"HTTP {status}", error, message) if p) if status else f"no answer ({message})"
        # 200 with success:false is Vast's way to say "not now" as well: retried like a 5xx.
        if 300 <= status < 500 and status != 429:
            return f"refused: {problem}"
        if time.monotonic() + delay > give_up:
            return f"gave up after {DESTROY_WINDOW:.0f} s: {problem}"
        say(f"destroy not done yet ({problem}); retrying in {delay:g} s")
        time.sleep(delay)
        delay = min(delay * 2, 30.0)


def _error_of(body: bytes) -> tuple[Optional[str], str]:
    """(the error code, the message) of an API answer; (None, "") for a success."""
    text = body.decode("utf-8", errors="replace").strip()
    try:
        data = json.loads(text)
    except ValueError:  # a proxy's HTML page, a plain-text 429: not an answer from the API
        return ("", text[:200]) if text else (None, "")
    if not isinstance(data, dict):
        return None, ""
    if data.get("success") is False or "error" in data:
        return str(data.get("error") or "failed"), str(data.get("msg") or data.get("message") or "")[:200]
    return None, ""


def request_destroy(config: dict[str, Any], reason: str) -> str:
    """The embedded simulator has no server: leave it a request file in its spool
    folder, which its next transaction carries out (and checks the key of)."""
    folder = urllib.parse.unquote(urllib.parse.urlsplit(config["api_url"]).path)
    name = f"destroy-{config['instance_id']}-{secrets.token_hex(4)}.json"
    request = {"instance_id": config["instance_id"], "key": config["key"], "at": time.time(), "reason": reason}
    try:
        write_private(os.path.join(folder, name), json.dumps(request))
    except OSError as exc:
        return f"could not leave the request in {folder}: {exc}"
    return "requested"
