"""Honest evaluation of a `Head`: nested cross-validation, given splits, few-shot learning curves.

Nested CV: the outer folds (stratified; group-aware when groups such as artists are given) hold out a
test fold; `Head.fit` is called on the rest and picks its hyper-parameters by its own inner CV on that
rest only, so no test item ever influences a choice. Every number is reported per fold and as
mean ± std (population std over folds), next to a chance level measured the same way (a majority /
mean / prevalence predictor trained on the same training folds).

Plots (confusion matrix, learning curve) are PNGs drawn with matplotlib's Agg backend, imported only
when a plot is asked for.
"""
from __future__ import annotations

import json
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .folds import FoldError, cv_folds, group_fold_count
from .heads import Head

P_AT_K = (1, 3, 5)


class EvaluationError(FoldError):
    """The data cannot be evaluated as asked (too few examples, bad split column, ...)."""


# ---- metrics ------------------------------------------------------------------------------------


def classification_metrics(y_true: np.ndarray, y_pred: np.ndarray) -> dict[str, float]:
    """accuracy, balanced accuracy (mean recall over the classes present) and macro-F1."""
    from sklearn import metrics as skm

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return {
            "accuracy": float(skm.accuracy_score(y_true, y_pred)),
            "balanced_accuracy": float(skm.balanced_accuracy_score(y_true, y_pred)),
            "macro_f1": float(skm.f1_score(y_true, y_pred, average="macro", zero_division=0)),
        }


def multilabel_metrics(Y_true: np.ndarray, scores: np.ndarray) -> dict[str, float]:
    """Macro ROC-AUC and PR-AUC (average precision) over the labels that have both positives and
    negatives in ``Y_true``, and P@K (share of each item's K top-scored labels that are true)."""
    from sklearn import metrics as skm

    Y_true = np.asarray(Y_true)
    ok = [t for t in range(Y_true.shape[1]) if 0 < Y_true[:, t].sum() < Y_true.shape[0]]
    out = {
        "roc_auc": float(np.mean([skm.roc_auc_score(Y_true[:, t], scores[:, t]) for t in ok])) if ok else float("nan"),
        "pr_auc": float(np.mean([skm.average_precision_score(Y_true[:, t], scores[:, t]) for t in ok])) if ok else float("nan"),
    }
    order = np.argsort(-scores, axis=1, kind="stable")
    for k in P_AT_K:
        kk = min(k, Y_true.shape[1])
        top = order[:, :kk]
        out[f"p_at_{k}"] = float(np.take_along_axis(Y_true, top, axis=1).mean())
    return out


def regression_metrics(Y_true: np.ndarray, Y_pred: np.ndarray, targets: Sequence[str]) -> dict[str, float]:
    """R² and Pearson r per target, and their means over targets (``r2``, ``pearson_r``)."""
    from sklearn import metrics as skm

    Y_true = np.asarray(Y_true, np.float64).reshape(len(Y_true), -1)
    Y_pred = np.asarray(Y_pred, np.float64).reshape(len(Y_pred), -1)
    out: dict[str, float] = {}
    r2s, rs = [], []
    for t, name in enumerate(targets):
        r2 = float(skm.r2_score(Y_true[:, t], Y_pred[:, t]))
        if np.std(Y_pred[:, t]) > 0 and np.std(Y_true[:, t]) > 0:
            r = float(np.corrcoef(Y_true[:, t], Y_pred[:, t])[0, 1])
        else:
            r = float("nan")
        out[f"r2_{name}"], out[f"pearson_r_{name}"] = r2, r
        r2s.append(r2)
        rs.append(r)
    out["r2"] = float(np.mean(r2s))
    out["pearson_r"] = float(np.nanmean(rs)) if np.isfinite(rs).any() else float("nan")
    return out


def _task_metrics(task: str, y_true: Any, out: Any, names: Sequence[str]) -> dict[str, float]:
    if task == "classification":
        return classification_metrics(y_true, out)
    if task == "multilabel":
        return multilabel_metrics(y_true, out)
    return regression_metrics(y_true, out, names)


def _chance_outputs(task: str, y_train: Any, n_test: int) -> Any:
    """What a predictor that ignores the audio outputs: majority class / training mean / prevalence."""
    if task == "classification":
        vals, counts = np.unique(np.asarray(y_train).astype(str), return_counts=True)
        return np.full(n_test, vals[np.argmax(counts)])
    y = np.asarray(y_train, np.float64).reshape(len(y_train), -1)
    return np.tile(y.mean(axis=0), (n_test, 1))


def summarize(values: Sequence[float]) -> dict[str, Any]:
    """``{"mean", "std", "folds"}`` (population std; NaN folds ignored in mean/std)."""
    v = np.asarray(values, np.float64)
    fin = v[np.isfinite(v)]
    return {
        "mean": float(fin.mean()) if fin.size else float("nan"),
        "std": float(fin.std()) if fin.size else float("nan"),
        "folds": [None if not np.isfinite(x) else float(x) for x in v],
    }


# ---- splits -------------------------------------------------------------------------------------


def outer_splits(
    task: str, y: Any, *, groups: np.ndarray | None = None, folds: int = 10, seed: int = 0
) -> tuple[list[tuple[np.ndarray, np.ndarray]], str, list[str]]:
    """Outer CV folds, a one-line description, and warnings (`embedkit.folds.cv_folds`, strict policy).

    Classification: stratified (``StratifiedGroupKFold`` with groups); other tasks: shuffled
    ``KFold`` (``GroupKFold`` with groups). Raises `EvaluationError` when there are too few
    examples (a class with a single example, fewer than 2 groups).
    """
    yy = np.asarray(y).astype(str) if task == "classification" else y
    try:
        f = cv_folds(task, yy, groups=groups, folds=folds, seed=seed, strict=True)
    except FoldError as exc:
        raise EvaluationError(str(exc)) from None
    assert f is not None
    return f.splits, f.description, f.notes


_SPLIT_ALIASES = {"train": "train", "training": "train", "dev": "train", "development": "train",
                  "valid": "valid", "validation": "valid", "val": "valid",
                  "test": "test", "testing": "test", "evaluation": "test", "eval": "test"}


_group_folds = group_fold_count


def given_split(split: Sequence[str]) -> dict[str, np.ndarray]:
    """Indices of ``train``/``valid``/``test`` from a split column (aliases such as ``training``,
    ``validation``, ``development``/``evaluation`` are understood)."""
    out: dict[str, list[int]] = {"train": [], "valid": [], "test": []}
    for i, v in enumerate(split):
        key = _SPLIT_ALIASES.get(str(v).strip().lower())
        if key is None:
            raise EvaluationError(f"split value {v!r} (row {i}) is not one of train/valid/test")
        out[key].append(i)
    if not out["train"] or not out["test"]:
        raise EvaluationError(f"a given split needs train and test items (found train={len(out['train'])}, test={len(out['test'])})")
    return {k: np.asarray(v, np.int64) for k, v in out.items()}


# ---- nested CV ----------------------------------------------------------------------------------


@dataclass
class EvalReport:
    """Result of `nested_cv` (and optionally `learning_curve`); ``to_json``/``to_markdown``/``save_plots``."""

    task: str
    head: dict
    protocol: dict
    n_items: int
    names: list[str]
    metrics: dict[str, dict]
    chance: dict[str, float]
    per_class: dict[str, dict] | None = None
    confusion: dict | None = None
    folds: list[dict] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    learning_curve: dict | None = None
    extra: dict = field(default_factory=dict)

    def to_json(self) -> dict:
        d = {
            "task": self.task,
            "head": self.head,
            "protocol": self.protocol,
            "n_items": self.n_items,
            "classes" if self.task == "classification" else ("labels" if self.task == "multilabel" else "targets"): self.names,
            "metrics": self.metrics,
            "chance": self.chance,
            "per_class": self.per_class,
            "confusion_matrix": self.confusion,
            "folds": self.folds,
            "learning_curve": self.learning_curve,
            "notes": self.notes,
        }
        d.update(self.extra)
        return _clean(d)

    def headline(self) -> dict[str, float]:
        return {k: v["mean"] for k, v in self.metrics.items()}

    def to_markdown(self) -> str:
        p = self.protocol
        lines = [
            f"**{self.task}** with a **{self.head.get('kind')}** head on {self.n_items} items — {p['outer']}"
            + (f", inner {p['inner']}" if p.get("inner") else "")
            + (f", groups: {p['groups']}" if p.get("groups") else "")
            + f", seed {p['seed']}",
            "",
            "| metric | mean ± std | chance | folds |",
            "|---|---|---|---|",
        ]
        for k, v in self.metrics.items():
            ch = self.chance.get(k)
            lines.append(f"| {k} | {_pm(v)} | {_fmt(ch)} | {len(v['folds'])} |")
        if self.per_class:
            lines += ["", "| class | precision | recall | f1 | support |", "|---|---|---|---|---|"]
            for c, d in self.per_class.items():
                lines.append(f"| {c} | {_fmt(d['precision'])} | {_fmt(d['recall'])} | {_fmt(d['f1'])} | {d['support']} |")
        if self.confusion:
            labels = self.confusion["labels"]
            lines += ["", "Confusion matrix (rows: true, columns: predicted, summed over test folds):", "",
                      "| true \\ pred | " + " | ".join(labels) + " |", "|---|" + "---|" * len(labels)]
            for lab, row in zip(labels, self.confusion["matrix"]):
                lines.append(f"| {lab} | " + " | ".join(str(x) for x in row) + " |")
        if self.learning_curve:
            lc = self.learning_curve
            lines += ["", f"Learning curve ({lc['metric']}, {lc['repeats']} draws per point, test fraction {lc['test_fraction']}):",
                      "", "| shots | train items | mean ± std |", "|---|---|---|"]
            for s, nt, m, sd in zip(lc["shots"], lc["n_train"], lc["mean"], lc["std"]):
                lines.append(f"| {s} | {nt:.0f} | {_fmt(m)} ± {_fmt(sd)} |")
        if self.folds:
            from collections import Counter

            chosen = Counter(_setting(f) for f in self.folds)
            lines += ["", "Settings chosen by the inner CV (per outer fold): "
                      + "; ".join(f"{s} ({c}×)" for s, c in chosen.most_common())]
        if self.notes:
            lines += [""] + [f"- note: {n}" for n in self.notes]
        return "\n".join(lines) + "\n"

    def save_plots(self, folder: str | Path) -> list[Path]:
        """Write ``confusion_matrix.png`` and/or ``learning_curve.png`` into ``folder``."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        out = []
        if self.confusion:
            out.append(plot_confusion(self.confusion, folder / "confusion_matrix.png"))
        if self.learning_curve:
            out.append(plot_learning_curve(self.learning_curve, folder / "learning_curve.png"))
        return out


def _fit_fold(head: Head, X, y, groups, label_names, tr, te, inner_splits=None) -> dict:
    t0 = time.perf_counter()
    h = head.clone()
    y_tr = y[tr]
    h.fit(X[tr], y_tr, groups=None if groups is None else groups[tr], label_names=label_names, splits=inner_splits)
    fit_s = time.perf_counter() - t0
    if h.task == "classification":
        out = h.predict(X[te])
    elif h.task == "multilabel":
        out = h.predict_proba(X[te])
    else:
        out = h.predict(X[te]).reshape(len(te), -1)
    return {"out": out, "params": h.params_, "layers": list(h.layers_), "selection": h.selection_, "fit_s": fit_s}


def nested_cv(
    head: Head,
    X: np.ndarray,
    y: Any,
    *,
    groups: Sequence | None = None,
    label_names: Sequence[str] | None = None,
    folds: int = 10,
    split: Sequence[str] | None = None,
    seed: int = 0,
    n_jobs: int = 1,
    groups_name: str | None = None,
) -> EvalReport:
    """Nested cross-validation of ``head`` on ``X (n, D)`` and labels ``y``.

    ``split``: a given train/valid/test assignment per item (then one outer split; ``valid`` items,
    if any, are the head's selection set instead of an inner CV). ``groups``: ids kept on one side
    of every split (outer and inner). ``n_jobs``: outer folds run in parallel processes.
    """
    from joblib import Parallel, delayed

    X = np.asarray(X)
    n = X.shape[0]
    y = _as_targets(head.task, y)
    if len(y) != n:
        raise EvaluationError(f"{n} vectors but {len(y)} labels")
    g = None if groups is None else np.asarray(groups)
    notes: list[str] = []
    inner_given = None
    if split is not None:
        idx = given_split(split)
        if len(idx["valid"]):
            tr = np.concatenate([idx["train"], idx["valid"]])
            inner_given = [(np.arange(len(idx["train"])), np.arange(len(idx["train"]), len(tr)))]
            desc = f"given split (train {len(idx['train'])}, valid {len(idx['valid'])} for selection, test {len(idx['test'])})"
        else:
            tr = idx["train"]
            desc = f"given split (train {len(tr)}, test {len(idx['test'])})"
        splits = [(tr, idx["test"])]
        if head.task == "classification":
            unseen = sorted(set(y[idx["test"]].astype(str)) - set(y[tr].astype(str)))
            if unseen:
                notes.append(f"test classes never seen in training: {', '.join(unseen[:5])}")
    else:
        splits, desc, notes = outer_splits(head.task, y, groups=g, folds=folds, seed=seed)
    if g is not None and split is None:
        for tr, te in splits:
            assert not set(g[tr]) & set(g[te]), "group leaked across an outer split"

    jobs = Parallel(n_jobs=n_jobs)(
        delayed(_fit_fold)(head, X, y, g, label_names, tr, te, inner_given) for tr, te in splits
    )
    names = _names(head.task, y, label_names)
    per_fold: list[dict[str, float]] = []
    chance_fold: list[dict[str, float]] = []
    fold_info = []
    pooled_true, pooled_pred = [], []
    for (tr, te), res in zip(splits, jobs):
        m = _task_metrics(head.task, y[te], res["out"], names)
        per_fold.append(m)
        ch = _chance_outputs(head.task, y[tr], len(te))
        chance_fold.append(_task_metrics(head.task, y[te], ch, names))
        fold_info.append({"n_train": int(len(tr)), "n_test": int(len(te)), "params": res["params"], "layers": res["layers"],
                          "inner_score": res["selection"].get("best_inner_score"), "fit_s": round(res["fit_s"], 3)})
        if head.task == "classification":
            pooled_true.append(y[te].astype(str))
            pooled_pred.append(np.asarray(res["out"]).astype(str))
    metrics = {k: summarize([m[k] for m in per_fold]) for k in per_fold[0]}
    chance = {k: summarize([m[k] for m in chance_fold])["mean"] for k in chance_fold[0]}
    if head.task == "classification":
        chance["balanced_accuracy"] = 1.0 / len(names)
    per_class = confusion = None
    if head.task == "classification":
        per_class, confusion = _pooled_class_report(np.concatenate(pooled_true), np.concatenate(pooled_pred), names)
    protocol = {
        "outer": desc,
        "inner": None if inner_given else f"{head.inner_folds}-fold (stratified for classes) inside each training fold",
        "groups": groups_name or (None if g is None else "given"),
        "seed": seed,
        "selection_metric": head.selection_metric or {"classification": "accuracy", "regression": "r2", "multilabel": "roc_auc"}[head.task],
        "std": "population std over outer folds",
    }
    head_desc = {"kind": head.resolved_kind, "layers": head.layers, "layers_grid": head.layers_grid,
                 "class_weight": head.class_weight, "selection_subsample": head.selection_subsample}
    return EvalReport(task=head.task, head=head_desc, protocol=protocol, n_items=n, names=names, metrics=metrics,
                      chance=chance, per_class=per_class, confusion=confusion, folds=fold_info, notes=notes)


def _as_targets(task: str, y: Any) -> np.ndarray:
    if task == "classification":
        return np.asarray(y).astype(str)
    if task == "regression":
        return np.asarray(y, np.float64)
    return np.asarray(y)


def _names(task: str, y: np.ndarray, label_names: Sequence[str] | None) -> list[str]:
    if task == "classification":
        return [str(c) for c in np.unique(np.asarray(y).astype(str))]
    if label_names is not None:
        return list(label_names)
    width = 1 if np.asarray(y).ndim == 1 else np.asarray(y).shape[1]
    return [f"{'target' if task == 'regression' else 'label'}{t}" for t in range(width)]


def _pooled_class_report(y_true: np.ndarray, y_pred: np.ndarray, names: list[str]) -> tuple[dict, dict]:
    from sklearn import metrics as skm

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        p, r, f, s = skm.precision_recall_fscore_support(y_true, y_pred, labels=names, zero_division=0)
        cm = skm.confusion_matrix(y_true, y_pred, labels=names)
    per_class = {c: {"precision": float(p[i]), "recall": float(r[i]), "f1": float(f[i]), "support": int(s[i])}
                 for i, c in enumerate(names)}
    return per_class, {"labels": names, "matrix": cm.tolist()}


# ---- learning curve -----------------------------------------------------------------------------


def learning_curve(
    head: Head,
    X: np.ndarray,
    y: Any,
    *,
    shots: Sequence[int] = (1, 5, 10, 20),
    repeats: int = 10,
    groups: Sequence | None = None,
    label_names: Sequence[str] | None = None,
    test_fraction: float = 0.25,
    seed: int = 0,
    n_jobs: int = 1,
    metric: str | None = None,
) -> dict:
    """Test score against the number of labelled examples, over ``repeats`` random draws.

    Each draw holds out a test set (stratified; whole groups when ``groups`` are given), then trains
    on ``k`` examples per class (classification) or ``k`` items (other tasks) drawn from the rest, for
    each ``k`` in ``shots``. The head chooses its hyper-parameters by inner CV on those ``k`` examples
    when it can, and falls back to fixed defaults otherwise (``k`` < 2), never using the test set.
    """
    from joblib import Parallel, delayed
    from sklearn.model_selection import GroupShuffleSplit, ShuffleSplit, StratifiedShuffleSplit

    X = np.asarray(X)
    y = _as_targets(head.task, y)
    shots = sorted({int(s) for s in shots})
    if not shots or shots[0] < 1:
        raise EvaluationError(f"shots must be positive integers, given {shots}")
    metric = metric or {"classification": "accuracy", "regression": "r2", "multilabel": "roc_auc"}[head.task]
    g = None if groups is None else np.asarray(groups)
    n = len(y)
    if g is not None:
        sp = GroupShuffleSplit(n_splits=repeats, test_size=test_fraction, random_state=seed).split(np.zeros(n), None, g)
    elif head.task == "classification":
        ys = y.astype(str)
        _, counts = np.unique(ys, return_counts=True)
        if counts.min() < 2:
            raise EvaluationError("a class has a single example: cannot hold out test items for it")
        sp = StratifiedShuffleSplit(n_splits=repeats, test_size=test_fraction, random_state=seed).split(np.zeros(n), ys)
    else:
        sp = ShuffleSplit(n_splits=repeats, test_size=test_fraction, random_state=seed).split(np.zeros(n))
    names = _names(head.task, y, label_names)
    tasks = []
    for r, (pool, test) in enumerate(sp):
        rng = np.random.default_rng([seed, r])
        for k in shots:
            tasks.append((r, k, _draw(head.task, y, pool, k, rng), test))
    results = Parallel(n_jobs=n_jobs)(
        delayed(_fit_fold)(head, X, y, None, label_names, tr, te) for _, _, tr, te in tasks
    )
    per_k: dict[int, list[float]] = {k: [] for k in shots}
    n_train: dict[int, list[int]] = {k: [] for k in shots}
    for (_r, k, tr, te), res in zip(tasks, results):
        per_k[k].append(_task_metrics(head.task, y[te], res["out"], names)[metric])
        n_train[k].append(len(tr))
    return {
        "metric": metric,
        "shots": shots,
        "unit": "examples per class" if head.task == "classification" else "training items",
        "n_train": [float(np.mean(n_train[k])) for k in shots],
        "mean": [summarize(per_k[k])["mean"] for k in shots],
        "std": [summarize(per_k[k])["std"] for k in shots],
        "draws": {str(k): per_k[k] for k in shots},
        "repeats": repeats,
        "test_fraction": test_fraction,
        "seed": seed,
    }


def _draw(task: str, y: np.ndarray, pool: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    """``k`` examples per class (classification; all of a class if it has fewer) or ``k`` items."""
    if task == "classification":
        ys = y[pool].astype(str)
        picks = []
        for c in np.unique(ys):
            members = pool[ys == c]
            picks.append(rng.choice(members, size=min(k, len(members)), replace=False))
        return np.sort(np.concatenate(picks))
    return np.sort(rng.choice(pool, size=min(k, len(pool)), replace=False))


# ---- plots --------------------------------------------------------------------------------------


def _pyplot():
    try:
        import matplotlib
    except ImportError:
        raise EvaluationError("plots need matplotlib: pip install 'embedkit[plots]'") from None
    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def plot_confusion(confusion: dict, path: str | Path, *, normalize: bool = True) -> Path:
    """Confusion matrix PNG (rows true, columns predicted; row-normalised shading, counts written)."""
    plt = _pyplot()
    labels = confusion["labels"]
    cm = np.asarray(confusion["matrix"], np.float64)
    shade = cm / np.maximum(cm.sum(axis=1, keepdims=True), 1) if normalize else cm
    size = max(4.0, 0.5 * len(labels) + 2)
    fig, ax = plt.subplots(figsize=(size, size * 0.9))
    ax.imshow(shade, cmap="Blues", vmin=0, vmax=1 if normalize else None)
    ax.set_xticks(range(len(labels)), labels, rotation=45, ha="right")
    ax.set_yticks(range(len(labels)), labels)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    if len(labels) <= 30:
        for i in range(len(labels)):
            for j in range(len(labels)):
                ax.text(j, i, f"{int(cm[i, j])}", ha="center", va="center", fontsize=8,
                        color="white" if shade[i, j] > 0.5 else "black")
    ax.set_title("confusion matrix (test folds)")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return Path(path)


def plot_learning_curve(curve: dict, path: str | Path) -> Path:
    """Learning curve PNG: mean ± std of the test metric against shots."""
    plt = _pyplot()
    x = np.asarray(curve["shots"], np.float64)
    m = np.asarray(curve["mean"], np.float64)
    s = np.asarray(curve["std"], np.float64)
    fig, ax = plt.subplots(figsize=(5, 3.5))
    ax.plot(x, m, marker="o")
    ax.fill_between(x, m - s, m + s, alpha=0.25)
    ax.set_xscale("log")
    ax.set_xticks(x, [str(int(v)) for v in x])
    ax.set_xlabel(curve.get("unit", "shots"))
    ax.set_ylabel(curve["metric"])
    ax.set_title(f"learning curve ({curve['repeats']} draws)")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return Path(path)


# ---- formatting ---------------------------------------------------------------------------------


def _setting(fold: dict) -> str:
    p = " ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in fold["params"].items())
    return f"layers {','.join(fold['layers'])}, {p}"


def _fmt(v: Any) -> str:
    if v is None or (isinstance(v, float) and not np.isfinite(v)):
        return "n/a"
    return f"{v:.3f}" if isinstance(v, float) else str(v)


def _pm(v: dict) -> str:
    return f"{_fmt(v['mean'])} ± {_fmt(v['std'])}"


def _clean(o: Any) -> Any:
    """JSON-safe: numpy → python, NaN → None."""
    if isinstance(o, dict):
        return {str(k): _clean(v) for k, v in o.items()}
    if isinstance(o, (list, tuple)):
        return [_clean(v) for v in o]
    if isinstance(o, np.ndarray):
        return _clean(o.tolist())
    if isinstance(o, (np.floating, float)):
        f = float(o)
        return f if np.isfinite(f) else None
    if isinstance(o, (np.integer,)):
        return int(o)
    if isinstance(o, np.bool_):
        return bool(o)
    return o


def write_report(report: EvalReport, path: str | Path) -> Path:
    """Write the report as JSON (``.json``) or Markdown (any other suffix)."""
    p = Path(path)
    text = json.dumps(report.to_json(), indent=2) + "\n" if p.suffix.lower() == ".json" else report.to_markdown()
    p.write_text(text, encoding="utf-8")
    return p
