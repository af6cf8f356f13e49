"""`embedkit train / evaluate / predict --head attention` and `embedkit highlight --store` on a small store of
synthetic per-patch vectors (no network: the store is written directly)."""
from __future__ import annotations

import csv
import json

import numpy as np
import pytest

from clirun import run
from embedkit.store import Store

D = 8
HOP = 187 * 256 / 16000


def _store(path, n=30, *, patches=True, seed=0):
    rng = np.random.default_rng(seed)
    proto = np.random.default_rng(99).normal(size=(3, D))
    manifest = {"model": "synthetic", "fingerprint": "a" * 64, "dim": D,
                "layout": [{"name": "all", "start": 0, "stop": D}]}
    if patches:
        manifest["patch_dim"] = D
    rows = []
    with Store.create(path, manifest) as st:
        for i in range(n):
            T = int(rng.integers(12, 20))
            b = rng.normal(size=(T, D))
            s = int(rng.integers(0, T - 4))
            b[s:s + 4] += 2.5 * proto[i % 3]
            p = f"/music/track{i:02d}.ogg"
            kw = {"patch_vectors": b, "patch_start_s": np.arange(T) * HOP} if patches else {}
            st.add_embedded(p, b.mean(axis=0), size=1, mtime=1.0, sha256=f"{i:064x}", duration_s=T * HOP, samplerate=16000, **kw)
            rows.append((p, f"c{i % 3}", s, T))
    return rows


@pytest.fixture
def patch_store(tmp_path):
    rows = _store(tmp_path / "s.ekstore")
    labels = tmp_path / "labels.csv"
    with open(labels, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["path", "label"])
        w.writerows((p, lab) for p, lab, _, _ in rows)
    return tmp_path / "s.ekstore", labels, rows


def test_train_evaluate_predict_attention(patch_store, tmp_path, capsys):
    store, labels, rows = patch_store
    code, out, err = run(capsys, "evaluate", str(store), str(labels), "--head", "attention", "--folds", "3", "--json", "-j", "1")
    assert code == 0, err
    rep = json.loads(out)
    assert rep["head"]["kind"] == "attention" and rep["metrics"]["accuracy"]["mean"] > 0.7
    head = tmp_path / "a.head"
    code, out, err = run(capsys, "train", str(store), str(labels), "--head", "attention", "-o", str(head))
    assert code == 0, err
    card = json.loads((head / "card.json").read_text())
    assert card["kind"] == "attention" and card["input"] == "patches" and card["model_fingerprint"] == "a" * 64
    code, out, err = run(capsys, "predict", str(head), "--store", str(store), "--json")
    assert code == 0, err
    recs = json.loads(out)
    assert len(recs) == len(rows)
    for r, (p, _, _, T) in zip(recs, rows):
        assert r["path"] == p and len(r["patch_weights"]) == T == len(r["patch_start_s"])
        assert sum(r["patch_weights"]) == pytest.approx(1.0)
    assert np.mean([r["label"] == lab for r, (_, lab, _, _) in zip(recs, rows)]) > 0.9
    assert np.mean([s <= int(np.argmax(r["patch_weights"])) < s + 4 for r, (_, _, s, _) in zip(recs, rows)]) > 0.8
    # the highlight of each stored track, from the same head
    code, out, err = run(capsys, "highlight", "--store", str(store), "--head", str(head), "--length", str(4 * HOP), "--json")
    assert code == 0, err
    hl = json.loads(out)
    assert len(hl) == len(rows)
    for h, (_, _, _, T) in zip(hl, rows):
        assert 0 <= h["start_s"] < h["end_s"] <= T * HOP + 1e-6 and h["source"] == "store"
    assert np.mean([min(h["end_s"], (s + 4) * HOP) - max(h["start_s"], s * HOP) > 2 * HOP for h, (_, _, s, _) in zip(hl, rows)]) > 0.8


def test_attention_needs_per_patch_vectors(tmp_path, capsys):
    rows = _store(tmp_path / "np.ekstore", n=12, patches=False)
    labels = tmp_path / "l.csv"
    labels.write_text("path,label\n" + "".join(f"{p},{lab}\n" for p, lab, _, _ in rows))
    code, out, err = run(capsys, "evaluate", str(tmp_path / "np.ekstore"), str(labels), "--head", "attention")
    assert code == 1 and "--patches" in err and len(err.strip().splitlines()) == 1
    code, out, err = run(capsys, "highlight", "--store", str(tmp_path / "np.ekstore"), "--method", "repetition")
    assert code == 1 and "--patches" in err and len(err.strip().splitlines()) == 1
