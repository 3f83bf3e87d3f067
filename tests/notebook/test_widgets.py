"""The launch progress and status card widgets, headless: real launches on the simulator
feed them real events, and button clicks act on real (simulated) instances.

``rich=True`` forces widgets without a frontend; ``rich=False`` is the text fallback.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import ipywidgets
import pytest

from vastnb import Client, LaunchEvent, LaunchPolicy, Offer
from vastnb.errors import ProvisionError
from vastnb.front.widgets import LaunchProgress, LiveBoxes, StatusCard, rich_frontend
from vastnb.market.selection import Candidate
from vastnb.sim import SimConfig

FAST_SIM = SimConfig(create_delay=0.2, load_delay=0.3, schedule_delay=0.2)
FAST_POLICY = LaunchPolicy(poll=0.05, connect_deadline=30.0)
STAGES = ["offer", "created", "loading", "running", "connecting", "ready"]
LABELS = ["offer chosen", "created", "loading", "running", "SSH", "worker ready"]


@pytest.fixture
def client(isolated: Path) -> Iterator[Client]:
    """A sim client whose instances start in half a second. At the end every simulated
    instance is destroyed (their worker processes with them)."""
    client = Client(backend="sim", sim_config=FAST_SIM, launch_policy=FAST_POLICY)
    try:
        yield client
    finally:
        client.close()
        assert client.sim is not None
        for inst in client.sim.market.instances():  # kept or half-made ones, too
            client.sim.market.destroy(int(inst["id"]))


def market_state(client: Client, instance_id: int) -> str | None:
    """What the simulator itself says about the instance; None when it does not exist."""
    assert client.sim is not None
    found = [i for i in client.sim.market.instances() if int(i["id"]) == instance_id]
    return found[0]["actual_status"] if found else None


def row_texts(progress: LaunchProgress) -> list[str]:
    """The rich view's rows, as HTML."""
    assert progress.widget is not None
    lines = progress.widget.children[1]
    assert isinstance(lines, ipywidgets.HTML)
    return re.findall(r"<div>(.*?)</div>", lines.value)


def offer_event(elapsed: float = 0.05) -> LaunchEvent:
    offer = Offer.from_api(
        {
            "id": 41,
            "machine_id": 7,
            "gpu_name": "RTX 4090",
            "num_gpus": 1,
            "reliability": 0.9912,
            "geolocation": "Sweden, SE",
            "dph_total": 0.2,
        }
    )
    candidate = Candidate(offer=offer, price=0.205, bid=None)
    return LaunchEvent("offer", "offer 41: 1x RTX 4090, $0.205/h, SE, reliability 0.991", elapsed, None, candidate)


# -- LaunchProgress -----------------------------------------------------------------------


def test_rich_progress_follows_a_real_launch_stage_by_stage(client: Client) -> None:
    progress = LaunchProgress("dev-test", rich=True, simulated=client.simulated)
    assert progress.state == "starting" and progress.widget is not None
    assert [r.mark for r in progress.rows()] == ["active"] + ["pending"] * 5
    seen: list[tuple[str, str, list[str], list[str], list[str]]] = []

    def look(change: dict[str, Any]) -> None:  # after each event, what the model and view hold
        if change["name"] == "events":
            rows = progress.rows()
            seen.append(
                (
                    progress.stages[-1],
                    progress.state,
                    [r.mark for r in rows],
                    [r.label for r in rows],
                    row_texts(progress),
                )
            )

    progress.observe(look)  # observers of every trait run in order: this one after the view's
    box = client.launch("dev-test", name="exp1", progress=progress)
    progress.finish(box)

    stages = [s[0] for s in seen]
    # On a busy machine the first poll can come after the simulated image pull: then
    # launch() goes from created straight to running, and so does the view.
    assert stages in (STAGES, [s for s in STAGES if s != "loading"])
    for n, (stage, state, marks, labels, html) in enumerate(seen, start=1):
        to_come = LABELS[STAGES.index(stage) + 1 :]
        assert state == "launching"
        assert labels == [LABELS[STAGES.index(s)] for s in stages[:n]] + to_come  # done steps, then the ones to come
        assert marks == ["done"] * n + (["active"] + ["pending"] * (len(to_come) - 1) if to_come else [])
        assert len(html) == len(labels) and all("✓" in h for h in html[:n]) and not any("✓" in h for h in html[n:])
    assert "1x " in seen[0][4][0] and "/h" in seen[0][4][0] and "reliability" in seen[0][4][0]
    assert f"#{box.id}" in seen[1][4][1]

    assert progress.state == "ready" and progress.outcome == f"exp1 #{box.id}"
    assert [r.mark for r in progress.rows()] == ["done"] * len(stages)
    assert progress.elapsed is not None and progress.elapsed > 0
    headline = progress.widget.children[0].value
    assert "ready in" in headline and f"exp1 #{box.id}" in headline and "SIMULATED" in headline
    text = repr(progress)
    assert text.startswith(f"Launch of dev-test: ready in {progress.elapsed:.1f}s: exp1 #{box.id} (SIMULATED)\n")
    assert re.search(r"✓ offer chosen +\d+\.\d+s  1x .+, \$\d+\.\d{3}/h, \w+, reliability \d\.\d{3}\n", text)
    assert re.search(rf"✓ worker ready +\d+\.\d+s  #{box.id}$", text)


def test_text_progress_prints_the_cli_lines_of_a_real_launch(
    client: Client, capsys: pytest.CaptureFixture[str]
) -> None:
    progress = LaunchProgress("dev-test", rich=False)
    assert progress.widget is None
    box = client.launch("dev-test", progress=progress)
    progress.finish(box)
    progress.display()  # lines printed as they came: nothing more to show
    lines = capsys.readouterr().out.splitlines()
    assert [re.match(r"\[ *\d+\.\d+s\] (\w+): ", line).group(1) for line in lines] == progress.stages  # type: ignore[union-attr]
    assert progress.stages[-3:] == ["running", "connecting", "ready"]
    running = progress.events[-3]
    assert lines[-3] == f"[{running.elapsed:6.1f}s] running: instance {box.id} running"  # as `vastnb launch` prints it
    assert progress.state == "ready" and repr(progress).count("✓") == len(lines)


def test_retries_and_cleanups_are_extra_rows_and_a_new_attempt_starts_over() -> None:
    progress = LaunchProgress("training-standard", rich=True)
    progress(offer_event())
    progress(LaunchEvent("created", "instance 20000007 created", 0.3, 20000007))
    progress(
        LaunchEvent(
            "retry", "instance 20000007 failed: the container failed to start: oci runtime error", 2.5, 20000007
        )
    )
    progress(LaunchEvent("cleanup", "instance 20000007 destroyed", 2.6, 20000007))
    assert [(r.mark, r.label) for r in progress.rows()] == [
        ("done", "offer chosen"),
        ("done", "created"),
        ("retry", "retry"),
        ("cleanup", "cleanup"),
        ("active", "offer chosen"),
        ("pending", "created"),
        ("pending", "loading"),
        ("pending", "running"),
        ("pending", "SSH"),
        ("pending", "worker ready"),
    ]
    assert len(row_texts(progress)) == 10 and "oci runtime error" in row_texts(progress)[2]
    progress(offer_event(2.7))
    assert [r.mark for r in progress.rows()][4:] == ["done", "active", "pending", "pending", "pending", "pending"]
    assert repr(progress) == "\n".join(
        [
            "Launch of training-standard: launching",
            "  ✓ offer chosen 0.1s  1x RTX 4090, $0.205/h, SE, reliability 0.991",
            "  ✓ created      0.3s  #20000007",
            "  ↻ retry        2.5s  instance 20000007 failed: the container failed to start: oci runtime error",
            "  − cleanup      2.6s  instance 20000007 destroyed",
            "  ✓ offer chosen 2.7s  1x RTX 4090, $0.205/h, SE, reliability 0.991",
            "  ▸ created",
            "  ○ loading",
            "  ○ running",
            "  ○ SSH",
            "  ○ worker ready",
        ]
    )


def test_a_failure_shows_the_errors_first_line(capsys: pytest.CaptureFixture[str]) -> None:
    error = ProvisionError(
        "Could not launch 'exp1' after 1 attempt(s):\n  offer 41 (RTX 4090): instance 20000007, destroyed"
    )
    rich = LaunchProgress("dev-test", rich=True)
    text = LaunchProgress("dev-test", rich=False)
    for progress in (rich, text):
        progress(offer_event(0.1))
        progress(LaunchEvent("retry", "offer 41 was rented by someone else; trying the next one", 0.2))
        progress.finish(error=error)
        assert progress.state == "failed"
        assert progress.outcome == "ProvisionError: Could not launch 'exp1' after 1 attempt(s):"
        assert [r.mark for r in progress.rows()] == ["done", "retry", "failed"]
        assert repr(progress).splitlines()[0] == "Launch of dev-test: failed in 0.2s"
        assert (
            repr(progress).splitlines()[-1]
            == "  ✗ failed        ProvisionError: Could not launch 'exp1' after 1 attempt(s):"
        )
    assert "Could not launch" in row_texts(rich)[-1] and "failed" in rich.widget.children[0].value  # type: ignore[union-attr]
    printed = capsys.readouterr().out.splitlines()
    assert printed[-1] == "[   0.2s] failed: ProvisionError: Could not launch 'exp1' after 1 attempt(s):"
    # An error without a message (Ctrl-C) still says what it was.
    interrupted = LaunchProgress("dev-test", rich=False)
    interrupted.finish(error=KeyboardInterrupt())
    assert interrupted.outcome == "KeyboardInterrupt"


def test_reprs_and_frontend_detection() -> None:
    assert rich_frontend() is False  # pytest is no kernel: text unless asked
    auto = LaunchProgress("dev-test")
    assert auto.rich is False and auto.widget is None
    text_bundle = auto._repr_mimebundle_()
    assert set(text_bundle) == {"text/plain", "text/html"} and text_bundle["text/plain"] == repr(auto)
    assert "Launch of dev-test: starting" in text_bundle["text/html"] and "mathjax_ignore" in text_bundle["text/html"]
    rich = LaunchProgress("dev-test", rich=True)
    bundle = rich._repr_mimebundle_()
    assert (
        bundle["text/plain"]
        == repr(rich)
        == "\n".join(
            [
                "Launch of dev-test: starting",
                "  ▸ offer chosen",
                "  ○ created",
                "  ○ loading",
                "  ○ running",
                "  ○ SSH",
                "  ○ worker ready",
            ]
        )
    )
    assert "application/vnd.jupyter.widget-view+json" in bundle
    assert "0x" not in repr(rich)


# -- StatusCard ---------------------------------------------------------------------------


def test_status_card_buttons_stop_start_and_destroy_a_real_box(client: Client) -> None:
    box = client.launch("dev-test", name="card")
    card = StatusCard(box, rich=True)
    assert card.state == "running" and market_state(client, box.id) == "running"
    assert card.name == "card" and card.instance_id == box.id and card.simulated
    assert card.gpu.startswith("1x ") and card.price is not None and card.price > 0
    assert card.cost is not None and card.error == "" and card.busy == ""
    summary = r"card #\d+: running, 1x .+, \$\d+\.\d{3}/h, uptime \d+\.\d min, cost so far \$\d+\.\d{4} \(SIMULATED\)"
    assert re.fullmatch(summary, repr(card)), repr(card)
    assert not card.stop_button.disabled and not card.destroy_button.disabled
    assert card.start_button.layout.display == "none"  # Start shows only when stopped

    card.stop_button.click()
    assert card.state == "stopped" and market_state(client, box.id) == "stopped"
    assert card.stop_button.disabled and card.start_button.layout.display is None
    assert card.uptime_mins is None and "uptime -" in repr(card) and card.error == ""

    card.start_button.click()
    assert card.state == "running" and market_state(client, box.id) == "running"
    assert card.start_button.layout.display == "none" and not card.stop_button.disabled

    card.destroy_button.click()
    assert card.state == "destroyed" and market_state(client, box.id) is None
    assert card.stop_button.disabled and card.destroy_button.disabled
    assert box.status == "destroyed" and card.error == ""
    assert repr(card).startswith(f"card #{box.id}: destroyed, 1x ")
    assert "destroyed" in card.widget.children[0].value  # type: ignore[union-attr]

    card.refresh_button.click()  # nothing changed: the card says so rather than nothing
    assert re.fullmatch(r"no change at \d\d:\d\d:\d\d", card.note), card.note
    assert card.note in card.widget.children[0].value  # type: ignore[union-attr]


def test_an_error_from_a_click_shows_on_the_card(client: Client) -> None:
    box = client.launch("dev-test", name="gone")
    card = StatusCard(box, rich=True)
    assert client.sim is not None
    client.sim.market.destroy(box.id)  # destroyed behind the card's back (at console.vast.ai, say)
    card.stop_button.click()  # the market refuses: the error lands on the card, not in a log
    assert card.error and card.busy == ""
    assert card.state == "destroyed" and card.destroy_button.disabled
    assert card.error.split(":")[0] in repr(card).splitlines()[1]
    assert "crimson" in card.widget.children[2].value  # type: ignore[union-attr]


def test_text_card_is_one_summary_line(client: Client, capsys: pytest.CaptureFixture[str]) -> None:
    box = client.launch("dev-test", name="plain")
    card = StatusCard(box, rich=False)
    bundle = card._repr_mimebundle_()
    assert card.widget is None and bundle["text/plain"] == repr(card)
    assert "application/vnd.jupyter.widget-view+json" not in bundle and "● running" in bundle["text/html"]
    assert repr(card).startswith(f"plain #{box.id}: running, ") and "\n" not in repr(card)
    card.display()  # outside IPython, display() prints the text
    assert capsys.readouterr().out == repr(card) + "\n"
    box.stop()
    card.refresh()
    assert card.state == "stopped" and ": stopped, " in repr(card)


def wait_until(check: Callable[[], bool], what: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            pytest.fail(f"never happened within {timeout:.0f} s: {what}")
        time.sleep(0.05)


def test_a_box_has_one_card_and_it_follows_a_destroy_from_another_process(client: Client) -> None:
    live = LiveBoxes(client, store_every=0.05, market_every=3600.0)  # the state store only
    box = client.launch("dev-test", name="shared")
    card = live.card(box, rich=True)
    poller = live._thread
    assert live.card(box) is card and live.live() == [card]  # %vast launch and %vast status: one card
    cli = [str(Path(sys.executable).with_name("vastnb")), "down", "shared"]  # the command, as a user types it
    subprocess.run(cli, env={**os.environ, "VASTNB_BACKEND": "sim"}, check=True, capture_output=True, timeout=120)
    wait_until(lambda: card.state == "destroyed", "the card shows the destroy made by `vastnb down`")
    assert card.stop_button.disabled and card.destroy_button.disabled and card.error == ""
    assert live.live() == []
    assert poller is not None
    poller.join(10)
    assert not poller.is_alive() and live._thread is None  # nothing left to follow: the poller ends


def test_a_stop_from_anywhere_in_the_kernel_shows_on_the_card(client: Client) -> None:
    live = LiveBoxes(client, store_every=0.05, market_every=3600.0)
    box = client.launch("dev-test", name="stopped-elsewhere")
    card = live.card(box, rich=True)
    client.attach("stopped-elsewhere").stop()  # another handle on the same box
    wait_until(lambda: card.state == "stopped", "the card shows the stop")
    assert card.stop_button.disabled and card.start_button.layout.display is None


def test_a_box_destroyed_behind_vastnbs_back_turns_destroyed_on_its_card(client: Client) -> None:
    live = LiveBoxes(client, store_every=0.05, market_every=0.3)
    box = client.launch("dev-test", name="watchdogged")
    card = live.card(box, rich=True)
    assert client.sim is not None
    client.sim.market.destroy(box.id)  # as the box's own watchdog does: no vastnb process records it
    wait_until(lambda: card.state == "destroyed", "the card shows what the market says")
    assert card.destroy_button.disabled and card.cost is not None


def test_a_finished_launch_leaves_a_record_where_its_live_view_was(client: Client) -> None:
    from IPython.core.interactiveshell import InteractiveShell
    from IPython.utils.capture import capture_output

    InteractiveShell.instance()  # a shell for display() to publish through
    progress = LaunchProgress("dev-test", rich=True, simulated=True)
    with capture_output() as shown:
        progress.display()
        box = client.launch("dev-test", name="recorded", progress=progress)
        progress.finish(box=box)
    live, emptied, record = shown.outputs
    # What a saved notebook keeps of the live view is no text (a launch in progress is not a
    # state), then the record of how it ended: its text is what GitHub, nbval and an
    # untrusted viewer show, its HTML what a trusted one shows instead of the hidden widget.
    assert live.data["text/plain"] == "" and "application/vnd.jupyter.widget-view+json" in live.data
    # The live output itself is emptied in place (its display id): reopened without a kernel,
    # the notebook shows no dead widget where the launch ticked.
    assert emptied.update and emptied.data == {"text/plain": ""}
    assert emptied.transient["display_id"] == live.transient["display_id"]
    text = record.data["text/plain"]
    assert text.startswith("Launch of dev-test: ready in ") and f"recorded #{box.id} (SIMULATED)" in text
    assert "○" not in text and "▸" not in text and all(label in text for label in LABELS)
    assert record.data["text/html"].count("✓") == len(LABELS) and "ready in" in record.data["text/html"]
    assert progress.widget is not None and progress.widget.layout.display == "none"
