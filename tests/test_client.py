"""vastnb.Client: backend choice, profiles and offers as DataFrames, no-match reports."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

import vastnb
from vastnb.client import SIM_MARK
from vastnb.errors import ConfigError, NoOffersError
from vastnb.sim import Simulator


def test_without_a_key_the_backend_is_the_simulator() -> None:
    with vastnb.Client() as vast:
        assert vast.backend == "sim"
        assert vast.simulated


def test_a_key_in_the_environment_selects_vast(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VAST_API_KEY", "k" * 64)
    with vastnb.Client() as vast:
        assert vast.backend == "vast"
        assert vast.api.base_url == "https://console.vast.ai"


def test_the_official_cli_key_file_is_enough(isolated: Path) -> None:
    key_file = isolated / "config" / "vastai" / "vast_api_key"
    key_file.parent.mkdir(parents=True)
    key_file.write_text("abc123\n")
    with vastnb.Client() as vast:
        assert vast.backend == "vast"


def test_vastnb_backend_overrides_and_is_checked(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VAST_API_KEY", "k" * 64)
    monkeypatch.setenv("VASTNB_BACKEND", "sim")
    with vastnb.Client() as vast:
        assert vast.backend == "sim"
    monkeypatch.setenv("VASTNB_BACKEND", "aws")
    with pytest.raises(ConfigError, match="VASTNB_BACKEND"):
        vastnb.Client()


def test_vast_backend_without_a_key_says_how_to_get_one() -> None:
    with pytest.raises(ConfigError, match="VAST_API_KEY"):
        vastnb.Client(backend="vast")


def test_profiles_frame_lists_the_reference_profiles() -> None:
    with vastnb.Client() as vast:
        frame = vast.profiles()
    assert list(frame.index) == ["dev-test", "training-standard", "training-distributed", "inference-batch"]
    assert frame.loc["training-standard", "max_price_per_hour"] == 2.0
    # Profiles are the user's own settings, not market figures: not marked simulated.
    assert frame.columns.name is None


def test_offers_for_a_profile_fit_it_and_come_cheapest_first() -> None:
    with vastnb.Client() as vast:
        frame = vast.offers("training-standard", limit=None)
        profile = vast.profile("training-standard")
    assert len(frame) > 3
    assert frame.columns.name == SIM_MARK and frame.attrs["simulated"]
    assert set(frame["gpu"]) <= set(profile.gpu_names)
    assert (frame["num_gpus"] == 1).all()
    assert (frame["price_per_hour"] <= 2.0).all()
    assert (frame["reliability"] >= 0.98).all()
    assert frame["price_per_hour"].is_monotonic_increasing


def test_interruptible_profile_is_priced_at_the_bid() -> None:
    with vastnb.Client() as vast:
        frame = vast.offers("inference-batch")
    assert frame["bid"].notna().all()
    # price = bid + 20 GB of disk, so never below the bid, and within the profile's cap.
    assert (frame["price_per_hour"] >= frame["bid"]).all()
    assert (frame["price_per_hour"] <= 0.15).all()


def test_offers_accept_the_vast_cli_query_syntax() -> None:
    with vastnb.Client() as vast:
        frame = vast.offers("gpu_name=RTX_4090 num_gpus>=1 reliability>0.98 dph<0.5", limit=None)
    assert len(frame) > 0
    assert set(frame["gpu"]) == {"RTX 4090"}
    assert (frame["reliability"] > 0.98).all() and (frame["price_per_hour"] < 0.5).all()
    assert frame["price_per_hour"].is_monotonic_increasing


def test_query_order_option_sorts_results() -> None:
    with vastnb.Client() as vast:
        frame = vast.offers("gpu_name=RTX_4090", order="reliability-", limit=None)
    assert frame["reliability"].is_monotonic_decreasing


def test_a_typo_in_a_query_is_refused_with_a_suggestion() -> None:
    with vastnb.Client() as vast, pytest.raises(ConfigError, match="gpu_name"):
        vast.offers("gpu_nam=RTX_4090")


def test_unknown_profile_name_suggests_the_right_one() -> None:
    with vastnb.Client() as vast, pytest.raises(vastnb.ProfileError, match="training-standard"):
        vast.offers("training-standart")


def test_no_match_explains_which_constraint_removed_how_many(isolated: Path) -> None:
    profiles = isolated / "profiles"
    profiles.mkdir()
    (profiles / "gpu_profiles.yaml").write_text(
        "too-cheap:\n  gpu: H100_SXM\n  num_gpus: 8\n  max_price_per_hour: 1.00\n"
        "  min_reliability: 0.9\n  max_duration_hours: 1\n"
    )
    with vastnb.Client() as vast, pytest.raises(NoOffersError) as caught:
        vast.offers("too-cheap")
    message = str(caught.value)
    report = caught.value.report
    assert "too-cheap" in message and "gpu_profiles.yaml" in message
    removed = dict(report.removed)
    assert removed["price <= $1.00/h"] > 0
    assert removed["GPU model H100 SXM"] > 0
    # The near-miss is an 8x H100 SXM that fails only on price, and the message says what it costs.
    assert report.near_miss is not None and report.near_miss_fails == "price <= $1.00/h"
    assert report.near_miss.offer.gpu_name == "H100 SXM" and report.near_miss.offer.num_gpus == 8
    assert f"${report.near_miss.price:.3f}/h" in message


def test_vast_backend_over_http_sees_the_same_market_as_sim(isolated: Path) -> None:
    """The real client path (key, URL, HTTP) against the simulator served on loopback."""
    sim = Simulator(isolated / "vastnb")
    with sim.serve() as server:
        with vastnb.Client(api_key=sim.market.api_key, url=server.url) as remote:
            assert remote.backend == "vast" and not remote.simulated
            over_http = remote.offers("dev-test", limit=None)
        with vastnb.Client() as local:
            in_process = local.offers("dev-test", limit=None)
    assert over_http.columns.name is None
    pd.testing.assert_frame_equal(over_http, in_process, check_names=False)


def test_simulated_instances_persist_across_clients(isolated: Path) -> None:
    """A new kernel (a new Client) sees the market an earlier one changed."""
    with vastnb.Client() as first:
        offer_id = int(first.offers("dev-test").index[0])
        first.api.create_instance(offer_id, image="pytorch/pytorch", disk_gb=20, label="vastnb:test")
    with vastnb.Client() as second:
        labels = [i.label for i in second.api.list_instances()]
    assert labels == ["vastnb:test"]
