"""The monitor's judgement of a job's box, from the market's own fields."""

from __future__ import annotations

from typing import Any

import pytest

from vastnb.jobs.monitor import judge
from vastnb.market.records import Instance


def _instance(**fields: Any) -> Instance:
    data = {"id": 5, "actual_status": "running", "intended_status": "running", "is_bid": False, "status_msg": ""}
    return Instance.from_api({**data, **fields})


@pytest.mark.parametrize(
    ("fields", "event", "recover"),
    [
        ({}, None, None),
        ({"actual_status": "loading"}, None, None),  # still starting (a resume pulls the image again)
        ({"actual_status": None}, None, None),
        ({"actual_status": "offline", "status_msg": "host lost"}, "offline", True),
        ({"actual_status": "exited"}, "offline", True),
        ({"actual_status": "something new"}, "offline", True),  # an unheard-of state is not taken as running
        (
            {"actual_status": "stopped", "intended_status": "stopped", "is_bid": True, "status_msg": "outbid: x"},
            "preempted",
            True,
        ),
        (
            {"actual_status": "stopped", "is_bid": True, "status_msg": "outbid: another renter bid $0.40/h"},
            "outbid",
            True,
        ),
        ({"actual_status": "stopped", "intended_status": "stopped", "status_msg": "stopped by user"}, "stopped", False),
        ({"actual_status": "stopped", "is_bid": True, "status_msg": "stopped by user"}, "stopped", False),
        ({"actual_status": "stopped", "status_msg": "stopped: account balance reached $0"}, "stopped", False),
    ],
)
def test_judge(fields: dict[str, Any], event: str | None, recover: bool | None) -> None:
    verdict = judge(_instance(**fields))
    assert (verdict.event if verdict else None, verdict.recover if verdict else None) == (event, recover)


def test_an_instance_gone_from_the_market_is_recovered_from() -> None:
    verdict = judge(None)
    assert verdict is not None and verdict.event == "destroyed" and verdict.recover
