"""Zero-label spaces: centring, standardisation, PCA, PCA-whitening — and choosing one on the data.

`fit_zero_label(kind, X)` fits one candidate on a store's (unit-normalised) track vectors.
`choose_zero_label` picks among `CANDIDATES` with a held-out self-retrieval proxy: the first half of a
recording must find its own second half among the second halves of other recordings (mean reciprocal
rank). Candidates are fitted on one half of the recordings and scored on the other; ``raw`` (plain
cosine) wins unless another candidate beats it on the held-out recordings by more than
``min_gain`` and one standard error, so the chosen default is never worse than raw cosine on the proxy.

Whitening is measured but not *eligible* as the default: it wins the proxy (it sharpens what makes one
recording unlike all others) yet, measured in benchmarks/metric.py, it lowers same-package retrieval on
held-out packages below raw cosine — the proxy and "similar" disagree there. It stays available by
name (`fit_zero_label("whiten", X)`).
"""
from __future__ import annotations

import math

import numpy as np

from .space import Space, SpaceError

#: (name, kind, components or None = all, shrinkage of the whitening (fraction of the mean variance),
#: eligible as the default choice)
CANDIDATES: tuple[tuple[str, str, int | None, float, bool], ...] = (
    ("raw", "raw", None, 0.0, True),
    ("center", "center", None, 0.0, True),
    ("standardize", "standardize", None, 0.0, True),
    ("pca64", "pca", 64, 0.0, True),
    ("whiten64", "whiten", 64, 0.1, False),
    ("whiten", "whiten", None, 0.1, False),
)


def _unit(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def fit_zero_label(kind: str, X: np.ndarray, *, components: int | None = None, shrink: float = 0.1) -> Space:
    """Fit a zero-label space of ``kind`` on vectors ``X`` ``(n, d)`` (``raw`` needs none).

    ``pca``: project on the ``components`` main axes; ``whiten``: the same axes scaled to unit variance,
    with ``shrink`` × mean variance added to each variance (keeps noise axes from dominating).
    """
    X = np.asarray(X)
    if X.ndim != 2:
        raise SpaceError(f"expected vectors (n, dim), given shape {X.shape}")
    d = X.shape[1]
    if kind == "raw":
        return Space("raw", d, {})
    if X.shape[0] < 2:
        raise SpaceError(f"a {kind} space needs at least 2 vectors, given {X.shape[0]}")
    U = _unit(X)
    mean = U.mean(axis=0)
    if kind == "center":
        return Space("center", d, {"mean": mean})
    if kind == "standardize":
        std = U.std(axis=0)
        return Space("standardize", d, {"mean": mean, "scale": np.maximum(std, 1e-6 * max(std.max(), 1e-12))})
    if kind not in ("pca", "whiten"):
        raise SpaceError(f"unknown zero-label space {kind!r}")
    k = min(components or d, d, U.shape[0] - 1)
    _, s, vt = np.linalg.svd(U - mean, full_matrices=False)
    var = s[:k] ** 2 / max(U.shape[0] - 1, 1)
    W = vt[:k].T
    if kind == "whiten":
        W = W / np.sqrt(var + shrink * var.mean() + 1e-12)
    return Space(kind, d, {"mean": mean, "W": W}, info={"components": int(k), "shrink": shrink if kind == "whiten" else None,
                                                         "explained_variance": float(var.sum() / max((s ** 2).sum() / max(U.shape[0] - 1, 1), 1e-30))})


def proxy_mrr(space: Space, A: np.ndarray, B: np.ndarray) -> np.ndarray:
    """Reciprocal rank of ``B[i]`` for query ``A[i]`` among all rows of ``B``, per query ``(t,)``."""
    za, zb = space.transform(A), space.transform(B)
    S = za @ zb.T
    own = np.diag(S)[:, None]
    rank = 1 + (S > own).sum(axis=1)
    return 1.0 / rank


def choose_zero_label(X: np.ndarray, A: np.ndarray | None, B: np.ndarray | None, *, fit_rows: np.ndarray | None = None,
                      seed: int = 0, min_gain: float = 0.005) -> tuple[Space, dict]:
    """Pick a zero-label space for track vectors ``X`` with the half-vs-half proxy ``(A, B)`` ``(t, d)``.

    ``fit_rows``: rows of ``X`` belonging to the proxy's fit half of the recordings (``A``/``B`` rows
    are the other half); default: all of ``X`` (then ``A``/``B`` should come from held-out recordings).
    Returns ``(space refitted on all of X, report)``; the report lists every candidate's held-out MRR.
    """
    X = np.asarray(X, np.float32)
    report: dict = {"proxy": "self-retrieval: first half of a recording finds its second half (MRR)",
                    "candidates": [], "chosen": "raw"}
    if A is None or B is None or A.shape[0] < 4:
        report["reason"] = ("no per-patch vectors (embed with --patches): no proxy to choose on, raw cosine kept"
                            if A is None else f"only {0 if A is None else A.shape[0]} held-out recordings for the proxy: raw cosine kept")
        return Space("raw", X.shape[1], {}, info={"zero_label": report}), report
    Xf = X if fit_rows is None else X[fit_rows]
    scores: dict[str, np.ndarray] = {}
    eligible = {c[0] for c in CANDIDATES if c[4]}
    for name, kind, comps, shrink, ok in CANDIDATES:
        if kind in ("pca", "whiten") and comps is not None and comps >= min(Xf.shape[0] - 1, X.shape[1]):
            continue
        try:
            sp = fit_zero_label(kind, Xf, components=comps, shrink=shrink)
        except SpaceError:
            continue
        rr = proxy_mrr(sp, A, B)
        scores[name] = rr
        report["candidates"].append({"name": name, "kind": kind, "components": comps, "mrr": round(float(rr.mean()), 4),
                                     "recall@1": round(float((rr == 1).mean()), 4), "eligible": ok})
    raw = scores["raw"]
    best, best_gain = "raw", 0.0
    for name, rr in scores.items():
        if name not in eligible:
            continue
        diff = rr - raw
        gain = float(diff.mean())
        se = float(diff.std(ddof=1) / math.sqrt(diff.size)) if diff.size > 1 else math.inf
        if gain > max(min_gain, se) and gain > best_gain:
            best, best_gain = name, gain
    report.update({"chosen": best, "gain_over_raw": round(best_gain, 4), "fit_tracks": int(Xf.shape[0]),
                   "proxy_tracks": int(A.shape[0]),
                   "reason": ("raw cosine: no candidate beat it on held-out recordings" if best == "raw" else
                              f"{best} beats raw cosine by {best_gain:.3f} MRR on {A.shape[0]} held-out recordings")})
    _, kind, comps, shrink, _ = next(c for c in CANDIDATES if c[0] == best)
    space = fit_zero_label(kind, X, components=comps, shrink=shrink)
    space.info = {**space.info, "zero_label": report}
    return space, report
