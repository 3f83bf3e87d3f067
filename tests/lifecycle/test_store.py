"""The state store (``vastnb.lifecycle.store.StateStore``) through its public API: what it keeps
about instances and sessions, that a state changes only as the state machine allows, and
that it stays right with several processes at once. Migrations: test_migrations.py."""

from __future__ import annotations

import os
import sqlite3
import stat
import subprocess
import sys
import textwrap
import time
from dataclasses import replace
from pathlib import Path

import pytest

from vastnb.errors import LifecycleError
from vastnb.lifecycle.rental import Rental
from vastnb.lifecycle.states import InstanceState
from vastnb.lifecycle.store import SessionInfo, StateStore

URL = "http://sim.vastnb.invalid"
OTHER_URL = "https://console.vast.ai"
KEY = "ik_5ecret_per_instance_key_0123456789abcdef"


def stored(
    instance_id: int = 101,
    *,
    name: str = "exp1",
    url: str = URL,
    session: str = "s1",
    created_at: float | None = None,
    **changes: object,
) -> Rental:
    """A plausible row, as launch writes it right after the create call."""
    row = Rental(
        url=url,
        id=instance_id,
        name=name,
        profile="dev-test",
        label=f"vastnb:{name}:{session}",
        session=session,
        keep=False,
        offer_id=5001,
        machine_id=77,
        gpu_name="RTX 4090",
        num_gpus=1,
        dph_total=0.205,
        bid=None,
        max_duration_hours=2.0,
        instance_key=KEY,
        state=InstanceState.CREATED,
        created_at=time.time() if created_at is None else created_at,
        destroyed_at=None,
    )
    return replace(row, **changes)  # type: ignore[arg-type]


S = InstanceState


def destroy(store: StateStore, instance_id: int, note: str = "destroyed") -> Rental | None:
    return store.transition(URL, instance_id, S.DESTROYED, note)


@pytest.fixture
def store(tmp_path: Path) -> StateStore:
    return StateStore(tmp_path / "state" / "state.db")


# -- instances ------------------------------------------------------------------------------


def test_record_then_get_gives_the_same_instance_back(store: StateStore) -> None:
    row = stored(keep=True, bid=0.15)
    store.record(row)
    got = store.get(URL, 101)
    assert got == row
    assert got is not None and got.keep is True and got.live


def test_get_and_find_of_an_unknown_instance_are_none(store: StateStore) -> None:
    store.record(stored())
    assert store.get(URL, 999) is None
    assert store.find(URL, "nosuch") is None
    assert store.get(OTHER_URL, 101) is None  # rows belong to one marketplace
    assert store.find(OTHER_URL, "exp1") is None


def test_a_second_store_on_the_same_file_sees_the_rows(store: StateStore) -> None:
    """A new kernel (a new StateStore) finds what an earlier one recorded."""
    store.record(stored())
    again = StateStore(store.path)
    assert again.get(URL, 101) == store.get(URL, 101)


def test_find_prefers_the_live_instance_of_a_name(store: StateStore) -> None:
    t = time.time()
    store.record(stored(1, name="exp1", created_at=t - 30))
    destroy(store, 1)
    store.record(stored(2, name="exp1", created_at=t - 20))
    store.record(stored(3, name="exp1", created_at=t - 10))
    destroy(store, 3)  # the newest is gone: the older live one is the one meant
    found = store.find(URL, "exp1")
    assert found is not None and found.id == 2


def test_find_gives_the_latest_when_all_of_a_name_are_destroyed(store: StateStore) -> None:
    t = time.time()
    for n in (1, 2, 3):
        store.record(stored(n, name="exp1", created_at=t + n))
        destroy(store, n)
    found = store.find(URL, "exp1")
    assert found is not None and found.id == 3 and not found.live


def test_update_changes_columns_and_keeps_the_others(store: StateStore) -> None:
    row = stored()
    store.record(row)
    store.update(URL, 101, keep=True, session="s2")
    assert store.get(URL, 101) == replace(row, keep=True, session="s2")


def test_update_refuses_the_state_and_unknown_columns_and_changes_nothing(store: StateStore) -> None:
    store.record(stored())
    before = store.get(URL, 101)
    with pytest.raises(ValueError, match="colour"):
        store.update(URL, 101, keep=True, colour="red")
    with pytest.raises(ValueError, match="transition"):
        store.update(URL, 101, state="running")  # states change by transition() only
    with pytest.raises(ValueError):
        store.update(URL, 101, **{"state = 'running' --": 1})  # not a way into the SQL either
    assert store.get(URL, 101) == before
    assert [h[1] for h in store.history(URL, 101)] == ["created"]


def test_history_records_each_state_with_price_and_note(store: StateStore) -> None:
    store.record(stored(dph_total=0.2))
    store.transition(URL, 101, S.LOADING)
    store.transition(URL, 101, S.RUNNING, note="worker ready")
    store.update(URL, 101, keep=True)  # no new state, no note: not history
    store.update(URL, 101, note="attached by session s9")  # a note alone is history
    destroy(store, 101)
    history = store.history(URL, 101)
    assert [(state, price, note) for _, state, price, note in history] == [
        ("created", 0.2, "created"),
        ("loading", 0.2, None),
        ("running", 0.2, "worker ready"),
        ("running", 0.2, "attached by session s9"),
        ("destroyed", None, "destroyed"),
    ]
    times = [at for at, *_ in history]
    assert times == sorted(times)
    assert store.history(URL, 999) == []


def test_destroyed_is_idempotent_and_the_first_time_counts(store: StateStore) -> None:
    store.record(stored())
    destroy(store, 101)
    first = store.get(URL, 101)
    assert first is not None and not first.live and not first.billing and first.destroyed_at is not None
    assert first.state is S.DESTROYED
    time.sleep(0.01)
    destroy(store, 101, note="already gone")
    again = store.get(URL, 101)
    assert again is not None and again.destroyed_at == first.destroyed_at
    assert store.history(URL, 101)[-1][1:] == ("destroyed", None, "already gone")


def test_a_transition_the_state_machine_forbids_is_refused_and_changes_nothing(store: StateStore) -> None:
    store.record(stored())
    destroy(store, 101)
    with pytest.raises(LifecycleError, match="cannot go from destroyed to running"):
        store.transition(URL, 101, S.RUNNING)  # destroyed is final
    store.record(stored(102))
    store.transition(URL, 102, S.RUNNING)
    store.transition(URL, 102, S.STOPPED)
    with pytest.raises(LifecycleError, match="from stopped: starting, destroyed"):
        store.transition(URL, 102, S.LOADING)  # a stopped box is started first
    got = store.get(URL, 102)
    assert got is not None and got.state is S.STOPPED and got.billing  # its disk still bills
    assert [h[1] for h in store.history(URL, 102)] == ["created", "running", "stopped"]
    assert store.transition(URL, 999, S.RUNNING) is None  # not ours: nothing to move


def test_instances_lists_live_ones_by_default_oldest_first(store: StateStore) -> None:
    t = time.time()
    store.record(stored(3, name="c", created_at=t - 1))
    store.record(stored(1, name="a", created_at=t - 3))
    store.record(stored(2, name="b", created_at=t - 2))
    store.record(stored(4, name="other", url=OTHER_URL, created_at=t))
    destroy(store, 2)
    assert [i.id for i in store.instances(URL)] == [1, 3]
    assert [i.id for i in store.instances(URL, live=True)] == [1, 3]
    assert [i.id for i in store.instances(URL, live=False)] == [1, 2, 3]
    assert [i.id for i in store.instances(OTHER_URL)] == [4]
    assert store.instances("http://nowhere.invalid", live=False) == []


def test_the_instance_key_stays_out_of_reprs(store: StateStore) -> None:
    store.record(stored())
    got = store.get(URL, 101)
    assert got is not None and got.instance_key == KEY  # kept, for the box's watchdog
    for text in (repr(got), str(got), f"{got}", repr([got]), repr({"x": got}), repr(store.instances(URL))):
        assert KEY not in text
        assert "ik_5ecret" not in text
    assert "exp1" in repr(got) and "101" in repr(got)


# -- the file -------------------------------------------------------------------------------


def test_the_database_is_in_wal_mode(store: StateStore) -> None:
    store.record(stored())
    db = sqlite3.connect(store.path)
    try:
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    finally:
        db.close()


def test_the_database_and_its_wal_are_readable_by_the_user_only(tmp_path: Path) -> None:
    old = os.umask(0o022)  # a usual umask: new files would be world-readable
    try:
        store = StateStore(tmp_path / "state.db")
        assert stat.S_IMODE(store.path.stat().st_mode) == 0o600
        # A reader holding the file open keeps the WAL (where fresh writes, keys
        # included, live until a checkpoint) on disk.
        reader = sqlite3.connect(store.path)
        try:
            reader.execute("SELECT count(*) FROM instances").fetchone()
            store.record(stored())
            wal = Path(f"{store.path}-wal")
            assert wal.exists()
            for path in (store.path, wal, Path(f"{store.path}-shm")):
                assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
        finally:
            reader.close()
    finally:
        os.umask(old)


def test_an_existing_world_readable_file_is_made_private(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    StateStore(path)
    path.chmod(0o644)
    StateStore(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


# -- sessions -------------------------------------------------------------------------------


def test_a_new_session_is_this_process_and_alive(store: StateStore) -> None:
    info = store.new_session()
    assert isinstance(info, SessionInfo)
    assert info.pid == os.getpid() and info.ended_at is None
    assert info.alive
    assert store.session(info.id) == info
    assert store.new_session().id != info.id  # each Client's fleet is its own session


def test_a_session_is_not_alive_once_ended(store: StateStore) -> None:
    info = store.new_session()
    store.end_session(info.id)
    ended = store.session(info.id)
    assert ended is not None and ended.ended_at is not None
    assert not ended.alive
    assert info.alive  # the object read earlier is a snapshot; the store has the truth


def test_an_unknown_session_is_none(store: StateStore) -> None:
    assert store.session("nosuch") is None


REGISTER = """
    import sys
    from pathlib import Path
    from vastnb.lifecycle.store import StateStore
    print(StateStore(Path(sys.argv[1])).new_session().id, flush=True)
"""


def test_a_session_of_an_exited_process_is_not_alive(store: StateStore, tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(REGISTER), str(store.path)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    info = store.session(done.stdout.strip())
    assert info is not None and info.pid != os.getpid() and info.ended_at is None
    assert not info.alive


def test_a_session_of_an_exited_but_unreaped_process_is_not_alive(store: StateStore, tmp_path: Path) -> None:
    """A process that has exited but that its parent has not waited for yet (a zombie)
    runs nothing any more: its instances are orphans. Under a parent that never reaps
    (some containers' init), that state lasts for good."""
    proc = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(REGISTER), str(store.path)],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        session = proc.stdout.readline().strip()
        deadline = time.monotonic() + 60
        while Path(f"/proc/{proc.pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z":
            assert time.monotonic() < deadline, "the subprocess did not exit"
            time.sleep(0.05)
        info = store.session(session)
        assert info is not None and info.pid == proc.pid
        assert not info.alive
    finally:
        proc.wait(timeout=60)
    assert not store.session(session).alive  # type: ignore[union-attr]


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs /proc")
def test_a_running_subprocess_session_is_alive_until_it_exits(store: StateStore, tmp_path: Path) -> None:
    code = REGISTER + "    sys.stdin.read()\n"
    proc = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(code), str(store.path)],
        cwd=tmp_path,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None and proc.stdin is not None
        session = proc.stdout.readline().strip()
        assert store.session(session).alive  # type: ignore[union-attr]
    finally:
        proc.stdin.close()  # type: ignore[union-attr]
        proc.wait(timeout=60)
    assert not store.session(session).alive  # type: ignore[union-attr]


# -- several processes ----------------------------------------------------------------------

WRITER = """
    import sys, time
    from pathlib import Path
    from vastnb.lifecycle.rental import Rental
    from vastnb.lifecycle.states import InstanceState
    from vastnb.lifecycle.store import StateStore
    path, worker, start, count = Path(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3]), int(sys.argv[4])
    while time.time() < start:  # all together, on a database none of them has made yet
        time.sleep(0.001)
    store = StateStore(path)
    session = store.new_session().id
    for n in range(count):
        iid = worker * 1000 + n
        store.record(Rental(
            url="http://sim.vastnb.invalid", id=iid, name=f"w{worker}-{n}", profile="dev-test",
            label=f"vastnb:w{worker}-{n}:{session}", session=session, keep=False, offer_id=None,
            machine_id=None, gpu_name=None, num_gpus=None, dph_total=0.1, bid=None,
            max_duration_hours=None, instance_key=None, state=InstanceState.CREATED, created_at=time.time(),
            destroyed_at=None))
        store.transition("http://sim.vastnb.invalid", iid, InstanceState.RUNNING)
        if n % 5 == 0:
            store.transition("http://sim.vastnb.invalid", iid, InstanceState.DESTROYED, "destroyed")
        store.instances("http://sim.vastnb.invalid")  # readers in the mix
    store.end_session(session)
"""


def test_several_processes_writing_at_once_lose_nothing(tmp_path: Path) -> None:
    path = tmp_path / "shared" / "state.db"
    workers, count = 4, 50
    start = time.time() + 2.0  # after every interpreter has started
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", textwrap.dedent(WRITER), str(path), str(w), str(start), str(count)],
            cwd=tmp_path,
            stderr=subprocess.PIPE,
            text=True,
        )
        for w in range(workers)
    ]
    errors = [(p.wait(timeout=300), p.stderr.read()) for p in procs]  # type: ignore[union-attr]
    assert all(rc == 0 for rc, _ in errors), errors
    store = StateStore(path)
    rows = store.instances(URL, live=False)
    assert sorted(r.id for r in rows) == sorted(w * 1000 + n for w in range(workers) for n in range(count))
    assert len(store.instances(URL)) == workers * count * 4 // 5
    for row in rows:
        states = [h[1] for h in store.history(URL, row.id)]
        gone = row.id % 1000 % 5 == 0
        assert states == (["created", "running", "destroyed"] if gone else ["created", "running"]), row


OPENER = """
    import sys, time
    from pathlib import Path
    from vastnb.lifecycle.store import StateStore
    folder, start, rounds, step = Path(sys.argv[1]), float(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])
    for k in range(rounds):
        while time.time() < start + k * step:  # spin: all of them at the same instant
            pass
        StateStore(folder / f"round{k}" / "state.db")  # a database nobody has made yet
"""


def test_several_processes_opening_a_new_database_at_once(tmp_path: Path) -> None:
    """Kernels started together on a fresh machine all create the store at the same
    moment: every one of them gets it (none fails with "database is locked")."""
    processes, rounds, step = 4, 80, 0.025
    start = time.time() + 2.0  # after every interpreter has started
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                "-c",
                textwrap.dedent(OPENER),
                str(tmp_path / "fresh"),
                str(start),
                str(rounds),
                str(step),
            ],
            cwd=tmp_path,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(processes)
    ]
    results = [(p.wait(timeout=300), p.stderr.read()) for p in procs]  # type: ignore[union-attr]
    assert [rc for rc, _ in results] == [0] * processes, [err for rc, err in results if rc]
    for k in range(rounds):
        db = sqlite3.connect(tmp_path / "fresh" / f"round{k}" / "state.db")
        try:
            assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
            assert db.execute("SELECT count(*) FROM instances").fetchone()[0] == 0
        finally:
            db.close()
