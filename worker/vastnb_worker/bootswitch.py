"""The boot switch: a dead-man switch that runs from the container's first second.

Vast runs an instance's ``onstart`` command when its container starts. vastnb's create
call sends this program there (compressed: ``vastnb/onstart.py``), so the instance
guards itself long before any SSH connection: while the image is pulled, while the key
propagates, and if the launcher dies on the way. It knows its instance from the
container's environment (``CONTAINER_ID``, and ``CONTAINER_API_KEY``: the instance's own
key, which can only start, stop or destroy it) and destroys the instance

- past its maximum duration, counted from the instance's first boot (kept on disk, so an
  interruptible instance that was outbid and resumed still ends at its first deadline);
- after ``silence_s`` with no orchestrator in touch.

Once the full worker is armed (``watchdog.arm``), its watchdog beats in
``<home>/watchdog.beat`` and this switch stands by; if the worker dies, the beats stop
and this switch is back on duty, counting silence from the worker's last contact. One
switch at a time, never none. A watchdog disarmed by its user says so in its last beat,
and this switch stands down too. Standard library only: it runs on any image with a
``python3`` (3.7 or newer). What it says goes to ``<home>/bootswitch.log``, never the key.
"""

from __future__ import annotations

import json
import os
import sys
import time
from typing import Any, Dict, Optional

__all__ = ["main", "read_beat", "clock_offset", "BEAT_NAME", "BOOT_NAME", "LOG_NAME", "BEAT_FRESH"]

BEAT_NAME = "watchdog.beat"
BOOT_NAME = "boot.json"
LOG_NAME = "bootswitch.log"
#: The worker's beats are at most this many seconds old while its watchdog runs.
BEAT_FRESH = 30.0
DONE = ("destroyed", "already gone", "requested")


def main(config: Dict[str, Any]) -> None:
    """Guard this container's instance until it is destroyed (see the module doc).
    ``config``: ``url`` (the API base, or the simulator's ``file://`` spool folder),
    ``home`` (the worker's folder; ``{id}`` is the instance id), ``silence_s``, ``max_s``
    (seconds from the first boot, or None), on the simulator ``clock`` (see
    :func:`clock_offset`), and ``beat_s`` (how recent a beat is fresh; tests shorten it)."""
    instance = int(os.environ["CONTAINER_ID"])
    key = os.environ["CONTAINER_API_KEY"]
    home = os.path.expanduser(str(config["home"]).replace("{id}", str(instance)))
    os.makedirs(home, exist_ok=True)
    clock, limit, silence = config.get("clock"), config.get("max_s"), float(config["silence_s"])
    fresh_s = float(config.get("beat_s") or BEAT_FRESH)

    def now() -> float:
        return time.time() + clock_offset(clock)

    def say(text: str) -> None:
        with open(os.path.join(home, LOG_NAME), "a") as f:
            f.write("%s vastnb boot switch: %s\n" % (time.strftime("%Y-%m-%dT%H:%M:%S"), text))

    boot_path = os.path.join(home, BOOT_NAME)
    try:
        with open(boot_path) as f:
            boot = float(json.load(f)["boot"])
    except (OSError, ValueError, KeyError, TypeError):
        boot = now()
        write(boot_path, json.dumps({"boot": boot}))
    started = now()
    ends = "no maximum duration" if limit is None else "ends %.0f s after its first boot" % limit
    say("on duty for instance %d (%s, silence limit %.0f s)" % (instance, ends, silence))
    while os.path.isdir(home):  # a destroyed box loses its disk
        t, beat = now(), read_beat(os.path.join(home, BEAT_NAME), fresh_s)
        if beat.get("disarmed"):
            return say("the worker's watchdog was disarmed by its user: standing down")
        reason = None
        if limit is not None and t >= boot + float(limit):
            reason = "its maximum duration ran out"
        elif not beat.get("fresh") and t - max(started, beat.get("contact") or 0.0) >= silence:
            reason = "no orchestrator in touch for %.0f s" % (t - max(started, beat.get("contact") or 0.0))
        if reason:
            result = destroy(str(config["url"]), instance, key, reason)
            say("destroying instance %d (%s): %s" % (instance, reason, result))
            if result in DONE:
                return
            time.sleep(60.0)
        time.sleep(max(0.05, min(5.0, silence / 4)))


def clock_offset(path: Optional[str]) -> float:
    """Seconds the box's clock runs ahead of this machine's: 0 on a real box; on the
    simulator, the offset of its clock, which tests move forward, from its ``clock`` file."""
    if not path:
        return 0.0
    try:
        with open(path) as f:
            return float(f.read())
    except (OSError, ValueError):
        return 0.0


def read_beat(path: str, fresh_s: float = BEAT_FRESH) -> Dict[str, Any]:
    """The worker's watchdog's last beat: ``contact`` (when an orchestrator was last in
    touch, epoch seconds on the box's clock), ``disarmed``, and ``fresh``: written in the
    last ``fresh_s`` seconds, the worker is on duty. Empty if there is none."""
    try:
        with open(path) as f:
            beat = json.load(f)
        if not isinstance(beat, dict):
            return {}
        beat["fresh"] = time.time() - os.path.getmtime(path) < fresh_s
        return beat
    except (OSError, ValueError):
        return {}


def destroy(url: str, instance: int, key: str, reason: str) -> str:
    """Destroy ``instance`` with its own key; the outcome, in words."""
    if url.startswith("file:"):  # the embedded simulator: a request in its spool folder
        from urllib.parse import unquote, urlsplit

        spooled = {"instance_id": instance, "key": key, "at": time.time(), "reason": "boot switch: " + reason}
        name = "destroy-%d-boot-%d.json" % (instance, os.getpid())
        try:
            write(os.path.join(unquote(urlsplit(url).path), name), json.dumps(spooled))
            return "requested"
        except OSError as exc:
            return "could not leave the request: %s" % exc
    from urllib.error import HTTPError
    from urllib.request import Request, urlopen

    answer: Optional[str] = None
    for attempt in range(8):  # 429s, 5xx and network errors may pass: about 2 minutes
        request = Request(
            "%s/instances/%d/" % (url.rstrip("/"), instance),
            data=b"{}",
            method="DELETE",
            headers={"Authorization": "Bearer " + key, "Content-Type": "application/json"},
        )
        try:
            with urlopen(request, timeout=30) as response:
                body = response.read(4096)
            if b'"success": false' not in body and b'"success":false' not in body:
                return "destroyed"
            answer = "not done: %s" % body[:200].decode("utf-8", "replace")
        except HTTPError as exc:
            if b"no_such_instance" in exc.read(4096):
                return "already gone"
            if 400 <= exc.code < 500 and exc.code != 429:
                return "refused: HTTP %d" % exc.code
            answer = "HTTP %d" % exc.code
        except (OSError, ValueError) as exc:
            answer = "no answer (%s)" % type(exc).__name__
        time.sleep(min(2.0**attempt, 30.0))
    return "gave up: %s" % answer


def write(path: str, text: str) -> None:
    """Write ``text`` to ``path`` atomically, readable by its owner only."""
    tmp = "%s.%d.tmp" % (path, os.getpid())
    with os.fdopen(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "w") as f:
        f.write(text)
    os.replace(tmp, path)


if __name__ == "__main__":
    main(json.loads(sys.argv[1]))
