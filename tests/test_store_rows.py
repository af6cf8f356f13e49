"""Issue 9: the item rows of items.sqlite carry their own checksum and the meta table their number.

Real damage, made by flipping bytes of the database file (not by SQL edits): a changed path or duration,
an index entry that hides an item from ``WHERE status = 'ok'``, a page that lost a cell. Each is either
answered exactly as before (the damage is in an index no reader uses) or refused in one line naming
items.sqlite and ``store verify --repair``; verify finds it and repairs what can be repaired. Stores of
embedkit 0.1 (no checksums) still read, and ``verify --repair`` seals them. File names that are not UTF-8
are kept as their bytes through embed, list, export and verify.
"""
from __future__ import annotations

import contextlib
import json
import os
import shutil
import sqlite3
import struct
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from _fake_embedder import FakeEmbedder
from clirun import run
from embedkit.collection import embed_into_store
from embedkit.store import Store, StoreCorruptError, write_arrays
from embedkit.store.verify import verify

PATHS = [f"/music/s{i}.wav" for i in range(6)]
LEGACY = Path(__file__).resolve().parent / "data" / "store-0.1" / "fake"


@pytest.fixture()
def store(tmp_path) -> Path:
    x = np.random.default_rng(0).normal(size=(6, 8)).astype(np.float32)
    write_arrays(tmp_path / "st", PATHS, x, durations_s=[9.25 + i for i in range(6)]).close()
    return tmp_path / "st"


def _sql(db: Path) -> contextlib.closing:
    """A connection closed at the end of the block (sqlite3's own ``with`` only commits), so that no WAL
    outlives it and byte patches of the file are what the next reader sees."""
    conn = sqlite3.connect(db, isolation_level=None)
    return contextlib.closing(conn)


def _answers(store: Path) -> tuple:
    with Store.open(store) as st:
        return ([(it.id, it.path, it.duration_s, it.status) for it in st.items()], st.ids().tolist(),
                st.vectors().tobytes(), st.counts())


def _pages(db: Path) -> tuple[int, dict[str, int]]:
    with _sql(db) as c:
        size = c.execute("PRAGMA page_size").fetchone()[0]
        roots = dict(c.execute("SELECT name, rootpage FROM sqlite_master WHERE rootpage > 0").fetchall())
    return size, roots


def _patch_bytes(db: Path, old: bytes, new: bytes, *, page: int | None = None) -> int:
    """Replace every occurrence of ``old`` by ``new`` (same length) in the file, or only inside ``page``."""
    assert len(old) == len(new)
    data = bytearray(db.read_bytes())
    lo, hi = 0, len(data)
    if page is not None:
        size, _ = _pages(db)
        lo, hi = (page - 1) * size, page * size
    n = 0
    i = data.find(old, lo, hi)
    while i >= 0:
        data[i:i + len(old)] = new
        n += 1
        i = data.find(old, i + 1, hi)
    db.write_bytes(bytes(data))
    return n


def _one_line(rc: int, err: str, *fragments: str) -> str:
    lines = [x for x in err.splitlines() if x.strip()]
    assert rc == 1 and len(lines) == 1 and "Traceback" not in err, err
    for f in fragments:
        assert f in lines[0], (f, lines[0])
    return lines[0]


def test_every_row_carries_a_checksum_and_meta_counts_the_rows(store):
    with _sql(store / "items.sqlite") as c:
        crcs = [r[0] for r in c.execute("SELECT crc FROM items")]
        n = c.execute("SELECT value FROM meta WHERE key = 'n_items'").fetchone()[0]
    assert len(crcs) == n == 6 and all(isinstance(h, str) and len(h) == 16 for h in crcs)
    with Store.open(store, mode="a") as st:  # every write keeps both: update, move, mark missing, delete
        st.mark_missing([PATHS[0]])
        st.move(2, "/music/moved.wav", size=1, mtime=2.0)
        st.delete([PATHS[5]])
        st.add_failed("/music/bad.wav", "cannot decode")
    assert verify(store).ok
    with Store.open(store) as st:
        assert st.counts() == {"ok": 4, "failed": 1, "missing": 1} and st.get(2).path == "/music/moved.wav"


@pytest.mark.parametrize("old,new,what", [
    (b"/music/s2.wav", b"/music/s2.wax", "path"),  # both copies (table and unique index): the index still agrees
    (struct.pack(">d", 11.25), struct.pack(">d", 11.75), "duration"),
])
def test_a_flipped_field_in_a_row_is_refused_then_marked_failed_by_repair(store, capsys, old, new, what):
    db = store / "items.sqlite"
    before = _answers(store)
    assert _patch_bytes(db, old, new) >= 1
    with _sql(db) as c:  # the damage is invisible to SQLite itself
        assert c.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    for args in (["store", "list", str(store)], ["store", "export", str(store), "--format", "csv", "-o", "-"],
                 ["store", "info", str(store)], ["similar", str(store), "1", "-k", "3"]):
        rc, out, err = run(capsys, *args)
        _one_line(rc, err, "items.sqlite", "fails its checksum", "store verify", "--repair")
    rep = verify(store)
    assert not rep.ok and rep.damaged_rows == [3] and not rep.damaged_items and "item row(s) damaged" in rep.problems[0].problem
    rep = verify(store, repair=True)
    assert rep.ok, [p.line() for p in rep.problems]
    after = _answers(store)
    assert after[0][:2] + after[0][3:] == before[0][:2] + before[0][3:]  # the other rows are unchanged
    with Store.open(store) as st:
        it = st.get(3)
        assert it.status == "failed" and it.row is None and "damaged" in it.error and st.ids().tolist() == [1, 2, 4, 5, 6]
    assert verify(store).ok


def test_an_index_entry_that_hides_an_item_changes_no_answer_and_is_rebuilt(store, capsys):
    """A flipped byte in the items_status index drops item 6 from SQLite's ``WHERE status = 'ok'``; the store
    never reads through that index, so every answer stays the same; verify finds it, --repair rebuilds it."""
    db = store / "items.sqlite"
    before = _answers(store)
    _, roots = _pages(db)
    assert _patch_bytes(db, b"ok", b"ol", page=roots["items_status"]) >= 1
    with _sql(db) as c:
        assert len(c.execute("SELECT id FROM items WHERE status = 'ok'").fetchall()) < 6  # the damage is real
    assert _answers(store) == before
    rc, out, err = run(capsys, "store", "verify", str(store))
    _one_line(rc, err, "problem(s) remain", "--repair")
    assert "index items_status" in out
    rep = verify(store, repair=True)
    assert rep.ok and "REINDEX" in rep.problems[0].repair
    with _sql(db) as c:
        assert len(c.execute("SELECT id FROM items WHERE status = 'ok'").fetchall()) == 6
    assert _answers(store) == before and verify(store).ok


def test_a_page_that_lost_a_cell_is_refused_by_the_row_count(store, capsys):
    """The items page's cell count lowered by one: SQLite reads 5 rows without complaint; the count in meta
    says 6, so every whole-store read refuses, in one line."""
    db = store / "items.sqlite"
    size, roots = _pages(db)
    data = bytearray(db.read_bytes())
    off = (roots["items"] - 1) * size
    assert data[off] == 13  # a table leaf page holding all 6 rows
    n = struct.unpack(">H", data[off + 3:off + 5])[0]
    data[off + 3:off + 5] = struct.pack(">H", n - 1)
    db.write_bytes(bytes(data))
    with _sql(db) as c:
        assert c.execute("SELECT COUNT(*) FROM items NOT INDEXED").fetchone()[0] == 5
    for args in (["store", "list", str(store)], ["store", "export", str(store), "--format", "csv", "-o", "-"],
                 ["similar", str(store), "1", "-k", "3"]):
        rc, out, err = run(capsys, *args)
        _one_line(rc, err, "items.sqlite", "holds 5 rows", "counts 6")
    rep = verify(store, repair=True)
    assert not rep.ok and "items.sqlite" in rep.problems[0].file


def test_a_damaged_count_or_meta_key_is_refused_and_recounted(store, capsys):
    db = store / "items.sqlite"
    before = _answers(store)
    _, roots = _pages(db)
    assert _patch_bytes(db, b"n_items", b"n_itemz", page=roots["meta"]) == 1  # the row, not its index entry
    rc, out, err = run(capsys, "store", "list", str(store))
    _one_line(rc, err, "items.sqlite", "meta table", "--repair")
    rep = verify(store, repair=True)
    assert rep.ok and [p.repaired for p in rep.problems] == [True] * 3, [p.line() for p in rep.problems]
    assert "REINDEX" in rep.problems[0].repair and "unknown key 'n_itemz'" in rep.problems[1].problem
    assert _answers(store) == before
    with _sql(db) as c:  # a wrong count (a flipped value): refused, then recounted
        c.execute("UPDATE meta SET value = 7 WHERE key = 'n_items'")
    rc, out, err = run(capsys, "store", "info", str(store))
    _one_line(rc, err, "items.sqlite", "holds 6 rows", "counts 7")
    rep = verify(store, repair=True)
    assert rep.ok and "1 row(s) lost" in rep.problems[0].problem
    assert _answers(store) == before


def test_legacy_store_reads_unsealed_and_repair_seals_it(tmp_path):
    st_path = tmp_path / "fake"
    shutil.copytree(LEGACY, st_path)
    with _sql(st_path / "items.sqlite") as c:
        assert "crc" not in [r[1] for r in c.execute("PRAGMA table_info(items)")]
    with Store.open(st_path) as st:
        items = st.items()
    assert len(items) == 3
    rep = verify(st_path)
    assert rep.ok and any("item rows were written by embedkit 0.1" in n for n in rep.notes)
    rep = verify(st_path, repair=True)
    assert rep.ok
    with Store.open(st_path) as st:
        assert st.items() == items
    with _sql(st_path / "items.sqlite") as c:
        assert all(r[0] for r in c.execute("SELECT crc FROM items"))
        assert c.execute("SELECT value FROM meta WHERE key = 'n_items'").fetchone()[0] == 3
    assert not any("item rows were written" in n for n in verify(st_path).notes)
    path = items[0].path.encode()
    assert _patch_bytes(st_path / "items.sqlite", path, path[:-1] + b"X") >= 1  # sealed: damage is now caught
    with pytest.raises(StoreCorruptError, match="fails its checksum"):
        Store.open(st_path).items()


def test_writer_seals_a_legacy_store_when_it_appends(tmp_path):
    st_path = tmp_path / "fake"
    shutil.copytree(LEGACY, st_path)
    lib = tmp_path / "lib"
    lib.mkdir()
    sf.write(lib / "new.wav", 0.1 * np.random.default_rng(9).standard_normal(16000 * 4).astype(np.float32), 16000)
    embed_into_store([lib], st_path, embedder=FakeEmbedder(), progress=False)
    with _sql(st_path / "items.sqlite") as c:
        assert c.execute("SELECT COUNT(*) FROM items WHERE crc IS NULL").fetchone()[0] == 0
        assert c.execute("SELECT value FROM meta WHERE key = 'n_items'").fetchone()[0] == 4
    assert verify(st_path).ok


def test_file_names_that_are_not_utf8_embed_list_export_and_verify(tmp_path, monkeypatch, capsys, caplog):
    """Linux file names are bytes: one that is not UTF-8 embeds, is found again (no re-embed), lists escaped,
    comes back byte-exact from --json, csv and npz, is noted by verify (exit 0), and refused by parquet in one line."""
    lib = tmp_path / "lib"
    lib.mkdir()
    raw = os.fsencode(lib) + b"/caf\xe9 \xff.wav"
    sf.write(tmp_path / "x.wav", 0.1 * np.random.default_rng(1).standard_normal(16000 * 4).astype(np.float32), 16000)
    os.rename(tmp_path / "x.wav", raw)
    sf.write(lib / "plain.wav", 0.1 * np.random.default_rng(2).standard_normal(16000 * 4).astype(np.float32), 16000)
    monkeypatch.setattr("embedkit.collection._load", lambda *a, **k: FakeEmbedder())
    st = str(tmp_path / "st")
    rc, out, err = run(capsys, "embed", str(lib), "--store", st, "--json")
    assert rc == 0 and json.loads(out)["embedded"] == 2, err
    rc, out, err = run(capsys, "embed", str(lib), "--store", st, "--json")
    assert rc == 0 and json.loads(out)["embedded"] == 0, err  # found again by its path
    rc, out, err = run(capsys, "store", "list", st)
    assert rc == 0 and "caf\\xe9 \\xff.wav" in out and "\udce9" not in out
    rc, out, err = run(capsys, "store", "list", st, "--json")
    assert rc == 0 and out.isascii() and "\\udce9" in out
    assert sorted(os.fsencode(d["path"]) for d in json.loads(out)) == sorted([raw, os.fsencode(lib / "plain.wav")])
    rc, out, err = run(capsys, "store", "export", st, "--format", "csv", "-o", str(tmp_path / "e.csv"))
    assert rc == 0 and "not valid UTF-8" in err + caplog.text  # said on stderr (a warning: -q silences it)
    assert raw in (tmp_path / "e.csv").read_bytes()
    rc, out, err = run(capsys, "store", "export", st, "--format", "npz", "-o", str(tmp_path / "e.npz"))
    with np.load(tmp_path / "e.npz") as z:
        assert raw in [os.fsencode(str(p)) for p in z["paths"]]
    rc, out, err = run(capsys, "store", "export", st, "--format", "parquet", "-o", str(tmp_path / "e.parquet"))
    _one_line(rc, err, "not valid UTF-8", "--format npz")
    assert not (tmp_path / "e.parquet").exists()
    rc, out, err = run(capsys, "store", "verify", st)
    assert rc == 0 and "not valid UTF-8" in out and "sound" in out
    with Store.open(st) as s:
        it = s.get(os.fsdecode(raw))
        assert it is not None and it.status == "ok" and os.fsencode(it.path) == raw
