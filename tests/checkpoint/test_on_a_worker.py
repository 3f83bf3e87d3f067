"""The checkpoint manager as a training cell on a worker uses it: imported from the worker
package (the box has no vastnb), its files read back in the notebook."""

from __future__ import annotations

from pathlib import Path

from vastnb.offload import LocalTransport, Session
from vastnb.storage.checkpoints import checkpoints

CELL = """
import sys
from vastnb_worker.checkpoint import CheckpointManager
with CheckpointManager(URL, keep_last=None) as ckpt:
    state = ckpt.load_latest()
    for step in range(1, 4):
        ckpt.save(step, extras={"seen": step}, metrics={"loss": 1 / step})
orchestrator = sorted(m for m in sys.modules if m.split(".")[0] in ("vastnb", "httpx", "pandas", "yaml"))
"""


def test_a_cell_on_a_worker_checkpoints_without_vastnb(tmp_path: Path) -> None:
    url = str(tmp_path / "store")
    session = Session(LocalTransport(tmp_path / "box"), on_output=lambda stream, text: None)
    try:
        result = session.run_cell(CELL, push={"URL": url}, pull=["state", "orchestrator"])
        assert dict(result) == {"state": None, "orchestrator": []}
    finally:
        session.restart_worker()
        session.close()
    frame = checkpoints(url)
    assert frame["step"].tolist() == [1, 2, 3] and frame["loss"].tolist() == [1.0, 0.5, 1 / 3]
