"""Heads: numpy inference equals scikit-learn's, planted signals are learned, safe persistence."""
from __future__ import annotations

import json
import warnings

import numpy as np
import pytest

from embedkit.errors import ModelMismatchError
from embedkit.heads import (
    CHOI_C,
    CHOI_GAMMA,
    Head,
    HeadError,
    InputLayout,
    NotFittedError,
    _fit_config,
    check_compatible,
    default_grid,
    parse_layers_grid,
    platt_fit,
    read_card,
)

LAYOUT = [{"name": f"pool{i + 1}", "start": 8 * i, "stop": 8 * (i + 1)} for i in range(5)]


def blobs(n=120, k=3, d=40, sep=1.0, seed=0, cols=None):
    """Gaussian classes whose means differ (in ``cols`` only, when given)."""
    rng = np.random.default_rng(seed)
    y = np.arange(n) % k
    centres = rng.normal(size=(k, d))
    if cols is not None:
        mask = np.zeros(d)
        mask[cols] = 1
        centres *= mask
    X = rng.normal(size=(n, d)) + sep * centres[y]
    return X.astype(np.float32), y


def test_choi_grid_is_the_papers():
    grid = default_grid("svm", "classification")
    assert CHOI_C == (0.1, 2.0, 8.0, 32.0)
    assert CHOI_GAMMA[0] == 2.0**-3 and CHOI_GAMMA[-2] == 2.0**-13 and CHOI_GAMMA[-1] == "auto"
    assert len(grid) == 4 * 12 + 4
    assert {g["C"] for g in grid} == set(CHOI_C) and {g["gamma"] for g in grid if "gamma" in g} == set(CHOI_GAMMA)
    assert sum(g["kernel"] == "linear" for g in grid) == 4
    assert grid[0] == {"kernel": "rbf", "C": 2.0, "gamma": "auto"}  # ties go to a moderate setting


@pytest.mark.parametrize("k", [2, 4])
@pytest.mark.parametrize("kernel", ["rbf", "linear"])
def test_svc_numpy_inference_equals_sklearn(k, kernel):
    from sklearn.svm import SVC

    X, y = blobs(n=90, k=k, d=12, sep=0.7, seed=k)
    Z = (X - X.mean(0)) / X.std(0)
    Zt = np.random.default_rng(1).normal(size=(40, 12))
    m = _fit_config("svm", "classification", Z.astype(np.float64), y, {"kernel": kernel, "C": 2.0, "gamma": 0.05},
                    class_weight=None, seed=0)
    ref = SVC(C=2.0, kernel=kernel, gamma=0.05).fit(Z, y)
    np.testing.assert_array_equal(m.predict_index(Zt), ref.predict(Zt))
    np.testing.assert_allclose(m.decision(Zt), ref.decision_function(Zt), atol=1e-8)


@pytest.mark.parametrize("kind", ["logreg", "mlp"])
@pytest.mark.parametrize("k", [2, 3])
def test_linear_and_mlp_inference_equal_sklearn(kind, k):
    from sklearn.linear_model import LogisticRegression
    from sklearn.neural_network import MLPClassifier

    from embedkit.heads import _predict_index, _sigmoid, _softmax

    X, y = blobs(n=150, k=k, d=10, sep=0.8, seed=3)
    Z = ((X - X.mean(0)) / X.std(0)).astype(np.float64)
    Zt = np.random.default_rng(2).normal(size=(30, 10))
    params = {"C": 0.5} if kind == "logreg" else {"hidden": 16, "alpha": 1e-2}
    m = _fit_config(kind, "classification", Z, y, params, class_weight=None, seed=0)
    if kind == "logreg":
        ref = LogisticRegression(C=0.5, max_iter=2000).fit(Z, y)
    else:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ref = MLPClassifier(hidden_layer_sizes=(16,), alpha=1e-2, max_iter=300, early_stopping=True, random_state=0,
                                n_iter_no_change=10).fit(Z, y)
    s = m.scores(Zt)
    p = _softmax(s) if m.link == "softmax" else np.column_stack([1 - _sigmoid(s[:, 0]), _sigmoid(s[:, 0])])
    np.testing.assert_array_equal(_predict_index(m, Zt), ref.predict(Zt))
    np.testing.assert_allclose(p, ref.predict_proba(Zt), atol=1e-10)


def test_regression_inference_equals_sklearn():
    from sklearn.linear_model import Ridge
    from sklearn.svm import SVR

    rng = np.random.default_rng(0)
    Z = rng.normal(size=(80, 6))
    Y = np.column_stack([Z[:, 0] + 0.1 * rng.normal(size=80), Z[:, 1] - Z[:, 2]])
    Zt = rng.normal(size=(20, 6))
    svr = _fit_config("svr", "regression", Z, Y, {"kernel": "rbf", "C": 2.0, "gamma": 0.1}, class_weight=None, seed=0)
    for t in range(2):
        np.testing.assert_allclose(svr.scores(Zt)[:, t], SVR(C=2.0, gamma=0.1).fit(Z, Y[:, t]).predict(Zt), atol=1e-8)
    ridge = _fit_config("ridge", "regression", Z, Y, {"alpha": 3.0}, class_weight=None, seed=0)
    np.testing.assert_allclose(ridge.scores(Zt), Ridge(alpha=3.0).fit(Z, Y).predict(Zt), atol=1e-10)


def test_platt_fit_recovers_a_sigmoid():
    rng = np.random.default_rng(0)
    f = rng.normal(size=4000) * 2
    y = rng.random(4000) < 1 / (1 + np.exp(-(1.5 * f - 0.5)))  # P(y=1|f) = 1/(1+exp(a f + b)), a=-1.5, b=0.5
    a, b = platt_fit(f, y)
    assert abs(a + 1.5) < 0.15 and abs(b - 0.5) < 0.15


@pytest.mark.parametrize("kind", ["svm", "logreg", "mlp"])
def test_planted_signal_is_learned(kind):
    X, y = blobs(n=240, k=3, d=40, sep=0.6, seed=7)
    h = Head("classification", kind, layout=[{"name": "all", "start": 0, "stop": 40}]).fit(X[:160], y[:160])
    acc = np.mean(h.predict(X[160:]) == y[160:].astype(str))
    assert acc > 0.9, acc
    proba = h.predict_proba(X[160:])
    assert proba.shape == (80, 3) and np.allclose(proba.sum(1), 1)
    assert np.mean(h.classes_[proba.argmax(1)] == y[160:].astype(str)) > 0.85


def test_shuffled_labels_are_not_learned():
    X, y = blobs(n=240, k=3, d=40, sep=0.6, seed=7)
    y_shuf = np.random.default_rng(1).permutation(y)
    h = Head("classification", "svm").fit(X[:160], y_shuf[:160])
    acc = np.mean(h.predict(X[160:]) == y_shuf[160:].astype(str))
    assert acc < 0.5, acc  # chance is 1/3


def test_layer_subset_is_a_hyper_parameter():
    # the classes differ only in block pool4 (columns 24:32); the other blocks are pure noise
    X, y = blobs(n=180, k=3, d=40, sep=1.2, seed=5, cols=list(range(24, 32)))
    h = Head("classification", "logreg", layout=LAYOUT, layers_grid="default").fit(X, y)
    assert "pool4" in h.layers_
    assert len(h.layers_) <= 3 and len(h.columns_) == 8 * len(h.layers_)
    assert {tuple(r["layers"]) for r in h.cv_results_} >= {("pool1",), ("pool4",), tuple(f"pool{i}" for i in range(1, 6))}
    fixed = Head("classification", "logreg", layout=LAYOUT, layers="pool1,2").fit(X, y)
    assert fixed.layers_ == ("pool1", "pool2") and list(fixed.columns_) == list(range(16))


def test_layers_parse_numbers_names_and_errors():
    lay = InputLayout.from_manifest(LAYOUT, 40)
    assert lay.parse("1, pool5") == ("pool1", "pool5")
    assert lay.parse(None) == tuple(f"pool{i}" for i in range(1, 6))
    with pytest.raises(HeadError, match="out of range 1..5"):
        lay.parse("6")
    with pytest.raises(HeadError, match="unknown layer 'pool9'"):
        lay.parse("pool9")
    assert parse_layers_grid("1,2|5", lay) == [("pool1", "pool2"), ("pool5",)]
    std = InputLayout.from_manifest(LAYOUT + [{"name": f"pool{i + 1}_std", "start": 40 + 8 * i, "stop": 48 + 8 * i} for i in range(5)], 80)
    assert list(std.columns(["pool2"])) == list(range(8, 16)) + list(range(48, 56))
    with pytest.raises(HeadError, match="covers 40 columns but vectors have 41"):
        InputLayout.from_manifest(LAYOUT, 41)


def test_class_weight_balanced_helps_the_minority():
    rng = np.random.default_rng(3)
    n = 400
    y = (rng.random(n) < 0.08).astype(int)
    X = (rng.normal(size=(n, 10)) + 0.9 * y[:, None] * np.r_[1, 1, np.zeros(8)]).astype(np.float32)
    Xt_rng = np.random.default_rng(4)
    yt = np.r_[np.zeros(300, int), np.ones(100, int)]
    Xt = (Xt_rng.normal(size=(400, 10)) + 0.9 * yt[:, None] * np.r_[1, 1, np.zeros(8)]).astype(np.float32)
    plain = Head("classification", "logreg", grid=[{"C": 1.0}]).fit(X, y)
    bal = Head("classification", "logreg", grid=[{"C": 1.0}], class_weight="balanced").fit(X, y)
    rec = lambda h: np.mean(h.predict(Xt)[yt == 1] == "1")  # noqa: E731
    assert rec(bal) > rec(plain) + 0.2
    assert rec(bal) > 0.6


def test_selection_on_a_subsample_then_refit_on_all():
    X, y = blobs(n=300, k=3, d=20, sep=0.6, seed=9)
    h = Head("classification", "svm", selection_subsample=90).fit(X[:240], y[:240])
    assert "90-item subsample" in h.selection_["reason"] and h.n_train_ == 240
    assert np.mean(h.predict(X[240:]) == y[240:].astype(str)) > 0.85
    assert h.has_proba


def test_one_example_per_class_uses_defaults():
    X, y = blobs(n=3, k=3, d=20, sep=3.0, seed=2)
    h = Head("classification", "svm").fit(X, y)
    assert h.selection_["inner_folds"] == 0 and "defaults" in h.selection_["reason"]
    assert h.params_ == {"kernel": "linear", "C": 2.0}
    assert not h.has_proba
    with pytest.raises(HeadError, match="no probability model"):
        h.predict_proba(X)
    assert list(h.predict(X)) == ["0", "1", "2"]


def test_regression_and_multilabel_heads():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(200, 16)).astype(np.float32)
    Y = np.column_stack([3 * X[:, 0] + 5, -2 * X[:, 1]]) + 0.1 * rng.normal(size=(200, 2))
    for kind in ("ridge", "svr"):
        h = Head("regression", kind).fit(X[:150], Y[:150], label_names=["arousal", "valence"])
        pred = h.predict(X[150:])
        assert pred.shape == (50, 2) and h.output_names == ["arousal", "valence"]
        r2 = 1 - ((pred - Y[150:]) ** 2).sum(0) / ((Y[150:] - Y[150:].mean(0)) ** 2).sum(0)
        assert (r2 > 0.8).all(), (kind, r2)
    one = Head("regression", "ridge").fit(X, Y[:, 0])
    assert one.predict(X[:5]).shape == (5,)
    T = (X[:, :4] > 0).astype(int)
    T[:, 3] = 0  # a tag that is never on
    ml = Head("multilabel", "logreg").fit(X[:150], T[:150], label_names=list("abcd"))
    P = ml.predict_proba(X[150:])
    assert P.shape == (50, 4) and ((P >= 0) & (P <= 1)).all()
    assert np.mean(ml.predict(X[150:])[:, :3] == T[150:, :3]) > 0.9
    assert P[:, 3].max() < 0.1


def test_bad_inputs_are_refused():
    X, y = blobs(n=30, k=2, d=5)
    with pytest.raises(HeadError, match="30 vectors but 29 labels"):
        Head().fit(X, y[:29])
    Xn = X.copy()
    Xn[4, 2] = np.nan
    with pytest.raises(HeadError, match="NaN/inf .* row 4"):
        Head().fit(Xn, y)
    with pytest.raises(HeadError, match="cannot do regression"):
        Head("regression", "svm").fit(X, y.astype(float))
    with pytest.raises(HeadError, match="unknown task"):
        Head("clustering").fit(X, y)
    with pytest.raises(HeadError, match="at least 2 classes"):
        Head().fit(X, np.zeros(30))
    with pytest.raises(NotFittedError, match="call fit"):
        Head().predict(X)
    h = Head(grid=[{"kernel": "linear", "C": 1.0}]).fit(X, y)
    with pytest.raises(HeadError, match="vectors have 6 columns, this head expects 5"):
        h.predict(np.zeros((2, 6)))


def test_save_load_roundtrip_and_card(tmp_path):
    X, y = blobs(n=120, k=3, d=40, sep=0.8, seed=1)
    h = Head("classification", "svm", layout=LAYOUT, layers="pool2,pool3").fit(X, y)
    path = h.save(tmp_path / "genre.head", info={"model": "msd_vgg", "model_fingerprint": "f" * 64, "aggregation": "mean"})
    assert sorted(p.name for p in path.iterdir()) == ["card.json", "weights.npz"]
    card = json.loads((path / "card.json").read_text())
    assert card["task"] == "classification" and card["classes"] == ["0", "1", "2"]
    assert card["layers"] == ["pool2", "pool3"] and card["model_fingerprint"] == "f" * 64
    assert card["input_dim"] == 40 and card["has_proba"] is True
    with np.load(path / "weights.npz", allow_pickle=False) as z:  # plain arrays only
        assert all(z[k].dtype != object for k in z.files)
    h2 = Head.load(path)
    np.testing.assert_array_equal(h2.predict(X), h.predict(X))
    np.testing.assert_allclose(h2.predict_proba(X), h.predict_proba(X))
    with pytest.raises(HeadError, match="already exists"):
        h.save(path)
    h.save(path, overwrite=True)


def test_tampered_or_unsafe_heads_are_refused(tmp_path):
    X, y = blobs(n=60, k=2, d=6)
    path = Head("classification", "logreg").fit(X, y).save(tmp_path / "h")
    with np.load(path / "weights.npz") as z:
        arrays = {k: z[k] for k in z.files}
    arrays["model.coef"] = arrays["model.coef"] * 2
    np.savez(path / "weights.npz", **arrays)
    with pytest.raises(HeadError, match="does not match its checksum"):
        Head.load(path)
    arrays["model.coef"] = np.array([{"evil": 1}], dtype=object)  # would need pickle to load
    np.savez(path / "weights.npz", **arrays)
    with pytest.raises(HeadError, match="refused to load"):
        Head.load(path)
    (path / "card.json").write_text("{not json")
    with pytest.raises(HeadError, match="unreadable card"):
        read_card(path)
    with pytest.raises(HeadError, match="no such head"):
        read_card(tmp_path / "nope")


def test_head_refuses_vectors_of_another_model(tmp_path):
    card = {"model": "msd_vgg", "model_fingerprint": "a" * 64, "aggregation": "mean"}
    check_compatible(card, model_fingerprint="a" * 64, aggregation="mean")
    with pytest.raises(ModelMismatchError, match="fingerprint aaaa.* but the store come from fingerprint bbbb"):
        check_compatible(card, model_fingerprint="b" * 64, source="the store")
    with pytest.raises(ModelMismatchError, match="'mean' aggregated vectors"):
        check_compatible(card, model_fingerprint="a" * 64, aggregation="mean+std")


def test_align_selects_blocks_from_a_wider_layout():
    X, y = blobs(n=90, k=3, d=40, sep=1.0, seed=4)
    sub = [{"name": "pool4", "start": 0, "stop": 8}, {"name": "pool5", "start": 8, "stop": 16}]
    h = Head("classification", "logreg", layout=sub).fit(X[:, 24:40], y)
    np.testing.assert_array_equal(h.predict(h.align(X, LAYOUT)), h.predict(X[:, 24:40]))
    with pytest.raises(ModelMismatchError, match="needs feature block 'pool4'"):
        h.align(X[:, :24], LAYOUT[:3])
