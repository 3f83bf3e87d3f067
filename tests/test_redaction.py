"""The API key never shows: not in messages, reprs, tracebacks (locals included) or logs.

Each error is raised inside :func:`caught`, so the traceback under test starts in a frame
that holds no copy of the key: only what vastnb itself keeps can show up in it.
"""

from __future__ import annotations

import copy
import logging
import pickle
import socket
import traceback
from collections.abc import Callable

import pytest

from vastnb.base.secret import MASK, Secret, redact
from vastnb.errors import (
    APIConnectionError,
    APIError,
    AuthError,
    NotFoundError,
    OfferUnavailableError,
    RateLimitError,
    VastError,
)
from vastnb.market.api import VastAPI
from vastnb.market.retry import RetryPolicy
from vastnb.sim import Simulator

#: A key the simulator does not know: sent, refused, and never to be seen again.
WRONG_KEY = "vnbWRONGKEY_5f1c9e0a77d24b6b8e3f2a1d0c9b8a7f"


def caught(call: Callable[[], object]) -> VastError:
    try:
        call()
    except VastError as exc:
        return exc
    raise AssertionError("expected a VastError")


@pytest.fixture
def logs(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    for name in ("vastnb", "httpx", "httpcore"):
        caplog.set_level(logging.DEBUG, logger=name)
    return caplog


def chain(exc: BaseException) -> list[BaseException]:
    """``exc`` and every exception chained to it, shown or suppressed."""
    seen: list[BaseException] = []
    while exc is not None and exc not in seen:
        seen.append(exc)
        exc = exc.__cause__ or exc.__context__
    return seen


def assert_hidden(key: str, exc: BaseException, logs: pytest.LogCaptureFixture, *objects: object) -> None:
    shown = {
        "str": str(exc),
        "repr": repr(exc),
        "attributes": repr(vars(exc)),
        "traceback": "".join(traceback.format_exception(exc)),
        "traceback with locals": "".join(
            traceback.TracebackException.from_exception(exc, capture_locals=True).format()
        ),
        # What a debugger or error reporter could walk to, even where Python hides it.
        "chained with locals": "".join(
            "".join(traceback.TracebackException(type(e), e, e.__traceback__, capture_locals=True).format(chain=False))
            for e in chain(exc)
        ),
        # httpx's exceptions keep the request, Authorization header and all.
        "requests in the chain": "\n".join(repr(dict(e.request.headers)) for e in chain(exc) if _has_request(e)),
        "log messages": "\n".join(r.getMessage() for r in logs.records),
        "log records": "\n".join(repr(vars(r)) for r in logs.records),
        "objects": "\n".join(repr(o) for o in objects),
    }
    for where, text in shown.items():
        assert key not in text, f"the API key shows in {where}"
        # No long piece of it either (a message cut in the middle of the key).
        pieces = [key[i : i + 12] for i in range(len(key) - 11)]
        assert not any(p in text for p in pieces), f"part of the API key shows in {where}"


def _has_request(exc: BaseException) -> bool:
    try:
        return getattr(exc, "request", None) is not None
    except RuntimeError:  # httpx: "The .request property has not been set."
        return False


def test_bad_key(connect, sim: Simulator, logs) -> None:
    api = connect(sim, key=Secret(WRONG_KEY))
    exc = caught(lambda: api.current_user())
    assert isinstance(exc, AuthError) and exc.status == 401
    assert_hidden(WRONG_KEY, exc, logs, api)


def test_not_found(api: VastAPI, sim: Simulator, logs) -> None:
    exc = caught(lambda: api.change_bid(99_999_999, 0.5))
    assert isinstance(exc, NotFoundError)
    assert_hidden(sim.market.api_key, exc, logs, api)


def test_offer_unavailable(api: VastAPI, sim: Simulator, logs) -> None:
    offer = api.search_offers({"num_gpus": {"eq": 1}, "limit": 1})[0]
    sim.market.take_offer(offer.id)
    exc = caught(lambda: api.create_instance(offer.id, image="ubuntu:22.04", disk_gb=16, label="vastnb:x"))
    assert isinstance(exc, OfferUnavailableError)
    assert_hidden(sim.market.api_key, exc, logs, api)


def test_rate_limited(connect, sim: Simulator, logs) -> None:
    api = connect(sim, retry=RetryPolicy(attempts=2, base_delay=0.1))
    sim.api.faults.inject(
        "status", path="/users/current", status=429, times=5, body="API requests too frequent endpoint threshold=1.0"
    )
    exc = caught(lambda: api.current_user())
    assert isinstance(exc, RateLimitError)
    assert any("retrying" in r.getMessage() for r in logs.records)
    assert_hidden(sim.market.api_key, exc, logs, api)


def test_connection_refused(logs) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))  # bound, never listening: connections are refused
        api = VastAPI(
            Secret(WRONG_KEY),
            base_url=f"http://127.0.0.1:{s.getsockname()[1]}",
            retry=RetryPolicy(attempts=2, base_delay=0.01),
            sleep=lambda _: None,
        )
        with api:
            exc = caught(lambda: api.current_user())
    assert isinstance(exc, APIConnectionError)
    assert chain(exc) == [exc]  # nothing behind it to walk to
    assert_hidden(WRONG_KEY, exc, logs, api)


def test_timeout(connect, sim: Simulator, logs) -> None:
    api = connect(sim, timeout=0.2, retry=RetryPolicy(attempts=1))
    sim.api.faults.inject("timeout", path="/users/current")
    exc = caught(lambda: api.current_user())
    assert isinstance(exc, APIConnectionError)
    assert_hidden(sim.market.api_key, exc, logs, api)


@pytest.mark.parametrize("status", [500, 503])
def test_server_error_echoing_the_key_as_html(connect, sim: Simulator, logs, status: int) -> None:
    api = connect(sim, retry=RetryPolicy(attempts=2, base_delay=0.1))
    body = f"<html>upstream error; request had Authorization: Bearer {sim.market.api_key}</html>"
    sim.api.faults.inject("status", path="/users/current", status=status, times=2, body=body)
    exc = caught(lambda: api.current_user())
    assert isinstance(exc, APIError) and exc.status == status
    assert MASK in str(exc)  # the message is kept, the key is masked
    assert_hidden(sim.market.api_key, exc, logs, api)


def test_server_error_echoing_the_key_as_json(api: VastAPI, sim: Simulator, logs) -> None:
    key = sim.market.api_key
    body = f'{{"success": false, "error": "bad_key_{key}", "msg": "key {key} was refused", "key": "{key}"}}'
    sim.api.faults.inject("status", path="/users/current", status=500, body=body)
    exc = caught(lambda: api.current_user())
    assert isinstance(exc, APIError)
    assert f"key {MASK} was refused" in str(exc)
    assert_hidden(key, exc, logs, api)


def test_key_cut_at_the_end_of_a_long_message(api: VastAPI, sim: Simulator, logs) -> None:
    # Messages are cut to 300 characters: the cut must not fall inside an unmasked key.
    body = "x" * 280 + sim.market.api_key
    sim.api.faults.inject("status", path="/users/current", status=400, body=body)
    exc = caught(lambda: api.current_user())
    assert_hidden(sim.market.api_key, exc, logs, api)


def test_success_logs_do_not_show_the_key(api: VastAPI, sim: Simulator, logs) -> None:
    user = api.current_user()  # the API echoes the key in this answer
    api.search_offers({"limit": 2})
    assert logs.records, "debug logging should say something"
    text = "\n".join(r.getMessage() for r in logs.records) + repr(user) + repr(dict(user.raw))
    assert sim.market.api_key not in text


def test_repr_of_client_and_secret() -> None:
    secret = Secret(WRONG_KEY)
    api = VastAPI(secret, base_url="http://127.0.0.1:9")
    with api:
        for text in (repr(api), str(api), repr(secret), str(secret), f"{secret}", repr([secret]), repr({"k": secret})):
            assert WRONG_KEY not in text
        assert MASK in repr(secret)
    assert secret.reveal() == WRONG_KEY


def test_secret_cannot_be_pickled_or_copied_out() -> None:
    secret = Secret(WRONG_KEY)
    with pytest.raises(TypeError, match="cannot be pickled"):
        pickle.dumps(secret)
    with pytest.raises(TypeError):
        pickle.dumps({"nested": [secret]})
    with pytest.raises(TypeError):
        copy.copy(secret)


def test_client_cannot_be_pickled() -> None:
    with VastAPI(Secret(WRONG_KEY), base_url="http://127.0.0.1:9") as api, pytest.raises(TypeError):
        pickle.dumps(api)


def test_secret_basics() -> None:
    with pytest.raises(ValueError):
        Secret("")
    assert Secret("a-long-key-1") == Secret("a-long-key-1") != Secret("another-key-2")
    assert redact(f"x {WRONG_KEY} y {WRONG_KEY}", Secret(WRONG_KEY)) == f"x {MASK} y {MASK}"
    assert redact("nothing here", None) == "nothing here"
