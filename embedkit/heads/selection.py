"""Fitting heads with scikit-learn and choosing their hyper-parameters by inner cross-validation.

The SVM grid is Choi et al.'s (ISMIR 2017): C ∈ {0.1, 2, 8, 32} × (RBF γ ∈ {2⁻³ … 2⁻¹³, auto} or a
linear kernel). Up to `KERNEL_CACHE_MAX` training items the grid is searched on precomputed kernels
(squared distances are computed once per inner fold and per block, then ``exp(-γ·d²)`` for each γ; a
layer subset is a sum of per-block distances), which is ~4× faster than letting libsvm recompute
kernels for every (C, γ) pair. `fit_config` turns one setting into a plain-array model
(`embedkit.heads.models`); Platt calibration uses out-of-fold decision values of the chosen setting.
"""
from __future__ import annotations

import math
import warnings
from typing import Any

import numpy as np

from . import registry
from .base import HeadError
from .models import KernelSVC, KernelSVR, LinearModel, MLPModel, _Model, _predict_index, _scores_of, platt_fit

#: Choi et al. 2017's SVM grid.
CHOI_C = (0.1, 2.0, 8.0, 32.0)
CHOI_GAMMA: tuple[float | str, ...] = tuple(2.0**-k for k in range(3, 14)) + ("auto",)
#: Search order of the grid: ties in the inner-CV score go to the earlier setting, so moderate
#: settings come first (γ = auto ≈ 1/dims, then γ moving away from 2⁻⁹ ≈ 1/640; C = 2, 8, 32, 0.1).
_C_ORDER = (2.0, 8.0, 32.0, 0.1)
_GAMMA_ORDER: tuple[float | str, ...] = ("auto",) + tuple(2.0**-k for k in (9, 10, 8, 11, 7, 12, 6, 13, 5, 4, 3))

#: Largest training set for which SVM kernels are precomputed: peak memory ≈ 24·n² bytes (2.4 GB at
#: 10,000 items); above it libsvm computes kernels itself (~7× slower on 640-dim vectors).
KERNEL_CACHE_MAX = 10000

def default_grid(kind: str, task: str) -> list[dict]:
    """The hyper-parameter candidates searched by the inner CV (Choi's grid for the SVM), in search
    order (ties go to the earlier candidate)."""
    spec = registry.get(kind)
    if spec.grid is not None:
        return spec.grid(task)
    if kind in ("svm", "svr"):
        grid = [{"kernel": "rbf", "C": c, "gamma": g} for g in _GAMMA_ORDER for c in _C_ORDER]
        return grid + [{"kernel": "linear", "C": c} for c in _C_ORDER]
    if kind == "logreg":
        cs = (0.01, 0.1, 1.0, 10.0) if task == "classification" else (0.01, 0.1, 1.0)
        return [{"C": c} for c in cs]
    if kind == "ridge":
        return [{"alpha": a} for a in (0.1, 1.0, 10.0, 100.0, 1000.0, 10000.0)]
    if kind == "mlp":
        return [{"hidden": 256, "alpha": a} for a in (1e-4, 1e-2, 1.0)]
    raise HeadError(f"unknown head kind {kind!r}")


def default_params(kind: str, task: str) -> dict:
    """Fixed hyper-parameters used when there are too few examples for an inner CV."""
    spec = registry.get(kind)
    if spec.defaults is not None:
        return spec.defaults(task)
    return {
        "svm": {"kernel": "linear", "C": 2.0},
        "svr": {"kernel": "rbf", "C": 2.0, "gamma": "auto"},
        "logreg": {"C": 1.0},
        "ridge": {"alpha": 100.0},
        "mlp": {"hidden": 256, "alpha": 1e-2},
    }[kind]


def _balanced_weights(y: np.ndarray) -> np.ndarray:
    classes, inv, counts = np.unique(y, return_inverse=True, return_counts=True)
    return (len(y) / (len(classes) * counts))[inv]


def _resolve_gamma(gamma: float | str, d: int) -> float:
    if gamma == "auto":
        return 1.0 / max(d, 1)
    return float(gamma)


def _svc_from_sklearn(clf: Any, sv: np.ndarray, kernel: str, gamma: float) -> KernelSVC:
    dual = np.array(clf.dual_coef_, np.float64)
    icpt = np.array(clf.intercept_, np.float64)
    if len(clf.classes_) == 2:  # scikit-learn flips the binary signs; store libsvm's raw values
        dual, icpt = -dual, -icpt
    pa = getattr(clf, "probA_", np.zeros(0))
    pb = getattr(clf, "probB_", np.zeros(0))
    return KernelSVC(sv, dual, icpt, clf.n_support_, kernel, gamma, pa, pb)


def fit_config(
    kind: str,
    task: str,
    Z: np.ndarray,
    y: np.ndarray,
    params: dict,
    *,
    class_weight: str | None,
    seed: int,
    K: np.ndarray | None = None,
) -> _Model:
    """Fit one hyper-parameter setting on standardised input ``Z (n, d) float64``.

    ``y``: class indices ``(n,)`` (classification), standardised targets ``(n, t)`` (regression) or
    0/1 ``(n, T)`` (multilabel). ``K``: optional precomputed training kernel ``(n, n)``.
    """
    if kind not in registry.BUILTIN:
        return registry.get(kind).fit(task, Z, y, params, class_weight=class_weight, seed=seed, K=K)
    d = Z.shape[1]
    cw = "balanced" if class_weight == "balanced" else None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # convergence chatter; selection judges the result
        if kind == "svm":
            from sklearn.svm import SVC

            kernel = params.get("kernel", "rbf")
            gamma = _resolve_gamma(params.get("gamma", "auto"), d) if kernel == "rbf" else 0.0
            use_pre = K is not None
            clf = SVC(C=params["C"], kernel="precomputed" if use_pre else kernel, gamma=gamma if kernel == "rbf" else "scale",
                      class_weight=cw, random_state=seed, cache_size=500)
            clf.fit(K if use_pre else Z, y)
            return _svc_from_sklearn(clf, Z[clf.support_], kernel, gamma)
        if kind == "svr":
            from sklearn.svm import SVR

            kernel = params.get("kernel", "rbf")
            gamma = _resolve_gamma(params.get("gamma", "auto"), d) if kernel == "rbf" else 0.0
            svs, duals, icpts, ptr = [], [], [], [0]
            for t in range(y.shape[1]):
                reg = SVR(C=params["C"], epsilon=params.get("epsilon", 0.1), kernel="precomputed" if K is not None else kernel,
                          gamma=gamma if kernel == "rbf" else "scale", cache_size=500)
                reg.fit(K if K is not None else Z, y[:, t])
                svs.append(Z[reg.support_])
                duals.append(np.asarray(reg.dual_coef_, np.float64).ravel())
                icpts.append(float(np.ravel(reg.intercept_)[0]))
                ptr.append(ptr[-1] + len(reg.support_))
            return KernelSVR(np.concatenate(svs) if svs else np.zeros((0, d)), np.concatenate(duals), icpts, ptr, kernel, gamma)
        if kind == "logreg":
            from sklearn.linear_model import LogisticRegression

            if task == "classification":
                clf = LogisticRegression(C=params["C"], class_weight=cw, max_iter=2000)
                clf.fit(Z, y)
                link = "binary" if len(clf.classes_) == 2 else "softmax"
                return LinearModel(clf.coef_, clf.intercept_, link)
            coefs, icpts = np.zeros((y.shape[1], d)), np.zeros(y.shape[1])
            for t in range(y.shape[1]):
                col = y[:, t]
                pos = col.mean()
                if pos in (0.0, 1.0):  # constant tag in this training set: constant prediction
                    icpts[t] = math.log(max(pos, 1e-3) / max(1 - pos, 1e-3))
                    continue
                clf = LogisticRegression(C=params["C"], class_weight=cw, max_iter=2000)
                clf.fit(Z, col)
                coefs[t], icpts[t] = clf.coef_[0], clf.intercept_[0]
            return LinearModel(coefs, icpts, "sigmoid")
        if kind == "ridge":
            from sklearn.linear_model import Ridge

            reg = Ridge(alpha=params["alpha"])
            reg.fit(Z, y)
            return LinearModel(reg.coef_, reg.intercept_, "identity")
        if kind == "mlp":
            from sklearn.neural_network import MLPClassifier, MLPRegressor

            hidden = params.get("hidden", 256)
            hidden = tuple(hidden) if isinstance(hidden, (list, tuple)) else (int(hidden),)
            common = dict(hidden_layer_sizes=hidden, alpha=params["alpha"], max_iter=params.get("max_iter", 300),
                          early_stopping=len(Z) >= 100, random_state=seed, n_iter_no_change=10)
            if task == "regression":
                net = MLPRegressor(**common).fit(Z, y)
                link = "identity"
            else:
                net = MLPClassifier(**common)
                if task == "classification" and cw:
                    net.fit(Z, y, sample_weight=_balanced_weights(y))
                else:
                    net.fit(Z, y)
                link = {"logistic": "binary" if task == "classification" else "sigmoid", "softmax": "softmax"}[net.out_activation_]
            return MLPModel(net.coefs_, net.intercepts_, link)
    raise HeadError(f"unknown head kind {kind!r} for task {task!r}")


def selection_score(task: str, metric: str, y_true: np.ndarray, pred: np.ndarray) -> float:
    """Score of one validation fold. ``pred``: class indices, target values or tag scores."""
    from sklearn import metrics as skm

    if task == "classification":
        if metric == "accuracy":
            return float(np.mean(pred == y_true))
        if metric == "balanced_accuracy":
            return float(skm.balanced_accuracy_score(y_true, pred))
        if metric == "macro_f1":
            return float(skm.f1_score(y_true, pred, average="macro", zero_division=0))
    elif task == "regression":
        if metric == "r2":
            return float(np.mean([skm.r2_score(y_true[:, t], pred[:, t]) for t in range(y_true.shape[1])]))
        if metric == "neg_mse":
            return -float(np.mean((y_true - pred) ** 2))
    elif task == "multilabel":
        if metric in ("roc_auc", "pr_auc"):
            fn = skm.roc_auc_score if metric == "roc_auc" else skm.average_precision_score
            vals = [fn(y_true[:, t], pred[:, t]) for t in range(y_true.shape[1]) if 0 < y_true[:, t].sum() < len(y_true)]
            return float(np.mean(vals)) if vals else float("nan")
    raise HeadError(f"unknown selection metric {metric!r} for task {task!r}")


def _subsample(task: str, y: np.ndarray, size: int, seed: int) -> np.ndarray:
    """Sorted indices of a random subset of ``size`` items (stratified by class for classification)."""
    rng = np.random.default_rng(seed)
    n = len(y)
    if task != "classification":
        return np.sort(rng.choice(n, size=size, replace=False))
    from sklearn.model_selection import train_test_split

    counts = np.bincount(y)
    if counts[counts > 0].min() < 2:
        return np.sort(rng.choice(n, size=size, replace=False))
    idx, _ = train_test_split(np.arange(n), train_size=size, stratify=y, random_state=seed)
    return np.sort(idx)


def _calibrate_svc(Z, y, K, params, splits, *, class_weight, seed) -> tuple[np.ndarray, np.ndarray]:
    """Platt parameters from out-of-fold decision values of the chosen SVM setting."""
    k = int(y.max()) + 1
    oof = np.zeros(len(y)) if k == 2 else np.zeros((len(y), k))
    for tr, va in splits:
        Ktr = None if K is None else K[np.ix_(tr, tr)]
        m = fit_config("svm", "classification", Z[tr], y[tr], params, class_weight=class_weight, seed=seed, K=Ktr)
        if m.n_classes != k:
            return np.zeros(0), np.zeros(0)
        oof[va] = m.decision(Z[va])
    if k == 2:
        a, b = platt_fit(oof, y == 1)
        return np.array([a]), np.array([b])
    ab = [platt_fit(oof[:, c], y == c) for c in range(k)]
    return np.array([x[0] for x in ab]), np.array([x[1] for x in ab])


def _search(kind, task, X, y, layout, layer_sets, grid, splits, *, metric, class_weight, seed, n_jobs) -> list[dict]:
    """Mean inner-CV score of every (layer set, params) candidate."""
    from joblib import Parallel, delayed

    fold_scores = Parallel(n_jobs=n_jobs, prefer="threads")(
        delayed(_score_fold)(kind, task, X, y, layout, layer_sets, grid, tr, va, metric, class_weight, seed)
        for tr, va in splits
    )
    results = []
    order = 0
    for li, layers in enumerate(layer_sets):
        for pi, params in enumerate(grid):
            vals = np.array([fs[li][pi] for fs in fold_scores], dtype=np.float64)
            score = float(np.nanmean(vals)) if np.isfinite(vals).any() else float("nan")
            results.append({"layers": list(layers), "params": dict(params), "score": score,
                            "fold_scores": vals.tolist(), "order": order})
            order += 1
    return results


def _score_fold(kind, task, X, y, layout, layer_sets, grid, tr, va, metric, class_weight, seed) -> list[list[float]]:
    """Scores ``[layer set][params]`` of one inner fold; the scaler is fit on the fold's training part."""
    Xtr = X[tr].astype(np.float64)
    Xva = X[va].astype(np.float64)
    mean = Xtr.mean(axis=0)
    sd = Xtr.std(axis=0)
    scale = np.where(sd > 1e-12, sd, 1.0)
    Ztr = (Xtr - mean) / scale
    Zva = (Xva - mean) / scale
    ytr, yva = y[tr], y[va]
    if task == "classification" and len(np.unique(ytr)) < 2:
        return [[float("nan")] * len(grid) for _ in layer_sets]
    out: list[list[float]] = []
    kernel_kind = kind in ("svm", "svr") and len(tr) <= KERNEL_CACHE_MAX
    if kernel_kind:
        # per-block squared distances and Gram matrices, summed per layer subset
        # (a single layer set is one unit: no per-block sums needed)
        units = [tuple(layer_sets[0])] if len(layer_sets) == 1 else [(b,) for b in layout.blocks if any(b in ls for ls in layer_sets)]
        D_tr, D_va, G_tr, G_va = {}, {}, {}, {}
        for b in units:
            c = layout.columns(b)
            G_tr[b] = Ztr[:, c] @ Ztr[:, c].T
            G_va[b] = Zva[:, c] @ Ztr[:, c].T
            sq_tr = (Ztr[:, c] ** 2).sum(1)
            sq_va = (Zva[:, c] ** 2).sum(1)
            D_tr[b] = np.maximum(sq_tr[:, None] + sq_tr[None, :] - 2 * G_tr[b], 0)
            D_va[b] = np.maximum(sq_va[:, None] + sq_tr[None, :] - 2 * G_va[b], 0)
    for layers in layer_sets:
        cols = layout.columns(layers)
        row: list[float] = []
        if kernel_kind:
            parts = [tuple(layers)] if len(units) == 1 else [(b,) for b in layers]
            Dtr = sum(D_tr[b] for b in parts)
            Dva = sum(D_va[b] for b in parts)
            Gtr = sum(G_tr[b] for b in parts)
            Gva = sum(G_va[b] for b in parts)
        for params in grid:
            try:
                if kernel_kind:
                    ker = params.get("kernel", "rbf")
                    if ker == "linear":
                        Ktr, Kva = Gtr, Gva
                    else:
                        gamma = _resolve_gamma(params.get("gamma", "auto"), len(cols))
                        Ktr, Kva = np.exp(-gamma * Dtr), np.exp(-gamma * Dva)
                    pred = _fit_predict_precomputed(kind, ytr, Ktr, Kva, params, class_weight, seed)
                else:
                    model = fit_config(kind, task, Ztr[:, cols], ytr, params, class_weight=class_weight, seed=seed)
                    Zv = Zva[:, cols]
                    pred = _predict_index(model, Zv) if task == "classification" else _scores_of(model, Zv)
                row.append(selection_score(task, metric, yva, pred))
            except (ValueError, np.linalg.LinAlgError):
                row.append(float("nan"))
        out.append(row)
    return out


def _fit_predict_precomputed(kind, ytr, Ktr, Kva, params, class_weight, seed) -> np.ndarray:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if kind == "svm":
            from sklearn.svm import SVC

            clf = SVC(C=params["C"], kernel="precomputed", class_weight="balanced" if class_weight == "balanced" else None,
                      random_state=seed)
            return clf.fit(Ktr, ytr).predict(Kva)
        from sklearn.svm import SVR

        out = np.empty((Kva.shape[0], ytr.shape[1]))
        for t in range(ytr.shape[1]):
            out[:, t] = SVR(C=params["C"], epsilon=params.get("epsilon", 0.1), kernel="precomputed").fit(Ktr, ytr[:, t]).predict(Kva)
        return out
_fit_config = fit_config
