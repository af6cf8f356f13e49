"""Tests of embedkit.store: layout, read/write API, atomicity, locking, fingerprints."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time

import numpy as np
import pytest

from embedkit.errors import ModelMismatchError
from embedkit.store import (
    Store,
    StoreError,
    StoreLockedError,
    StoreMismatchError,
    file_sha256,
    settings_fingerprint,
    write_arrays,
)

RNG = np.random.default_rng(0)


def _manifest(dim: int = 8, **kw) -> dict:
    return {"model": "toy", "fingerprint": "f" * 64, "dim": dim, **kw}


def _add(st: Store, path: str, vec: np.ndarray, **kw) -> int:
    return st.add_embedded(path, vec, size=1, mtime=2.0, sha256=None, duration_s=3.0, samplerate=16000, **kw)


def test_write_arrays_roundtrip(tmp_path):
    vecs = RNG.standard_normal((7, 640)).astype(np.float32)
    paths = [f"/music/{i}.ogg" for i in range(7)]
    st = write_arrays(tmp_path / "s", paths, vecs)
    assert len(st) == 7
    ids = st.ids()
    assert ids.dtype == np.int64 and np.all(np.diff(ids) > 0)
    np.testing.assert_array_equal(st.vectors(), vecs)
    # rows follow the order of the ids asked for, repeats allowed
    pick = ids[[4, 0, 4]]
    np.testing.assert_array_equal(st.vectors(pick), vecs[[4, 0, 4]])
    assert st.get(int(ids[2])).path == paths[2]
    assert st.get(paths[5]).id == ids[5]
    assert st.get("/nope.ogg") is None
    assert [b["name"] for b in st.layout] == [f"pool{i}" for i in range(1, 6)]
    assert st.layout[4] == {"name": "pool5", "block": "pool5", "stat": "mean", "start": 512, "stop": 640}
    assert st.spec.dim == 640 and st.spec.layers is None and st.spec.fingerprint == st.fingerprint
    other = write_arrays(tmp_path / "s2", paths, vecs)
    assert len(st.store_id) == 32 and st.store_id != other.store_id  # same content, another store
    other.close()
    assert st.dim == 640 and st.manifest["model"] == "msd_vgg"
    assert st.fingerprint == settings_fingerprint("test", layers=None, aggregation="mean", excerpt_s=None)
    assert st.model_fingerprint == "test"
    with pytest.raises(StoreError, match="no embedded item with id 999"):
        st.vectors([999])
    st.close()


def test_shards_are_memory_mappable_raw_float32(tmp_path):
    vecs = RNG.standard_normal((5, 8)).astype(np.float32)
    with Store.create(tmp_path / "s", _manifest(shard_rows={"vec": 2, "patch": 4})) as st:
        for i in range(5):
            _add(st, f"{i}.wav", vecs[i])
    files = sorted((tmp_path / "s" / "shards").glob("vec-*.f32"))
    assert [f.name for f in files] == ["vec-00000.f32", "vec-00001.f32", "vec-00002.f32"]
    mm = np.concatenate([np.memmap(f, dtype="<f4", mode="r").reshape(-1, 8) for f in files])
    np.testing.assert_array_equal(mm, vecs)
    with Store.open(tmp_path / "s") as st:
        ids = st.ids()
        np.testing.assert_array_equal(st.vectors(ids[::-1]), vecs[::-1])
        got = np.concatenate([v for _, v in st.iter_vectors(batch_size=2)])
        np.testing.assert_array_equal(got, vecs)


def test_patches_and_tags_roundtrip(tmp_path):
    pv = [RNG.standard_normal((n, 4)).astype(np.float32) for n in (3, 1, 2)]
    tags = RNG.random((3, 5)).astype(np.float32)
    vecs = np.stack([p.mean(0) for p in pv])
    st = write_arrays(tmp_path / "s", ["a", "b", "c"], vecs, model="toy", patch=pv, tags=tags, tag_labels=list("vwxyz"))
    assert st.has_patches and st.has_tags and st.tag_labels == list("vwxyz")
    item_ids, starts, got = st.patch_vectors()
    ids = st.ids()
    np.testing.assert_array_equal(item_ids, np.repeat(ids, [3, 1, 2]))
    np.testing.assert_array_equal(starts, [0, 3, 6, 0, 0, 3])
    np.testing.assert_array_equal(got, np.concatenate(pv))
    item_ids, _, got = st.patch_vectors([ids[2], ids[0]])
    np.testing.assert_array_equal(got, np.concatenate([pv[2], pv[0]]))
    np.testing.assert_array_equal(st.tags([ids[1]]), tags[[1]])
    st.close()
    plain = write_arrays(tmp_path / "p", ["a"], vecs[:1], model="toy")
    assert not plain.has_patches and not plain.has_tags
    with pytest.raises(StoreError, match="--patches"):
        plain.patch_vectors()
    with pytest.raises(StoreError, match="--tags"):
        plain.tags()


def test_upsert_keeps_one_item_per_path_and_its_id(tmp_path):
    with Store.create(tmp_path / "s", _manifest()) as st:
        fid = st.add_failed("x.ogg", "x.ogg: not audio\nsecond line", size=3, mtime=1.0)
        item = st.get("x.ogg")
        assert item.status == "failed" and item.error == "x.ogg: not audio second line" and item.row is None
        v = np.arange(8, dtype=np.float32)
        assert _add(st, "x.ogg", v) == fid
        _add(st, "x.ogg", v + 1)
        assert len(st) == 1 and len(st.items()) == 1
        np.testing.assert_array_equal(st.vectors(), (v + 1)[None])
        assert st.counts() == {"ok": 1, "failed": 0, "missing": 0}


def test_validation_errors_name_the_file(tmp_path):
    with Store.create(tmp_path / "s", _manifest(dim=4)) as st:
        with pytest.raises(StoreError, match=r"bad\.wav: vector has dim 3, .* holds dim 4"):
            _add(st, "bad.wav", np.zeros(3))
        with pytest.raises(StoreError, match="nan.wav: vector has NaN"):
            _add(st, "nan.wav", np.array([0, np.nan, 0, 0]))
        assert len(st.items()) == 0
    with pytest.raises(StoreError, match="already exists"):
        Store.create(tmp_path / "s", _manifest())
    (tmp_path / "junk").mkdir()
    (tmp_path / "junk" / "file.txt").write_text("x")
    with pytest.raises(StoreError, match="not an empty folder"):
        Store.create(tmp_path / "junk", _manifest())
    with pytest.raises(StoreError, match="not an embedkit store"):
        Store.open(tmp_path / "junk")
    with pytest.raises(StoreError, match="no such folder"):
        Store.open(tmp_path / "absent")
    with Store.open(tmp_path / "s") as ro, pytest.raises(StoreError, match="read-only"):
        _add(ro, "a.wav", np.zeros(4))


def test_transaction_rollback_commits_nothing(tmp_path):
    with Store.create(tmp_path / "s", _manifest(dim=2)) as st:
        _add(st, "keep", np.ones(2))
        with pytest.raises(RuntimeError), st.transaction():
            _add(st, "a", np.zeros(2))
            _add(st, "b", np.zeros(2))
            raise RuntimeError("boom")
        assert [i.path for i in st.items()] == ["keep"]
        _add(st, "c", np.full(2, 7.0))
        np.testing.assert_array_equal(st.vectors(), [[1, 1], [7, 7]])


def test_uncommitted_bytes_ignored_by_readers_and_trimmed_by_writer(tmp_path):
    with Store.create(tmp_path / "s", _manifest(dim=4)) as st:
        _add(st, "a", np.ones(4))
    shard = tmp_path / "s" / "shards" / "vec-00000.f32"
    with open(shard, "ab") as f:  # what a writer killed after writing but before committing leaves
        f.write(np.full((3, 4), 9, np.float32).tobytes())
    with Store.open(tmp_path / "s") as ro:
        assert len(ro) == 1
        np.testing.assert_array_equal(ro.vectors(), np.ones((1, 4)))
    assert shard.stat().st_size == 4 * 16
    with Store.open(tmp_path / "s", mode="a") as st:
        assert shard.stat().st_size == 16
        _add(st, "b", np.full(4, 2.0))
        np.testing.assert_array_equal(st.vectors(), [[1] * 4, [2] * 4])


def test_damaged_shard_is_reported(tmp_path):
    with Store.create(tmp_path / "s", _manifest(dim=4)) as st:
        _add(st, "a", np.ones(4))
        _add(st, "b", np.ones(4))
    os.truncate(tmp_path / "s" / "shards" / "vec-00000.f32", 20)
    with pytest.raises(StoreError, match=r"vec-00000.f32 is 20 bytes, the item table needs 32 bytes"):
        Store.open(tmp_path / "s")


def test_fingerprint_mismatch_names_both(tmp_path):
    st = write_arrays(tmp_path / "s", ["a"], np.zeros((1, 640)), fingerprint="a" * 64)
    st.close()
    other = "b" * 64
    with pytest.raises(StoreMismatchError) as ei:
        Store.open(tmp_path / "s", model_fingerprint=other)
    assert "aaaaaaaaaaaaaaaa" in str(ei.value) and "bbbbbbbbbbbbbbbb" in str(ei.value)
    assert isinstance(ei.value, ModelMismatchError)
    mine = settings_fingerprint("a" * 64, layers=["pool5"], aggregation="mean", excerpt_s=None)
    with pytest.raises(StoreMismatchError, match="settings fingerprint") as ei:
        Store.open(tmp_path / "s", fingerprint=mine)
    assert mine[:16] in str(ei.value)
    with Store.open(tmp_path / "s", fingerprint=settings_fingerprint("a" * 64, layers=None, aggregation="mean", excerpt_s=None)):
        pass


def test_settings_fingerprint_depends_on_each_setting():
    base = dict(layers=None, aggregation="mean", excerpt_s=None)
    fps = {
        settings_fingerprint("m", **base),
        settings_fingerprint("n", **base),
        settings_fingerprint("m", **{**base, "layers": ["pool5"]}),
        settings_fingerprint("m", **{**base, "aggregation": "mean+std"}),
        settings_fingerprint("m", **{**base, "excerpt_s": 30}),
    }
    assert len(fps) == 5
    assert settings_fingerprint("m", **{**base, "excerpt_s": 30}) == settings_fingerprint("m", **{**base, "excerpt_s": 30.0})


def test_second_writer_fails_clearly_or_waits(tmp_path):
    st = Store.create(tmp_path / "s", _manifest(dim=2))
    with pytest.raises(StoreLockedError, match=rf"another process \(pid {os.getpid()}\); use --wait"):
        Store.open(tmp_path / "s", mode="a")
    # readers are never blocked
    with Store.open(tmp_path / "s") as ro:
        assert len(ro) == 0

    def release_later():
        time.sleep(0.5)
        _add(st, "first", np.ones(2))
        st.close()

    t = threading.Thread(target=release_later)
    t.start()
    with Store.open(tmp_path / "s", mode="a", wait=30) as st2:
        # the first writer finished before we got the lock: its item is there
        assert [i.path for i in st2.items()] == ["first"]
        _add(st2, "second", np.zeros(2))
    t.join()
    with Store.open(tmp_path / "s") as ro:
        assert [i.path for i in ro.items()] == ["first", "second"]


def test_mark_missing_and_delete(tmp_path):
    st = write_arrays(tmp_path / "s", ["a", "b", "c"], np.eye(3, 640))
    st.close()
    with Store.open(tmp_path / "s", mode="a") as st:
        assert st.mark_missing(["b"]) == 1
        assert st.mark_missing(["b"]) == 0
        assert len(st) == 2 and st.counts()["missing"] == 1
        np.testing.assert_array_equal(st.vectors(), np.eye(3, 640)[[0, 2]])
        assert st.delete(["c"]) == 1
        assert [i.path for i in st.items()] == ["a", "b"]


def test_alias_and_move_share_vector(tmp_path):
    with Store.create(tmp_path / "s", _manifest(dim=2)) as st:
        st.add_embedded("a", [1, 2], size=5, mtime=1.0, sha256="h", duration_s=4.0, samplerate=44100)
        src = st.find_by_hash("h")[0]
        st.add_alias("copy", src, size=5, mtime=9.0)
        st.move(src.id, "moved", size=5, mtime=3.0)
        assert st.get("a") is None
        moved = st.get("moved")
        assert moved.id == src.id and moved.mtime == 3.0 and moved.row == src.row
        np.testing.assert_array_equal(st.vectors(), [[1, 2], [1, 2]])
        assert {i.path for i in st.find_by_hash("h")} == {"moved", "copy"}


def test_file_sha256(tmp_path):
    import hashlib

    p = tmp_path / "f.bin"
    data = os.urandom(3 << 20)
    p.write_bytes(data)
    assert file_sha256(p) == hashlib.sha256(data).hexdigest()


_WRITER = r"""
import sys, numpy as np
from embedkit.store import Store
st = Store.open(sys.argv[1], mode="a")
i = 0
while True:
    with st.transaction():
        for _ in range(7):
            v = np.random.default_rng(i).standard_normal(64).astype(np.float32)
            st.add_embedded(f"f{i}", v, size=i, mtime=0.0, sha256=None, duration_s=1.0, samplerate=1,
                            patch_vectors=np.tile(v, (i % 3 + 1, 1)), patch_start_s=np.arange(i % 3 + 1) * 3.0)
            i += 1
    if i >= 21:
        print("ready", flush=True)
"""


def test_sigkill_during_writes_never_corrupts(tmp_path):
    Store.create(tmp_path / "s", _manifest(dim=64, patch_dim=64, shard_rows={"vec": 50, "patch": 70})).close()
    proc = subprocess.Popen([sys.executable, "-c", _WRITER, str(tmp_path / "s")], stdout=subprocess.PIPE)
    assert proc.stdout.readline().strip() == b"ready"
    time.sleep(0.3)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    for mode in ("r", "a"):
        with Store.open(tmp_path / "s", mode=mode) as st:
            items = st.items()
            assert len(items) >= 21 and len(items) % 7 == 0  # whole transactions only
            assert [it.path for it in items] == [f"f{i}" for i in range(len(items))]
            vecs = st.vectors()
            for it, v in zip(items, vecs):
                np.testing.assert_array_equal(v, np.random.default_rng(int(it.path[1:])).standard_normal(64).astype(np.float32))
            item_ids, _, pv = st.patch_vectors()
            np.testing.assert_array_equal(pv, vecs[np.searchsorted(st.ids(), item_ids)])
    meta = json.loads((tmp_path / "s" / "manifest.json").read_text())
    assert meta["dim"] == 64 and meta["format_version"] == 1


def test_resolve_and_is_current_one_rule(tmp_path):
    """Which item a key names now: id; stored path whose file is absent or unchanged (size+mtime, else
    content hash); any file with a stored item's content; else None."""
    a, b = tmp_path / "a.wav", tmp_path / "b.wav"
    a.write_bytes(b"A" * 100)
    b.write_bytes(b"B" * 100)
    with Store.create(tmp_path / "s", _manifest(dim=2)) as st:
        for p in (a, b):
            s = p.stat()
            st.add_embedded(str(p), np.ones(2), size=s.st_size, mtime=s.st_mtime, sha256=file_sha256(p),
                            duration_s=1.0, samplerate=16000)
        ia, ib = st.get(str(a)), st.get(str(b))
        assert st.resolve(ia.id) == ia and st.resolve(np.int64(ib.id)) == ib and st.resolve(999) is None
        assert st.resolve(str(a)) == ia and st.is_current(a)
        os.utime(a, (1, 1))  # touched: size+mtime differ, the content hash still matches
        assert st.is_current(a) and st.resolve(a) == ia
        b.write_bytes(b"C" * 100)  # changed: the stored vector is stale
        assert not st.is_current(b) and st.resolve(str(b)) is None and st.get(str(b)) == ib
        copy = tmp_path / "copy.wav"
        copy.write_bytes(b"A" * 100)  # a new file with a stored item's content
        assert st.resolve(copy) == ia and st.resolve(copy, by_content=False) is None
        b.unlink()  # absent file: its stored vector stands for it
        assert st.resolve(str(b)) == ib
        assert st.resolve(tmp_path / "nothing.wav") is None
