"""Attention pooling over a track's per-patch vectors: a head that learns which patches matter.

A track is a bag of patch vectors ``P (n_patches, D) float32`` (one 3-s model patch per row, a
store made with ``--patches``). The head (Ilse et al. 2018's attention-based MIL pooling, as used by
Huang, Chou & Yang 2018 for music highlights) computes, with ``Z`` the standardised patches::

    e_t = w2 · tanh(W1 [Z_t, pos_t] + b1)          attention score of patch t      (T,)
    a   = softmax_t(e)                               attention weights, Σ_t a_t = 1  (T,)
    act_t = Z_t V + c                               class activation of patch t     (T, K)
    out = Σ_t a_t act_t  = (Σ_t a_t Z_t) V + c       track output (logits / values)  (K,)

``pos_t`` (optional, ``positional=True``) is the patch's relative place in the track as five
numbers ``[r, sin 2πr, cos 2πr, sin 4πr, cos 4πr]``, ``r = (t + ½) / T``, seen by the attention only.
Outputs: softmax (classification), sigmoid (multilabel; soft targets such as the teacher's tag
probabilities are allowed) or identity (regression, standardised targets).

Training is numpy + scipy L-BFGS on the exact gradient (no TensorFlow): the attention starts uniform
(``w2 = 0``), i.e. at mean pooling, and moves away from it only where that lowers the loss. The L2
penalty on ``V`` is chosen by an inner CV inside ``fit`` (as `embedkit.heads.Head` does), so an outer
`embedkit.evaluation.nested_cv` never tunes on its test fold. ``X`` everywhere is a sequence of
per-track patch arrays (a ``(n,)`` object array works with `nested_cv`).

Inference is plain numpy from the saved arrays; `AttentionHead.save` writes ``HEAD/card.json`` +
``HEAD/weights.npz`` (no pickle, sha256 per array), in the same card format as the other heads.
"""
from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .base import HeadError, HeadEstimator, NotFittedError
from .card import HEAD_FORMAT, HEAD_FORMAT_VERSION, read_head
from .head import _inner_splits
from .layout import InputLayout
from .registry import HeadKind, register
from .selection import selection_score

KIND = "attention"
MODEL_TYPE = "attention_pool"
TASKS = ("classification", "regression", "multilabel")
N_POS = 5
#: L2 penalties on the classifier ``V`` searched by the inner CV (search order: ties go first).
DEFAULT_L2_GRID = (1e-2, 1e-3, 1e-1)


# ---- input handling ----------------------------------------------------------------------------------


def as_bags(X: Any) -> np.ndarray:
    """``X`` (list of ``(T_i, D)`` arrays, or one ``(n, T, D)`` array) → ``(n,)`` object array of 2-D float32."""
    if isinstance(X, np.ndarray) and X.dtype != object:
        if X.ndim != 3:
            raise HeadError(f"attention heads need per-patch vectors (n_tracks, n_patches, D); given shape={X.shape}")
        X = list(X)
    out = np.empty(len(X), dtype=object)
    for i, b in enumerate(X):
        a = np.asarray(b, dtype=np.float32)
        if a.ndim == 1:
            a = a[None, :]
        if a.ndim != 2 or a.shape[0] == 0:
            raise HeadError(f"track {i}: expected (n_patches, D) patch vectors, given shape={a.shape}")
        out[i] = a
    dims = {b.shape[1] for b in out}
    if len(dims) > 1:
        raise HeadError(f"patch vectors of different widths: {sorted(dims)}")
    return out


def positional(T: int) -> np.ndarray:
    """Relative-position features ``(T, 5)`` float64: ``[r, sin 2πr, cos 2πr, sin 4πr, cos 4πr]``."""
    r = (np.arange(T) + 0.5) / T
    return np.column_stack([r, np.sin(2 * np.pi * r), np.cos(2 * np.pi * r), np.sin(4 * np.pi * r), np.cos(4 * np.pi * r)])


def _pad(bags: Sequence[np.ndarray], cols: np.ndarray, mean: np.ndarray, scale: np.ndarray, pos: bool):
    """Standardised padded batch: ``Z (n, Tmax, d)``, attention input ``A (n, Tmax, d [+5])``, mask ``(n, Tmax)``."""
    n = len(bags)
    tmax = max(b.shape[0] for b in bags)
    d = len(cols)
    Z = np.zeros((n, tmax, d))
    M = np.zeros((n, tmax), bool)
    P = np.zeros((n, tmax, N_POS)) if pos else None
    for i, b in enumerate(bags):
        T = b.shape[0]
        Z[i, :T] = (b[:, cols] - mean) / scale
        M[i, :T] = True
        if pos:
            P[i, :T] = positional(T)
    A = np.concatenate([Z, P], axis=2) if pos else Z
    return Z, A, M


# ---- the model (plain arrays) ------------------------------------------------------------------------


class _Params:
    """Shapes: W1 ``(da, H)``, b1 ``(H,)``, w2 ``(H,)``, V ``(d, K)``, c ``(K,)``."""

    names = ("W1", "b1", "w2", "V", "c")

    def __init__(self, W1, b1, w2, V, c) -> None:
        self.W1, self.b1, self.w2, self.V, self.c = (np.asarray(a, np.float64) for a in (W1, b1, w2, V, c))

    def flat(self) -> np.ndarray:
        return np.concatenate([getattr(self, k).ravel() for k in self.names])

    @classmethod
    def unflat(cls, v: np.ndarray, da: int, H: int, d: int, K: int) -> _Params:
        sizes = [da * H, H, H, d * K, K]
        parts = np.split(v, np.cumsum(sizes)[:-1])
        return cls(parts[0].reshape(da, H), parts[1], parts[2], parts[3].reshape(d, K), parts[4])


def _forward(p: _Params, Z: np.ndarray, A: np.ndarray, M: np.ndarray):
    E = np.tanh(A @ p.W1 + p.b1)                      # (n, T, H)
    s = E @ p.w2                                        # (n, T)
    s = np.where(M, s, -np.inf)
    s = s - s.max(axis=1, keepdims=True)
    a = np.exp(s)
    a /= a.sum(axis=1, keepdims=True)                   # (n, T), zero on padding
    z = np.matmul(a[:, None, :], Z)[:, 0, :]           # (n, d)
    out = z @ p.V + p.c                                 # (n, K)
    return E, a, z, out


def _link_out(task: str, out: np.ndarray) -> np.ndarray:
    if task == "classification":
        s = out - out.max(axis=-1, keepdims=True)
        e = np.exp(s)
        return e / e.sum(axis=-1, keepdims=True)
    if task == "multilabel":
        return 0.5 * (1.0 + np.tanh(0.5 * out))  # stable sigmoid
    return out


def _loss_grad(v, dims, Z, A, M, Y, w, task, l2, l2_att):
    """Mean weighted loss + penalties, and its gradient w.r.t. the flat parameters."""
    da, H, d, K = dims
    p = _Params.unflat(v, da, H, d, K)
    E, a, z, out = _forward(p, Z, A, M)
    n = Z.shape[0]
    wn = w / w.sum()
    if task == "classification":
        q = _link_out(task, out)
        loss = -np.sum(wn * np.log(np.maximum(q[np.arange(n), Y], 1e-300)))
        G = q.copy()
        G[np.arange(n), Y] -= 1.0
    elif task == "multilabel":
        loss = np.sum(wn[:, None] * (np.logaddexp(0, out) - Y * out)) / K
        G = (_link_out(task, out) - Y) / K
    else:
        r = out - Y
        loss = 0.5 * np.sum(wn[:, None] * r * r) / K
        G = r / K
    G = G * wn[:, None]                                  # dL/dout (n, K)
    loss += l2 * np.sum(p.V**2) + l2_att * (np.sum(p.W1**2) + np.sum(p.w2**2))
    dV = z.T @ G + 2 * l2 * p.V
    dc = G.sum(axis=0)
    dz = G @ p.V.T                                       # (n, d)
    da_ = np.matmul(Z, dz[:, :, None])[:, :, 0]         # dL/da (n, T)
    ds = a * (da_ - np.sum(a * da_, axis=1, keepdims=True))
    H = E.shape[2]
    dw2 = ds.reshape(-1) @ E.reshape(-1, H) + 2 * l2_att * p.w2
    dU = (ds[:, :, None] * p.w2[None, None, :] * (1 - E * E)).reshape(-1, H)
    dW1 = A.reshape(-1, A.shape[2]).T @ dU + 2 * l2_att * p.W1
    db1 = dU.sum(axis=0)
    g = np.concatenate([dW1.ravel(), db1, dw2, dV.ravel(), dc])
    return float(loss), g


def _fit_config(bags, Y, w, task, *, cols, mean, scale, pos, hidden, l2, l2_att, max_iter, seed) -> _Params:
    from scipy.optimize import minimize

    Z, A, M = _pad(bags, cols, mean, scale, pos)
    d, da = Z.shape[2], A.shape[2]
    K = int(Y.max()) + 1 if task == "classification" else Y.shape[1]
    rng = np.random.default_rng(seed)
    p0 = _Params(rng.normal(0, 1 / np.sqrt(da), (da, hidden)), np.zeros(hidden), np.zeros(hidden),
                 np.zeros((d, K)), np.zeros(K))
    dims = (da, hidden, d, K)
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1):  # small matrices: BLAS threads cost more than they give (2.0× CPU measured)
        res = minimize(_loss_grad, p0.flat(), args=(dims, Z, A, M, Y, w, task, l2, l2_att), jac=True, method="L-BFGS-B",
                       options={"maxiter": int(max_iter)})
    return _Params.unflat(res.x, *dims)


# ---- the estimator -----------------------------------------------------------------------------------


class AttentionHead(HeadEstimator):
    """Attention-pooling head over per-patch vectors (scikit-learn style; fitted attributes end in ``_``).

    Parameters
    ----------
    task : "classification" | "multilabel" (0/1 or soft targets in [0, 1]) | "regression"
    layout, layers : block layout of the patch vectors and the blocks to use (as `Head`).
    hidden : units of the attention's hidden layer.
    positional : let the attention see each patch's relative position.
    l2_grid : L2 penalties on the classifier searched by the inner CV (``grid`` overrides: list of dicts).
    attention_l2 : fixed L2 penalty on the attention weights.
    max_iter : L-BFGS iterations per fit.
    class_weight : None or "balanced".
    inner_folds, selection_metric, random_state, n_jobs : as `Head` (n_jobs is unused: fits are serial).
    """

    def __init__(
        self,
        task: str = "classification",
        kind: str = KIND,
        *,
        layout: Sequence[dict] | None = None,
        layers: str | Sequence[str] | None = None,
        layers_grid: str | None = None,
        grid: list[dict] | None = None,
        hidden: int = 32,
        positional: bool = False,
        l2_grid: Sequence[float] = DEFAULT_L2_GRID,
        attention_l2: float = 1e-3,
        max_iter: int = 150,
        class_weight: str | None = None,
        inner_folds: int = 3,
        selection_metric: str | None = None,
        selection_subsample: int | None = None,
        random_state: int = 0,
        n_jobs: int = 1,
    ) -> None:
        self.task = task
        self.kind = kind
        self.layout = layout
        self.layers = layers
        self.layers_grid = layers_grid
        self.grid = grid
        self.hidden = hidden
        self.positional = positional
        self.l2_grid = l2_grid
        self.attention_l2 = attention_l2
        self.max_iter = max_iter
        self.class_weight = class_weight
        self.inner_folds = inner_folds
        self.selection_metric = selection_metric
        self.selection_subsample = selection_subsample
        self.random_state = random_state
        self.n_jobs = n_jobs

    # -- plumbing (get_params / set_params / clone / output_names: `HeadEstimator`, shared with Head)
    @property
    def resolved_kind(self) -> str:
        return KIND

    def __repr__(self) -> str:
        return f"AttentionHead(task={self.task!r}, hidden={self.hidden}, positional={self.positional})"

    # -- targets
    def _encode_y(self, y: Any, label_names: Sequence[str] | None) -> np.ndarray:
        if self.task == "classification":
            ys = np.asarray(y).astype(str)
            self.classes_, idx = np.unique(ys, return_inverse=True)
            if len(self.classes_) < 2:
                raise HeadError(f"need at least 2 classes to train a classifier, found {self.classes_.tolist()}")
            return idx.astype(np.int64)
        if self.task == "regression":
            y2 = np.asarray(y, np.float64)
            self.y_1d_ = y2.ndim == 1
            y2 = y2.reshape(len(y2), -1)
            self.targets_ = list(label_names) if label_names is not None else [f"target{t}" for t in range(y2.shape[1])]
            self.y_mean_ = y2.mean(axis=0)
            sd = y2.std(axis=0)
            self.y_scale_ = np.where(sd > 0, sd, 1.0)
            return (y2 - self.y_mean_) / self.y_scale_
        y2 = np.asarray(y, np.float64)
        if y2.ndim != 2 or (y2 < 0).any() or (y2 > 1).any():
            raise HeadError(f"multilabel targets must be an (n, n_labels) matrix of 0/1 or probabilities, given shape={y2.shape}")
        self.labels_ = list(label_names) if label_names is not None else [f"label{t}" for t in range(y2.shape[1])]
        if len(self.labels_) != y2.shape[1]:
            raise HeadError(f"{len(self.labels_)} label names for {y2.shape[1]} label columns")
        self.soft_targets_ = bool(not np.isin(y2, (0.0, 1.0)).all())
        return y2

    def _weights(self, y_m: np.ndarray) -> np.ndarray:
        if self.task == "classification" and self.class_weight == "balanced":
            _, inv, counts = np.unique(y_m, return_inverse=True, return_counts=True)
            return (len(y_m) / (len(counts) * counts))[inv]
        return np.ones(len(y_m))

    def _stats(self, bags: Sequence[np.ndarray], cols: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        allp = np.concatenate([b[:, cols] for b in bags]).astype(np.float64)
        mean = allp.mean(axis=0)
        sd = allp.std(axis=0)
        return mean, np.where(sd > 1e-12, sd, 1.0)

    def _fit_one(self, bags, y_m, params: dict, cols: np.ndarray) -> tuple[_Params, np.ndarray, np.ndarray]:
        mean, scale = self._stats(bags, cols)
        p = _fit_config(bags, y_m, self._weights(y_m), self.task, cols=cols, mean=mean, scale=scale, pos=self.positional,
                        hidden=int(self.hidden), l2=float(params["l2"]), l2_att=float(self.attention_l2),
                        max_iter=self.max_iter, seed=self.random_state)
        return p, mean, scale

    def _score(self, p, mean, scale, cols, bags, y_m, metric: str) -> float:
        Z, A, M = _pad(bags, cols, mean, scale, self.positional)
        out = _forward(p, Z, A, M)[3]
        if self.task == "classification":
            return selection_score(self.task, metric, y_m, np.argmax(out, axis=1))
        if self.task == "regression":
            return selection_score(self.task, metric, y_m, out)
        prob = _link_out(self.task, out)
        if metric == "neg_mse":
            return -float(np.mean((prob - y_m) ** 2))
        return selection_score(self.task, metric, (y_m >= 0.5).astype(np.int64), prob)

    # -- fitting
    def fit(self, X: Any, y: Any, *, groups: Sequence | None = None, label_names: Sequence[str] | None = None,
            splits: Sequence[tuple[np.ndarray, np.ndarray]] | None = None) -> AttentionHead:
        """Pick the L2 penalty by inner CV on ``(X, y)`` only, then refit on all of it.

        ``X``: ``n`` tracks of ``(n_patches, D)`` patch vectors; ``y``: labels ``(n,)``, values, or an
        ``(n, T)`` 0/1 or probability matrix (multilabel); ``groups``/``splits`` as `Head.fit`.
        """
        if self.task not in TASKS:
            raise HeadError(f"unknown task {self.task!r} (one of {', '.join(TASKS)})")
        if self.layers_grid:
            raise HeadError("attention heads do not search layer subsets (--layers-grid); choose --layers")
        bags = as_bags(X)
        n = len(bags)
        if len(y) != n:
            raise HeadError(f"{n} tracks but {len(y)} labels")
        g = None if groups is None else np.asarray(groups)
        D = bags[0].shape[1]
        layout = InputLayout.from_manifest(self.layout, D)
        layers = layout.parse(self.layers)
        cols = layout.columns(layers)
        y_m = self._encode_y(y, label_names)
        metric = self.selection_metric or {"classification": "accuracy", "regression": "r2",
                                           "multilabel": "neg_mse" if getattr(self, "soft_targets_", False) else "roc_auc"}[self.task]
        grid = list(self.grid) if self.grid else [{"l2": float(v)} for v in self.l2_grid]
        if splits is not None:
            splits = [(np.asarray(a, np.int64), np.asarray(b, np.int64)) for a, b in splits]
        elif len(grid) > 1:
            ysplit = y_m if self.task == "classification" else np.zeros(n, np.int64)
            splits = _inner_splits("classification" if self.task == "classification" else "regression", ysplit, g,
                                   self.inner_folds, self.random_state)
        results = []
        if splits is None or len(grid) == 1:
            best = grid[0]
            reason = "single candidate" if len(grid) == 1 else "too few examples for an inner CV: fixed defaults"
        else:
            for order, params in enumerate(grid):
                vals = []
                for tr, va in splits:
                    if self.task == "classification" and len(np.unique(y_m[tr])) < 2:
                        vals.append(float("nan"))
                        continue
                    sub = _sub(self, y_m[tr])
                    p, mean, scale = sub._fit_one(bags[tr], sub._y_sub, params, cols)
                    yv = y_m[va] if self.task != "classification" else _remap(y_m[va], y_m[tr])
                    vals.append(sub._score(p, mean, scale, cols, bags[va], yv, metric) if yv is not None else float("nan"))
                v = np.asarray(vals, np.float64)
                results.append({"params": dict(params), "score": float(np.nanmean(v)) if np.isfinite(v).any() else float("nan"),
                                "fold_scores": v.tolist(), "order": order})
            top = max(results, key=lambda r: (np.nan_to_num(r["score"], nan=-np.inf), -r["order"]))
            best = top["params"]
            reason = f"best mean {metric} over {len(splits)} inner validation split(s)"
        self.model_, self.mean_, self.scale_ = self._fit_one(bags, y_m, best, cols)
        self.kind_ = KIND
        self.params_ = {**best, "hidden": int(self.hidden), "positional": bool(self.positional),
                        "attention_l2": float(self.attention_l2)}
        self.layers_ = tuple(layers)
        self.input_layout_ = layout
        self.columns_ = cols
        self.n_features_in_ = D
        self.n_train_ = n
        scores = [r["score"] for r in results if np.isfinite(r["score"])]
        self.selection_ = {
            "metric": metric,
            "inner_folds": 0 if splits is None or len(grid) == 1 else len(splits),
            "n_candidates": len(grid),
            "reason": reason,
            "best_inner_score": float(max(scores)) if scores else None,
            "note": "the inner-CV score of the chosen setting is optimistic (max over candidates); use nested CV for an estimate",
        }
        self.cv_results_ = results
        return self

    # -- inference (plain numpy)
    def _check_fitted(self) -> None:
        if not hasattr(self, "model_"):
            raise NotFittedError("this AttentionHead is not fitted yet: call fit(X, y) or AttentionHead.load(path) first")

    def _bags(self, X: Any) -> np.ndarray:
        self._check_fitted()
        bags = as_bags(X)
        if len(bags) and bags[0].shape[1] != self.n_features_in_:
            raise HeadError(f"head expects {self.n_features_in_}-dim patch vectors, given {bags[0].shape[1]}")
        return bags

    def explain_one(self, patches: np.ndarray) -> dict[str, np.ndarray]:
        """One track ``(T, D)`` → ``weights (T,)`` (sum 1), ``activations (T, K)`` (per-patch outputs
        through the head's link: class / tag probabilities or target values) and ``output (K,)``."""
        bag = self._bags([patches])[0]
        Z, A, M = _pad([bag], self.columns_, self.mean_, self.scale_, self.positional)
        _, a, _, out = _forward(self.model_, Z, A, M)
        act = Z[0] @ self.model_.V + self.model_.c
        return {"weights": a[0], "activations": self._post(act), "output": self._post(out[0][None])[0]}

    def _post(self, out: np.ndarray) -> np.ndarray:
        if self.task == "regression":
            return out * self.y_scale_ + self.y_mean_
        return _link_out(self.task, out)

    def raw_outputs(self, X: Any) -> np.ndarray:
        """Track outputs before the link ``(n, K)``."""
        bags = self._bags(X)
        out = np.zeros((len(bags), self.model_.V.shape[1]))
        for i in range(0, len(bags), 64):  # bounded padding memory
            Z, A, M = _pad(bags[i:i + 64], self.columns_, self.mean_, self.scale_, self.positional)
            out[i:i + 64] = _forward(self.model_, Z, A, M)[3]
        return out

    def attention(self, X: Any) -> list[np.ndarray]:
        """Per-patch attention weights of each track (list of ``(T_i,)``, each summing to 1)."""
        return [self.explain_one(b)["weights"] for b in self._bags(X)]

    @property
    def has_proba(self) -> bool:
        self._check_fitted()
        return self.task != "regression"

    def predict_proba(self, X: Any) -> np.ndarray:
        """Class probabilities ``(n, k)`` (order of ``classes_``) or tag probabilities ``(n, T)``."""
        if self.task == "regression":
            raise HeadError("a regression head has no probabilities; use predict")
        return _link_out(self.task, self.raw_outputs(X))

    def predict(self, X: Any, *, threshold: float = 0.5) -> np.ndarray:
        """Class labels ``(n,)``, target values ``(n,)``/``(n, t)`` or 0/1 tags ``(n, T)``."""
        out = self.raw_outputs(X)
        if self.task == "classification":
            return self.classes_[np.argmax(out, axis=1)]
        if self.task == "regression":
            v = out * self.y_scale_ + self.y_mean_
            return v[:, 0] if self.y_1d_ else v
        return (_link_out(self.task, out) >= threshold).astype(np.int64)

    # -- persistence
    def card(self) -> dict:
        self._check_fitted()
        card = {
            "format": HEAD_FORMAT,
            "format_version": HEAD_FORMAT_VERSION,
            "task": self.task,
            "kind": KIND,
            "params": self.params_,
            "class_weight": self.class_weight,
            "layers": list(self.layers_),
            "input_layout": self.input_layout_.to_json(),
            "input_dim": int(self.n_features_in_),
            "input": "patches",
            "n_train": int(self.n_train_),
            "model_type": MODEL_TYPE,
            "model_meta": {"hidden": int(self.model_.W1.shape[1]), "positional": bool(self.positional)},
            "selection": self.selection_,
            "has_proba": self.has_proba,
        }
        card.update(self._output_fields())
        if self.task == "multilabel":
            card["soft_targets"] = bool(getattr(self, "soft_targets_", False))
        return card

    def _arrays(self) -> dict[str, np.ndarray]:
        arrays = {f"model.{k}": np.ascontiguousarray(getattr(self.model_, k)) for k in _Params.names}
        arrays.update({"columns": self.columns_, "mean": self.mean_, "scale": self.scale_})
        if self.task == "regression":
            arrays.update({"y_mean": self.y_mean_, "y_scale": self.y_scale_})
        return arrays

    def save(self, path: str | os.PathLike, *, info: dict | None = None, overwrite: bool = False) -> Path:
        """Write ``path/card.json`` + ``path/weights.npz`` atomically (plain arrays, sha256 each, no pickle).

        ``info``: extra card fields (model, model_fingerprint, vector spec, metrics, ...).
        """
        self._check_fitted()
        arrays = self._arrays()
        card = self.card()
        return self._write(path, card, arrays, info=info, overwrite=overwrite)

    @classmethod
    def load(cls, path: str | os.PathLike) -> AttentionHead:
        """Load a head saved by `save`: checks format, kind, array shapes and checksums (no pickle)."""
        p = Path(path)
        card, arrays = read_head(p)
        if card.get("model_type") != MODEL_TYPE:
            raise HeadError(f"{p}: not an attention head (kind {card.get('kind')!r}); load it with embedkit.heads.Head.load")
        needed = [f"model.{k}" for k in _Params.names] + ["columns", "mean", "scale"]
        missing = [k for k in needed if k not in arrays or k not in card.get("arrays", {})]
        if missing:
            raise HeadError(f"{p}: array(s) {', '.join(missing)} missing or unchecksummed (corrupt or edited head)")
        meta = card.get("model_meta", {})
        params = card.get("params", {})
        head = cls(task=card["task"], layout=card["input_layout"], layers=card["layers"], hidden=int(meta.get("hidden", 32)),
                   positional=bool(meta.get("positional", False)), attention_l2=float(params.get("attention_l2", 1e-3)),
                   class_weight=card.get("class_weight"))
        head.model_ = _Params(*(arrays[f"model.{k}"] for k in _Params.names))
        head.kind_ = KIND
        head.params_ = params
        head.layers_ = tuple(card["layers"])
        head.input_layout_ = InputLayout.from_manifest(card["input_layout"], card["input_dim"])
        head.columns_ = arrays["columns"].astype(np.int64)
        head.mean_, head.scale_ = arrays["mean"], arrays["scale"]
        head.n_features_in_ = int(card["input_dim"])
        head.n_train_ = int(card.get("n_train", 0))
        head.selection_ = card.get("selection", {})
        head.cv_results_ = []
        if head.task == "classification":
            head.classes_ = np.array(card["classes"])
        elif head.task == "multilabel":
            head.labels_ = list(card["labels"])
            head.soft_targets_ = bool(card.get("soft_targets", False))
        else:
            head.targets_ = list(card["targets"])
            head.y_1d_ = bool(card.get("y_1d", False))
            head.y_mean_, head.y_scale_ = arrays["y_mean"], arrays["y_scale"]
        head.card_ = card
        return head


def _sub(head: AttentionHead, y_tr: np.ndarray) -> AttentionHead:
    """A clone fitted on inner-training targets ``y_tr`` (class indices re-encoded to the classes present)."""
    sub = head.clone()
    if head.task == "classification":
        sub.classes_, sub._y_sub = np.unique(y_tr, return_inverse=True)
    else:
        sub._y_sub = y_tr
        for k in ("y_mean_", "y_scale_", "y_1d_"):
            if hasattr(head, k):
                setattr(sub, k, getattr(head, k))
    return sub


def _remap(y_va: np.ndarray, y_tr: np.ndarray) -> np.ndarray | None:
    """Validation class indices in the inner-training encoding (unseen classes → -1, always wrong)."""
    present = np.unique(y_tr)
    pos = {int(c): i for i, c in enumerate(present)}
    return np.array([pos.get(int(c), -1) for c in y_va], np.int64)


register(HeadKind(KIND, TASKS, input="patches", estimator="embedkit.heads.attention:AttentionHead",
                  description="attention pooling over a track's per-patch vectors (fc-tanh-fc-softmax)"))


def is_attention_card(card: dict) -> bool:
    """True for the card of an attention head (whose input is per-patch vectors)."""
    return card.get("model_type") == MODEL_TYPE or card.get("kind") == KIND


# ---- binding to stores (per-patch vectors) ---------------------------------------------------------------


def patch_layout(manifest: dict) -> list[dict] | None:
    """Block layout ``[{"name", "start", "stop", ...}]`` of a store's per-patch vectors (None if unknown)."""
    from ..spec import VectorSpec

    try:
        return VectorSpec.from_json(manifest).patch_layout.to_json(aggregation="mean")
    except Exception:  # an unusual manifest: one block called "all"
        return None


def store_bags(store: Any, ids: Sequence[int]) -> tuple[np.ndarray, list[np.ndarray]]:
    """Per-patch vectors of the items ``ids`` of an open store: ``(bags (n,) object array of (T_i, D)
    float32, start times [(T_i,) seconds])``; raises `HeadError` naming the store when they are absent."""
    if not store.has_patches:
        raise HeadError(f"{store.path}: store has no per-patch vectors, which attention heads need; "
                        "embed the files into a new store with --patches")
    ids = [int(i) for i in ids]
    item_ids, starts, P = store.patch_vectors(np.asarray(ids, np.int64))
    order = np.argsort(item_ids, kind="stable")
    uniq, first, counts = np.unique(item_ids[order], return_index=True, return_counts=True)
    where = {int(u): order[f:f + c] for u, f, c in zip(uniq, first, counts)}
    bags = np.empty(len(ids), dtype=object)
    times = []
    for k, i in enumerate(ids):
        rows = where.get(i)
        if rows is None or len(rows) == 0:
            raise HeadError(f"{store.path}: item {i} has no per-patch vectors (embedded before --patches?); "
                            "re-embed it into a store made with --patches")
        rows = rows[np.argsort(starts[rows], kind="stable")]
        bags[k] = np.ascontiguousarray(P[rows], dtype=np.float32)
        times.append(starts[rows])
    return bags, times
