"""`Head`: a scikit-learn-style estimator over track vectors ``X (n, D) float32``.

    standardise (per column) → keep the chosen feature blocks → logistic regression | SVM |
    ridge | SVR | small MLP (or a registered kind, see `embedkit.heads.registry`)

``Head.fit`` chooses its hyper-parameters (and, optionally, which feature blocks to use) by an
*inner* cross-validation on the training data it is given (`embedkit.heads.selection`), then refits
on all of it. Because the choice happens inside ``fit``, an outer evaluation
(`embedkit.evaluation.nested_cv`) that calls ``fit`` on its training folds can never tune on its test
fold. A fitted head keeps only plain arrays and runs numpy inference (`embedkit.heads.models`);
`Head.save` / `Head.load` go through `embedkit.heads.card`.
"""
from __future__ import annotations

import contextlib
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ModelMismatchError
from ..folds import cv_folds
from ..spec import SpecError, VectorSpec
from . import registry
from .base import DEFAULT_KIND, SELECTION_METRIC, TASKS, HeadError, HeadEstimator, NotFittedError
from .card import HEAD_FORMAT, HEAD_FORMAT_VERSION, read_head
from .layout import InputLayout, parse_layers_grid
from ..activations import sigmoid as _sigmoid
from ..activations import softmax as _softmax
from .models import MODEL_TYPES, KernelSVC, _kernel, _predict_index, _scores_of
from .selection import (
    KERNEL_CACHE_MAX,
    _calibrate_svc,
    _resolve_gamma,
    _search,
    _subsample,
    default_grid,
    default_params,
    fit_config,
)


def as_spec(spec: Any) -> VectorSpec | None:
    """None, a `VectorSpec`, or its JSON (``to_json``) → `VectorSpec` or None."""
    if spec is None or isinstance(spec, VectorSpec):
        return spec
    if isinstance(spec, dict):
        return VectorSpec.from_json(spec)
    raise HeadError(f"spec must be a VectorSpec (e.g. store.spec) or its JSON, given {type(spec).__name__}")


def spec_from_card(card: dict) -> VectorSpec | None:
    """The vector spec a head card carries (``vector_spec``, or the 0.1 keys ``model``/``model_fingerprint``/
    ``store_layers``/...); None for a head saved without one (no ``model`` in the card)."""
    if not isinstance(card.get("vector_spec"), dict) and not card.get("model"):
        return None
    return VectorSpec.from_json(card)


def _inner_splits(task: str, y: np.ndarray, groups: np.ndarray | None, n_folds: int, seed: int):
    """Inner CV folds (`embedkit.folds.cv_folds`, lenient policy), or None when the data are too few."""
    f = cv_folds(task, y, groups=groups, folds=n_folds, seed=seed, strict=False)
    return None if f is None else f.splits


class Head(HeadEstimator):
    """Standardisation + feature-block selection + classifier/regressor, hyper-parameters chosen by
    an inner CV inside ``fit`` (scikit-learn API: parameters in ``__init__``, fitted attributes end
    in ``_``).

    Parameters
    ----------
    task : "classification" | "regression" | "multilabel"
    kind : "svm" | "logreg" | "mlp" (classification), "svr" | "ridge" | "mlp" (regression),
        "logreg" | "mlp" (multilabel), or "auto" (svm / svr / logreg).
    layout : the vectors' block layout, ``[{"name", "start", "stop"}]`` (a store's
        ``manifest["layout"]``); None = the spec's layout, or one block called "all".
    spec : the `embedkit.spec.VectorSpec` of the vectors (``store.spec``; a dict from ``to_json`` works
        too). Saved in the card: the head then refuses vectors of another model or other settings
        (``predict(X, spec=...)``, ``embedkit predict``). Without it the head cannot tell.
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
        spec: Any = None,
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
        self.spec = spec
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

    # -- sklearn-ish plumbing (get_params / set_params / clone: `HeadEstimator`)
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
        allowed = [k for k in registry.names(self.task) if registry.get(k).input == "tracks"]
        if kind in registry.names(self.task) and kind not in allowed:
            est = registry.get(kind).estimator or "its own estimator"
            raise HeadError(f"head {kind!r} takes per-patch input, not track vectors; use {est}")
        if kind not in allowed:
            raise HeadError(f"head {kind!r} cannot do {self.task}; choose one of {', '.join(allowed)}")
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
        spec = as_spec(self.spec)
        if spec is not None and X.shape[1] != spec.dim:
            raise HeadError(f"vectors have {X.shape[1]} columns but the spec ({spec.describe()}) says {spec.dim}")
        layout = InputLayout.from_manifest(self.layout if self.layout is not None or spec is None else spec.layout_json(),
                                           X.shape[1])
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
        self.model_ = fit_config(kind, self.task, Z, y_m, best_params, class_weight=cw, seed=self.random_state, K=K)
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
        self.spec_ = spec
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

    def check_spec(self, spec: Any, *, source: str = "the vectors") -> None:
        """Refuse (`embedkit.spec.SpecMismatchError`, one line) vectors of ``spec`` made another way than this
        head's (another model or weights, aggregation, excerpt, precision). Blocks are matched by `align`.
        A head saved without a spec cannot check (nothing is raised)."""
        self._check_fitted()
        mine, theirs = getattr(self, "spec_", None), as_spec(spec)
        if mine is None or theirs is None:
            return
        if mine.models == theirs.models:
            with contextlib.suppress(SpecError):  # a store with other/more blocks: align() picks the blocks
                theirs = theirs.with_layers(mine.layers)
        name = self.card_.get("name") if isinstance(getattr(self, "card_", None), dict) else None
        what = f"head {self.path_}" if getattr(self, "path_", None) else f"head {name or '(in memory)'}"
        mine.check_compatible(theirs, what=what, other_what=source,
                              hint=f"use vectors embedded with {mine.describe()}, or train a head on {source}")

    def transform(self, X: np.ndarray, *, spec: Any = None) -> np.ndarray:
        """Standardised, block-selected input ``(n, d)`` float64 that the model sees. ``spec``: the
        vectors' `VectorSpec`, checked against the head's (see `check_spec`)."""
        self._check_fitted()
        if spec is not None:
            self.check_spec(spec)
        X = self._check_X(X, self.n_features_in_)
        return (X[:, self.columns_].astype(np.float64) - self.mean_) / self.scale_

    def decision_function(self, X: np.ndarray, *, spec: Any = None) -> np.ndarray:
        """Raw scores: ``(n,)`` for binary (> 0 → ``classes_[1]``), ``(n, k)`` for multiclass or tags."""
        Z = self.transform(X, spec=spec)
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

    def predict_proba(self, X: np.ndarray, *, spec: Any = None) -> np.ndarray:
        """Class probabilities ``(n, k)`` (order of ``classes_``) or tag probabilities ``(n, T)``."""
        Z = self.transform(X, spec=spec)
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

    def predict(self, X: np.ndarray, *, threshold: float = 0.5, spec: Any = None) -> np.ndarray:
        """Class labels ``(n,)``, target values ``(n,)``/``(n, t)``, or 0/1 tags ``(n, T)`` (prob ≥ threshold).
        ``spec``: the vectors' `VectorSpec`, checked against the head's (see `check_spec`)."""
        Z = self.transform(X, spec=spec)
        if self.task == "classification":
            return self.classes_[_predict_index(self.model_, Z)]
        if self.task == "regression":
            v = _scores_of(self.model_, Z) * self.y_scale_ + self.y_mean_
            return v[:, 0] if self.y_1d_ else v
        return (self.predict_proba(X) >= threshold).astype(np.int64)

    def predict_index(self, X: np.ndarray) -> np.ndarray:
        """Class indices into ``classes_`` (classification only)."""
        return _predict_index(self.model_, self.transform(X))

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
        card.update(self._output_fields())
        return card

    def save(self, path: str | os.PathLike, *, info: dict | None = None, overwrite: bool = False) -> Path:
        """Write ``path/card.json`` + ``path/weights.npz`` atomically (plain arrays, no pickle).

        ``info``: extra card fields (model, model_fingerprint, aggregation, metrics, labels file, ...).
        """
        self._check_fitted()
        arrays = {f"model.{k}": np.ascontiguousarray(v) for k, v in self.model_.arrays().items()}
        arrays.update({"columns": self.columns_, "mean": self.mean_, "scale": self.scale_})
        if self.task == "regression":
            arrays.update({"y_mean": self.y_mean_, "y_scale": self.y_scale_})
        card = self.card()
        spec = getattr(self, "spec_", None)
        if spec is not None:
            card.update(spec.card_fields())
        return self._write(path, card, arrays, info=info, overwrite=overwrite)

    @classmethod
    def load(cls, path: str | os.PathLike) -> Head:
        """Load a head saved by `save`; checks format, array shapes and checksums (no pickle)."""
        p = Path(path)
        card, arrays = read_head(p)
        retrain = "retrain it with 'embedkit train'"
        mtype = MODEL_TYPES.get(card.get("model_type"))
        if mtype is None and card.get("kind") in registry.names():
            own = registry.estimator_class(card["kind"])
            if own is not None:
                raise HeadError(f"{p}: a head of kind {card['kind']!r} (input: {registry.get(card['kind']).input}); load it with "
                                f"{own.__module__}.{own.__name__}.load, or embedkit.heads.load_head for any kind")
        if mtype is None:
            raise HeadError(f"{p}: unknown model type {card.get('model_type')!r}; {retrain}")
        try:
            head = cls._from_card(card, arrays, mtype)
            head._self_test()
        except HeadError as exc:
            raise HeadError(f"{p}: damaged head ({exc}); {retrain}") from None
        except (KeyError, IndexError, TypeError, ValueError, AttributeError, FloatingPointError) as exc:
            what = f"missing key {exc}" if isinstance(exc, KeyError) else f"{type(exc).__name__}: {' '.join(str(exc).split())[:120]}"
            raise HeadError(f"{p}: damaged or edited head ({what}); {retrain}") from None
        try:
            head.spec_ = spec_from_card(card)
        except SpecError as exc:
            raise HeadError(f"{p / 'card.json'}: {exc}; {retrain}") from None
        head.path_ = str(p)
        head.card_ = card
        return head

    @classmethod
    def _from_card(cls, card: dict, arrays: dict[str, np.ndarray], mtype: type) -> Head:
        head = cls(task=card["task"], kind=card["kind"], layout=card["input_layout"], layers=card["layers"],
                   class_weight=card.get("class_weight"))
        if head.task not in TASKS:
            raise HeadError(f"unknown task {head.task!r}")
        model_arrays = {k[len("model."):]: v for k, v in arrays.items() if k.startswith("model.")}
        head.model_ = mtype.from_arrays(model_arrays, card["model_meta"])
        head.kind_ = card["kind"]
        head.layers_ = tuple(card["layers"])
        head.params_ = card["params"]
        head.n_features_in_ = int(card["input_dim"])
        head.input_layout_ = InputLayout.from_manifest(card["input_layout"], head.n_features_in_)
        cols = arrays["columns"]
        if cols.dtype.kind not in "iu" or cols.ndim != 1 or cols.size == 0:
            raise HeadError(f"array 'columns' must be a non-empty 1-D integer array, found {cols.dtype} {cols.shape}")
        if cols.min() < 0 or cols.max() >= head.n_features_in_ or np.unique(cols).size != cols.size:
            raise HeadError(f"array 'columns' holds indices outside 0..{head.n_features_in_ - 1} or repeats")
        head.columns_ = cols.astype(np.int64)
        head.mean_ = arrays["mean"]
        head.scale_ = arrays["scale"]
        for key, a in (("mean", head.mean_), ("scale", head.scale_)):
            if a.dtype.kind != "f" or a.shape != cols.shape:
                raise HeadError(f"array {key!r} must be float of shape {cols.shape}, found {a.dtype} {a.shape}")
        if not (head.scale_ > 0).all():
            raise HeadError("array 'scale' holds values <= 0")
        head.n_train_ = int(card.get("n_train", 0))
        head.selection_ = card.get("selection", {})
        head.cv_results_ = []
        head.spec_ = None
        if head.task == "classification":
            head.classes_ = np.array([str(c) for c in card["classes"]])
        elif head.task == "multilabel":
            head.labels_ = [str(c) for c in card["labels"]]
        else:
            head.targets_ = [str(c) for c in card["targets"]]
            head.y_1d_ = bool(card.get("y_1d", False))
            head.y_mean_, head.y_scale_ = arrays["y_mean"], arrays["y_scale"]
            if head.y_mean_.shape != (len(head.targets_),) or head.y_scale_.shape != (len(head.targets_),):
                raise HeadError(f"arrays 'y_mean'/'y_scale' do not have one value per target ({len(head.targets_)})")
        return head

    def _self_test(self) -> None:
        """Run the model on zeros: every shape must fit and every output be finite and of the right width."""
        z = np.zeros((2, self.n_features_in_), np.float32)
        n_out = len(self.output_names)
        if self.task == "classification":
            idx = self.predict_index(z)
            if idx.min() < 0 or idx.max() >= n_out:
                raise HeadError(f"the model predicts class index {int(idx.max())} of {n_out} classes")
            out = self.decision_function(z)
        else:
            out = self.predict(z) if self.task == "regression" else self.decision_function(z)
            if np.asarray(out).reshape(2, -1).shape[1] != n_out:
                raise HeadError(f"the model gives {np.asarray(out).reshape(2, -1).shape[1]} outputs for {n_out} names")
        if self.has_proba:
            p = self.predict_proba(z)
            if p.shape != (2, n_out if not (self.task == "classification" and n_out == 1) else 2):
                raise HeadError(f"the model gives probabilities of shape {p.shape} for {n_out} outputs")
            out = p
        if not np.isfinite(np.asarray(out, np.float64)).all():
            raise HeadError("the model gives NaN or infinite outputs")

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

