"""The test modules here are pickled by value, as a notebook's own functions are: neither the
box nor its ranks can import them."""

from __future__ import annotations

import cloudpickle
import pytest


@pytest.fixture(autouse=True)
def by_value(request: pytest.FixtureRequest) -> None:
    cloudpickle.register_pickle_by_value(request.module)
