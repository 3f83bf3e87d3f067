"""Reading checkpoints from a store someone else can write (a shared or compromised bucket,
a folder): a forged manifest never makes the cache write outside its folder, manifests and
objects are read no further than a size known beforehand, and whatever is wrong with the
newest checkpoint, the one before it is loaded with a warning (asking for the broken one by
its step raises a CheckpointError that says why)."""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import re
import struct
import sys
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from vastnb import CheckpointManager, load_latest
from vastnb.errors import CheckpointCorruptError, CheckpointError
from vastnb_worker.checkpoint import CheckpointWarning, list_checkpoints, open_store
from vastnb_worker.checkpoint.cache import Cache
from vastnb_worker.checkpoint.manifest import MAX_MANIFEST_BYTES, CheckpointInfo

FORGED = "ckpt-000000000002-0000beef"  # the checkpoint the attacker plants, above the run's step 1
STATE = pickle.dumps({"step": 2, "rng": {}, "extras": {"planted": True}}, protocol=4)
MiB = 1 << 20


def save_step_1(url: str, **options: Any) -> None:
    """The run's own, sound checkpoint (plain data: no torch needed to read it)."""
    with CheckpointManager(url, keep_last=None, cache=False, **options) as ckpt:
        ckpt.save(1, extras={"step": 1})


def plant(
    url: str,
    parts: dict[str, tuple[bytes, str]],
    *,
    change: Callable[[dict[str, Any]], Any] | None = None,
    stored: dict[str, bytes] | None = None,
    **options: Any,
) -> dict[str, Any]:
    """Write checkpoint FORGED the way an attacker with write access would: ``parts``
    (name -> (bytes, codec)) with a manifest stating their true sizes and sha256, the
    manifest's body passed through ``change`` first; ``stored`` (key -> bytes) replaces what
    is stored under some keys after the manifest was made. ``change`` may return another
    body instead. Returns the manifest's body."""
    store = open_store(url, **options)
    body: dict[str, Any] = {
        "format": "vastnb-checkpoint",
        "version": 1,
        "id": FORGED,
        "step": 2,
        "time": 2e9,
        "metrics": {},
        "versions": {},
        "parts": [],
    }
    for name, (data, codec) in parts.items():
        key = f"{FORGED}/{name}{'.pt' if codec == 'torch' else '.pkl'}"
        store.put_bytes(key, data)
        body["parts"].append(
            {"name": name, "key": key, "size": len(data), "codec": codec, "sha256": hashlib.sha256(data).hexdigest()}
        )
    if change is not None:
        body = change(body) or body
    for key, data in (stored or {}).items():
        store.put_bytes(key, data)
    store.put_bytes(f"{FORGED}.json", json.dumps(body).encode())
    store.close()
    return body


def loads_step_1_with_a_warning(url: str, match: str, **options: Any) -> None:
    with pytest.warns(CheckpointWarning, match=match):
        state = load_latest(url, **options)
    assert state is not None and state.step == 1 and state.extras == {"step": 1}


def recording(load: Callable[[], Any]) -> tuple[Any, list[str]]:
    """What ``load()`` returns, and the CheckpointWarnings it gave: for tests that look at
    the damage an attack did before they look at what was said."""
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        result = load()
    return result, [str(w.message) for w in seen if issubclass(w.category, CheckpointWarning)]


def said(messages: list[str], pattern: str) -> bool:
    return any(re.search(pattern, message) for message in messages)


def bytes_read() -> int:
    """Bytes this process has read with read() and friends so far (Linux), whoever asked."""
    for line in Path("/proc/self/io").read_text().splitlines():
        if line.startswith("rchar:"):
            return int(line.split()[1])
    raise AssertionError("no rchar in /proc/self/io")


needs_proc_io = pytest.mark.skipif(not Path("/proc/self/io").exists(), reason="counts reads with /proc/self/io")


def outside(root: Path, cache: Path) -> dict[str, bytes]:
    """Every file under ``root`` but those in ``cache``, with its bytes."""
    return {str(p): p.read_bytes() for p in root.rglob("*") if p.is_file() and cache not in p.parents}


@pytest.fixture
def cache_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The folder the local checkpoint cache lives under, inside the test's own."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    return tmp_path / "xdg"


class _Counted:
    def __init__(self, body: Any, key: str, reads: dict[str, int]) -> None:
        self._body, self._key, self._reads = body, key, reads

    def read(self, *args: Any, **kwargs: Any) -> bytes:
        data = self._body.read(*args, **kwargs)
        self._reads[self._key] = self._reads.get(self._key, 0) + len(data)
        return data

    def __getattr__(self, name: str) -> Any:
        return getattr(self._body, name)


def read_of(reads: dict[str, int], key: str) -> int:
    """Bytes read of the object whose key ends with ``key`` (0: never asked for)."""
    return sum(n for k, n in reads.items() if k.endswith("/" + key))


@pytest.fixture
def body_reads(s3_client: Any) -> Iterator[dict[str, int]]:
    """Bytes read from the bodies of GetObject answers through ``s3_client``, by S3 key:
    what came over the network to vastnb, at the boundary."""
    reads: dict[str, int] = {}

    def note_key(params: dict[str, Any], context: dict[str, Any], **_: Any) -> None:
        context["test_key"] = params["Key"]

    def count(parsed: dict[str, Any], context: dict[str, Any], **_: Any) -> None:
        if "Body" in parsed:
            parsed["Body"] = _Counted(parsed["Body"], context["test_key"], reads)
            reads.setdefault(context["test_key"], 0)

    events = s3_client.meta.events
    events.register("before-parameter-build.s3.GetObject", note_key)
    events.register("after-call.s3.GetObject", count)
    yield reads
    events.unregister("before-parameter-build.s3.GetObject", note_key)
    events.unregister("after-call.s3.GetObject", count)


# 1. A forged manifest: every field is checked before anything uses it.


def _set(field: str, value: Any) -> Callable[[dict[str, Any]], None]:
    return lambda body: body.__setitem__(field, value)


def _set_part(field: str, value: Any) -> Callable[[dict[str, Any]], None]:
    return lambda body: body["parts"][0].__setitem__(field, value)


FORGERIES = {
    "id climbs out": _set("id", "../../../.."),
    "id with a path": _set("id", f"{FORGED}/../../x"),
    "id of another checkpoint": _set("id", "ckpt-000000000002-0000cafe"),
    "id with a newline": _set("id", FORGED + "\n"),
    "step not its id's": _set("step", 3),
    "step a float": _set("step", 2.0),
    "step a string": _set("step", "2"),
    "time a string": _set("time", "yesterday"),
    "time infinite": _set("time", 1e309),
    "metrics not a dict": _set("metrics", [1, 2]),
    "metric an object": _set("metrics", {"loss": {"nested": 1}}),
    "versions not strings": _set("versions", {"torch": 2}),
    "no version": lambda body: body.pop("version"),
    "not an object": lambda body: [body],
    "format not ours": _set("format", "other-checkpoint"),
    "parts empty": _set("parts", []),
    "parts an object": _set("parts", {"state": {}}),
    "too many parts": lambda body: body.__setitem__("parts", body["parts"] * 65),
    "a part twice": lambda body: body["parts"].append(dict(body["parts"][0])),
    "a part not an object": lambda body: body["parts"].append("state"),
    "name climbs out": _set_part("name", "../../victim"),
    "key climbs out": _set_part("key", "../../victim.pkl"),
    "key absolute": _set_part("key", "/etc/passwd"),
    "key in another checkpoint": _set_part("key", "ckpt-000000000001-00000000/state.pkl"),
    "key not its name": _set_part("key", f"{FORGED}/model.pkl"),
    "size negative": _set_part("size", -1),
    "size a string": _set_part("size", "98"),
    "size a bool": _set_part("size", True),
    "size past a petabyte": _set_part("size", 1 << 60),
    "sha256 short": _set_part("sha256", "ab" * 31),
    "sha256 uppercase": lambda body: body["parts"][0].__setitem__("sha256", body["parts"][0]["sha256"].upper()),
    "sha256 not hex": _set_part("sha256", "z" * 64),
    "codec not a name": _set_part("codec", "../pickle"),
    "total size wrong": _set("size", 1),
}


@pytest.mark.parametrize("forgery", list(FORGERIES))
def test_a_forged_manifest_is_refused_and_the_previous_checkpoint_loads(tmp_path: Path, forgery: str) -> None:
    url = str(tmp_path / "store")
    save_step_1(url)
    (tmp_path / "victim.pkl").write_bytes(b"precious")
    plant(url, {"state": (STATE, "pickle")}, change=FORGERIES[forgery])

    loads_step_1_with_a_warning(url, r"step 2: unreadable checkpoint manifest .*/ckpt-000000000002-0000beef\.json: ")
    with CheckpointManager(url) as ckpt, pytest.raises(CheckpointCorruptError, match="delete it if you do not know"):
        ckpt.load(2)
    assert (tmp_path / "victim.pkl").read_bytes() == b"precious"
    with pytest.warns(CheckpointWarning, match="unreadable checkpoint manifest"):
        assert [c.step for c in list_checkpoints(url)] == [1]


def test_a_manifest_id_never_makes_the_cache_write_outside_it(
    tmp_path: Path, cache_home: Path, bucket: str, s3_client: Any
) -> None:
    """The attack that overwrote a file in the user's home: the cache wrote each part to
    cache/<the manifest's id>/<its file name> before checking anything."""
    url = f"s3://{bucket}/runs/exp1"
    save_step_1(url, client=s3_client)
    (tmp_path / "state.pkl").write_bytes(b"precious")  # where cache/vastnb/checkpoints/<store>/../../../.. leads
    plant(url, {"state": (STATE, "pickle")}, change=_set("id", "../../../.."), client=s3_client)
    before = outside(tmp_path, cache_home)

    with CheckpointManager(url, client=s3_client) as ckpt:
        state, messages = recording(ckpt.load_latest)
        assert outside(tmp_path, cache_home) == before  # the damage first: state.pkl was overwritten
        assert said(messages, r"step 2: unreadable checkpoint manifest .*id '(\.\./){3}\.\.' is not a checkpoint name")
        assert state is not None and state.step == 1
        with pytest.raises(CheckpointCorruptError, match="is not a checkpoint name"):
            ckpt.load(2)
    assert outside(tmp_path, cache_home) == before


def test_a_cache_folder_that_links_elsewhere_is_never_written_through(
    tmp_path: Path, cache_home: Path, bucket: str, s3_client: Any
) -> None:
    """Containment is checked on the resolved path too: a checkpoint's folder in the cache
    that is a link to another place is refused, not written through."""
    url = f"s3://{bucket}/runs/exp1"
    save_step_1(url, client=s3_client)
    plant(url, {"state": (STATE, "pickle")}, client=s3_client)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    root = Path(Cache.for_store(url, None, keep=1).root)
    root.mkdir(parents=True)
    (root / FORGED).symlink_to(elsewhere)

    with CheckpointManager(url, client=s3_client) as ckpt:
        state, messages = recording(ckpt.load_latest)
    assert list(elsewhere.iterdir()) == []
    assert said(messages, r"step 2 .*refused to write .*in the checkpoint cache")
    assert state is not None and state.step == 1


def test_a_download_enters_the_cache_only_once_its_size_and_sha256_match(
    cache_home: Path, bucket: str, s3_client: Any
) -> None:
    url = f"s3://{bucket}/runs/exp1"
    save_step_1(url, client=s3_client)
    garbage = bytes(len(STATE))  # the stated size, not the stated bytes
    plant(url, {"state": (STATE, "pickle")}, stored={f"{FORGED}/state.pkl": garbage}, client=s3_client)
    folder = Path(Cache.for_store(url, None, keep=1).root) / FORGED

    with CheckpointManager(url, client=s3_client) as ckpt:
        with pytest.warns(CheckpointWarning, match=r"step 2 .*does not match its manifest"):
            state = ckpt.load_latest()
        assert state is not None and state.step == 1
        # (Looked at before close(), which clears the cache of all but what this run saved.)
        assert not folder.exists() or list(folder.iterdir()) == []  # nothing of it kept, not even a partial file
        with pytest.raises(CheckpointCorruptError, match="does not match its manifest"):
            ckpt.load(2)
        assert not folder.exists() or list(folder.iterdir()) == []


def test_a_manifest_states_codecs_it_may_name() -> None:
    """A codec this vastnb does not know is a manifest from a newer one, not corruption:
    refused before anything is downloaded, with the fix."""
    body = {
        "format": "vastnb-checkpoint",
        "version": 1,
        "id": FORGED,
        "step": 2,
        "time": 1.0,
        "parts": [
            {"name": "model", "key": f"{FORGED}/model.st", "size": 1, "sha256": "0" * 64, "codec": "safetensors"}
        ],
    }
    with pytest.raises(CheckpointError, match=r"newer vastnb .*codec 'safetensors'.*upgrade vastnb") as raised:
        CheckpointInfo.from_json(json.dumps(body).encode(), url="s3://b/run", name=f"{FORGED}.json")
    assert not isinstance(raised.value, CheckpointCorruptError) and raised.value.step == 2


def test_an_unknown_codec_falls_back_to_the_previous_checkpoint(tmp_path: Path) -> None:
    url = str(tmp_path / "store")
    save_step_1(url)
    plant(url, {"state": (STATE, "pickle")}, change=lambda body: body["parts"][0].update(codec="zstd-pickle"))
    loads_step_1_with_a_warning(url, r"step 2: checkpoint manifest .* was written by a newer vastnb")
    with CheckpointManager(url) as ckpt, pytest.raises(CheckpointError, match="upgrade vastnb"):
        ckpt.load(2)


def test_real_sizes_stay_within_the_limits() -> None:
    """A 100 GB object, and manifests of real runs, are far inside what is refused."""
    body = {
        "format": "vastnb-checkpoint",
        "version": 1,
        "id": FORGED,
        "step": 2,
        "time": 1.7e9,
        "size": 100 * 10**9,
        "metrics": {"loss": float("nan"), "note": "ok", "best": None, "done": True},
        "versions": {"python": "3.12.1"},
        "parts": [
            {"name": "model", "key": f"{FORGED}/model.pt", "size": 100 * 10**9, "sha256": "0" * 64, "codec": "torch"}
        ],
    }
    info = CheckpointInfo.from_json(json.dumps(body).encode(), url="s3://b/run", name=f"{FORGED}.json")
    assert info.size == 100 * 10**9 and info.step == 2
    assert MAX_MANIFEST_BYTES == 16 * MiB


# 2. Manifests are read up to a cap.


@needs_proc_io
def test_a_huge_manifest_is_refused_having_read_no_more_than_the_cap(tmp_path: Path) -> None:
    url = str(tmp_path / "store")
    save_step_1(url)
    load_latest(url)  # whatever a first load reads (imports), read now
    with open(Path(url) / f"{FORGED}.json", "wb") as file:
        file.truncate(64 * MiB)  # sparse: costs no disk

    before = bytes_read()
    state, messages = recording(lambda: load_latest(url))
    assert bytes_read() - before < MAX_MANIFEST_BYTES + 8 * MiB  # of 64 MiB
    assert said(
        messages,
        rf"step 2: checkpoint manifest .*{FORGED}\.json holds 67108864 bytes, and a manifest may "
        rf"hold {MAX_MANIFEST_BYTES} .*max_manifest_bytes=",
    )
    assert state is not None and state.step == 1


def test_the_manifest_cap_is_a_keyword_of_the_manager_and_the_loader(
    where: tuple[str, dict[str, Any]], body_reads: dict[str, int]
) -> None:
    url, options = where
    save_step_1(url, **options)
    padding = {"pad": "x" * (4 * MiB)}  # a manifest that is sound but for its size
    plant(url, {"state": (STATE, "pickle")}, change=_set("metrics", padding), **options)

    loads_step_1_with_a_warning(
        url, r"step 2: .*, and a manifest may hold 65536 ", max_manifest_bytes=64 << 10, **options
    )
    with CheckpointManager(url, max_manifest_bytes=64 << 10, **options) as ckpt:
        with pytest.warns(CheckpointWarning, match="a manifest may hold 65536 "):
            assert [c.step for c in ckpt.checkpoints()] == [1]
        with pytest.raises(CheckpointCorruptError, match="a manifest may hold 65536 "):
            ckpt.load(2)
        assert ckpt.load(1).step == 1
    if url.startswith("s3://"):  # the answer's length said enough: its body was left unread
        assert read_of(body_reads, f"{FORGED}.json") == 0
    state = load_latest(url, **options)  # and under the default cap, it is a checkpoint like any other
    assert state is not None and state.step == 2 and state.extras == {"planted": True}


# 3. Objects are read no further than the size their manifest states.


@needs_proc_io
def test_a_local_object_bigger_than_stated_is_not_read(tmp_path: Path) -> None:
    url = str(tmp_path / "store")
    save_step_1(url)
    load_latest(url)
    plant(url, {"state": (STATE, "pickle")})
    with open(Path(url) / FORGED / "state.pkl", "r+b") as file:
        file.truncate(1 << 30)  # 1 GiB, sparse

    before = bytes_read()
    state, messages = recording(lambda: load_latest(url))
    assert bytes_read() - before < 64 * MiB  # of 1 GiB
    assert said(
        messages,
        rf"step 2 .*{FORGED}/state\.pkl does not match its manifest: it holds 1073741824 bytes, "
        rf"the manifest states {len(STATE)}",
    )
    assert state is not None and state.step == 1
    with CheckpointManager(url) as ckpt, pytest.raises(CheckpointCorruptError, match="holds 1073741824 bytes"):
        ckpt.load(2)


@pytest.mark.parametrize("change", ["bigger", "smaller"])
def test_an_s3_object_of_another_size_than_stated_is_not_downloaded(
    cache_home: Path, bucket: str, s3_client: Any, body_reads: dict[str, int], change: str
) -> None:
    url = f"s3://{bucket}/runs/exp1"
    save_step_1(url, client=s3_client)
    stored = STATE + os.urandom(8 * MiB) if change == "bigger" else STATE[:-10]
    plant(url, {"state": (STATE, "pickle")}, stored={f"{FORGED}/state.pkl": stored}, client=s3_client)

    with CheckpointManager(url, client=s3_client) as ckpt:
        state, messages = recording(ckpt.load_latest)
    assert read_of(body_reads, f"{FORGED}/state.pkl") == 0  # its size was asked first: not one byte of it came
    assert said(
        messages,
        rf"step 2 .*state\.pkl does not match its manifest: it holds {len(stored)} bytes, the "
        rf"manifest states {len(STATE)}",
    )
    assert state is not None and state.step == 1


def test_an_s3_object_that_grows_during_the_download_is_cut_off_at_the_stated_size(
    cache_home: Path, bucket: str, s3_client: Any, body_reads: dict[str, int]
) -> None:
    """The object is replaced by a bigger one between the size check and the download
    (simulated: S3's answer to the size check is made to say the stated size): the file
    takes no byte past the stated size, and the download stops there."""
    url = f"s3://{bucket}/runs/exp1"
    save_step_1(url, client=s3_client)
    plant(url, {"state": (STATE, "pickle")}, stored={f"{FORGED}/state.pkl": STATE + bytes(32 * MiB)}, client=s3_client)

    def stated_size(params: dict[str, Any], context: dict[str, Any], **_: Any) -> None:
        context["test_forged"] = params["Key"].endswith(f"{FORGED}/state.pkl")

    def lie(parsed: dict[str, Any], context: dict[str, Any], **_: Any) -> None:
        if context.get("test_forged"):
            parsed["ContentLength"] = len(STATE)

    s3_client.meta.events.register("before-parameter-build.s3.HeadObject", stated_size)
    s3_client.meta.events.register("after-call.s3.HeadObject", lie)
    try:
        with CheckpointManager(url, client=s3_client, cache=False) as ckpt:
            state, messages = recording(ckpt.load_latest)
    finally:
        s3_client.meta.events.unregister("before-parameter-build.s3.HeadObject", stated_size)
        s3_client.meta.events.unregister("after-call.s3.HeadObject", lie)
    assert 0 < read_of(body_reads, f"{FORGED}/state.pkl") < 4 * MiB  # of 32 MiB
    assert said(messages, rf"step 2 .*does not match its manifest: it holds more than {len(STATE)} bytes")
    assert state is not None and state.step == 1


# 4. An object that matches its manifest but does not decode.


def _huge_bytes_pickle() -> bytes:
    """14 bytes that claim 4 EiB of bytes: MemoryError when unpickled, at once."""
    return b"\x80\x04\x8e" + struct.pack("<Q", 1 << 62) + b"abc"


UNDECODABLE = {
    "pickle garbage": {"state": (os.urandom(1000), "pickle")},
    "pickle claiming exabytes": {"state": (_huge_bytes_pickle(), "pickle")},
    "pickle cut short": {"state": (STATE[:-20], "pickle")},
    "torch garbage": {"model": (os.urandom(1000), "torch"), "state": (STATE, "pickle")},
    "state not a dict": {"state": (pickle.dumps([1, 2, 3]), "pickle")},
    "extras not a dict": {"state": (pickle.dumps({"step": 2, "extras": [1]}), "pickle")},
}


@pytest.mark.parametrize("payload", list(UNDECODABLE))
def test_an_object_that_matches_its_manifest_but_does_not_decode_falls_back(
    where: tuple[str, dict[str, Any]], payload: str
) -> None:
    url, options = where
    save_step_1(url, **options)
    plant(url, UNDECODABLE[payload], **options)

    loads_step_1_with_a_warning(
        url,
        r"skipping the checkpoint of step 2 .*(not .* data that vastnb can read|"
        r"is not what vastnb saves)",
        **options,
    )
    with CheckpointManager(url, cache=False, **options) as ckpt:
        with pytest.raises(CheckpointCorruptError, match="something other than vastnb wrote it") as raised:
            ckpt.load(2)
    assert raised.value.step == 2


def test_a_module_missing_here_is_raised_not_taken_for_corruption(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The other side of falling back: what is wrong with this machine would be wrong for
    every older checkpoint too, and going back through all of them would end in a fresh
    start. It is raised, with the fix."""
    import numpy as np

    url = str(tmp_path / "store")
    with CheckpointManager(url, keep_last=None) as ckpt:
        for step in (1, 2):
            ckpt.save(step, extras={"weights": np.arange(3.0)})
    for name in [m for m in sys.modules if m == "numpy" or m.startswith("numpy.")]:
        monkeypatch.setitem(sys.modules, name, None)  # numpy cannot be imported now
    with warnings.catch_warnings():
        warnings.simplefilter("error", CheckpointWarning)  # nothing is skipped
        with pytest.raises(CheckpointError, match=r"state\.pkl needs the module numpy.*install") as raised:
            load_latest(url)
    assert raised.value.step == 2 and not isinstance(raised.value, CheckpointCorruptError)
