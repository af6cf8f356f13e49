"""Small downstream heads on embedding vectors: classify, regress or tag from a few labels.

A `Head` is a scikit-learn-style estimator over track vectors ``X (n, D) float32``:

    standardise (per column) → keep the chosen feature blocks → logistic regression | SVM |
    ridge | SVR | small MLP

``Head.fit`` chooses its hyper-parameters (and, optionally, which feature blocks to use) by an
*inner* cross-validation on the training data it is given, then refits on all of it. Because the
choice happens inside ``fit``, an outer evaluation (`embedkit.evaluation.nested_cv`) that calls
``fit`` on its training folds can never tune on its test fold.

The SVM grid is Choi et al.'s (ISMIR 2017): C ∈ {0.1, 2, 8, 32} × (RBF γ ∈ {2⁻³ … 2⁻¹³, auto} or a
linear kernel). Up to `KERNEL_CACHE_MAX` training items the grid is searched on precomputed kernels
(squared distances are computed once per inner fold and per block, then ``exp(-γ·d²)`` for each γ; a
layer subset is a sum of per-block distances), which is ~4× faster than letting libsvm recompute
kernels for every (C, γ) pair.

A fitted head keeps only plain arrays (support vectors, coefficients, scaler statistics) and runs
its own numpy inference, identical to scikit-learn's to ~1e-9; `Head.save` writes them as a folder
``HEAD/card.json`` + ``HEAD/weights.npz`` (``allow_pickle=False``): loading can never execute code.
"""
from __future__ import annotations

import datetime as _dt
import hashlib
import inspect
import json
import math
import os
import shutil
import tempfile
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ._version import __version__
from .errors import EmbedkitError, ModelMismatchError
from .features import parse_layer_list

TASKS = ("classification", "regression", "multilabel")
KINDS = {
    "classification": ("svm", "logreg", "mlp"),
    "regression": ("svr", "ridge", "mlp"),
    "multilabel": ("logreg", "mlp"),
}
DEFAULT_KIND = {"classification": "svm", "regression": "svr", "multilabel": "logreg"}
SELECTION_METRIC = {"classification": "accuracy", "regression": "r2", "multilabel": "roc_auc"}

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

HEAD_FORMAT = "embedkit-head"
HEAD_FORMAT_VERSION = 1
CARD_FILE = "card.json"
WEIGHTS_FILE = "weights.npz"


class HeadError(EmbedkitError):
    """A head cannot be trained, saved, loaded or applied (message names the file or value)."""


class NotFittedError(HeadError, AttributeError):
    """The head has not been fitted yet: call ``fit`` or ``Head.load`` first."""


# ---- feature layout ---------------------------------------------------------------------------


@dataclass(frozen=True)
class InputLayout:
    """Column slices of a vector: ``entries`` = ``((name, block, start, stop), ...)``.

    ``block`` groups entries of one network block (``pool5`` and its ``pool5_std`` part under
    ``mean+std`` aggregation), so selecting ``pool5`` keeps both.
    """

    entries: tuple[tuple[str, str, int, int], ...]

    @classmethod
    def from_manifest(cls, layout: Sequence[dict] | None, dim: int) -> InputLayout:
        if not layout:
            return cls((("all", "all", 0, int(dim)),))
        out = []
        for e in layout:
            name = str(e["name"])
            block = str(e.get("block") or (name[: -len("_std")] if name.endswith("_std") else name))
            out.append((name, block, int(e["start"]), int(e["stop"])))
        lay = cls(tuple(out))
        if lay.dim != dim:
            raise HeadError(f"feature layout covers {lay.dim} columns but vectors have {dim}")
        return lay

    @property
    def dim(self) -> int:
        return max(stop for *_, stop in self.entries) if self.entries else 0

    @property
    def blocks(self) -> list[str]:
        return list(dict.fromkeys(b for _, b, _, _ in self.entries))

    def parse(self, layers: str | Iterable[str | int] | None) -> tuple[str, ...]:
        """Block names (model order) from ``"1,2,pool5"``, ``["pool4"]``, ``"all"`` or None (= all)."""
        try:
            return parse_layer_list(layers, self.blocks)
        except ValueError as exc:
            raise HeadError(str(exc)) from None

    def columns(self, blocks: Sequence[str]) -> np.ndarray:
        """Column indices (ascending layout order) of the entries of ``blocks``."""
        want = set(blocks)
        missing = want - set(self.blocks)
        if missing:
            raise HeadError(f"layers {', '.join(sorted(missing))} are not in these vectors (blocks: {', '.join(self.blocks)})")
        parts = [np.arange(a, b) for _, blk, a, b in self.entries if blk in want]
        return np.concatenate(parts).astype(np.int64)

    def to_json(self) -> list[dict]:
        return [{"name": n, "block": b, "start": a, "stop": s} for n, b, a, s in self.entries]


def parse_layers_grid(spec: str | None, layout: InputLayout) -> list[tuple[str, ...]] | None:
    """Layer subsets to search: ``"default"`` (all, each block alone, the last two, the last three)
    or ``"1,2,3,4,5|4,5|5"`` (``|`` or ``;`` between subsets). None → no search."""
    if spec is None or not str(spec).strip():
        return None
    blocks = layout.blocks
    if str(spec).strip().lower() == "default":
        cands = [tuple(blocks)] + [(b,) for b in blocks]
        if len(blocks) >= 3:
            cands += [tuple(blocks[-2:]), tuple(blocks[-3:])]
    else:
        cands = [layout.parse(part) for part in str(spec).replace(";", "|").split("|") if part.strip()]
    return list(dict.fromkeys(cands))


# ---- hyper-parameter grids --------------------------------------------------------------------


def default_grid(kind: str, task: str) -> list[dict]:
    """The hyper-parameter candidates searched by the inner CV (Choi's grid for the SVM), in search
    order (ties go to the earlier candidate)."""
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
    return {
        "svm": {"kernel": "linear", "C": 2.0},
        "svr": {"kernel": "rbf", "C": 2.0, "gamma": "auto"},
        "logreg": {"C": 1.0},
        "ridge": {"alpha": 100.0},
        "mlp": {"hidden": 256, "alpha": 1e-2},
    }[kind]


# ---- numpy inference models ---------------------------------------------------------------------


def _softmax(s: np.ndarray) -> np.ndarray:
    s = s - s.max(axis=1, keepdims=True)
    e = np.exp(s)
    return e / e.sum(axis=1, keepdims=True)


def _sigmoid(s: np.ndarray) -> np.ndarray:
    out = np.empty_like(s, dtype=np.float64)
    pos = s >= 0
    out[pos] = 1.0 / (1.0 + np.exp(-s[pos]))
    e = np.exp(s[~pos])
    out[~pos] = e / (1.0 + e)
    return out


def _sq_dists(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``‖a_i − b_j‖²`` ``(len(a), len(b))`` float64, clipped at 0."""
    d = (a * a).sum(1)[:, None] + (b * b).sum(1)[None, :] - 2.0 * (a @ b.T)
    np.maximum(d, 0.0, out=d)
    return d


def _kernel(kernel: str, gamma: float, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    if kernel == "linear":
        return a @ b.T
    return np.exp(-gamma * _sq_dists(a, b))


class _Model:
    """Base of the plain-array models. ``Z`` is standardised, block-selected input ``(n, d)`` float64."""

    kind = ""

    def arrays(self) -> dict[str, np.ndarray]:
        raise NotImplementedError

    def meta(self) -> dict:
        return {}

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray], meta: dict) -> _Model:
        raise NotImplementedError


class LinearModel(_Model):
    """``scores = Z @ coef.T + intercept``; link ``softmax`` (multiclass), ``binary`` (one logit,
    class 1 positive), ``sigmoid`` (independent tags) or ``identity`` (regression)."""

    kind = "linear"

    def __init__(self, coef: np.ndarray, intercept: np.ndarray, link: str) -> None:
        self.coef = np.atleast_2d(np.asarray(coef, np.float64))
        self.intercept = np.asarray(intercept, np.float64).ravel()
        self.link = link

    def scores(self, Z: np.ndarray) -> np.ndarray:
        return Z @ self.coef.T + self.intercept

    def arrays(self) -> dict[str, np.ndarray]:
        return {"coef": self.coef, "intercept": self.intercept}

    def meta(self) -> dict:
        return {"link": self.link}

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray], meta: dict) -> LinearModel:
        return cls(arrays["coef"], arrays["intercept"], meta["link"])


class KernelSVC(_Model):
    """libsvm's one-vs-one C-SVC: ``n_classes·(n_classes−1)/2`` pairwise machines over shared support
    vectors, and majority vote (as scikit-learn's ``SVC.predict``).

    ``dual_coef`` ``(k−1, m)`` and ``intercept`` ``(P,)`` are libsvm's raw values (not scikit-learn's
    sign-flipped binary ones). Probabilities: Platt sigmoids ``1 / (1 + exp(a·f + b))`` fitted on
    out-of-fold decision values ``f`` (one per class, normalised; one for two classes), the method of
    scikit-learn's ``CalibratedClassifierCV(SVC(), ensemble=False)``; ``prob_a``/``prob_b`` are empty
    when there were too few examples to fit them.
    """

    kind = "svc"

    def __init__(self, sv, dual_coef, intercept, n_support, kernel, gamma, prob_a=None, prob_b=None) -> None:
        self.sv = np.asarray(sv, np.float64)
        self.dual_coef = np.atleast_2d(np.asarray(dual_coef, np.float64))
        self.intercept = np.asarray(intercept, np.float64).ravel()
        self.n_support = np.asarray(n_support, np.int64).ravel()
        self.kernel = kernel
        self.gamma = float(gamma)
        self.prob_a = np.zeros(0) if prob_a is None else np.asarray(prob_a, np.float64).ravel()
        self.prob_b = np.zeros(0) if prob_b is None else np.asarray(prob_b, np.float64).ravel()

    @property
    def n_classes(self) -> int:
        return int(self.n_support.size)

    @property
    def has_proba(self) -> bool:
        return self.prob_a.size > 0

    def pairwise(self, Z: np.ndarray) -> np.ndarray:
        """Raw libsvm decision values ``(n, P)``, pairs (0,1), (0,2), …, (k−2,k−1); > 0 favours the first."""
        K = _kernel(self.kernel, self.gamma, Z, self.sv)
        k = self.n_classes
        start = np.concatenate([[0], np.cumsum(self.n_support)])
        out = np.empty((Z.shape[0], k * (k - 1) // 2))
        p = 0
        for i in range(k):
            si = slice(start[i], start[i + 1])
            for j in range(i + 1, k):
                sj = slice(start[j], start[j + 1])
                out[:, p] = K[:, si] @ self.dual_coef[j - 1, si] + K[:, sj] @ self.dual_coef[i, sj] + self.intercept[p]
                p += 1
        return out

    def votes(self, dec: np.ndarray) -> np.ndarray:
        k = self.n_classes
        votes = np.zeros((dec.shape[0], k), np.int64)
        p = 0
        for i in range(k):
            for j in range(i + 1, k):
                pos = dec[:, p] > 0
                votes[pos, i] += 1
                votes[~pos, j] += 1
                p += 1
        return votes

    def predict_index(self, Z: np.ndarray) -> np.ndarray:
        return np.argmax(self.votes(self.pairwise(Z)), axis=1)

    def decision(self, Z: np.ndarray) -> np.ndarray:
        """scikit-learn's ``decision_function``: ``(n,)`` for two classes (> 0 → class 1), else the
        one-vs-rest shape ``(n, k)`` (votes plus a bounded confidence)."""
        dec = self.pairwise(Z)
        k = self.n_classes
        if k == 2:
            return -dec[:, 0]
        votes = self.votes(dec).astype(np.float64)
        conf = np.zeros_like(votes)
        p = 0
        for i in range(k):
            for j in range(i + 1, k):
                conf[:, i] += dec[:, p]
                conf[:, j] -= dec[:, p]
                p += 1
        return votes + conf / (3 * (np.abs(conf) + 1))

    def proba(self, Z: np.ndarray) -> np.ndarray:
        if not self.has_proba:
            raise HeadError("this SVM head has no probability model (too few examples to calibrate one)")
        return platt_proba(self.decision(Z), self.prob_a, self.prob_b)

    def arrays(self) -> dict[str, np.ndarray]:
        return {"sv": self.sv, "dual_coef": self.dual_coef, "intercept": self.intercept,
                "n_support": self.n_support, "prob_a": self.prob_a, "prob_b": self.prob_b}

    def meta(self) -> dict:
        return {"kernel": self.kernel, "gamma": self.gamma}

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray], meta: dict) -> KernelSVC:
        return cls(arrays["sv"], arrays["dual_coef"], arrays["intercept"], arrays["n_support"],
                   meta["kernel"], meta["gamma"], arrays["prob_a"], arrays["prob_b"])


def platt_fit(f: np.ndarray, y01: np.ndarray) -> tuple[float, float]:
    """Platt (1999) sigmoid ``P(y=1|f) = 1 / (1 + exp(a·f + b))`` with his smoothed targets."""
    from scipy.optimize import minimize

    f = np.asarray(f, np.float64)
    y01 = np.asarray(y01, bool)
    n_pos, n_neg = int(y01.sum()), int((~y01).sum())
    t = np.where(y01, (n_pos + 1.0) / (n_pos + 2.0), 1.0 / (n_neg + 2.0))

    def loss(ab: np.ndarray) -> tuple[float, np.ndarray]:
        z = ab[0] * f + ab[1]
        # −log p = log(1 + e^z), −log(1 − p) = log(1 + e^−z), with p = 1 / (1 + e^z)
        l = np.sum(t * np.logaddexp(0, z) + (1 - t) * np.logaddexp(0, -z))
        g = t - _sigmoid(-z)  # dl/dz
        return float(l), np.array([np.sum(g * f), np.sum(g)])

    b0 = math.log((n_neg + 1.0) / (n_pos + 1.0))
    res = minimize(loss, np.array([0.0, b0]), jac=True, method="L-BFGS-B")
    return float(res.x[0]), float(res.x[1])


def platt_proba(dec: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Probabilities from decision values: ``(n,)`` → ``(n, 2)``; ``(n, k)`` → ``(n, k)`` normalised."""
    if dec.ndim == 1:
        p1 = _sigmoid(-(a[0] * dec + b[0]))
        return np.column_stack([1 - p1, p1])
    p = _sigmoid(-(dec * a + b))
    s = p.sum(axis=1, keepdims=True)
    return np.where(s > 0, p / np.where(s > 0, s, 1), 1.0 / p.shape[1])


class KernelSVR(_Model):
    """One ε-SVR per target: ``f_t(z) = Σ_i dual_i K(z, sv_i) + intercept_t`` over that target's
    support vectors ``sv[ptr[t]:ptr[t+1]]``."""

    kind = "svr"

    def __init__(self, sv, dual_coef, intercept, ptr, kernel, gamma) -> None:
        self.sv = np.asarray(sv, np.float64)
        self.dual_coef = np.asarray(dual_coef, np.float64).ravel()
        self.intercept = np.asarray(intercept, np.float64).ravel()
        self.ptr = np.asarray(ptr, np.int64).ravel()
        self.kernel = kernel
        self.gamma = float(gamma)

    def scores(self, Z: np.ndarray) -> np.ndarray:
        out = np.empty((Z.shape[0], self.intercept.size))
        for t in range(self.intercept.size):
            s = slice(self.ptr[t], self.ptr[t + 1])
            out[:, t] = _kernel(self.kernel, self.gamma, Z, self.sv[s]) @ self.dual_coef[s] + self.intercept[t]
        return out

    def arrays(self) -> dict[str, np.ndarray]:
        return {"sv": self.sv, "dual_coef": self.dual_coef, "intercept": self.intercept, "ptr": self.ptr}

    def meta(self) -> dict:
        return {"kernel": self.kernel, "gamma": self.gamma}

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray], meta: dict) -> KernelSVR:
        return cls(arrays["sv"], arrays["dual_coef"], arrays["intercept"], arrays["ptr"], meta["kernel"], meta["gamma"])


class MLPModel(_Model):
    """A ReLU multilayer perceptron: hidden layers then a ``softmax`` / ``binary`` / ``sigmoid`` /
    ``identity`` output, as scikit-learn's MLPClassifier/MLPRegressor compute it."""

    kind = "mlp"

    def __init__(self, weights: list[np.ndarray], biases: list[np.ndarray], link: str) -> None:
        self.weights = [np.asarray(w, np.float64) for w in weights]
        self.biases = [np.asarray(b, np.float64).ravel() for b in biases]
        self.link = link

    def scores(self, Z: np.ndarray) -> np.ndarray:
        a = Z
        for w, b in zip(self.weights[:-1], self.biases[:-1]):
            a = np.maximum(a @ w + b, 0.0)
        return a @ self.weights[-1] + self.biases[-1]

    def arrays(self) -> dict[str, np.ndarray]:
        out = {}
        for i, (w, b) in enumerate(zip(self.weights, self.biases)):
            out[f"w{i}"], out[f"b{i}"] = w, b
        return out

    def meta(self) -> dict:
        return {"link": self.link, "n_layers": len(self.weights)}

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray], meta: dict) -> MLPModel:
        n = int(meta["n_layers"])
        return cls([arrays[f"w{i}"] for i in range(n)], [arrays[f"b{i}"] for i in range(n)], meta["link"])


_MODEL_TYPES: dict[str, type[_Model]] = {m.kind: m for m in (LinearModel, KernelSVC, KernelSVR, MLPModel)}


# ---- fitting one configuration ------------------------------------------------------------------


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


def _fit_config(
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


# ---- scoring ------------------------------------------------------------------------------------


def _scores_of(model: _Model, Z: np.ndarray) -> np.ndarray:
    if isinstance(model, (LinearModel, MLPModel, KernelSVR)):
        return model.scores(Z)
    raise TypeError(type(model))


def _predict_index(model: _Model, Z: np.ndarray) -> np.ndarray:
    """Class indices for a classification model."""
    if isinstance(model, KernelSVC):
        return model.predict_index(Z)
    s = _scores_of(model, Z)
    if model.link == "binary":
        return (s[:, 0] > 0).astype(np.int64)
    return np.argmax(s, axis=1)


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


def _inner_splits(task: str, y: np.ndarray, groups: np.ndarray | None, n_folds: int, seed: int):
    """Inner CV folds, or None when the data are too few for any (then defaults are used)."""
    from sklearn.model_selection import GroupKFold, KFold, StratifiedGroupKFold, StratifiedKFold

    n = len(y)
    if n_folds < 2 or n < 4:
        return None
    if task == "classification":
        counts = np.bincount(y)
        counts = counts[counts > 0]
        k = min(n_folds, int(counts.min()))
        if k < 2:
            return None
        if groups is not None:
            n_groups = len(np.unique(groups))
            k = min(k, n_groups)
            if k < 2:
                return None
            cv = StratifiedGroupKFold(n_splits=k, shuffle=True, random_state=seed)
            return list(cv.split(np.zeros(n), y, groups))
        return list(StratifiedKFold(n_splits=k, shuffle=True, random_state=seed).split(np.zeros(n), y))
    k = min(n_folds, n // 2)
    if groups is not None:
        k = min(k, len(np.unique(groups)))
        if k < 2:
            return None
        return list(GroupKFold(n_splits=k).split(np.zeros(n), y, groups))
    return list(KFold(n_splits=k, shuffle=True, random_state=seed).split(np.zeros(n)))


# ---- the estimator ------------------------------------------------------------------------------


class Head:
    """Standardisation + feature-block selection + classifier/regressor, hyper-parameters chosen by
    an inner CV inside ``fit`` (scikit-learn API: parameters in ``__init__``, fitted attributes end
    in ``_``).

    Parameters
    ----------
    task : "classification" | "regression" | "multilabel"
    kind : "svm" | "logreg" | "mlp" (classification), "svr" | "ridge" | "mlp" (regression),
        "logreg" | "mlp" (multilabel), or "auto" (svm / svr / logreg).
    layout : the vectors' block layout, ``[{"name", "start", "stop"}]`` (a store's
        ``manifest["layout"]``); None = one block called "all".
    layers : blocks to use (``"1,2,pool5"``, names or None = all).
    layers_grid : subsets of blocks searched as a hyper-parameter (see `parse_layers_grid`).
    grid : hyper-parameter candidates (list of dicts); None = `default_grid`.
    class_weight : None or "balanced" (weights inversely proportional to class frequency).
    inner_folds : folds of the inner CV that picks hyper-parameters (fewer when classes are small;
        none at all, i.e. `default_params`, when a class has a single example).
    selection_metric : inner-CV score to maximise (accuracy / balanced_accuracy / macro_f1, r2,
        roc_auc / pr_auc); None = accuracy, r2 or roc_auc by task.
    probability : calibrate probabilities for an SVM (Platt sigmoids on out-of-fold decision values of
        the chosen setting: one extra fit per inner fold); other heads always have probabilities.
    selection_subsample : choose hyper-parameters on a random (stratified) subset of this many
        training items, then refit the chosen setting on all of them; None = use all (exact, slower).
    random_state : seed of the inner folds, the subsample and the MLP.
    n_jobs : threads over inner folds.
    """

    def __init__(
        self,
        task: str = "classification",
        kind: str = "auto",
        *,
        layout: Sequence[dict] | None = None,
        layers: str | Sequence[str] | None = None,
        layers_grid: str | None = None,
        grid: list[dict] | None = None,
        class_weight: str | None = None,
        inner_folds: int = 3,
        selection_metric: str | None = None,
        probability: bool = True,
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
        self.class_weight = class_weight
        self.inner_folds = inner_folds
        self.selection_metric = selection_metric
        self.probability = probability
        self.selection_subsample = selection_subsample
        self.random_state = random_state
        self.n_jobs = n_jobs

    # -- sklearn-ish plumbing
    def get_params(self, deep: bool = True) -> dict:
        keys = [p for p in inspect.signature(type(self).__init__).parameters if p != "self"]
        return {k: getattr(self, k) for k in keys}

    def set_params(self, **params: Any) -> Head:
        for k, v in params.items():
            setattr(self, k, v)
        return self

    def clone(self) -> Head:
        return Head(**self.get_params())

    def __repr__(self) -> str:
        return f"Head(task={self.task!r}, kind={self.kind_ if hasattr(self, 'kind_') else self.kind!r})"

    @property
    def resolved_kind(self) -> str:
        """The estimator ``kind`` stands for ("auto" → svm / svr / logreg by task)."""
        return DEFAULT_KIND.get(self.task, self.kind) if self.kind in (None, "auto") else self.kind

    # -- validation
    def _check_config(self) -> str:
        if self.task not in TASKS:
            raise HeadError(f"unknown task {self.task!r}; expected one of {', '.join(TASKS)}")
        kind = DEFAULT_KIND[self.task] if self.kind in (None, "auto") else self.kind
        if kind not in KINDS[self.task]:
            raise HeadError(f"head {kind!r} cannot do {self.task}; choose one of {', '.join(KINDS[self.task])}")
        if self.class_weight not in (None, "none", "balanced"):
            raise HeadError(f"class_weight must be None or 'balanced', given {self.class_weight!r}")
        return kind

    @staticmethod
    def _check_X(X: np.ndarray, dim: int | None = None) -> np.ndarray:
        X = np.asarray(X)
        if X.ndim != 2:
            raise HeadError(f"expected vectors of shape (n, dim), given shape={X.shape}")
        if dim is not None and X.shape[1] != dim:
            raise HeadError(f"vectors have {X.shape[1]} columns, this head expects {dim}")
        bad = ~np.isfinite(X).all(axis=1)
        if bad.any():
            raise HeadError(f"{int(bad.sum())} vectors contain NaN/inf (first at row {int(np.flatnonzero(bad)[0])})")
        return X

    def _encode_y(self, y: Any, label_names: Sequence[str] | None) -> np.ndarray:
        """Set ``classes_``/``labels_``/``targets_`` and return the training targets in model form."""
        if self.task == "classification":
            y = np.asarray(y)
            if y.ndim != 1:
                raise HeadError(f"classification labels must be 1-D, given shape={y.shape}")
            self.classes_, y_idx = np.unique(y.astype(str), return_inverse=True)
            if len(self.classes_) < 2:
                raise HeadError(f"need at least 2 classes to train a classifier, found only {self.classes_.tolist()}")
            return y_idx.astype(np.int64)
        if self.task == "regression":
            y = np.asarray(y, dtype=np.float64)
            self.y_1d_ = y.ndim == 1
            y2 = y.reshape(len(y), -1)
            if not np.isfinite(y2).all():
                raise HeadError("regression targets contain NaN/inf")
            self.targets_ = list(label_names) if label_names is not None else [f"target{t}" for t in range(y2.shape[1])]
            if len(self.targets_) != y2.shape[1]:
                raise HeadError(f"{len(self.targets_)} target names for {y2.shape[1]} target columns")
            self.y_mean_ = y2.mean(axis=0)
            sd = y2.std(axis=0)
            self.y_scale_ = np.where(sd > 0, sd, 1.0)
            return (y2 - self.y_mean_) / self.y_scale_
        y = np.asarray(y)
        if y.ndim != 2 or not np.isin(y, (0, 1)).all():
            raise HeadError(f"multilabel targets must be a 0/1 matrix (n, n_labels), given shape={y.shape}")
        self.labels_ = list(label_names) if label_names is not None else [f"label{t}" for t in range(y.shape[1])]
        if len(self.labels_) != y.shape[1]:
            raise HeadError(f"{len(self.labels_)} label names for {y.shape[1]} label columns")
        return y.astype(np.int64)

    # -- fitting
    def fit(
        self,
        X: np.ndarray,
        y: Any,
        *,
        groups: Sequence | None = None,
        label_names: Sequence[str] | None = None,
        splits: Sequence[tuple[np.ndarray, np.ndarray]] | None = None,
    ) -> Head:
        """Choose hyper-parameters by inner CV on ``(X, y)`` only, then refit on all of it.

        ``X``: ``(n, D)`` vectors; ``y``: labels ``(n,)`` (classification), values ``(n,)``/``(n, t)``
        (regression) or a 0/1 matrix ``(n, T)`` (multilabel); ``groups``: ``(n,)`` ids (artist,
        album, recording) kept on one side of every inner split; ``label_names``: target or tag names;
        ``splits``: given ``[(train_idx, valid_idx)]`` over ``X`` for the selection instead of an inner
        CV (e.g. a dataset's official validation set).
        """
        kind = self._check_config()
        X = self._check_X(X)
        n = X.shape[0]
        if len(y) != n:
            raise HeadError(f"{n} vectors but {len(y)} labels")
        g = None if groups is None else np.asarray(groups)
        if g is not None and len(g) != n:
            raise HeadError(f"{n} vectors but {len(g)} group ids")
        layout = InputLayout.from_manifest(self.layout, X.shape[1])
        y_m = self._encode_y(y, label_names)
        metric = self.selection_metric or SELECTION_METRIC[self.task]
        cw = None if self.class_weight in (None, "none") else self.class_weight

        layer_sets = parse_layers_grid(self.layers_grid, layout) or [layout.parse(self.layers)]
        grid = list(self.grid) if self.grid else default_grid(kind, self.task)
        sel = np.arange(n)  # items the selection sees (all, unless subsampled)
        if splits is not None:
            splits = [(np.asarray(a, np.int64), np.asarray(b, np.int64)) for a, b in splits]
        elif len(grid) > 1 or len(layer_sets) > 1:
            if self.selection_subsample and n > self.selection_subsample:
                sel = _subsample(self.task, y_m, self.selection_subsample, self.random_state)
            splits = _inner_splits(self.task, y_m[sel], None if g is None else g[sel], self.inner_folds, self.random_state)

        results: list[dict] = []
        if splits is None:
            best_layers = layer_sets[0]
            best_params = grid[0] if len(grid) == 1 else default_params(kind, self.task)
            reason = "single candidate" if len(grid) == 1 and len(layer_sets) == 1 else "too few examples for an inner CV: fixed defaults"
        else:
            results = _search(kind, self.task, X[sel], y_m[sel], layout, layer_sets, grid, splits, metric=metric,
                              class_weight=cw, seed=self.random_state, n_jobs=self.n_jobs)
            best = max(results, key=lambda r: (np.nan_to_num(r["score"], nan=-np.inf), -r["order"]))
            best_layers, best_params = tuple(best["layers"]), best["params"]
            reason = f"best mean {metric} over {len(splits)} inner validation split(s)"
            if len(sel) < n:
                reason += f" of a {len(sel)}-item subsample"

        cols = layout.columns(best_layers)
        mean = X[:, cols].astype(np.float64).mean(axis=0)
        sd = X[:, cols].astype(np.float64).std(axis=0)
        scale = np.where(sd > 1e-12, sd, 1.0)
        Z = (X[:, cols] - mean) / scale
        K = None
        if kind in ("svm", "svr") and n <= KERNEL_CACHE_MAX:
            ker = best_params.get("kernel", "rbf")
            K = _kernel(ker, _resolve_gamma(best_params.get("gamma", "auto"), Z.shape[1]) if ker == "rbf" else 0.0, Z, Z)
        self.model_ = _fit_config(kind, self.task, Z, y_m, best_params, class_weight=cw, seed=self.random_state, K=K)
        if splits is None and kind == "svm" and self.probability:
            sel = np.arange(n)
            splits_cal = _inner_splits(self.task, y_m, g, self.inner_folds, self.random_state)
        else:
            splits_cal = splits
        if kind == "svm" and self.probability and splits_cal is not None:
            Ks = None if K is None else (K if len(sel) == n else K[np.ix_(sel, sel)])
            a, b = _calibrate_svc(Z[sel], y_m[sel], Ks, best_params, splits_cal, class_weight=cw, seed=self.random_state)
            self.model_.prob_a, self.model_.prob_b = a, b
        self.kind_ = kind
        self.layers_ = tuple(best_layers)
        self.params_ = dict(best_params)
        self.input_layout_ = layout
        self.columns_ = cols
        self.mean_ = mean
        self.scale_ = scale
        self.n_features_in_ = X.shape[1]
        self.n_train_ = n
        best_score = None
        if results:
            best_score = max(np.nan_to_num(r["score"], nan=-np.inf) for r in results)
        self.selection_ = {
            "metric": metric,
            "inner_folds": 0 if splits is None else len(splits),
            "n_candidates": len(layer_sets) * len(grid),
            "reason": reason,
            "best_inner_score": None if best_score is None or not np.isfinite(best_score) else float(best_score),
            "note": "the inner-CV score of the chosen setting is optimistic (max over candidates); use nested CV for an estimate",
        }
        self.cv_results_ = results
        return self

    # -- inference
    def _check_fitted(self) -> None:
        if not hasattr(self, "model_"):
            raise NotFittedError("this Head is not fitted yet: call fit(X, y) or Head.load(path) first")

    def transform(self, X: np.ndarray) -> np.ndarray:
        """Standardised, block-selected input ``(n, d)`` float64 that the model sees."""
        self._check_fitted()
        X = self._check_X(X, self.n_features_in_)
        return (X[:, self.columns_].astype(np.float64) - self.mean_) / self.scale_

    def decision_function(self, X: np.ndarray) -> np.ndarray:
        """Raw scores: ``(n,)`` for binary (> 0 → ``classes_[1]``), ``(n, k)`` for multiclass or tags."""
        Z = self.transform(X)
        if isinstance(self.model_, KernelSVC):
            return self.model_.decision(Z)
        s = _scores_of(self.model_, Z)
        return s[:, 0] if getattr(self.model_, "link", "") == "binary" else s

    @property
    def has_proba(self) -> bool:
        self._check_fitted()
        if self.task == "regression":
            return False
        return not isinstance(self.model_, KernelSVC) or self.model_.has_proba

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        """Class probabilities ``(n, k)`` (order of ``classes_``) or tag probabilities ``(n, T)``."""
        Z = self.transform(X)
        if self.task == "regression":
            raise HeadError("a regression head has no probabilities; use predict")
        if isinstance(self.model_, KernelSVC):
            return self.model_.proba(Z)
        s = _scores_of(self.model_, Z)
        if self.model_.link == "softmax":
            return _softmax(s)
        if self.model_.link == "binary":
            p = _sigmoid(s[:, 0])
            return np.column_stack([1 - p, p])
        return _sigmoid(s)

    def predict(self, X: np.ndarray, *, threshold: float = 0.5) -> np.ndarray:
        """Class labels ``(n,)``, target values ``(n,)``/``(n, t)``, or 0/1 tags ``(n, T)`` (prob ≥ threshold)."""
        Z = self.transform(X)
        if self.task == "classification":
            return self.classes_[_predict_index(self.model_, Z)]
        if self.task == "regression":
            v = _scores_of(self.model_, Z) * self.y_scale_ + self.y_mean_
            return v[:, 0] if self.y_1d_ else v
        return (self.predict_proba(X) >= threshold).astype(np.int64)

    def predict_index(self, X: np.ndarray) -> np.ndarray:
        """Class indices into ``classes_`` (classification only)."""
        return _predict_index(self.model_, self.transform(X))

    @property
    def output_names(self) -> list[str]:
        """Class, tag or target names in output column order."""
        self._check_fitted()
        if self.task == "classification":
            return [str(c) for c in self.classes_]
        return list(self.labels_ if self.task == "multilabel" else self.targets_)

    # -- persistence
    def card(self) -> dict:
        """The JSON description of this fitted head (without the provenance added by `save`)."""
        self._check_fitted()
        card: dict[str, Any] = {
            "format": HEAD_FORMAT,
            "format_version": HEAD_FORMAT_VERSION,
            "task": self.task,
            "kind": self.kind_,
            "params": self.params_,
            "class_weight": self.class_weight,
            "layers": list(self.layers_),
            "input_layout": self.input_layout_.to_json(),
            "input_dim": int(self.n_features_in_),
            "n_train": int(self.n_train_),
            "model_type": self.model_.kind,
            "model_meta": self.model_.meta(),
            "selection": self.selection_,
            "has_proba": self.has_proba,
        }
        if self.task == "classification":
            card["classes"] = self.output_names
        elif self.task == "multilabel":
            card["labels"] = self.output_names
        else:
            card["targets"] = self.output_names
            card["y_1d"] = bool(self.y_1d_)
        return card

    def save(self, path: str | os.PathLike, *, info: dict | None = None, overwrite: bool = False) -> Path:
        """Write ``path/card.json`` + ``path/weights.npz`` atomically (plain arrays, no pickle).

        ``info``: extra card fields (model, model_fingerprint, aggregation, metrics, labels file, ...).
        """
        self._check_fitted()
        out = Path(path)
        if out.exists() and not overwrite:
            raise HeadError(f"{out}: already exists (use overwrite / --force to replace it)")
        arrays = {f"model.{k}": np.ascontiguousarray(v) for k, v in self.model_.arrays().items()}
        arrays.update({"columns": self.columns_, "mean": self.mean_, "scale": self.scale_})
        if self.task == "regression":
            arrays.update({"y_mean": self.y_mean_, "y_scale": self.y_scale_})
        card = self.card()
        card.update(info or {})
        card["embedkit_version"] = __version__
        card["created"] = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
        card["library_versions"] = _library_versions()
        card["arrays"] = {k: {"shape": list(v.shape), "dtype": str(v.dtype), "sha256": _array_sha(v)} for k, v in arrays.items()}
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
        try:
            np.savez(tmp / WEIGHTS_FILE, **arrays)
            (tmp / CARD_FILE).write_text(json.dumps(card, indent=2, default=_json_default) + "\n", encoding="utf-8")
            if out.exists():
                shutil.rmtree(out) if out.is_dir() else out.unlink()
            os.replace(tmp, out)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        self.card_ = card
        return out

    @classmethod
    def load(cls, path: str | os.PathLike) -> Head:
        """Load a head saved by `save`; checks format, array shapes and checksums (no pickle)."""
        p = Path(path)
        card = read_card(p)
        try:
            with np.load(p / WEIGHTS_FILE, allow_pickle=False) as z:
                arrays = {k: z[k] for k in z.files}
        except FileNotFoundError:
            raise HeadError(f"{p}: missing {WEIGHTS_FILE}") from None
        except ValueError as exc:
            raise HeadError(f"{p / WEIGHTS_FILE}: refused to load ({exc})") from None
        except Exception as exc:  # zipfile.BadZipFile, OSError, ...
            raise HeadError(f"{p / WEIGHTS_FILE}: unreadable ({type(exc).__name__}: {exc})") from None
        for k, spec in card.get("arrays", {}).items():
            a = arrays.get(k)
            if a is None:
                raise HeadError(f"{p}: array {k!r} missing from {WEIGHTS_FILE}")
            if list(a.shape) != spec["shape"] or _array_sha(a) != spec["sha256"]:
                raise HeadError(f"{p}: array {k!r} does not match its checksum in {CARD_FILE} (corrupt or edited head)")
        mtype = _MODEL_TYPES.get(card.get("model_type"))
        if mtype is None:
            raise HeadError(f"{p}: unknown model type {card.get('model_type')!r}")
        head = cls(task=card["task"], kind=card["kind"], layout=card["input_layout"], layers=card["layers"],
                   class_weight=card.get("class_weight"))
        model_arrays = {k[len("model."):]: v for k, v in arrays.items() if k.startswith("model.")}
        head.model_ = mtype.from_arrays(model_arrays, card["model_meta"])
        head.kind_ = card["kind"]
        head.layers_ = tuple(card["layers"])
        head.params_ = card["params"]
        head.input_layout_ = InputLayout.from_manifest(card["input_layout"], card["input_dim"])
        head.columns_ = arrays["columns"].astype(np.int64)
        head.mean_ = arrays["mean"]
        head.scale_ = arrays["scale"]
        head.n_features_in_ = int(card["input_dim"])
        head.n_train_ = int(card.get("n_train", 0))
        head.selection_ = card.get("selection", {})
        head.cv_results_ = []
        if head.task == "classification":
            head.classes_ = np.array(card["classes"])
        elif head.task == "multilabel":
            head.labels_ = list(card["labels"])
        else:
            head.targets_ = list(card["targets"])
            head.y_1d_ = bool(card.get("y_1d", False))
            head.y_mean_, head.y_scale_ = arrays["y_mean"], arrays["y_scale"]
        head.card_ = card
        return head

    # -- binding to vectors with another layout
    def align(self, X: np.ndarray, layout: Sequence[dict] | None) -> np.ndarray:
        """Rearrange vectors with ``layout`` (e.g. a store holding other/more blocks) into this head's
        input columns ``(n, input_dim)``; raises `ModelMismatchError` when a needed block is absent."""
        self._check_fitted()
        X = np.asarray(X)
        src = InputLayout.from_manifest(layout, X.shape[1])
        if src.entries == self.input_layout_.entries:
            return X
        src_by_name = {name: (a, b) for name, _, a, b in src.entries}
        out = np.zeros((X.shape[0], self.n_features_in_), dtype=X.dtype)
        needed = set(self.layers_)
        for name, block, a, b in self.input_layout_.entries:
            if block not in needed:
                continue
            if name not in src_by_name or src_by_name[name][1] - src_by_name[name][0] != b - a:
                have = ", ".join(n for n, *_ in src.entries)
                raise ModelMismatchError(f"head needs feature block {name!r} ({b - a} values) but the vectors only have: {have}")
            sa, sb = src_by_name[name]
            out[:, a:b] = X[:, sa:sb]
        return out


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
        m = _fit_config("svm", "classification", Z[tr], y[tr], params, class_weight=class_weight, seed=seed, K=Ktr)
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
                    model = _fit_config(kind, task, Ztr[:, cols], ytr, params, class_weight=class_weight, seed=seed)
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


# ---- persistence helpers ------------------------------------------------------------------------


def read_card(path: str | os.PathLike) -> dict:
    """The card (JSON) of a saved head; checks that it is an embedkit head this version can read."""
    p = Path(path)
    cpath = p / CARD_FILE
    if not p.exists():
        raise HeadError(f"{p}: no such head")
    if not cpath.exists():
        raise HeadError(f"{p}: not an embedkit head (no {CARD_FILE})")
    try:
        card = json.loads(cpath.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise HeadError(f"{cpath}: unreadable card ({exc})") from None
    if card.get("format") != HEAD_FORMAT:
        raise HeadError(f"{cpath}: not an embedkit head card (format={card.get('format')!r})")
    if int(card.get("format_version", 0)) > HEAD_FORMAT_VERSION:
        raise HeadError(f"{p}: head format {card.get('format_version')} is newer than this embedkit reads ({HEAD_FORMAT_VERSION}); upgrade embedkit")
    return card


def check_compatible(card: dict, *, model_fingerprint: str | None, aggregation: str | None = None, source: str = "the vectors") -> None:
    """Refuse (`ModelMismatchError`) vectors made by another model/preprocessing or aggregation."""
    want = card.get("model_fingerprint")
    if want and model_fingerprint and want != model_fingerprint:
        raise ModelMismatchError(
            f"head was trained on model {card.get('model')} fingerprint {want[:16]}…, but {source} "
            f"come from fingerprint {model_fingerprint[:16]}… (another model or preprocessing)"
        )
    if want and not model_fingerprint:
        raise ModelMismatchError(f"{source} carry no model fingerprint; cannot check them against this head")
    agg = card.get("aggregation")
    if agg and aggregation and agg != aggregation:
        raise ModelMismatchError(f"head expects '{agg}' aggregated vectors, but {source} are '{aggregation}'")


def _array_sha(a: np.ndarray) -> str:
    h = hashlib.sha256(str(a.dtype).encode() + str(a.shape).encode())
    h.update(np.ascontiguousarray(a).tobytes())
    return h.hexdigest()


def _library_versions() -> dict:
    import sklearn

    return {"numpy": np.__version__, "scikit-learn": sklearn.__version__}


def _json_default(o: Any) -> Any:
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, (np.floating, np.integer, np.bool_)):
        return o.item()
    if isinstance(o, tuple):
        return list(o)
    return str(o)
