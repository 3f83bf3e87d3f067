"""The Vast REST API over httpx: one method per endpoint vastnb uses.

The transport is injectable (httpx style), so the same code talks to console.vast.ai,
to the simulator in process (``httpx.MockTransport``) or to the simulator on loopback.
Every failure becomes a :class:`~vastnb.errors.VastError`; the key is sent only in the
``Authorization`` header and scrubbed from every message.
"""

from __future__ import annotations

import contextlib
import email.utils
import json
import logging
import random
import time
from collections.abc import Callable, Generator, Iterator, Mapping
from typing import Any, TypeVar

import httpx

from vastnb import __version__
from vastnb.base.config import vast_url
from vastnb.base.secret import Secret, redact
from vastnb.errors import APIConnectionError, APIError, InstanceCreateError, NotFoundError, RateLimitError, VastError
from vastnb.market.api_errors import error_for
from vastnb.market.records import Charge, CreatedInstance, Instance, Offer, Overlay, SSHKey, User
from vastnb.market.retry import RETRY_STATUSES, RetryPolicy, parse_threshold

__all__ = ["VastAPI", "InstanceObserver"]

#: Told of every instance read: (instances seen, ids found gone, whether the seen ones are
#: the whole account). The ledger (:mod:`vastnb.lifecycle.ledger`) is one.
InstanceObserver = Callable[[list[Instance], list[int], bool], None]

log = logging.getLogger("vastnb.market.api")

V1_PAGE_LIMIT = 25  # the v1 list's maximum page size
CHARGES_PAGE_LIMIT = 500

_Error = TypeVar("_Error", bound=VastError)


class _BearerAuth(httpx.Auth):
    """Adds ``Authorization: Bearer`` at send time, so the key sits in no header dict."""

    def __init__(self, key: Secret) -> None:
        self._key = key

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        request.headers["Authorization"] = f"Bearer {self._key.reveal()}"
        yield request


class VastAPI:
    """A client for the Vast REST API.

    ``transport`` replaces the network (tests pass the simulator's); ``retry`` bounds
    how long a call keeps trying; ``sleep`` is what waits between attempts.
    """

    def __init__(
        self,
        api_key: Secret | None,
        *,
        base_url: str | None = None,
        transport: httpx.BaseTransport | None = None,
        timeout: float = 30.0,
        retry: RetryPolicy | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._key = api_key
        self.observers: list[InstanceObserver] = []  # told of every instance read
        self.skew = 0.0  # the market's clock minus this machine's, from its Date headers
        self.base_url = vast_url(base_url)
        self.retry = retry or RetryPolicy()
        self._sleep = sleep
        self._rng = random.Random()
        self._http = httpx.Client(
            base_url=self.base_url,
            transport=transport,
            timeout=timeout,
            auth=_BearerAuth(api_key) if api_key else None,
            headers={"User-Agent": f"vastnb/{__version__}", "Accept": "application/json"},
        )

    def __repr__(self) -> str:
        return f"VastAPI(base_url={self.base_url!r}, api_key={'set' if self._key else 'none'})"

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> VastAPI:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- offers -------------------------------------------------------------------------

    def search_offers(self, query: Mapping[str, Any]) -> list[Offer]:
        """``POST /bundles/`` with a query body; offers in the server's order."""
        body = self._call("POST", "/bundles/", json=dict(query))
        return [Offer.from_api(o) for o in body.get("offers") or []]

    # -- instances ----------------------------------------------------------------------

    def create_instance(
        self,
        offer_id: int,
        *,
        image: str,
        disk_gb: float,
        label: str,
        price: float | None = None,
        env: Mapping[str, str] | None = None,
        onstart: str | None = None,
        runtype: str = "ssh_direct",
        extra: Mapping[str, Any] | None = None,
    ) -> CreatedInstance:
        """Rent offer ``offer_id``. A ``price`` makes it interruptible at that bid.

        Never retried once the request may have reached Vast: a second create could
        rent a second machine. If Vast created an instance despite an error, the
        :class:`~vastnb.errors.InstanceCreateError` carries its id.
        """
        payload: dict[str, Any] = {
            "client_id": "me",
            "image": image,
            "disk": disk_gb,
            "label": label,
            "runtype": runtype,
            "env": dict(env or {}),
        }
        if onstart:
            payload["onstart"] = onstart
        if price is not None:
            payload["price"] = round(price, 6)
        payload.update(extra or {})
        body = self._call("PUT", f"/asks/{int(offer_id)}/", json=payload, idempotent=False)
        try:
            instance_id = int(body["new_contract"])
        except (KeyError, TypeError, ValueError):
            raise InstanceCreateError(
                f"PUT /asks/{int(offer_id)}/ succeeded but named no new instance (no new_contract in "
                "the answer). Vast may still have created one: check `vastnb ps` before trying again.",
                endpoint=f"/asks/{int(offer_id)}/",
            ) from None
        return CreatedInstance(id=instance_id, instance_api_key=body.get("instance_api_key"))

    def show_instance(self, instance_id: int) -> Instance | None:
        """One instance, or None when it does not exist (any more)."""
        body = self._call("GET", f"/instances/{int(instance_id)}/", params={"owner": "me"})
        data = body.get("instances")
        instance = Instance.from_api(data) if data else None
        self._observed([instance] if instance else [], [] if instance else [int(instance_id)], complete=False)
        return instance

    def list_instances(self, select_filters: Mapping[str, Any] | None = None) -> list[Instance]:
        """All of the account's instances, through every page of ``GET /api/v1/instances/``."""
        params: dict[str, Any] = {
            "limit": V1_PAGE_LIMIT,
            "order_by": json.dumps([{"col": "id", "dir": "asc"}]),
        }
        if select_filters:
            params["select_filters"] = json.dumps(dict(select_filters))
        instances = [Instance.from_api(i) for i in self._pages("/api/v1/instances/", params, "instances")]
        self._observed(instances, [], complete=not select_filters)
        return instances

    def _observed(self, seen: list[Instance], gone: list[int], *, complete: bool) -> None:
        for observer in self.observers:
            try:
                observer(seen, gone, complete)
            except Exception as exc:  # noqa: BLE001 - bookkeeping never fails a call to the market
                log.warning("instance observer %r failed: %s: %s", observer, type(exc).__name__, exc)

    def start_instance(self, instance_id: int) -> None:
        self._call("PUT", f"/instances/{int(instance_id)}/", json={"state": "running"})

    def stop_instance(self, instance_id: int) -> None:
        self._call("PUT", f"/instances/{int(instance_id)}/", json={"state": "stopped"})

    def label_instance(self, instance_id: int, label: str) -> None:
        self._call("PUT", f"/instances/{int(instance_id)}/", json={"label": label})

    def destroy_instance(self, instance_id: int) -> bool:
        """Destroy; billing stops. False when it was already gone (that counts as done).

        Only Vast's own ``no_such_instance`` means gone: a 404 can also be a bad key
        ("Invalid user key") or a wrong ``VAST_URL``, and taking either for "destroyed"
        would leave the instance billing.
        """
        try:
            self._call("DELETE", f"/instances/{int(instance_id)}/", json={})
        except NotFoundError as exc:
            if exc.code == "no_such_instance":
                return False
            raise
        return True

    def change_bid(self, instance_id: int, price: float) -> None:
        """Set an interruptible instance's bid, in $/hour."""
        self._call("PUT", f"/instances/bid_price/{int(instance_id)}/", json={"client_id": "me", "price": price})

    def attach_ssh_key(self, instance_id: int, public_key: str) -> None:
        """Authorize ``public_key`` on a running instance (account keys reach new ones only)."""
        self._call("POST", f"/instances/{int(instance_id)}/ssh/", json={"ssh_key": public_key.strip()})

    # -- account ------------------------------------------------------------------------

    def ssh_keys(self) -> list[SSHKey]:
        """The account's SSH keys, which Vast installs on instances created after them."""
        body = self._call("GET", "/ssh/")
        keys = body if isinstance(body, list) else body.get("keys") or body.get("ssh_keys") or []
        return [SSHKey.from_api(k) for k in keys if not (isinstance(k, Mapping) and k.get("deleted_at"))]

    def add_ssh_key(self, public_key: str) -> SSHKey:
        body = self._call("POST", "/ssh/", json={"ssh_key": public_key.strip()})
        record = body.get("key") if isinstance(body.get("key"), Mapping) else body
        return SSHKey.from_api({"id": record.get("id"), "key": record.get("ssh_key") or public_key.strip()})

    def current_user(self) -> User:
        """The account: balance and credit. The ``api_key`` the API echoes is dropped."""
        return User.from_api(self._call("GET", "/users/current/"))

    def charges(self, start: float, end: float) -> list[Charge]:
        """Per-instance charges between two epoch times, through every page."""
        params = {
            "select_filters": json.dumps({"day": {"gte": start, "lte": end}, "type": {"in": ["instance"]}}),
            "format": "table",
            "latest_first": "true",
            "limit": CHARGES_PAGE_LIMIT,
        }
        return [Charge.from_api(c) for c in self._pages("/charges/", params, "results")]

    def charged_by_instance(self, since: float, until: float | None = None) -> dict[int, float]:
        """Dollars charged per instance id from ``since`` to ``until`` (epochs; default: now
        and any charge dated later), from the market's own charges."""
        out: dict[int, float] = {}
        for charge in self.charges(since, until if until is not None else time.time() + 366 * 86400):
            if charge.instance_id is not None:
                out[charge.instance_id] = out.get(charge.instance_id, 0.0) + charge.amount
        return out

    # -- overlay networks: a private LAN over one physical cluster ------------------------

    def create_overlay(self, cluster_id: int, name: str) -> Overlay:
        """``POST /overlay/``: an overlay network called ``name`` on cluster ``cluster_id``;
        instances created with ``env {"-n": name}`` join it."""
        self._call("POST", "/overlay/", json={"cluster_id": int(cluster_id), "name": name}, idempotent=False)
        found = [o for o in self.overlays() if o.name == name]
        if not found:
            raise VastError(f"POST /overlay/ succeeded but no overlay called {name!r} is listed; try again.")
        return found[0]

    def overlays(self) -> list[Overlay]:
        """``GET /overlay/``: the account's overlay networks."""
        body = self._call("GET", "/overlay/")
        rows = body if isinstance(body, list) else body.get("overlays") or body.get("results") or []
        return [Overlay.from_api(o) for o in rows if isinstance(o, Mapping)]

    def delete_overlay(self, overlay_id: int) -> None:
        """``DELETE /overlay/``: the network goes; its instances leave it (and stay)."""
        self._call("DELETE", "/overlay/", json={"overlay_id": int(overlay_id)})

    # -- plumbing -----------------------------------------------------------------------

    def _pages(self, path: str, params: dict[str, Any], key: str) -> Iterator[Mapping[str, Any]]:
        token: str | None = None
        while True:
            page_params = dict(params, **({"after_token": token} if token else {}))
            body = self._call("GET", path, params=page_params)
            yield from body.get(key) or []
            token = body.get("next_token")
            if not token:
                return

    def _call(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        params: Mapping[str, Any] | None = None,
        idempotent: bool = True,
    ) -> Any:
        """Send with retries; the decoded JSON body, or a VastError."""
        url = path if path.startswith("/api/v") else "/api/v0" + path
        started = time.monotonic()
        slept = 0.0  # waits asked of self._sleep, which may return early (or, in tests, at once)
        attempt = 0
        while True:
            attempt += 1
            failure: APIConnectionError | None = None
            try:
                response = self._http.request(method, url, json=json, params=params)
            except httpx.TransportError as exc:
                # A request that never connected cannot have rented anything; one that
                # timed out mid-way might have, so only idempotent calls retry those.
                retryable = idempotent or isinstance(exc, (httpx.ConnectError, httpx.ConnectTimeout))
                wait = self.retry.delay(attempt, rng=self._rng)
                if not (retryable and self.retry.allows(attempt, max(time.monotonic() - started, slept), wait)):
                    failure = self._connection_error(method, path, exc, attempt)
                reason = type(exc).__name__
            else:
                log.debug("%s %s -> %s (attempt %d)", method, path, response.status_code, attempt)
                status = response.status_code
                # A create answered 5xx may still have rented a machine: only 429 is safe.
                retryable = status in RETRY_STATUSES and (idempotent or status == 429)
                wait = self.retry.delay(attempt, floor=parse_threshold(response.text) or 0.0, rng=self._rng)
                elapsed = max(time.monotonic() - started, slept)
                if not (retryable and self.retry.allows(attempt, elapsed, wait)):
                    return self._decode(method, path, response, attempt, elapsed)
                reason = f"HTTP {status}"
            if failure is not None:
                # Raised here, not in the except block: there its __context__ would be httpx's
                # exception, whose request carries the Authorization header.
                raise failure
            log.info("%s %s: %s; retrying in %.1f s", method, path, reason, wait)
            self._sleep(wait)
            slept += wait

    def now(self) -> float:
        """The market's time now: this machine's clock, set by the ``Date`` header of the
        market's last answer (whole seconds, so within half a second)."""
        return time.time() + self.skew

    def _decode(self, method: str, path: str, response: httpx.Response, attempts: int, elapsed: float) -> Any:
        with contextlib.suppress(KeyError, TypeError, ValueError, OverflowError):
            self.skew = email.utils.parsedate_to_datetime(response.headers["date"]).timestamp() + 0.5 - time.time()
        try:
            body = response.json()
        except ValueError:
            body = None
        ok = response.is_success and not (isinstance(body, Mapping) and body.get("success") is False)
        if ok and body is not None:
            return body
        if ok:
            raise self._scrub(
                VastError(
                    f"{method} {path} returned HTTP {response.status_code} without a JSON body; "
                    "the Vast API may be down, or VAST_URL points at something else."
                )
            )
        # Build the error from a redacted copy of the answer, rebinding ``body``: a server
        # that echoes the key must not leave it in this frame, where a traceback shown
        # with its locals (capture_locals, IPython's verbose mode) would print it.
        text = redact(response.text, self._key)
        try:
            body = json.loads(text)
        except ValueError:
            body = None
        error = error_for(method, path, response.status_code, body, text)
        if isinstance(error, RateLimitError):
            error.args = (f"{error} (gave up after {attempts} attempts over {elapsed:.0f} s)",)
        raise self._scrub(error)

    def _connection_error(self, method: str, path: str, exc: httpx.TransportError, attempts: int) -> APIConnectionError:
        kind = "timed out" if isinstance(exc, httpx.TimeoutException) else f"failed ({type(exc).__name__})"
        hint = (
            "Nothing was retried because the request may have reached Vast: check `vastnb ps` for a new "
            "instance before trying again."
            if method == "PUT" and path.startswith("/asks/")
            else "Check your network, or VAST_URL, and try again."
        )
        return self._scrub(
            APIConnectionError(
                f"{method} {path} to {self.base_url} {kind} after {attempts} attempt(s). {hint}", endpoint=path
            )
        )

    def _scrub(self, error: _Error) -> _Error:
        error.args = tuple(redact(str(a), self._key) for a in error.args)
        if isinstance(error, APIError) and error.code:
            error.code = redact(error.code, self._key)
        return error
