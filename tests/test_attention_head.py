"""Attention-pooling head (embedkit.heads.attention): gradients, learning where the evidence is, cards."""
from __future__ import annotations

import json

import numpy as np
import pytest

from embedkit.heads import Head, HeadError, load_head, registry
from embedkit.heads.attention import AttentionHead, _loss_grad, as_bags

D = 8


def _bags(n: int, seed: int, *, signal: float = 2.5, seg: int = 4):
    """Tracks of 12–24 noise patches; class c hides prototype c in ``seg`` consecutive patches."""
    rng = np.random.default_rng(seed)
    proto = np.random.default_rng(99).normal(size=(3, D))
    bags, y, where = [], [], []
    for i in range(n):
        T = int(rng.integers(12, 25))
        b = rng.normal(size=(T, D))
        c = i % 3
        s = int(rng.integers(0, T - seg))
        b[s:s + seg] += signal * proto[c]
        bags.append(b.astype(np.float32))
        y.append(f"c{c}")
        where.append((s, s + seg))
    return bags, np.array(y), where


@pytest.fixture(scope="module")
def fitted():
    bags, y, _ = _bags(60, 0)
    return AttentionHead(hidden=8, l2_grid=(1e-2,), max_iter=120).fit(bags, y)


@pytest.mark.parametrize("task", ["classification", "multilabel", "regression"])
def test_gradient_matches_finite_differences(task):
    rng = np.random.default_rng(1)
    n, T, d, H, K = 3, 5, 4, 3, 3
    Z = rng.normal(size=(n, T, d))
    M = np.ones((n, T), bool)
    M[0, 3:] = False  # a shorter track: padding must not count
    A = np.concatenate([Z, rng.normal(size=(n, T, 5))], axis=2)
    Y = rng.integers(0, K, n) if task == "classification" else (rng.random((n, K)) if task == "multilabel" else rng.normal(size=(n, K)))
    dims = (A.shape[2], H, d, K)
    v = rng.normal(size=dims[0] * H + 2 * H + d * K + K) * 0.3
    w = rng.random(n) + 0.5
    f, g = _loss_grad(v, dims, Z, A, M, Y, w, task, 0.1, 0.01)
    num = np.empty_like(v)
    for i in range(v.size):
        e = np.zeros_like(v)
        e[i] = 1e-6
        num[i] = (_loss_grad(v + e, dims, Z, A, M, Y, w, task, 0.1, 0.01)[0] - _loss_grad(v - e, dims, Z, A, M, Y, w, task, 0.1, 0.01)[0]) / 2e-6
    assert np.abs(num - g).max() < 1e-6


def test_weights_sum_to_one_and_follow_the_inserted_segment(fitted):
    bags, y, where = _bags(30, 7)  # unseen tracks
    hits = 0
    for b, (s, e) in zip(bags, where):
        w = fitted.explain_one(b)["weights"]
        assert w.shape == (len(b),)
        assert np.all(w >= 0) and abs(w.sum() - 1.0) < 1e-9
        hits += s <= int(np.argmax(w)) < e
        assert w[s:e].sum() > 2 * (e - s) / len(b)  # clearly more than uniform attention gives the insert
    assert hits >= 27
    assert np.mean(fitted.predict(bags) == y) >= 0.9


def test_padding_does_not_change_a_track(fitted):
    bags, _, _ = _bags(4, 3)
    alone = fitted.predict_proba([bags[0]])
    together = fitted.predict_proba(bags)[0]
    np.testing.assert_allclose(alone[0], together, atol=1e-12)


def test_save_load_roundtrip_and_tampering(fitted, tmp_path):
    bags, _, _ = _bags(5, 11)
    out = fitted.save(tmp_path / "a.head", info={"model": "msd_vgg", "model_fingerprint": "f" * 64})
    card = json.loads((out / "card.json").read_text())
    assert card["kind"] == "attention" and card["input"] == "patches" and card["model_type"] == "attention_pool"
    assert set(card["arrays"]) >= {"model.W1", "model.V", "mean", "scale"}
    back = AttentionHead.load(out)
    np.testing.assert_array_equal(back.predict_proba(bags), fitted.predict_proba(bags))
    any_kind = load_head(str(out))  # opens any registered kind from its card
    assert isinstance(any_kind, AttentionHead)
    np.testing.assert_array_equal(any_kind.predict_proba(bags), fitted.predict_proba(bags))
    with pytest.raises(HeadError, match=r"kind 'attention' \(input: patches\); load it with .*AttentionHead.load"):
        Head.load(out)  # a track-vector Head cannot be an attention head: one clear line, no "unknown type"
    np.testing.assert_array_equal(back.explain_one(bags[0])["weights"], fitted.explain_one(bags[0])["weights"])
    with pytest.raises(HeadError, match="already exists"):
        fitted.save(out)
    with np.load(out / "weights.npz") as z:
        arrays = {k: z[k] for k in z.files}
    arrays["model.w2"] = arrays["model.w2"] + 1.0
    np.savez(out / "weights.npz", **arrays)
    with pytest.raises(HeadError, match="checksum"):
        AttentionHead.load(out)


def test_registered_kind_and_bad_input():
    kind = registry.get("attention")
    assert kind.input == "patches" and "classification" in kind.tasks
    with pytest.raises(HeadError, match="n_patches"):
        as_bags(np.zeros((3, 4)))
    with pytest.raises(HeadError, match="widths"):
        as_bags([np.zeros((2, 4)), np.zeros((2, 5))])
    with pytest.raises(HeadError, match="2 classes"):
        AttentionHead(l2_grid=(0.1,)).fit([np.zeros((2, 4))] * 3, ["a"] * 3)


def test_positional_and_soft_teacher_targets():
    bags, y, _ = _bags(30, 5)
    h = AttentionHead(hidden=4, positional=True, l2_grid=(1e-2,), max_iter=60).fit(bags, y)
    assert h.predict_proba(bags).shape == (30, 3)
    # soft targets (a teacher's probabilities): fidelity beats predicting the mean probability
    rng = np.random.default_rng(0)
    Y = np.clip(np.column_stack([(y == "c0") * 0.8 + 0.1, rng.random(30) * 0.2 + 0.4]), 0, 1)
    t = AttentionHead(task="multilabel", hidden=4, l2_grid=(1e-3,), max_iter=80).fit(bags, Y)
    assert t.card()["soft_targets"] is True
    err = np.mean((t.predict_proba(bags) - Y) ** 2)
    assert err < np.mean((Y - Y.mean(axis=0)) ** 2)


def test_nested_cv_accepts_attention_heads():
    from embedkit.evaluation import nested_cv

    bags, y, _ = _bags(36, 2)
    X = np.empty(len(bags), dtype=object)
    X[:] = bags
    rep = nested_cv(AttentionHead(hidden=4, l2_grid=(1e-2, 1e-1), max_iter=60), X, y, folds=3)
    assert rep.head["kind"] == "attention"
    assert rep.metrics["accuracy"]["mean"] > 0.8
    assert all(f["params"]["l2"] in (1e-2, 1e-1) for f in rep.folds)
