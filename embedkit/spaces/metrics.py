"""Same-group retrieval quality of a space: triplet accuracy, recall@k, mAP (pure numpy).

Every vector is a query against all the others; its relevant items are those of the same ``group``.
Items sharing the query's ``exclude`` key (e.g. other segments of the same recording when the groups
are packages) are left out of its ranking, so a space is not credited for recognising one recording.
"""
from __future__ import annotations

import math

import numpy as np


def _unit(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def retrieval_metrics(Z: np.ndarray, groups: np.ndarray, *, exclude: np.ndarray | None = None, k: int = 10,
                      queries: np.ndarray | None = None, chunk: int = 1024) -> dict:
    """Same-group retrieval over ``Z`` ``(n, d)`` (cosine; rows need not be unit) with labels ``groups`` ``(n,)``.

    Returns ``{"map", "recall@k", "precision@k", "mrr", "queries"}``: mAP over the full ranking, recall@k =
    share of queries with at least one relevant item in their top k (the metric-learning convention),
    precision@k, mean reciprocal rank of the first relevant item; means over queries with ≥ 1 relevant
    item (``queries``: positions to use as queries, default all).
    """
    Z = _unit(Z)
    g = np.asarray(groups)
    n = Z.shape[0]
    _, gi = np.unique(g, return_inverse=True)
    ex = None if exclude is None else np.unique(np.asarray(exclude), return_inverse=True)[1]
    qs = np.arange(n) if queries is None else np.asarray(queries)
    aps, hits, precs, rrs = [], [], [], []
    for s in range(0, qs.size, chunk):
        q = qs[s : s + chunk]
        S = Z[q] @ Z.T  # (b, n)
        drop = np.zeros_like(S, dtype=bool)
        drop[np.arange(q.size), q] = True
        if ex is not None:
            drop |= ex[q][:, None] == ex[None, :]
        S = np.where(drop, -np.inf, S)
        rel = (gi[q][:, None] == gi[None, :]) & ~drop
        order = np.argsort(-S, axis=1, kind="stable")
        R = np.take_along_axis(rel, order, 1)
        n_rel = R.sum(axis=1)
        keep = n_rel > 0
        if not np.any(keep):
            continue
        R, n_rel = R[keep], n_rel[keep]
        cum = np.cumsum(R, axis=1)
        ranks = np.arange(1, R.shape[1] + 1)
        aps.append(((cum / ranks) * R).sum(axis=1) / n_rel)
        hits.append(R[:, :k].any(axis=1))
        precs.append(R[:, :k].sum(axis=1) / k)
        rrs.append(1.0 / (np.argmax(R, axis=1) + 1))
    if not aps:
        return {"map": math.nan, f"recall@{k}": math.nan, f"precision@{k}": math.nan, "mrr": math.nan, "queries": 0}
    ap, hit, prec, rr = (np.concatenate(v) for v in (aps, hits, precs, rrs))
    return {"map": float(ap.mean()), f"recall@{k}": float(hit.mean()), f"precision@{k}": float(prec.mean()),
            "mrr": float(rr.mean()), "queries": int(ap.size), "map_se": float(ap.std(ddof=1) / math.sqrt(ap.size)) if ap.size > 1 else 0.0}


def sample_triplets(groups: np.ndarray, n: int, *, exclude: np.ndarray | None = None, seed: int = 0) -> np.ndarray:
    """``(m, 3)`` positions (anchor, positive of the same group, negative of another group), m ≤ n.

    Positives never share the anchor's ``exclude`` key. Anchors without a valid positive are skipped.
    """
    rng = np.random.default_rng(seed)
    g = np.asarray(groups)
    ex = None if exclude is None else np.asarray(exclude)
    idx_by = {v: np.flatnonzero(g == v) for v in np.unique(g)}
    if len(idx_by) < 2:
        return np.zeros((0, 3), np.int64)
    out = []
    anchors = rng.integers(0, g.size, size=4 * n)
    for a in anchors:
        same = idx_by[g[a]]
        same = same[same != a] if ex is None else same[ex[same] != ex[a]]
        if same.size == 0:
            continue
        p = same[rng.integers(same.size)]
        neg = rng.integers(g.size)
        while g[neg] == g[a]:
            neg = rng.integers(g.size)
        out.append((a, p, neg))
        if len(out) == n:
            break
    return np.asarray(out, np.int64).reshape(-1, 3)


def triplet_accuracy(Z: np.ndarray, triplets: np.ndarray) -> float:
    """Share of triplets (a, p, n) with cos(a, p) > cos(a, n)."""
    if triplets.size == 0:
        return math.nan
    Z = _unit(Z)
    a, p, n = triplets.T
    return float(np.mean(np.einsum("ij,ij->i", Z[a], Z[p]) > np.einsum("ij,ij->i", Z[a], Z[n])))
