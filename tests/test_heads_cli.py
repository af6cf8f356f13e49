"""``embedkit evaluate / train / predict`` on tiny stores, and one run through the real embedder."""
from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import numpy as np
import pytest

from embedkit.store import write_arrays
from synth import tone
from clirun import run
from _heads_data import LAYOUT
from _heads_data import planted_store as _planted_store


def planted_store(tmp_path: Path, name: str = "st", fingerprint: str = "test", n: int = 90, seed: int = 0):
    """`_heads_data.planted_store` with 90 items and labels in ``labels.csv`` → (store, labels.csv, y)."""
    store, labels, _, y = _planted_store(tmp_path, name, fingerprint, n, seed, labels_name="labels.csv")
    return store, labels, y


def test_evaluate_json_markdown_and_plots(tmp_path, capsys):
    store, labels, _ = planted_store(tmp_path)
    code, out, err = run(capsys, "evaluate", str(store), str(labels), "--head", "logreg", "--folds", "5", "--json",
                         "--plots", str(tmp_path / "plots"), "-o", str(tmp_path / "report.md"), "-j", "1")
    assert code == 0, err
    rep = json.loads(out)
    assert rep["metrics"]["accuracy"]["mean"] > 0.9 and len(rep["metrics"]["accuracy"]["folds"]) == 5
    assert rep["chance"]["balanced_accuracy"] == pytest.approx(1 / 3)
    assert rep["classes"] == ["jazz", "metal", "pop"] and rep["protocol"]["outer"] == "stratified 5-fold"
    assert (tmp_path / "plots" / "confusion_matrix.png").exists()
    assert "| accuracy |" in (tmp_path / "report.md").read_text()


def test_evaluate_shuffled_labels_fall_to_chance_with_learning_curve(tmp_path, capsys):
    store, labels, y = planted_store(tmp_path)
    rows = list(csv.reader(open(labels)))
    shuffled = np.random.default_rng(3).permutation([r[1] for r in rows[1:]])
    with open(labels, "w", newline="") as f:
        csv.writer(f).writerows([rows[0]] + [[r[0], s] for r, s in zip(rows[1:], shuffled)])
    code, out, err = run(capsys, "evaluate", str(store), str(labels), "--head", "logreg", "--folds", "5",
                         "--shots", "1,5", "--repeats", "3", "-j", "1")
    assert code == 0, err
    acc_line = next(l for l in out.splitlines() if l.startswith("| accuracy |"))
    mean = float(acc_line.split("|")[2].split("±")[0])
    assert mean < 0.5  # chance 1/3
    assert "Learning curve" in out and "| 5 | 15 |" in out


def test_train_then_predict_from_the_store(tmp_path, capsys):
    store, labels, y = planted_store(tmp_path)
    head = tmp_path / "genre.head"
    code, out, err = run(capsys, "train", str(store), str(labels), "-o", str(head), "--layers-grid", "default", "-j", "1")
    assert code == 0, err
    assert "trained a svm head on 90 items (classification, 3 classes)" in out and "not evaluated" in out
    card = json.loads((head / "card.json").read_text())
    assert card["model_fingerprint"] == "test" and card["classes"] == ["jazz", "metal", "pop"]
    assert "pool3" in card["layers"] and card["trained_on"]["counts"] == {"jazz": 30, "metal": 30, "pop": 30}
    assert card["metrics"] is None
    code, out, err = run(capsys, "predict", str(head), "--store", str(store), "--json")
    assert code == 0, err
    preds = json.loads(out)
    assert len(preds) == 90 and all(p["source"] == "store" for p in preds)
    assert np.mean([p["label"] for p in preds] == y) > 0.95
    assert abs(sum(preds[0]["probabilities"].values()) - 1) < 1e-6
    code, out, _ = run(capsys, "predict", str(head), "--store", str(store), "--csv")
    rows = list(csv.reader(io.StringIO(out)))
    assert rows[0] == ["path", "label", "p_jazz", "p_metal", "p_pop"] and len(rows) == 91
    code, _, err = run(capsys, "train", str(store), str(labels), "-o", str(head))
    assert code == 1 and "already exists (use --force" in err and err.count("\n") == 1


def test_train_with_evaluate_stores_honest_metrics(tmp_path, capsys):
    store, labels, _ = planted_store(tmp_path)
    code, out, err = run(capsys, "train", str(store), str(labels), "-o", str(tmp_path / "h"), "--head", "logreg",
                         "--evaluate", "--folds", "3", "--json", "-j", "1")
    assert code == 0, err
    card = json.loads(out)["card"]
    assert card["metrics"]["accuracy"]["mean"] > 0.9 and card["evaluation"]["outer"] == "stratified 3-fold"


def test_head_refuses_a_store_of_another_model(tmp_path, capsys):
    store, labels, _ = planted_store(tmp_path)
    other, _, _ = planted_store(tmp_path, name="other", fingerprint="another-model")
    head = tmp_path / "h"
    assert run(capsys, "train", str(store), str(labels), "-o", str(head), "--head", "logreg")[0] == 0
    code, out, err = run(capsys, "predict", str(head), "--store", str(other))
    assert code == 1 and out == ""
    assert "fingerprint test" in err and "another-model"[:16] in err and err.count("\n") == 1


def test_bad_labels_and_missing_items(tmp_path, capsys):
    store, labels, _ = planted_store(tmp_path)
    text = labels.read_text()
    bad = tmp_path / "bad.csv"
    first = text.splitlines()[1].split(",")[0]
    bad.write_text(text + f"{first},rock\n")
    code, out, err = run(capsys, "evaluate", str(store), str(bad))
    assert code == 1 and "is labelled again with a different value" in err and err.count("\n") == 1
    extra = tmp_path / "extra.csv"
    extra.write_text(text + f"{tmp_path}/music/unknown.wav,pop\n")
    code, out, err = run(capsys, "evaluate", str(store), str(extra), "--head", "logreg", "--folds", "3", "--json", "-j", "1")
    assert code == 0 and "1 of 91 labelled items are not in" in err
    assert json.loads(out)["n_items"] == 90
    code, _, err = run(capsys, "evaluate", str(store), str(extra), "--strict")
    assert code == 1 and "not in" in err
    code, _, err = run(capsys, "predict", str(tmp_path / "nohead"), "--store", str(store))
    assert code == 1 and "no such head" in err


def test_regression_and_multilabel_commands(tmp_path, capsys):
    rng = np.random.default_rng(0)
    n = 80
    X = rng.normal(size=(n, 40)).astype(np.float32)
    paths = [str(tmp_path / f"s{i}.wav") for i in range(n)]
    write_arrays(tmp_path / "st", paths, X, layout=LAYOUT).close()
    reg = tmp_path / "emo.csv"
    reg.write_text("path,arousal,valence,group\n" + "".join(
        f"{p},{3 + X[i, 0]:.4f},{5 - X[i, 9]:.4f},artist{i % 20}\n" for i, p in enumerate(paths)))
    code, out, err = run(capsys, "evaluate", str(tmp_path / "st"), str(reg), "--head", "ridge", "--folds", "4", "--json", "-j", "1")
    assert code == 0, err
    rep = json.loads(out)
    assert rep["targets"] == ["arousal", "valence"] and rep["metrics"]["r2"]["mean"] > 0.8
    assert rep["protocol"]["groups"] == "group" and rep["protocol"]["outer"] == "group 4-fold"
    assert run(capsys, "train", str(tmp_path / "st"), str(reg), "-o", str(tmp_path / "emo.head"), "--head", "ridge")[0] == 0
    code, out, err = run(capsys, "predict", str(tmp_path / "emo.head"), "--store", str(tmp_path / "st"), "--csv")
    rows = list(csv.reader(io.StringIO(out)))
    assert code == 0 and rows[0] == ["path", "arousal", "valence"] and len(rows) == n + 1
    assert abs(float(rows[1][1]) - (3 + X[0, 0])) < 0.5
    tags = tmp_path / "tags.csv"
    tags.write_text("path,labels\n" + "".join(
        f"{p},{';'.join(t for t, c in (('loud', 0), ('dark', 1)) if X[i, c] > 0)}\n" for i, p in enumerate(paths)))
    code, out, err = run(capsys, "evaluate", str(tmp_path / "st"), str(tags), "--folds", "4", "--json", "-j", "1")
    assert code == 0, err
    rep = json.loads(out)
    assert rep["labels"] == ["dark", "loud"] and rep["metrics"]["roc_auc"]["mean"] > 0.8 and "p_at_1" in rep["metrics"]
    assert run(capsys, "train", str(tmp_path / "st"), str(tags), "-o", str(tmp_path / "tags.head"))[0] == 0
    code, out, _ = run(capsys, "predict", str(tmp_path / "tags.head"), "--store", str(tmp_path / "st"), "--json")
    preds = json.loads(out)
    hits = np.mean([("loud" in p["labels"]) == (X[i, 0] > 0) for i, p in enumerate(preds)])
    assert code == 0 and hits > 0.9
    code, out, _ = run(capsys, "predict", str(tmp_path / "tags.head"), "--store", str(tmp_path / "st"))
    assert code == 0 and len(out.splitlines()) == n and "loud" in out


def test_single_example_class_needs_drop_rare(tmp_path, capsys):
    store, labels, _ = planted_store(tmp_path)
    lines = labels.read_text().splitlines()
    lines[1] = lines[1].rsplit(",", 1)[0] + ",lonely"
    labels.write_text("\n".join(lines) + "\n")
    code, _, err = run(capsys, "evaluate", str(store), str(labels))
    assert code == 1 and "'lonely' (1 at" in err and "--drop-rare" in err and err.count("\n") == 1
    code, out, err = run(capsys, "evaluate", str(store), str(labels), "--drop-rare", "--head", "logreg", "--folds", "3",
                         "--json", "-j", "1")
    assert code == 0 and "dropped 1 class" in err
    assert json.loads(out)["n_items"] == 89 and "lonely" not in json.loads(out)["classes"]


# ---- through the real model -------------------------------------------------------------------


def test_end_to_end_with_the_real_embedder(tmp_path, capsys, write_wav):
    """Low-pitched vs high-pitched noisy tones: embed, evaluate (with the MFCC baseline), train, predict."""
    import csv as _csv

    from embedkit import pretrained

    if not pretrained.is_installed("msd_vgg"):
        pytest.skip("msd_vgg weights not installed (run `embedkit models fetch msd_vgg`)")
    rng = np.random.default_rng(0)
    music = tmp_path / "music"
    music.mkdir()
    rows = []
    for i in range(20):
        low = i % 2 == 0
        f0 = rng.uniform(90, 200) if low else rng.uniform(1500, 3000)
        y = tone(f0, 3.2, 16000, noise=0.05, seed=i) + tone(2 * f0, 3.2, 16000, amp=0.1)
        p = write_wav(f"music/c{i:02d}.wav", y, 16000)
        rows.append([str(p), "low" if low else "high"])
    labels = tmp_path / "labels.csv"
    with open(labels, "w", newline="") as f:
        _csv.writer(f).writerows([["path", "label"]] + rows)
    store = tmp_path / "st"
    code, out, err = run(capsys, "embed", str(music), "--store", str(store))
    assert code == 0, err
    code, out, err = run(capsys, "evaluate", str(store), str(labels), "--head", "logreg", "--folds", "4",
                         "--baseline", "mfcc", "--json", "-j", "1")
    assert code == 0, err
    rep = json.loads(out)
    assert rep["metrics"]["accuracy"]["mean"] >= 0.9
    assert rep["baseline"]["metrics"]["accuracy"]["mean"] >= 0.9  # pitch is easy for MFCCs too
    head = tmp_path / "pitch.head"
    assert run(capsys, "train", str(store), str(labels), "-o", str(head), "--head", "logreg")[0] == 0
    new_low = write_wav("new_low.wav", tone(130, 3.5, 22050, noise=0.05, seed=99), 22050)
    new_high = write_wav("new_high.wav", tone(2200, 3.5, 22050, noise=0.05, seed=98), 22050)
    broken = tmp_path / "broken.mp3"
    broken.write_text("not audio")
    code, out, err = run(capsys, "predict", str(head), str(new_low), str(new_high), str(broken), "--json")
    assert code == 3 and "broken.mp3" in err
    preds = {Path(p["path"]).name: p for p in json.loads(out)}
    assert preds["new_low.wav"]["label"] == "low" and preds["new_high.wav"]["label"] == "high"
    assert preds["new_low.wav"]["source"] == "embedded"
    code, out, err = run(capsys, "predict", str(head), str(music / "c00.wav"), str(new_high), "--store", str(store), "--json")
    assert code == 0, err
    src = {Path(p["path"]).name: p["source"] for p in json.loads(out)}
    assert src == {"c00.wav": "store", "new_high.wav": "embedded"}
