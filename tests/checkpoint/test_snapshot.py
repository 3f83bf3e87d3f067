"""Snapshots of a state tree keep what torch keeps on a state_dict besides its items."""

from __future__ import annotations

from collections import OrderedDict

from vastnb_worker.checkpoint.snapshot import BufferPool, take_snapshot


class StateDict(dict):  # a dict subclass (not an OrderedDict) that carries torch's layout versions
    pass


def test_layout_versions_survive_the_snapshot_of_any_dict_that_has_them() -> None:
    plain = StateDict(weight=[1.0, 2.0])
    plain._metadata = {"": {"version": 2}}  # type: ignore[attr-defined]  # as torch sets it
    ordered: OrderedDict[str, object] = OrderedDict(bias=0.5)
    ordered._metadata = {"": {"version": 1}}  # type: ignore[attr-defined]
    snap = take_snapshot({"a": plain, "b": ordered, "c": {"x": 1}}, BufferPool(), "model")
    assert snap.tree["a"] == {"weight": [1.0, 2.0]} and snap.tree["a"]._metadata == {"": {"version": 2}}
    assert snap.tree["b"]._metadata == {"": {"version": 1}}
    assert snap.tree["a"]._metadata is not plain._metadata  # copied, as everything in a snapshot
    assert not hasattr(snap.tree["c"], "_metadata")
