"""The box watches itself: it destroys its own instance when nobody will.

The orchestrator arms the watchdog right after the worker is ready, through
``session.control(watchdog.arm, ...)`` (a control call: it runs outside the daemon's
main thread, beside any task, so nothing here relies on signals), with the instance's
own restricted key (the one Vast's create call returns, which can only start, stop or
destroy that instance; never the account key). The watchdog then destroys the
instance when

- the profile's maximum duration has passed (a deadline on this box's own clock), or
- no orchestrator has been in touch for ``silence_s``: no connection open to the
  daemon since the last one closed. An open SSH connection means a live orchestrator:
  when a kernel dies, its ssh child's stdin closes and the relay exits.

The configuration lives in ``<home>/watchdog.json`` (mode 0600: it holds the key), so a
restarted daemon re-arms itself. Everything the watchdog says goes to the daemon's
log, never to a task's output, and never with the key in it.

While armed, the watchdog beats in ``<home>/watchdog.beat`` (its last orchestrator
contact): the boot switch (``bootswitch.py``), which guards the instance from its first
second, stands by while the beats are fresh and takes over again if they stop.
"""

from __future__ import annotations

import json
import math
import os
import re
import threading
import time
import urllib.parse
from typing import Any, Callable, Optional, TextIO

from .bootswitch import BEAT_NAME, clock_offset
from .destroy import http_destroy, request_destroy
from .files import write_private

__all__ = ["arm", "status", "disarm", "start", "holds_daemon", "CONFIG_NAME"]

CONFIG_NAME = "watchdog.json"
#: The longest pause between two checks; a short ``silence_s`` checks more often.
CHECK_PERIOD = 5.0
#: After an attempt failed, the next one starts this much later (the box still bills).
RETRY_AFTER = 300.0

#: (open connections, time.monotonic() of the last contact): the daemon's view.
Contact = Callable[[], tuple[int, float]]

_watchdog: Optional[Watchdog] = None


def arm(
    instance_id: int,
    api_url: str,
    instance_key: str,
    *,
    remaining_s: Optional[float],
    silence_s: float = 1800.0,
    clock: Optional[str] = None,
    reason: Optional[str] = None,
) -> dict[str, Any]:
    """Arm (or re-arm, replacing the configuration) this box's watchdog; its status.

    ``api_url`` is the Vast API base (``https://console.vast.ai/api/v0``; a bare host
    gets ``/api/v0``), or the ``file://`` spool folder of the embedded simulator.
    ``instance_key`` is the instance's own key. ``remaining_s`` is what is left of the
    profile's maximum duration (None: no limit); it becomes a deadline on this box's
    clock. ``silence_s`` is how long the box may go without any orchestrator connected.
    ``clock`` names the simulator's clock file (see ``bootswitch.clock_offset``): a
    simulated box's time is the simulator's. ``reason`` says why the deadline is what it is,
    when it is not the maximum duration (a budget's money running out, say).
    """
    config = _validated(instance_id, api_url, instance_key, remaining_s, silence_s, clock)
    if reason is not None:
        if not isinstance(reason, str) or len(reason) > 500:
            raise ValueError("reason must be a short string (at most 500 characters) or None")
        config["reason"] = reason
    return _running().arm(config)


def status() -> dict[str, Any]:
    """What the watchdog will do: ``armed``, ``instance_id``, ``deadline`` (epoch seconds
    or None), ``seconds_left`` until it (None: no limit), ``silence_s``,
    ``silence_left_s`` (if nobody connects from now on) and ``fired`` (None, or why and
    with what result it acted)."""
    return _running().status()


def disarm() -> None:
    """Stop watching: the box will not destroy itself (its configuration is removed)."""
    _running().disarm()


def start(home: str, contact: Contact, log: TextIO) -> Watchdog:
    """Start the daemon's watchdog thread; re-arm from ``home``'s configuration if any.
    Called once by the daemon at start."""
    global _watchdog
    _watchdog = Watchdog(home, contact, log)
    _watchdog.restore()
    threading.Thread(target=_watchdog.run, name="vastnb-watchdog", daemon=True).start()
    return _watchdog


def holds_daemon() -> bool:
    """True while the watchdog still has a job: the daemon must not idle out under it."""
    return _watchdog is not None and _watchdog.pending()


def _running() -> Watchdog:
    if _watchdog is None:
        raise RuntimeError(
            "the watchdog lives in the worker daemon: call it there, through session.control(watchdog.arm, ...)"
        )
    return _watchdog


def _validated(
    instance_id: Any, api_url: Any, key: Any, remaining_s: Any, silence_s: Any, clock: Any = None
) -> dict[str, Any]:
    if isinstance(instance_id, bool) or not isinstance(instance_id, int) or instance_id <= 0:
        raise ValueError(f"instance_id must be a positive integer, got {instance_id!r}")
    parts = urllib.parse.urlsplit(str(api_url))
    if parts.scheme not in ("http", "https", "file"):
        raise ValueError(f"api_url must be an http(s):// API base or a file:// spool folder, got {api_url!r}")
    if parts.scheme != "file" and not re.search(r"/api/v\d+/?$", parts.path):
        # A bare host (VAST_URL style): the API lives under /api/v0, as Vast's CLI assumes.
        api_url = f"{str(api_url).rstrip('/')}/api/v0"
    if not isinstance(key, str) or not key.strip():
        raise ValueError("instance_key must be the instance's own API key (a non-empty string)")
    if remaining_s is not None and not _finite(remaining_s):
        raise ValueError(f"remaining_s must be a number of seconds or None, got {remaining_s!r}")
    if not _finite(silence_s) or silence_s <= 0:
        raise ValueError(f"silence_s must be a positive number of seconds, got {silence_s!r}")
    if clock is not None and not isinstance(clock, str):
        raise ValueError(f"clock must be the path of the simulator's clock file or None, got {clock!r}")
    now = time.time() + clock_offset(clock)
    return {
        "instance_id": instance_id,
        "api_url": str(api_url),
        "key": key.strip(),
        "armed_at": now,
        "deadline": None if remaining_s is None else now + float(remaining_s),
        "silence_s": float(silence_s),
        "clock": clock,
    }


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


class Watchdog:
    """The watchdog thread's state. One per daemon; the module functions reach it."""

    def __init__(self, home: str, contact: Contact, log: TextIO) -> None:
        self.path = os.path.join(home, CONFIG_NAME)
        self.beat_path = os.path.join(home, BEAT_NAME)
        self.contact = contact
        self.log = log
        self.config: Optional[dict[str, Any]] = None
        self.fired: Optional[dict[str, Any]] = None
        self.next_try = 0.0  # time.monotonic() before which a failed destroy is not retried
        self.contact_offset = 0.0  # the clock's offset when an orchestrator was last seen
        self.cond = threading.Condition()

    def restore(self) -> None:
        """Re-arm from the saved configuration: a daemon restart must not disarm the box."""
        try:
            with open(self.path) as f:
                saved = json.load(f)
            deadline = saved.get("deadline")
            if deadline is not None and not _finite(deadline):
                raise ValueError(f"deadline must be epoch seconds or null, got {deadline!r}")
            # Validated as if armed now, then given back the deadline it was armed with.
            config = _validated(
                saved.get("instance_id"),
                saved.get("api_url"),
                saved.get("key"),
                None,
                saved.get("silence_s"),
                saved.get("clock"),
            )
            config.update(armed_at=saved.get("armed_at"), deadline=deadline)
            if isinstance(saved.get("reason"), str):
                config["reason"] = saved["reason"][:500]
        except FileNotFoundError:
            return
        except (OSError, ValueError, AttributeError) as exc:  # a broken file must not stop the worker
            self._say(f"cannot re-arm from {CONFIG_NAME}: {exc}")
            return
        with self.cond:
            self.config = config
            self.contact_offset = clock_offset(config.get("clock"))
        self._say(f"re-armed after a worker restart: {self._describe(config)}")

    def arm(self, config: dict[str, Any]) -> dict[str, Any]:
        write_private(self.path, json.dumps(config))
        with self.cond:
            self.config, self.fired, self.next_try = config, None, 0.0
            self.contact_offset = clock_offset(config.get("clock"))  # an orchestrator is in touch now
            self.cond.notify_all()
        self._beat(config)  # the boot switch hands over now, not at the next check
        self._say(f"armed: {self._describe(config)}")
        return self.status()

    def disarm(self) -> None:
        with self.cond:
            was = self.config
            self.config, self.fired = None, None
            self.cond.notify_all()
        try:
            os.unlink(self.path)
        except FileNotFoundError:
            pass
        self._beat()  # disarmed: the boot switch stands down too
        if was is not None:
            self._say(f"disarmed for instance {was['instance_id']}")

    def pending(self) -> bool:
        with self.cond:
            return self.config is not None and not self._done()

    def _done(self) -> bool:
        """Whether the armed instance is already destroyed (or asked to be). Under ``cond``."""
        return bool(self.fired and self.fired["done"])

    def status(self) -> dict[str, Any]:
        with self.cond:
            config, fired = self.config, self.fired
        if config is None:
            return {
                "armed": False,
                "instance_id": None,
                "deadline": None,
                "seconds_left": None,
                "silence_s": None,
                "silence_left_s": None,
                "fired": None,
            }
        deadline = config["deadline"]
        return {
            "armed": True,
            "instance_id": config["instance_id"],
            "deadline": deadline,
            "seconds_left": None if deadline is None else max(0.0, deadline - self._now(config)),
            "deadline_reason": config.get("reason") or "maximum duration",
            "silence_s": config["silence_s"],
            "silence_left_s": max(0.0, config["silence_s"] - self._silent_for(config)),
            "fired": dict(fired) if fired else None,
        }

    # -- the thread -------------------------------------------------------------------------

    def run(self) -> None:
        while True:
            with self.cond:
                self.cond.wait(self._period(self.config))
                config = self.config
            if config is not None:
                self._beat(config)
            with self.cond:
                if config is None or self._done() or time.monotonic() < self.next_try:
                    continue  # disarmed, done, or waiting to try again
            reason = self._due(config)
            if not reason:
                continue
            try:
                self._fire(config, reason)
            except Exception as exc:  # noqa: BLE001 - the watchdog must outlive its own bugs
                self._say(f"error while destroying instance {config['instance_id']}: {exc!r}")
                with self.cond:
                    self.next_try = time.monotonic() + RETRY_AFTER

    def _period(self, config: Optional[dict[str, Any]]) -> float:
        """Until the next check: short enough for the silence limit and the deadline."""
        if config is None:
            return CHECK_PERIOD
        period = min(CHECK_PERIOD, config["silence_s"] / 4)
        if config["deadline"] is not None:
            period = min(period, config["deadline"] - self._now(config))
        return max(0.05, period)

    @staticmethod
    def _now(config: dict[str, Any]) -> float:
        """The box's time: this machine's, or the simulator's clock for a simulated box."""
        return time.time() + clock_offset(config.get("clock"))

    def _due(self, config: dict[str, Any]) -> Optional[str]:
        """Why the instance must go now, or None."""
        deadline = config["deadline"]
        if deadline is not None and self._now(config) >= deadline:
            return f"{config.get('reason') or 'its maximum duration ran out'} (deadline {_when(deadline)})"
        silent = self._silent_for(config)
        if silent >= config["silence_s"]:
            return f"no orchestrator has been in touch for {silent:.0f} s (limit {config['silence_s']:.0f} s)"
        return None

    def _beat(self, config: Optional[dict[str, Any]] = None) -> None:
        """Tell the boot switch this watchdog is on duty, and when (on the box's clock) an
        orchestrator was last in touch; with no ``config``: that it was disarmed."""
        beat: dict[str, Any] = {"disarmed": True}
        if config is not None:
            beat = {"contact": self._now(config) - self._silent_for(config)}
        try:
            write_private(self.beat_path, json.dumps(beat), sync=False)  # every few seconds: no fsync
        except OSError as exc:
            self._say(f"cannot write {BEAT_NAME}: {exc}")

    def _silent_for(self, config: dict[str, Any]) -> float:
        """Seconds without an orchestrator: real ones, plus the simulated clock's moves."""
        connections, last_contact = self.contact()
        offset = clock_offset(config.get("clock"))
        if connections > 0:
            self.contact_offset = offset
            return 0.0
        return max(0.0, time.monotonic() - last_contact + offset - self.contact_offset)

    def _fire(self, config: dict[str, Any], reason: str) -> None:
        self._say(f"destroying instance {config['instance_id']}: {reason}")
        if config["api_url"].startswith("file:"):
            result = request_destroy(config, reason)
        else:
            result = http_destroy(config, self._say)
        done = result in ("destroyed", "already gone", "requested")
        self._say(
            f"instance {config['instance_id']}: {result}" + ("" if done else f"; trying again in {RETRY_AFTER:.0f} s")
        )
        with self.cond:
            if self.config is not config:
                return  # re-armed or disarmed meanwhile: the new configuration decides
            self.fired = {"reason": reason, "at": time.time(), "result": result, "done": done}
            self.next_try = time.monotonic() + RETRY_AFTER

    def _say(self, message: str) -> None:
        try:
            self.log.write(f"{time.strftime('%Y-%m-%dT%H:%M:%S')} vastnb watchdog: {message}\n")
            self.log.flush()
        except (OSError, ValueError):
            pass

    @staticmethod
    def _describe(config: dict[str, Any]) -> str:
        # Never the key: only what the user set and where the request will go.
        deadline = "no maximum duration" if config["deadline"] is None else f"deadline {_when(config['deadline'])}"
        api = urllib.parse.urlsplit(config["api_url"])
        return (
            f"instance {config['instance_id']}, {deadline}, silence limit {config['silence_s']:.0f} s, "
            f"via {api.scheme}://{api.netloc}{api.path}"
        )


def _when(epoch: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(epoch))
