"""A live view outlives its kernel as what it last showed: when a real ipykernel shuts down,
every widget it displayed is replaced in place (its display id) by static text and HTML
and a one-line note, so a notebook saved after that shows no dead widget."""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any

from jupyter_client.manager import start_new_kernel

WIDGET = "application/vnd.jupyter.widget-view+json"

CELLS = [
    """
    import vastnb
    from vastnb.lifecycle.launch import LaunchPolicy
    from vastnb.sim import SimConfig
    from vastnb.front.widgets import live_boxes
    from vastnb.front.widgets.dashboard import jobs_view

    vast = vastnb.Client(backend="sim", sim_config=SimConfig(create_delay=0.1, load_delay=0.1),
                         launch_policy=LaunchPolicy(poll=0.05))
    box = vast.launch("dev-test", name="exit-test")
    card = live_boxes(vast).card(box)
    card.display()
    """,
    "jobs_view(vast)  # the last value of a cell: a live view too",
    "box.down(); card.refresh(); print(card.state)",
]


def run(client: Any, code: str) -> list[dict[str, Any]]:
    """Run a cell; its iopub messages, in order."""
    messages: list[dict[str, Any]] = []
    reply = client.execute_interactive(textwrap.dedent(code), timeout=60, output_hook=messages.append)
    assert reply["content"]["status"] == "ok", messages
    return messages


def test_a_kernels_exit_leaves_each_live_view_as_its_final_state_with_a_note(isolated: Path) -> None:
    manager, client = start_new_kernel(kernel_name="python3")  # this venv's python: ipykernel's own spec
    try:
        shown = [m for cell in CELLS for m in run(client, cell) if m["msg_type"] in ("display_data", "stream")]
        displays = [m["content"] for m in shown if m["msg_type"] == "display_data"]
        card, jobs = displays[0], displays[1]
        # Both were live widgets, each with a display id to replace it by.
        assert WIDGET in card["data"] and WIDGET in jobs["data"]
        assert card["data"]["text/plain"].startswith("exit-test #") and ": running" in card["data"]["text/plain"]
        ids = {d["transient"]["display_id"] for d in (card, jobs)}
        assert len(ids) == 2
        assert shown[-1]["content"]["text"] == "destroyed\n"
        client.shutdown()
        updates = []
        while True:
            try:
                message = client.get_iopub_msg(timeout=10)
            except Exception:  # noqa: BLE001 - queue.Empty: the kernel is gone and said all
                break
            if message["msg_type"] == "update_display_data":
                updates.append(message["content"])
    finally:
        manager.shutdown_kernel(now=False)
    assert {u["transient"]["display_id"] for u in updates} == ids
    for update in updates:
        data = update["data"]
        # Static only: no widget for a later kernel not to find, and the note says why.
        assert WIDGET not in data and set(data) == {"text/plain", "text/html"}
        assert "live until its kernel stopped at" in data["text/plain"]
        assert "live until its kernel stopped at" in data["text/html"]
    final = {u["transient"]["display_id"]: u["data"] for u in updates}
    # The card's last state: destroyed, as it showed when the kernel went, with no buttons.
    card_final = final[card["transient"]["display_id"]]
    assert card_final["text/plain"].startswith("exit-test #") and ": destroyed" in card_final["text/plain"]
    assert "destroyed" in card_final["text/html"] and "button" not in card_final["text/html"].lower()
    assert final[jobs["transient"]["display_id"]]["text/plain"].startswith("jobs:\nno jobs yet")
