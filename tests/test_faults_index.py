"""Issue 9, index side: damaged index files, an index copied from another store, NaN rows, impossible
kinds, concurrent builds, foreign files, disk full — each a one-line error (or a wait), never a wrong answer."""
from __future__ import annotations

import errno
import json
import threading
import time

import numpy as np
import pytest

from clirun import one_line_error, run
from embedkit.index import IndexMismatchError, IndexStateError, build_for_store, build_lock, open_for_store
from embedkit.store import Store, write_arrays


def clustered(n: int, d: int = 24, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    c = rng.standard_normal((12, d))
    return (c[rng.integers(0, 12, n)] + 0.5 * rng.standard_normal((n, d))).astype(np.float32)


def make_store(path, n=60, seed=0, x=None):
    x = clustered(n, seed=seed) if x is None else x
    return write_arrays(path, [f"/music/a{i // 10}/t{i}.ogg" for i in range(len(x))], x, model="rand"), x


def test_flipped_byte_in_the_faiss_file_is_refused(tmp_path, capsys):
    st, _ = make_store(tmp_path / "s")
    build_for_store(st, kind="flat")
    st.close()
    f = tmp_path / "s" / "index" / "default.faiss"
    data = bytearray(f.read_bytes())
    data[len(data) // 2] ^= 0x40
    f.write_bytes(bytes(data))
    code, out, err = run(capsys, "similar", str(tmp_path / "s"), "1", "--index", "default")
    err = one_line_error(code, err)
    assert "default.faiss" in err and "checksum" in err and "--rebuild" in err and out == ""


def test_index_copied_from_another_store_with_the_same_settings_is_refused(tmp_path, capsys):
    a, _ = make_store(tmp_path / "a", seed=1)
    b, _ = make_store(tmp_path / "b", seed=2)  # same model, fingerprint, settings, ids and rows: other music
    assert a.fingerprint == b.fingerprint
    build_for_store(a, kind="flat")
    import shutil

    shutil.copytree(tmp_path / "a" / "index", tmp_path / "b" / "index")
    with pytest.raises(IndexMismatchError, match="other files than this store holds"):
        open_for_store(b)
    a.close()
    b.close()
    code, out, err = run(capsys, "similar", str(tmp_path / "b"), "3")
    assert "copied from another store" in one_line_error(code, err) and out == ""
    # the store's own index, rebuilt, works again
    with Store.open(tmp_path / "b") as st:
        build_for_store(st, kind="flat", rebuild=True)
        assert len(open_for_store(st)) == 60


def test_nan_row_makes_similar_fail_with_one_line(tmp_path, capsys, monkeypatch):
    make_store(tmp_path / "s", n=30)[0].close()
    with Store.open(tmp_path / "s") as st:
        bad_id = int(st.ids()[7])
    # a damaged row that got past the store's own checks (it refuses NaN on write and checksums its shards)
    real = Store.vectors

    def damaged(self, ids=None):
        x = np.array(real(self, ids), dtype=np.float32, copy=True)
        rows = self.ids() if ids is None else np.asarray(ids)
        x[np.asarray(rows) == bad_id] = np.nan
        return x

    monkeypatch.setattr(Store, "vectors", damaged)
    code, out, err = run(capsys, "similar", str(tmp_path / "s"), str(bad_id))  # the query is the damaged item
    assert "NaN" in one_line_error(code, err) and "(no results)" not in out
    code, out, err = run(capsys, "similar", str(tmp_path / "s"), str(bad_id + 1))  # exact search meets the row
    assert "NaN" in one_line_error(code, err) and "(no results)" not in out
    code, out, err = run(capsys, "index", "build", str(tmp_path / "s"))
    assert "NaN" in one_line_error(code, err)


def test_ivfpq_on_one_vector_is_one_line(tmp_path, capfd):
    make_store(tmp_path / "s", n=1)[0].close()
    # capfd: FAISS's C++ would write "WARNING clustering ..." to fd 2 itself; the error must be the only line
    code, out, err = run(capfd, "index", "build", str(tmp_path / "s"), "--kind", "ivfpq")
    assert "clustering" not in err, err
    err = one_line_error(code, err)
    assert "ivfpq" in err and "--kind flat" in err
    assert not list((tmp_path / "s" / "index").glob("*.tmp")) and not (tmp_path / "s" / "index" / "default.json").exists()


def test_concurrent_builds_of_one_name_take_a_lock(tmp_path):
    st, _ = make_store(tmp_path / "s")
    done = threading.Event()
    result: dict = {}

    def second() -> None:
        with Store.open(tmp_path / "s") as s2:
            result["summary"] = build_for_store(s2, kind="flat")[1]
        done.set()

    with build_lock(st, "default"):
        t = threading.Thread(target=second)
        t.start()
        time.sleep(1.0)
        assert not done.is_set(), "a second build ran while the first held the lock"
    t.join(30)
    assert done.is_set() and result["summary"]["action"] == "built"
    assert open_for_store(st).card["n_vectors"] == 60


def test_rebuild_never_replaces_a_foreign_file(tmp_path, capsys):
    st, _ = make_store(tmp_path / "s")
    st.close()
    d = tmp_path / "s" / "index"
    d.mkdir()
    mine = d / "default.json"
    mine.write_text(json.dumps({"my": "notes"}))
    code, out, err = run(capsys, "index", "build", str(tmp_path / "s"), "--rebuild")
    assert "not an embedkit index card" in one_line_error(code, err)
    assert json.loads(mine.read_text()) == {"my": "notes"}


@pytest.mark.parametrize("err_no", [errno.ENOSPC, errno.EACCES])
def test_disk_full_or_permission_denied_leaves_no_temp_files(tmp_path, capsys, monkeypatch, err_no):
    st, _ = make_store(tmp_path / "s")
    build_for_store(st, kind="flat")
    st.close()
    d = tmp_path / "s" / "index"
    before = {p.name: p.read_bytes() for p in d.iterdir() if not p.name.startswith(".")}

    def failing_savez(f, **arrays):
        raise OSError(err_no, "No space left on device" if err_no == errno.ENOSPC else "Permission denied")

    monkeypatch.setattr("embedkit.index.vector_index.np.savez", failing_savez)
    code, out, err = run(capsys, "index", "build", str(tmp_path / "s"), "--rebuild", "--kind", "flat")
    err = one_line_error(code, err)
    assert ("disk space" if err_no == errno.ENOSPC else "permissions") in err and "default.npz" in err
    after = {p.name: p.read_bytes() for p in d.iterdir() if not p.name.startswith(".")}
    assert after == before  # the previous index is untouched
    assert not [p for p in d.iterdir() if p.name.endswith(".tmp")]
    monkeypatch.undo()
    with Store.open(tmp_path / "s") as st2:
        assert len(open_for_store(st2)) == 60


def test_old_index_cards_without_checksums_still_load(tmp_path):
    st, _ = make_store(tmp_path / "s")
    build_for_store(st, kind="flat")
    card_path = tmp_path / "s" / "index" / "default.json"
    card = json.loads(card_path.read_text())
    for key in ("files", "content_sha256", "vectors_sample_sha256", "card_sha256"):  # 0.1 cards have none of these
        card.pop(key)
    card["store"].pop("vector_spec")
    card["store"].pop("uuid")
    card["format"] = 1
    card_path.write_text(json.dumps(card))
    assert len(open_for_store(st)) == 60
    card["format"] = 2  # a current card that lost its checksums is refused
    card_path.write_text(json.dumps(card))
    with pytest.raises(IndexStateError, match="no checksums"):
        open_for_store(st)


def test_binary_bytes_in_queries_are_one_line(tmp_path, capsys):
    make_store(tmp_path / "s", n=20)[0].close()
    nul = tmp_path / "nul.txt"
    nul.write_bytes(bytes(range(256)) * 4)
    code, out, err = run(capsys, "similar", str(tmp_path / "s"), "--queries", str(nul))
    assert code == 2 and len(err.strip().splitlines()) == 1 and "Traceback" not in err and out == ""
    bad = tmp_path / "bad.txt"
    bad.write_bytes(b"\xff\xfe abc\n")
    code, out, err = run(capsys, "similar", str(tmp_path / "s"), "--queries", str(bad))
    assert "not valid UTF-8" in one_line_error(code, err) and "\\xff\\xfe abc" in err
