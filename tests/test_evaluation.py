"""Nested CV is honest: planted signals score high, shuffled labels fall to chance, groups never leak."""
from __future__ import annotations

import json

import numpy as np
import pytest

from embedkit.evaluation import (
    EvaluationError,
    given_split,
    learning_curve,
    multilabel_metrics,
    nested_cv,
    outer_splits,
    regression_metrics,
    summarize,
    write_report,
)
from embedkit.heads import Head

FAST_SVM = [{"kernel": "rbf", "C": c, "gamma": "auto"} for c in (0.1, 2.0)] + [{"kernel": "linear", "C": 2.0}]


def planted(n=160, k=4, d=60, sep=0.7, seed=0):
    rng = np.random.default_rng(seed)
    y = np.arange(n) % k
    X = rng.normal(size=(n, d)) + sep * rng.normal(size=(k, d))[y]
    return X.astype(np.float32), np.array([f"c{v}" for v in y])


def test_planted_signal_scores_high_and_shuffled_labels_fall_to_chance():
    X, y = planted()
    rep = nested_cv(Head(grid=FAST_SVM), X, y, folds=5, seed=0)
    assert rep.metrics["accuracy"]["mean"] > 0.9
    assert len(rep.metrics["accuracy"]["folds"]) == 5
    assert rep.chance["accuracy"] == pytest.approx(0.25, abs=0.05) and rep.chance["balanced_accuracy"] == 0.25
    shuffled = np.random.default_rng(1).permutation(y)
    rep0 = nested_cv(Head(grid=FAST_SVM), X, shuffled, folds=5, seed=0)
    assert rep0.metrics["accuracy"]["mean"] < 0.38  # chance 0.25
    assert rep0.metrics["balanced_accuracy"]["mean"] < 0.38


def test_full_choi_grid_on_noise_stays_at_chance():
    """52 settings × layer subsets chosen on noise: only nested CV keeps the estimate at chance."""
    rng = np.random.default_rng(5)
    X = rng.normal(size=(90, 40)).astype(np.float32)
    y = np.array(["a", "b"] * 45)
    layout = [{"name": f"b{i}", "start": 8 * i, "stop": 8 * i + 8} for i in range(5)]
    rep = nested_cv(Head(layout=layout, layers_grid="1,2,3,4,5|5"), X, y, folds=3, seed=0)
    assert abs(rep.metrics["accuracy"]["mean"] - 0.5) < 0.15
    chosen = [f["params"] for f in rep.folds]
    assert all("C" in p for p in chosen) and len(rep.folds) == 3


def test_groups_never_straddle_a_split_and_stop_identity_leaks():
    # each group (a "recording") has its own random signature and one label: features identify the
    # group, not the class. Random folds leak identity (high score); group folds are at chance.
    rng = np.random.default_rng(2)
    n_groups, per = 24, 6
    groups = np.repeat(np.arange(n_groups), per)
    label_of_group = np.array(["x", "y", "z"] * (n_groups // 3))
    y = label_of_group[groups]
    X = (3 * rng.normal(size=(n_groups, 30))[groups] + 0.3 * rng.normal(size=(len(groups), 30))).astype(np.float32)
    head = Head("classification", "logreg", grid=[{"C": 1.0}])
    leaky = nested_cv(head, X, y, folds=4, seed=0)
    honest = nested_cv(head, X, y, groups=groups, folds=4, seed=0, groups_name="recording")
    assert leaky.metrics["accuracy"]["mean"] > 0.9
    assert honest.metrics["accuracy"]["mean"] < 0.55
    assert honest.protocol["groups"] == "recording" and "group" in honest.protocol["outer"]
    splits, _, _ = outer_splits("classification", y, groups=groups, folds=4)
    for tr, te in splits:
        assert not set(groups[tr]) & set(groups[te])


def test_given_split_uses_valid_for_selection_only():
    X, y = planted(n=120)
    split = np.array(["train"] * 60 + ["validation"] * 20 + ["test"] * 40)
    rep = nested_cv(Head("classification", "logreg"), X, y, split=split)
    assert len(rep.folds) == 1 and rep.folds[0]["n_train"] == 80 and rep.folds[0]["n_test"] == 40
    assert "valid 20 for selection" in rep.protocol["outer"] and rep.protocol["inner"] is None
    assert rep.metrics["accuracy"]["mean"] > 0.85 and rep.metrics["accuracy"]["std"] == 0.0
    idx = given_split(["train", "dev", "evaluation", "val"])
    assert idx["train"].tolist() == [0, 1] and idx["test"].tolist() == [2] and idx["valid"].tolist() == [3]
    with pytest.raises(EvaluationError, match="'holdout' .* not one of train/valid/test"):
        given_split(["train", "holdout"])
    with pytest.raises(EvaluationError, match="needs train and test"):
        given_split(["train", "train"])


def test_regression_nested_cv_and_chance():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(150, 20)).astype(np.float32)
    Y = np.column_stack([X[:, 0] + 0.2 * rng.normal(size=150), X[:, 1] - X[:, 2] + 0.2 * rng.normal(size=150)])
    rep = nested_cv(Head("regression", "ridge"), X, Y, label_names=["arousal", "valence"], folds=5)
    assert rep.metrics["r2"]["mean"] > 0.8 and rep.metrics["pearson_r_valence"]["mean"] > 0.9
    assert rep.chance["r2"] < 0.01
    shuf = nested_cv(Head("regression", "ridge"), X, rng.permutation(Y), label_names=["arousal", "valence"], folds=5)
    assert shuf.metrics["r2"]["mean"] < 0.1


def test_multilabel_nested_cv():
    rng = np.random.default_rng(1)
    X = rng.normal(size=(160, 12)).astype(np.float32)
    T = (X[:, :5] + 0.3 * rng.normal(size=(160, 5)) > 0.5).astype(int)
    rep = nested_cv(Head("multilabel", "logreg", grid=[{"C": 0.1}, {"C": 1.0}]), X, T, label_names=list("abcde"), folds=4)
    assert rep.metrics["roc_auc"]["mean"] > 0.9
    assert rep.chance["roc_auc"] == pytest.approx(0.5)
    assert rep.metrics["p_at_1"]["mean"] > rep.chance["p_at_1"]


def test_metric_functions_on_hand_examples():
    Y = np.array([[1, 0, 0], [0, 1, 1]])
    S = np.array([[0.9, 0.1, 0.5], [0.2, 0.3, 0.8]])
    m = multilabel_metrics(Y, S)
    assert m["p_at_1"] == 1.0 and m["p_at_3"] == pytest.approx(0.5)
    assert m["roc_auc"] == 1.0
    r = regression_metrics(np.array([1.0, 2.0, 3.0]), np.array([1.0, 2.0, 4.0]), ["v"])
    assert r["r2_v"] == pytest.approx(1 - 1 / 2) and r["pearson_r_v"] == pytest.approx(np.corrcoef([1, 2, 3], [1, 2, 4])[0, 1])
    s = summarize([0.5, np.nan, 1.0])
    assert s["mean"] == 0.75 and s["std"] == 0.25 and s["folds"] == [0.5, None, 1.0]


def test_too_few_examples_are_clear_errors():
    X, y = planted(n=20)
    y = y.astype(object)
    y[0] = "lonely"
    with pytest.raises(EvaluationError, match="'lonely' have a single example"):
        nested_cv(Head(), X, y)
    with pytest.raises(EvaluationError, match="at least 2 folds"):
        outer_splits("classification", y, folds=1)
    with pytest.raises(EvaluationError, match="at least 2 groups"):
        outer_splits("regression", np.zeros(10), groups=np.zeros(10), folds=3)


def test_learning_curve_rises_with_shots():
    X, y = planted(n=200, k=4, sep=0.45, seed=3)
    lc = learning_curve(Head("classification", "logreg"), X, y, shots=[1, 20], repeats=4, seed=0)
    assert lc["shots"] == [1, 20] and lc["n_train"] == [4.0, 80.0]
    assert lc["mean"][1] > lc["mean"][0] + 0.1
    assert len(lc["draws"]["20"]) == 4
    shuffled = np.random.default_rng(0).permutation(y)
    lc0 = learning_curve(Head("classification", "logreg"), X, shuffled, shots=[20], repeats=4, seed=0)
    assert lc0["mean"][0] < 0.4


def test_report_outputs_json_markdown_and_plots(tmp_path):
    X, y = planted(n=80)
    rep = nested_cv(Head("classification", "logreg"), X, y, folds=4)
    rep.learning_curve = learning_curve(Head("classification", "logreg"), X, y, shots=[1, 5], repeats=2)
    d = rep.to_json()
    json.dumps(d, allow_nan=False)
    assert d["classes"] == ["c0", "c1", "c2", "c3"] and len(d["confusion_matrix"]["matrix"]) == 4
    assert sum(map(sum, d["confusion_matrix"]["matrix"])) == 80
    assert set(d["per_class"]["c0"]) == {"precision", "recall", "f1", "support"}
    md = rep.to_markdown()
    assert "| accuracy |" in md and "±" in md and "Learning curve" in md and "| true \\ pred |" in md
    write_report(rep, tmp_path / "r.json")
    assert json.loads((tmp_path / "r.json").read_text())["n_items"] == 80
    pngs = rep.save_plots(tmp_path / "plots")
    assert sorted(p.name for p in pngs) == ["confusion_matrix.png", "learning_curve.png"]
    for p in pngs:
        assert p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
