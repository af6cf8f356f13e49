"""Issue 9, head side (and issue 8's spec in heads): --force replaces only a head, -o symlink, required and
verified checksums, tampered heads with consistent checksums, NaN weights, umask, disk full — one line each;
a head made with the Python API carries the store's spec and refuses vectors of another model."""
from __future__ import annotations

import errno
import json
import os
from pathlib import Path

import numpy as np
import pytest

from _heads_data import planted_store
from clirun import one_line_error, run
from embedkit.heads import Head, HeadError
from embedkit.heads.card import array_sha
from embedkit.sidecar import seal
from embedkit.spec import SpecMismatchError
from embedkit.store import Store


def train(capsys, store, labels, out, *extra):
    return run(capsys, "train", str(store), str(labels), "-o", str(out), "--head", "logreg", "-j", "1", *extra)


@pytest.fixture(scope="module")
def saved_head(tmp_path_factory):
    """A head saved through the Python API (the README's example), reused read-only by the tamper tests."""
    tmp = tmp_path_factory.mktemp("h")
    store, _, X, y = planted_store(tmp)
    with Store.open(store) as st:
        head = Head("classification", "logreg", spec=st.spec, grid=[{"C": 1.0}]).fit(X, y)
    head.save(tmp / "genre.head")
    return tmp / "genre.head", X


def tampered(src: Path, dst: Path, edit) -> Path:
    """Copy head ``src`` to ``dst``, let ``edit(card, arrays)`` change it, re-checksum consistently."""
    card = json.loads((src / "card.json").read_text())
    with np.load(src / "weights.npz") as z:
        arrays = {k: z[k] for k in z.files}
    edit(card, arrays)
    dst.mkdir()
    np.savez(dst / "weights.npz", **arrays)
    card["arrays"] = {k: {"shape": list(v.shape), "dtype": str(v.dtype), "sha256": array_sha(v)} for k, v in arrays.items()}
    (dst / "card.json").write_text(json.dumps(seal(card)))  # the card's self-digest made consistent too
    return dst


# ---- --force / -o ------------------------------------------------------------------------------------


def test_force_never_replaces_a_foreign_folder(tmp_path, capsys):
    store, labels, _, _ = planted_store(tmp_path)
    mine = tmp_path / "my-stuff"
    mine.mkdir()
    (mine / "thesis.tex").write_text("years of work")
    code, out, err = train(capsys, store, labels, mine, "-f")
    assert "not an embedkit head" in one_line_error(code, err)
    assert (mine / "thesis.tex").read_text() == "years of work" and sorted(os.listdir(mine)) == ["thesis.tex"]
    # a head folder with a user's file added is not "a head" either
    head = tmp_path / "genre.head"
    assert train(capsys, store, labels, head)[0] == 0
    (head / "notes.txt").write_text("keep me")
    code, out, err = train(capsys, store, labels, head, "-f")
    assert "notes.txt" in one_line_error(code, err) and (head / "notes.txt").exists()
    # a plain file
    f = tmp_path / "file.head"
    f.write_text("x")
    code, out, err = train(capsys, store, labels, f, "-f")
    assert "is a file" in one_line_error(code, err) and f.read_text() == "x"


def test_force_replaces_a_head(tmp_path, capsys):
    store, labels, _, _ = planted_store(tmp_path)
    head = tmp_path / "genre.head"
    assert train(capsys, store, labels, head)[0] == 0
    first = json.loads((head / "card.json").read_text())["created"]
    code, out, err = train(capsys, store, labels, head, "-f", "--head", "svm")
    assert code == 0, err
    card = json.loads((head / "card.json").read_text())
    assert card["kind"] == "svm" and sorted(os.listdir(head)) == ["card.json", "weights.npz"] and card["created"] >= first
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".genre.head")]


def test_output_symlink_is_one_line(tmp_path, capsys):
    store, labels, _, _ = planted_store(tmp_path)
    target = tmp_path / "real"
    target.mkdir()
    link = tmp_path / "link.head"
    link.symlink_to(target)
    for extra in ((), ("-f",)):
        code, out, err = train(capsys, store, labels, link, *extra)
        assert "symbolic link" in one_line_error(code, err)
    assert list(target.iterdir()) == []


def test_head_folder_follows_the_umask(tmp_path):
    X = np.random.default_rng(0).normal(size=(30, 6)).astype(np.float32)
    y = np.array(["a", "b", "c"])[np.arange(30) % 3]
    head = Head("classification", "logreg", grid=[{"C": 1.0}]).fit(X, y)
    old = os.umask(0o022)
    try:
        head.save(tmp_path / "h1")
        os.umask(0o077)
        head.save(tmp_path / "h2")
    finally:
        os.umask(old)
    assert (tmp_path / "h1").stat().st_mode & 0o777 == 0o755
    assert (tmp_path / "h1" / "card.json").stat().st_mode & 0o777 == 0o644
    assert (tmp_path / "h2").stat().st_mode & 0o777 == 0o700


@pytest.mark.parametrize("err_no", [errno.ENOSPC, errno.EACCES])
def test_disk_full_or_permission_denied_while_saving(tmp_path, capsys, monkeypatch, err_no):
    store, labels, _, _ = planted_store(tmp_path)
    head = tmp_path / "genre.head"
    assert train(capsys, store, labels, head)[0] == 0
    before = {p.name: p.read_bytes() for p in head.iterdir()}

    def failing_savez(f, **arrays):
        f.write(b"PK\x03\x04 partial")
        raise OSError(err_no, os.strerror(err_no))

    monkeypatch.setattr("embedkit.heads.card.np.savez", failing_savez)
    code, out, err = train(capsys, store, labels, head, "-f")
    err = one_line_error(code, err)
    assert ("disk space" if err_no == errno.ENOSPC else "permissions") in err and "weights.npz" in err
    assert {p.name: p.read_bytes() for p in head.iterdir()} == before  # the old head is intact
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []  # no temporary folders
    code, out, err = train(capsys, store, labels, tmp_path / "new.head")
    one_line_error(code, err)
    assert not (tmp_path / "new.head").exists()


# ---- damaged and tampered heads ------------------------------------------------------------------------


def _predict_err(capsys, head: Path, store: Path) -> str:
    code, out, err = run(capsys, "predict", str(head), "--store", str(store))
    assert out == ""
    return one_line_error(code, err)


def test_checksum_entry_removed_is_refused(tmp_path, capsys, saved_head):
    src, _ = saved_head
    store = planted_store(tmp_path)[0]
    for name, edit in {
        "no_entry": lambda c: c["arrays"].pop("mean"),
        "no_arrays": lambda c: c.pop("arrays"),
    }.items():
        dst = tmp_path / f"{name}.head"
        dst.mkdir()
        (dst / "weights.npz").write_bytes((src / "weights.npz").read_bytes())
        card = json.loads((src / "card.json").read_text())
        edit(card)
        (dst / "card.json").write_text(json.dumps(card))
        with pytest.raises(HeadError, match="checksum"):
            Head.load(dst)
        assert "checksum" in _predict_err(capsys, dst, store)


@pytest.mark.parametrize("case", ["index_out_of_range", "wrong_dtype", "missing_key", "nan_weights", "shape_mismatch"])
def test_tampered_head_with_consistent_checksums_is_refused(tmp_path, capsys, saved_head, case):
    src, X = saved_head
    store = planted_store(tmp_path)[0]

    def edit(card, arrays):
        if case == "index_out_of_range":
            arrays["columns"] = arrays["columns"].copy()
            arrays["columns"][-1] = 10_000
        elif case == "wrong_dtype":
            arrays["columns"] = arrays["columns"].astype("U8")
        elif case == "missing_key":
            del arrays["mean"]
        elif case == "nan_weights":
            arrays["model.coef"] = arrays["model.coef"].copy()
            arrays["model.coef"][0, 0] = np.nan
        elif case == "shape_mismatch":
            arrays["model.coef"] = arrays["model.coef"][:, :-3]

    dst = tampered(src, tmp_path / f"{case}.head", edit)
    with pytest.raises(HeadError) as exc:
        Head.load(dst)
    assert "\n" not in str(exc.value) and str(dst) in str(exc.value)
    assert "retrain" in _predict_err(capsys, dst, store)


# ---- the vector spec (issue 8) -------------------------------------------------------------------------


def test_python_api_head_carries_the_spec_and_refuses_another_model(tmp_path, capsys, saved_head):
    src, X = saved_head
    card = json.loads((src / "card.json").read_text())
    assert card["vector_spec"]["model_fingerprints"] == ["test"] and card["model_fingerprint"] == "test"
    other_store, _, X2, _ = planted_store(tmp_path, name="other", fingerprint="another-model", seed=1)
    head = Head.load(src)
    with Store.open(other_store) as st:
        other_spec = st.spec
        with pytest.raises(SpecMismatchError) as exc:
            head.predict(X2, spec=other_spec)
        ok_spec = None
    msg = str(exc.value)
    assert "\n" not in msg and "model fingerprint" in msg
    code, out, err = run(capsys, "predict", str(src), "--store", str(other_store))
    err = one_line_error(code, err)
    # the same one-line check (the head's spec against the store's), only the vectors' source is named
    assert err.split("expects vectors of ")[1].split(", ")[0] == msg.split("expects vectors of ")[1].split(", ")[0]
    assert "model fingerprint test" in err and "model fingerprint test" in msg
    # same model: accepted, and identical to predicting the array directly
    with Store.open(planted_store(tmp_path, name="same")[0]) as st:
        ok_spec = st.spec
    assert (head.predict(X, spec=ok_spec) == head.predict(X)).all()


def test_layout_only_head_still_works(tmp_path):
    X = np.random.default_rng(0).normal(size=(30, 40)).astype(np.float32)
    y = np.array(["a", "b", "c"])[np.arange(30) % 3]
    layout = [{"name": f"pool{i + 1}", "start": 8 * i, "stop": 8 * (i + 1)} for i in range(5)]
    head = Head("classification", "logreg", layout=layout, layers="pool5", grid=[{"C": 1.0}]).fit(X, y)
    head.save(tmp_path / "h")
    back = Head.load(tmp_path / "h")
    assert back.spec_ is None and back.layers_ == ("pool5",)
    assert (back.predict(X) == head.predict(X)).all()
