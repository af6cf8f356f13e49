"""The heads package seams: the registry of head kinds, the one fold splitter, old head cards."""
from __future__ import annotations

import json

import numpy as np
import pytest

from embedkit.evaluation import EvaluationError, outer_splits
from embedkit.folds import cv_folds
from embedkit.heads import Head, HeadError, registry
from embedkit.heads.models import LinearModel


def blobs(n=60, k=3, d=12, seed=0):
    rng = np.random.default_rng(seed)
    y = np.arange(n) % k
    X = rng.normal(size=(n, d)) + 3.0 * np.eye(k, d)[y]
    return X.astype(np.float32), np.array(["a", "b", "c"])[y]


def test_builtin_kinds_per_task():
    assert registry.names("classification")[:3] == ["svm", "logreg", "mlp"]
    assert {"svr", "ridge", "mlp"} <= set(registry.names("regression"))
    with pytest.raises(HeadError, match="unknown head kind 'nope'"):
        registry.get("nope")


def test_a_registered_kind_is_fitted_saved_and_loaded(tmp_path):
    calls = []

    def fit_centroid(task, Z, y, params, *, class_weight, seed, K=None):
        calls.append(params)
        cents = np.stack([Z[y == c].mean(axis=0) for c in range(int(y.max()) + 1)])
        return LinearModel(params["scale"] * cents, -0.5 * params["scale"] * (cents**2).sum(1), "softmax")

    registry.register(registry.HeadKind("centroid", ("classification",), fit=fit_centroid,
                                        grid=lambda task: [{"scale": 1.0}, {"scale": 2.0}],
                                        defaults=lambda task: {"scale": 1.0}))
    try:
        X, y = blobs()
        head = Head("classification", "centroid").fit(X, y)
        assert head.kind_ == "centroid" and len(calls) > 2 and np.mean(head.predict(X) == y) > 0.9
        head.save(tmp_path / "c.head")
        back = Head.load(tmp_path / "c.head")
        assert (back.predict(X) == head.predict(X)).all()
        with pytest.raises(HeadError, match="cannot do regression"):
            Head("regression", "centroid").fit(X, np.arange(len(X), dtype=float))
    finally:
        registry._KINDS.pop("centroid", None)


def test_a_patch_input_kind_is_refused_by_the_track_head():
    registry.register(registry.HeadKind("bagkind", ("classification",), input="patches", estimator="some.module:Bag"))
    try:
        X, y = blobs()
        with pytest.raises(HeadError, match="per-patch input.*some.module:Bag"):
            Head("classification", "bagkind").fit(X, y)
    finally:
        registry._KINDS.pop("bagkind", None)


def test_one_fold_splitter_for_outer_and_inner_cv():
    _, y = blobs(n=30)
    splits, desc, notes = outer_splits("classification", y, folds=4, seed=3)
    same = cv_folds("classification", y.astype(str), folds=4, seed=3, strict=True)
    assert desc == same.description == "stratified 4-fold"
    assert all((a == c).all() and (b == d).all() for (a, b), (c, d) in zip(splits, same.splits))
    # lenient (inner) policy: too few examples give None instead of an error
    assert cv_folds("classification", np.array([0, 0, 1]), folds=3, strict=False) is None
    with pytest.raises(EvaluationError, match="single example"):
        outer_splits("classification", np.array(["a", "a", "b"]), folds=3)
    g = np.repeat(np.arange(6), 5)
    inner = cv_folds("regression", np.zeros(30), groups=g, folds=3, seed=0, strict=False)
    for tr, te in inner.splits:
        assert not set(g[tr]) & set(g[te])


def test_head_card_of_release_0_1_still_loads_and_reads_its_spec(tmp_path):
    X, y = blobs(d=40)
    layout = [{"name": f"pool{i + 1}", "start": 8 * i, "stop": 8 * (i + 1)} for i in range(5)]
    head = Head("classification", "logreg", layout=layout, grid=[{"C": 1.0}]).fit(X, y)
    info = {"model": "msd_vgg", "model_fingerprint": "f" * 64, "store_settings_fingerprint": "s" * 64,
            "aggregation": "mean", "store_layers": None, "excerpt_s": None}  # the keys 0.1's `train` wrote
    head.save(tmp_path / "old.head", info=info)
    card = json.loads((tmp_path / "old.head" / "card.json").read_text())
    assert "vector_spec" not in card
    back = Head.load(tmp_path / "old.head")
    assert back.spec_ is not None and back.spec_.model == "msd_vgg" and back.spec_.model_fingerprint == "f" * 64
    assert (back.predict(X) == head.predict(X)).all()


def test_load_head_opens_a_track_vector_head_as_head(tmp_path):
    from embedkit.heads import load_head

    X, y = blobs()
    head = Head("classification", "logreg").fit(X, y)
    out = head.save(tmp_path / "g.head")
    back = load_head(str(out))
    assert type(back) is Head
    np.testing.assert_array_equal(back.predict(X), head.predict(X))
