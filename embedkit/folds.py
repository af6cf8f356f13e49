"""One cross-validation fold splitter for heads (inner CV) and evaluation (outer CV).

`cv_folds` is the only place that decides how labelled items are cut into folds:

- classification: stratified (``StratifiedKFold``; ``StratifiedGroupKFold`` when groups such as
  artists are given, so a group never sits on both sides of a split);
- regression / multilabel: shuffled ``KFold`` (``GroupKFold`` with shuffling when groups are given).

Two policies differ only in what happens when the data are small:

- ``strict=True`` (the *outer* folds of `embedkit.evaluation.nested_cv`): the fold count is capped by
  the largest class (some test folds may lack a rare class: a note says so) and too few examples raise
  `FoldError` with a one-line reason;
- ``strict=False`` (the *inner* folds inside `embedkit.heads.Head.fit`): the fold count is capped by
  the smallest class so every training part sees every class, and too few examples return None (the
  head then uses fixed default hyper-parameters).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .errors import EmbedkitError

Split = tuple[np.ndarray, np.ndarray]


class FoldError(EmbedkitError):
    """The labelled items cannot be cut into folds as asked (too few examples, classes or groups)."""


@dataclass
class Folds:
    """``splits`` ``[(train_idx, test_idx)]``, a one-line ``description`` and ``notes`` (warnings)."""

    splits: list[Split]
    description: str
    notes: list[str] = field(default_factory=list)


def group_fold_count(groups: np.ndarray, k: int) -> int:
    """Fold count for group-aware splits: at most one fold per group; needs 2 groups or more."""
    n_groups = len(np.unique(groups))
    if n_groups < 2:
        raise FoldError("group-aware evaluation needs at least 2 groups, found 1")
    return min(k, n_groups)


def cv_folds(task: str, y: Any, *, groups: np.ndarray | None = None, folds: int = 10, seed: int = 0,
             strict: bool = True) -> Folds | None:
    """Folds over ``len(y)`` items (see the module doc for the two policies).

    ``y``: class labels ``(n,)`` for classification (any dtype: compared as given), anything of length
    n otherwise; ``groups``: ``(n,)`` group ids or None. Returns None only when ``strict`` is False.
    """
    from sklearn.model_selection import GroupKFold, KFold, StratifiedGroupKFold, StratifiedKFold

    n = len(y)
    notes: list[str] = []

    def too_few(msg: str) -> None:
        if strict:
            raise FoldError(msg)

    def group_k(k: int) -> int | None:
        """Fold count of a group-aware split (`group_fold_count`); None when the groups allow none (not strict)."""
        if not strict and len(np.unique(groups)) < 2:
            return None
        k = group_fold_count(groups, k)
        return None if k < 2 else k

    if folds < 2:
        too_few(f"need at least 2 folds, given folds={folds}")
        return None
    if task == "classification":
        yy = np.asarray(y)
        labels, counts = np.unique(yy, return_counts=True)
        if len(labels) < 2:
            too_few(f"need at least 2 classes to evaluate, found {labels.tolist()}")
            return None
        if strict:
            if counts.min() < 2:
                lone = ", ".join(repr(str(c)) for c in labels[counts < 2][:5])
                raise FoldError(f"class(es) {lone} have a single example: it cannot be both trained on and tested "
                                "(remove them or use --drop-rare)")
            k = min(folds, int(counts.max()))
            if counts.min() < k:
                small = labels[counts < k]
                notes.append(f"{len(small)} class(es) (e.g. {str(small[0])!r}) have fewer than {k} examples: "
                             "some test folds lack them")
        else:
            if n < 4:
                return None
            k = min(folds, int(counts.min()))
            if k < 2:
                return None
        if groups is not None:
            gk = group_k(k)
            if gk is None:
                return None
            cv = StratifiedGroupKFold(n_splits=gk, shuffle=True, random_state=seed)
            return Folds(list(cv.split(np.zeros(n), yy, groups)), f"stratified group {gk}-fold", notes)
        cv = StratifiedKFold(n_splits=k, shuffle=True, random_state=seed)
        return Folds(list(cv.split(np.zeros(n), yy)), f"stratified {k}-fold", notes)
    if n < 4:
        too_few(f"need at least 4 labelled items to evaluate, given {n}")
        return None
    k = min(folds, n // 2)
    if groups is not None:
        gk = group_k(k)
        if gk is None:
            return None
        cv = GroupKFold(n_splits=gk, shuffle=True, random_state=seed)
        return Folds(list(cv.split(np.zeros(n), None, groups)), f"group {gk}-fold", notes)
    cv = KFold(n_splits=k, shuffle=True, random_state=seed)
    return Folds(list(cv.split(np.zeros(n))), f"{k}-fold", notes)
