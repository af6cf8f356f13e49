"""Issue 9, store side: checksums, verify/repair, validation before any trim, one-line errors for
damaged files, full disks, read-only places, bad option values and non-finite results."""
from __future__ import annotations

import errno
import json
import os
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from _fake_embedder import FakeEmbedder
from clirun import run
from embedkit.collection import embed_into_store
from embedkit.errors import EmbedkitError
from embedkit.store import Store, StoreCorruptError, StoreError
from embedkit.store.verify import verify


def _wav(path: Path, seconds: float, seed: int) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, 0.1 * np.random.default_rng(seed).standard_normal(int(seconds * 16000)).astype(np.float32), 16000)
    return path


@pytest.fixture()
def made(tmp_path):
    """A store of 6 fake-embedded files (with patches), and the folder they came from."""
    lib = tmp_path / "lib"
    for i in range(6):
        _wav(lib / f"s{i}.wav", 3.5 + i, seed=i)
    embed_into_store([lib], tmp_path / "st", embedder=FakeEmbedder(), patches=True, progress=False, commit_every=2)
    return lib, tmp_path / "st"


def _vectors(store: Path) -> dict[str, np.ndarray]:
    with Store.open(store) as st:
        ids = st.ids()
        return {st.get(int(i)).path: v for i, v in zip(ids, st.vectors(ids))}


def _shard_sizes(store: Path) -> dict[str, int]:
    return {p.name: p.stat().st_size for p in sorted((store / "shards").iterdir())}


def _edit_manifest(store: Path, **changes) -> None:
    m = json.loads((store / "manifest.json").read_text())
    m.update(changes)
    (store / "manifest.json").write_text(json.dumps(m))


def _embed_fake(monkeypatch, capsys, *args):
    monkeypatch.setattr("embedkit.collection._load", lambda *a, **k: FakeEmbedder())
    return run(capsys, "embed", *args)


def _one_line_error(rc: int, err: str, *fragments: str) -> None:
    lines = [x for x in err.splitlines() if x.strip()]
    assert rc == 1 and len(lines) == 1 and "Traceback" not in err, err
    for f in fragments:
        assert f in lines[0], (f, lines[0])


# ---- nothing destructive before validation (issue 9, reproduced case 2) --------------------------------


@pytest.mark.parametrize("edit", ["dim", "patch_dim", "n_rows", "n_patch_rows"])
def test_rerun_after_metadata_edit_refuses_and_trims_nothing(made, monkeypatch, capsys, edit):
    lib, store = made
    before, sizes = _vectors(store), _shard_sizes(store)
    if edit == "dim":
        _edit_manifest(store, dim=8)  # the bug report: "dim": 640 -> 240
    elif edit == "patch_dim":
        _edit_manifest(store, patch_dim=4)
    else:
        with sqlite3.connect(store / "items.sqlite") as c:
            c.execute("UPDATE meta SET value = value - 2 WHERE key = ?", (edit,))
    _wav(lib / "new.wav", 4.0, seed=99)  # work to do: the writer would trim, then append
    rc, out, err = _embed_fake(monkeypatch, capsys, str(lib), "--store", str(store))
    wrong = "manifest.json" if edit in ("dim", "patch_dim") else "items.sqlite"
    _one_line_error(rc, err, wrong, "embedkit store verify")
    assert _shard_sizes(store) == sizes  # nothing truncated
    if edit.startswith("n_"):  # a lowered row count is repaired from the checksums and the items
        rep = verify(store, repair=True)
        assert rep.ok and any(p.repaired for p in rep.problems)
        assert {k: v.tolist() for k, v in _vectors(store).items()} == {k: v.tolist() for k, v in before.items()}


def test_readers_refuse_a_contradictory_manifest(made, capsys):
    _, store = made
    _edit_manifest(store, dim=240)
    for cmd in (["store", "info", str(store)], ["store", "export", str(store), "--format", "npz", "-o",
                                                  str(store.parent / "x.npz")]):
        rc, out, err = run(capsys, *cmd)
        _one_line_error(rc, err, "manifest.json", "'dim' says 240")
    assert not (store.parent / "x.npz").exists()


@pytest.mark.parametrize("changes,fragment", [
    ({"dim": "20"}, "'dim' must be"), ({"layers": 5}, "'layers' must be"), ({"n_tags": "x"}, "'n_tags'"),
    ({"excerpt_s": -1}, "excerpt"), ({"shard_rows": {"vec": 0, "patch": 1}}, "'shard_rows'"),
    ({"settings_fingerprint": "0" * 64}, "does not match the settings"),
])
def test_manifest_with_wrong_types_is_one_line(made, capsys, changes, fragment):
    _, store = made
    _edit_manifest(store, **changes)
    rc, _, err = run(capsys, "store", "info", str(store))
    _one_line_error(rc, err, "manifest.json", fragment)


def test_manifest_damaged_or_deleted_is_restored_from_its_copy(made, capsys):
    _, store = made
    good = (store / "manifest.json").read_text()
    (store / "manifest.json").write_text('{"model": "msd_vgg", "dim": ')
    rc, _, err = run(capsys, "store", "list", str(store))
    _one_line_error(rc, err, "manifest.json", "not valid JSON", "--repair")
    rc, out, err = run(capsys, "store", "verify", str(store))
    assert rc == 1 and "restore it from the copy" in out
    rc, out, err = run(capsys, "store", "verify", str(store), "--repair")
    assert rc == 0 and "[repaired]" in out and json.loads((store / "manifest.json").read_text()) == json.loads(good)
    (store / "manifest.json").unlink()
    before = _shard_sizes(store)
    rc, _, err = run(capsys, "store", "info", str(store))
    _one_line_error(rc, err, "manifest.json: missing", "--repair")
    with pytest.raises(StoreCorruptError, match="holds 6 items"):  # embed never overwrites the orphaned items
        embed_into_store([store.parent / "lib"], store, embedder=FakeEmbedder(), progress=False)
    assert _shard_sizes(store) == before
    assert verify(store, repair=True).ok and (store / "manifest.json").exists()


# ---- the item table ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("damage", ["deleted", "garbage", "truncated"])
def test_damaged_items_db_is_one_line_everywhere_and_never_recreated(made, monkeypatch, capsys, damage):
    lib, store = made
    db = store / "items.sqlite"
    for extra in ("items.sqlite-wal", "items.sqlite-shm"):
        (store / extra).unlink(missing_ok=True)
    if damage == "deleted":
        db.unlink()
    elif damage == "garbage":
        db.write_bytes(b"this is not a database" * 100)
    else:
        data = db.read_bytes()
        db.write_bytes(data[:100])
    for cmd in (["store", "info", str(store)], ["store", "list", str(store)],
                ["store", "export", str(store), "--format", "csv", "-o", "-"]):
        rc, _, err = run(capsys, *cmd)
        _one_line_error(rc, err, "items.sqlite")
    rc, _, err = _embed_fake(monkeypatch, capsys, str(lib), "--store", str(store))
    _one_line_error(rc, err, "items.sqlite", "new store")
    assert (damage == "deleted") == (not db.exists())  # embed did not create an empty database
    rep = verify(store)
    assert not rep.ok and "items.sqlite" in rep.problems[0].file


# ---- checksums -----------------------------------------------------------------------------------------------


def _flip(path: Path, offset: int) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x40
    path.write_bytes(bytes(data))


def test_flipped_byte_in_a_shard_is_caught_then_repaired_from_audio(made, capsys):
    lib, store = made
    before = _vectors(store)
    _flip(store / "shards" / "vec-00000.f32", 5 * 20 * 4 + 3)  # row 5 of dim-20 float32 vectors
    with Store.open(store) as st:
        ok_first = st.vectors(st.ids()[:2])  # rows in intact segments still read
        assert ok_first.shape == (2, 20)
        with pytest.raises(StoreCorruptError, match=r"vec-00000.f32: rows 4..5 fail their checksum .*--repair"):
            st.vectors()
    rc, _, err = run(capsys, "store", "export", str(store), "--format", "npz", "-o", str(store.parent / "e.npz"))
    _one_line_error(rc, err, "vec-00000.f32", "checksum")
    rc, out, _ = run(capsys, "store", "verify", str(store))
    assert rc == 1 and "rows 4..5 fail their checksum; 2 item(s) use them" in out
    rep = verify(store, repair=True, embedder=FakeEmbedder())
    assert rep.ok and rep.reembedded == 2 and rep.marked_failed == 0
    after = _vectors(store)
    assert after.keys() == before.keys() and all(np.array_equal(after[k], before[k]) for k in before)
    rep = verify(store)
    assert rep.ok and any("no item uses them" in n for n in rep.notes)


def test_damage_whose_file_is_gone_marks_the_item_failed(made):
    lib, store = made
    with Store.open(store) as st:
        item = st.get(st.ids()[0])
    _flip(store / "shards" / "pvec-00000.f32", 10)  # patch vectors of the first items
    Path(item.path).unlink()
    rep = verify(store, repair=True, embedder=FakeEmbedder())
    assert rep.ok and rep.marked_failed >= 1
    with Store.open(store) as st:
        assert st.get(item.id).status == "failed" and "damaged" in st.get(item.id).error
        st.patch_vectors()  # every item still referenced reads cleanly


def test_checksums_are_per_commit_and_written_while_appending(made):
    _, store = made
    with sqlite3.connect(store / "items.sqlite") as c:
        segs = c.execute("SELECT kind, start, stop FROM segments WHERE kind = 'vec' ORDER BY start").fetchall()
    assert [(a, b) for _, a, b in segs] == [(0, 2), (2, 4), (4, 6)]  # commit_every=2


def test_store_of_release_0_1_still_opens_and_gains_checksums(made, tmp_path):
    """A store written before checksums existed (no segments table) reads as before; new rows are checksummed."""
    lib, store = made
    with sqlite3.connect(store / "items.sqlite") as c:
        c.execute("DROP TABLE segments")
        c.execute("DROP TABLE sidecar")
    before = _vectors(store)
    with Store.open(store) as st:
        assert st.info()["unchecked_rows"] == 6
    assert _vectors(store).keys() == before.keys()
    _wav(lib / "new.wav", 4.0, seed=7)
    embed_into_store([lib], store, embedder=FakeEmbedder(), progress=False)
    rep = verify(store)
    assert rep.ok and rep.unchecked_rows == 6 and rep.checked_rows >= 1


# ---- locks, disks and permissions ------------------------------------------------------------------------


def test_lock_replaced_by_a_folder(made, monkeypatch, capsys):
    lib, store = made
    (store / "lock").unlink(missing_ok=True)
    (store / "lock").mkdir()
    rc, _, err = _embed_fake(monkeypatch, capsys, str(lib), "--store", str(store))
    _one_line_error(rc, err, "lock", "is a folder", "rmdir")


def test_disk_full_while_appending_keeps_the_store_and_leaves_no_files(made, monkeypatch):
    lib, store = made
    before = _vectors(store)
    files_before = sorted(p.name for p in store.rglob("*"))
    import embedkit.store.shards as shards

    def full(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(shards.os, "fsync", full)
    for i in range(3):
        _wav(lib / f"n{i}.wav", 3.5, seed=50 + i)
    with pytest.raises(StoreError) as ei:
        embed_into_store([lib], store, embedder=FakeEmbedder(), progress=False)
    msg = str(ei.value)
    assert "no space left on device" in msg and "free some disk space" in msg and "\n" not in msg
    monkeypatch.undo()
    assert sorted(p.name for p in store.rglob("*") if not p.name.startswith("items.sqlite-")) == \
        [n for n in files_before if not n.startswith("items.sqlite-")]
    assert _vectors(store).keys() == before.keys()
    s = embed_into_store([lib], store, embedder=FakeEmbedder(), progress=False)  # a rerun resumes
    assert s["embedded"] == 3 and verify(store).ok


def test_export_to_a_full_disk_leaves_no_temporary_file(made, monkeypatch, capsys):
    _, store = made
    out = store.parent / "out"
    out.mkdir()
    import embedkit.sidecar as sc

    def full(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(sc.os, "fsync", full)
    for fmt in ("npz", "csv"):
        rc, _, err = run(capsys, "store", "export", str(store), "--format", fmt, "-o", str(out / f"v.{fmt}"))
        _one_line_error(rc, err, str(out / f"v.{fmt}"), "no space left on device")
    assert list(out.iterdir()) == []


def _as_unprivileged() -> list[str]:
    """Command prefix under which permission bits apply (as root: drop CAP_DAC_* with setpriv), or skip."""
    if os.geteuid() != 0:
        return []
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        pytest.skip("running as root (permission bits do not apply) and setpriv is not installed")
    prefix = [setpriv, "--bounding-set=-dac_override,-dac_read_search"]
    if subprocess.run([*prefix, "true"], capture_output=True).returncode != 0:
        pytest.skip("running as root and cannot drop CAP_DAC_OVERRIDE here")
    return prefix


def _chmod_tree(root: Path, writable: bool) -> None:
    for p in [root, *root.rglob("*")]:
        if p.is_dir():
            p.chmod(0o755 if writable else 0o555)
        else:
            p.chmod(0o644 if writable else 0o444)


def test_read_only_store_and_output_folder_for_real(made, tmp_path):
    """A store and an output folder without write permission (real permission bits, not a simulation)."""
    prefix = _as_unprivileged()
    lib, store = made
    out = tmp_path / "ro-out"
    out.mkdir()
    _wav(lib / "new.wav", 4.0, seed=42)

    def cli(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([*prefix, sys.executable, "-m", "embedkit.cli.main", *args], capture_output=True,
                              text=True, timeout=300)

    _chmod_tree(store, writable=False)
    out.chmod(0o555)
    try:
        info = cli("store", "info", str(store), "--json")  # readers need no write access
        embed = cli("embed", str(lib), "--store", str(store))
        export = cli("store", "export", str(store), "--format", "npz", "-o", str(out / "v.npz"))
        repair = cli("store", "verify", str(store), "--repair")
    finally:
        _chmod_tree(store, writable=True)
        out.chmod(0o755)
    assert info.returncode == 0 and json.loads(info.stdout)["embedded"] == 6, info.stderr
    for r, frag in ((embed, "lock"), (export, "v.npz"), (repair, "problem(s) remain")):
        lines = [x for x in r.stderr.splitlines() if x.strip() and not x.startswith("WARNING")]
        assert r.returncode == 1 and len(lines) == 1 and "Traceback" not in r.stderr, r.stderr
        assert frag in lines[0] and ("permission denied" in lines[0].lower() or r is repair), lines[0]
    assert "lock: cannot open the store for writing (permission denied)" in repair.stdout
    assert list(out.iterdir()) == [] and verify(store).ok


def test_read_only_store_is_one_line(made, monkeypatch, capsys):
    """The refusal of the lock file, simulated in-process (the real case is the test above)."""
    lib, store = made
    import embedkit.store.lock as lock

    real = lock.os.open

    def deny(path, flags, *a):
        if str(path).endswith("/lock"):
            raise PermissionError(errno.EACCES, "Permission denied", str(path))
        return real(path, flags, *a)

    monkeypatch.setattr(lock.os, "open", deny)
    rc, _, err = _embed_fake(monkeypatch, capsys, str(lib), "--store", str(store))
    _one_line_error(rc, err, "lock", "permission denied", "permissions")
    rc, out, err = run(capsys, "store", "info", str(store))  # readers need no lock
    assert rc == 0


# ---- option values and non-finite results --------------------------------------------------------------


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), 0.0, -3.0])
def test_excerpt_must_be_finite_and_positive(tmp_path, bad):
    lib = tmp_path / "lib"
    _wav(lib / "a.wav", 4.0, seed=1)
    with pytest.raises(EmbedkitError, match="--excerpt: excerpt_s must be a finite number of seconds > 0"):
        embed_into_store([lib], tmp_path / "st", embedder=FakeEmbedder(), excerpt_s=bad, progress=False)
    assert not (tmp_path / "st").exists()


class _NaNEmbedder(FakeEmbedder):
    """Returns NaN for files whose name starts with 'nan' (what a float WAV near 1e30 gives a real model)."""

    def embed_files(self, paths, **kw):
        for r in super().embed_files(paths, **kw):
            if Path(str(r.path)).name.startswith("nan") and getattr(r, "vector", None) is not None:
                r.vector[:] = np.nan if "vec" in str(r.path) else r.vector
                r.tags[:] = np.nan
            yield r


def test_non_finite_results_are_recorded_as_failures(tmp_path):
    lib = tmp_path / "lib"
    _wav(lib / "ok.wav", 4.0, seed=1)
    _wav(lib / "nanvec.wav", 4.0, seed=2)
    _wav(lib / "nantags.wav", 4.0, seed=3)
    s = embed_into_store([lib], tmp_path / "st", embedder=_NaNEmbedder(), progress=False)
    assert s["embedded"] == 1 and s["failed"] == 2
    errors = {Path(f["path"]).name: f["error"] for f in s["failures"]}
    assert "vector has NaN or infinite values" in errors["nanvec.wav"]
    assert "network output has NaN or infinite values" in errors["nantags.wav"]
    with Store.open(tmp_path / "st") as st:
        assert np.all(np.isfinite(st.vectors())) and st.counts()["failed"] == 2


def test_fifo_is_not_an_empty_file(tmp_path):
    from embedkit.discovery import discover, file_problem

    lib = tmp_path / "lib"
    _wav(lib / "a.wav", 4.0, seed=1)
    os.mkfifo(lib / "pipe.wav")
    d = discover([lib, lib / "pipe.wav"])
    assert [Path(f.path).name for f in d.files] == ["a.wav"]
    assert ("not a regular file (named pipe (FIFO))") in dict(d.errors)[str(lib / "pipe.wav")]
    assert file_problem(lib / "pipe.wav") == "not a regular file (named pipe (FIFO))"


def test_nul_bytes_in_a_list_file(tmp_path):
    lst = tmp_path / "list.txt"
    lst.write_bytes(b"a.wav\nb\x00c.wav\n")
    with pytest.raises(EmbedkitError, match=r"list.txt line 2: contains a NUL byte"):
        embed_into_store([], tmp_path / "st", embedder=FakeEmbedder(), from_list=lst, progress=False)


def test_valid_looking_manifest_edit_is_caught_by_its_copy(made, capsys):
    _, store = made
    good = json.loads((store / "manifest.json").read_text())
    _edit_manifest(store, tag_labels=None, created="2001-01-01T00:00:00+00:00")  # types fine, still consistent
    rc, _, err = run(capsys, "store", "list", str(store))
    _one_line_error(rc, err, "manifest.json", "differs from the copy", "--repair")
    assert verify(store, repair=True).ok and json.loads((store / "manifest.json").read_text()) == good
    # a damaged copy (its checksum fails) is rewritten from a sound manifest
    with sqlite3.connect(store / "items.sqlite") as c:
        c.execute("UPDATE sidecar SET value = value || ' ' WHERE key = 'manifest'")
    rc, out, _ = run(capsys, "store", "list", str(store))
    assert rc == 0 and out.count("\n") == 6
    rep = verify(store)
    assert not rep.ok and "manifest copy fails its checksum" in rep.problems[0].problem
    assert verify(store, repair=True).ok and verify(store).ok
