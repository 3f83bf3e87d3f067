"""A budget alert reaches the budget's webhook: posted once, retried when the receiver fails,
and never holding up the poll that raised it."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any

import pytest

from vastnb import Client
from vastnb.costs.enforce import Enforcer
from vastnb.errors import ProfileError
from vastnb.profiles.budgets import Budget, load_budgets


class Receiver(HTTPServer):
    """A webhook on 127.0.0.1 that fails its first ``failures`` posts with a 503."""

    def __init__(self, failures: int) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.failures, self.attempts = failures, 0
        self.alerts: list[dict[str, Any]] = []

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/budget"


class _Handler(BaseHTTPRequestHandler):
    server: Receiver

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.server.attempts += 1
        if self.server.attempts <= self.server.failures:
            self.send_response(503)
        else:
            self.server.alerts.append(json.loads(body))
            self.send_response(204)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    server = Receiver(failures=1)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def test_each_alert_is_posted_once_and_retried_until_it_lands(vast: Client, receiver: Receiver) -> None:
    assert vast.sim is not None
    vast.fleet.deadline = vast.fleet.on_change = None  # the enforcer alone
    vast.launch("dev-test")
    assert vast.budget_watch is not None
    vast.budget_watch.stop()
    budget = Budget(team="ml", monthly_limit_usd=0.55, alert_thresholds=(0.5,), webhook=receiver.url)
    enforcer = Enforcer(vast.fleet, [budget], log=lambda _: None)
    vast.sim.advance(1.5 * 3600)  # past half of $0.55, not all of it
    enforcer.check()
    for thread in enforcer.webhooks:
        thread.join(timeout=30)
    assert receiver.attempts == 2  # the first failed, the retry landed
    (alert,) = receiver.alerts
    assert alert["budget"] == "ml" and alert["threshold"] == 0.5 and alert["limit_usd"] == 0.55
    assert 0.275 <= alert["spent_usd"] < 0.55 and "50% of $0.55 reached" in alert["message"]
    assert vast.sim.market.api_key not in json.dumps(alert)
    enforcer.check()
    assert len(enforcer.webhooks) == 1  # never twice for one threshold


def test_a_webhook_that_is_not_a_web_address_is_refused_with_its_line(tmp_path: Path) -> None:
    path = tmp_path / "budgets.yaml"
    path.write_text("budgets:\n  - team: ml\n    monthly_limit_usd: 100\n    webhook: ftp://hooks.example.com\n")
    with pytest.raises(ProfileError, match=r"line 4.*webhook.*http:// or https:// URL"):
        load_budgets(path)
