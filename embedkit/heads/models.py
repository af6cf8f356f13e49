"""Plain-array inference models of fitted heads (numpy only, no scikit-learn at prediction time).

Each model keeps the arrays a fitted estimator needs and computes what scikit-learn would, to ~1e-9:
`LinearModel` (logistic / ridge), `KernelSVC` (libsvm one-vs-one C-SVC, with Platt probabilities),
`KernelSVR` (one ε-SVR per target), `MLPModel` (ReLU MLP). ``Z`` is the standardised, block-selected
input ``(n, d) float64``. `register_model` adds a model class that `embedkit.heads.card` can load.
"""
from __future__ import annotations

import math

import numpy as np

from ..activations import sigmoid as _sigmoid
from .base import HeadError


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


MODEL_TYPES: dict[str, type[_Model]] = {m.kind: m for m in (LinearModel, KernelSVC, KernelSVR, MLPModel)}
_MODEL_TYPES = MODEL_TYPES
Model = _Model


def register_model(cls: type[_Model]) -> type[_Model]:
    """Make a model class loadable from a head card by its ``kind`` (usable as a class decorator)."""
    MODEL_TYPES[cls.kind] = cls
    return cls

def _scores_of(model: _Model, Z: np.ndarray) -> np.ndarray:
    if hasattr(model, "scores"):
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
