"""Honest offline evaluation of recommendation: items held out (cold), found again from audio only.

Reports mean per-user mAP@k, recall@k and AUC for each scorer of `embedkit.recommend` against a
popularity (oracle-ish) and a random baseline, with standard errors over users.
"""
from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from .interactions import Interactions, RecommendError
from .recommend import (
    BASELINES,
    SCORERS,
    fit_mapping,
    intra_list_similarity,
    mmr,
    score_items,
)

log = logging.getLogger("embedkit.recommend")

# ---- evaluation ----------------------------------------------------------------------------------


def average_precision_at_k(ranked_relevant: np.ndarray, n_relevant: int, k: int) -> float:
    """AP@k = Σ_{i≤k} P@i·rel_i / min(k, n_relevant); ``ranked_relevant`` bool in rank order."""
    if n_relevant <= 0:
        return float("nan")
    rel = np.asarray(ranked_relevant[:k], dtype=bool)
    if not rel.any():
        return 0.0
    hits = np.cumsum(rel)
    prec = hits / np.arange(1, rel.size + 1)
    return float((prec * rel).sum() / min(k, n_relevant))


def recall_at_k(ranked_relevant: np.ndarray, n_relevant: int, k: int) -> float:
    if n_relevant <= 0:
        return float("nan")
    return float(np.asarray(ranked_relevant[:k], dtype=bool).sum() / n_relevant)


def auc(scores: np.ndarray, relevant: np.ndarray) -> float:
    """ROC AUC: probability a relevant item outscores an irrelevant one (ties count half); NaN if one class."""
    from scipy.stats import rankdata

    rel = np.asarray(relevant, dtype=bool)
    n_pos, n_neg = int(rel.sum()), int((~rel).sum())
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    ranks = rankdata(scores)
    return float((ranks[rel].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def _fold_of(items: np.ndarray, folds: int, seed: int, groups: np.ndarray | None) -> np.ndarray:
    """Fold number per item; items of one group (e.g. one source track) share a fold."""
    rng = np.random.default_rng(seed)
    if groups is None:
        groups = items
    ug = np.unique(groups)
    perm = rng.permutation(ug.size)
    gfold = np.empty(ug.size, dtype=np.int64)
    gfold[perm] = np.arange(ug.size) % folds
    return gfold[np.searchsorted(ug, groups)]


def evaluate(
    vectors: np.ndarray,
    item_ids: np.ndarray,
    interactions: Interactions,
    *,
    k: int = 20,
    folds: int = 5,
    scorers: Sequence[str] = SCORERS,
    baselines: Sequence[str] = BASELINES,
    groups: np.ndarray | None = None,
    n_interests: int = 3,
    factors: int = 32,
    cf: str = "svd",
    seed: int = 0,
    min_train_items: int = 1,
    diversity: float = 0.0,
) -> dict:
    """Item hold-out evaluation of cold-start recommendation from audio.

    The items with interactions are split into ``folds`` folds (items of one ``groups`` value together).
    For each fold, its items become cold: all their interactions are removed from training, and every
    user with at least one held-out interaction and ``min_train_items`` remaining ones gets all cold
    items (the fold's, plus store items nobody played) ranked by each scorer, from audio only. The
    ``popularity`` baseline ranks cold items by how many *other* users played them in the held-out
    data — an oracle a real cold-start system cannot have, i.e. a strong bar; ``random`` is chance.

    ``diversity`` > 0 re-ranks each scorer's top ``10·k`` with `mmr` before mAP@k / recall@k (AUC uses
    the raw scores); ``ils@k`` is the mean intra-list cosine similarity of the top ``k`` (lower = more diverse).

    ``vectors`` ``(n, d)`` aligned with ascending ``item_ids``. Returns ``{"summary": {scorer: {"map@k",
    "recall@k", "auc", "users"}}, "per_user": [...], "protocol": {...}}`` (means over user-fold pairs,
    with standard errors).
    """
    item_ids = np.asarray(item_ids, dtype=np.int64)
    if np.any(np.diff(item_ids) <= 0):
        order = np.argsort(item_ids)
        item_ids, vectors = item_ids[order], vectors[order]
        if groups is not None:
            groups = np.asarray(groups)[order]
    inside = np.isin(interactions.item, item_ids)
    inter = interactions.subset(inside)
    played = inter.items()
    if played.size < folds or folds < 2:
        raise RecommendError(f"need at least {max(folds, 2)} played items and folds >= 2 to hold items out, "
                             f"given {played.size} played items and folds={folds}")
    g = None if groups is None else np.asarray(groups)[np.searchsorted(item_ids, played)]
    fold = _fold_of(played, folds, seed, g)
    never = np.setdiff1d(item_ids, played)
    rng = np.random.default_rng(seed + 1)
    names = list(scorers) + list(baselines)
    rows: list[dict] = []
    fit_r2 = []
    for f in range(folds):
        cold_items = np.union1d(played[fold == f], never)
        test_mask = np.isin(inter.item, played[fold == f])
        train, test = inter.subset(~test_mask), inter.subset(test_mask)
        if len(train) == 0 or len(test) == 0:
            continue
        cand = np.searchsorted(item_ids, cold_items)
        mapping = None
        if "mapping" in scorers:
            try:
                mapping = fit_mapping(train, vectors, item_ids, factors=factors, cf=cf, seed=seed)
                fit_r2.append(mapping.fit_r2_)
            except (RecommendError, ValueError) as exc:
                log.warning("fold %d: mapping scorer could not be fitted (%s)", f, exc)
        train_users = set(train.user.tolist())
        test_count = {}  # item -> users who played it in the held-out data
        for u, i in zip(test.user.tolist(), test.item.tolist()):
            test_count.setdefault(i, set()).add(u)
        for user in sorted(set(test.user.tolist())):
            tr_items, _ = train.of(user)
            if user not in train_users or tr_items.size < min_train_items:
                continue
            rel_items, _ = test.of(user)
            relevant = np.isin(cold_items, rel_items)
            n_rel = int(relevant.sum())
            row = {"user": user, "fold": f, "n_train": int(tr_items.size), "n_relevant": n_rel, "n_candidates": int(cand.size)}
            for name in names:
                if name == "random":
                    s = rng.random(cand.size)
                elif name == "popularity":
                    s = np.array([len(test_count.get(int(i), set()) - {user}) for i in cold_items], dtype=np.float64)
                    s = s + 1e-6 * rng.random(cand.size)  # break ties at random
                elif name == "mapping" and mapping is None:
                    continue
                else:
                    s = score_items(name, user=user, interactions=train, vectors=vectors, item_ids=item_ids,
                                    candidates=cand, n_interests=n_interests, factors=factors, cf=cf, seed=seed,
                                    _mapping=mapping)
                order = np.argsort(-s, kind="stable")
                if diversity > 0 and name in scorers:
                    pool = order[: 10 * k]
                    head = pool[mmr(s[pool], vectors[cand[pool]], k, diversity=diversity)]
                    order = np.r_[head, order[~np.isin(order, head)]]
                ranked = relevant[order]
                row[name] = {"ap": average_precision_at_k(ranked, n_rel, k), "recall": recall_at_k(ranked, n_rel, k),
                             "auc": auc(s, relevant), "ils": intra_list_similarity(vectors[cand[order[:k]]])}
            rows.append(row)
    summary = {}
    for name in names:
        vals = [r[name] for r in rows if name in r]
        if not vals:
            continue
        summary[name] = {"users": len(vals)}
        for metric, key in (("ap", f"map@{k}"), ("recall", f"recall@{k}"), ("auc", "auc"), ("ils", f"ils@{k}")):
            v = np.array([x[metric] for x in vals], dtype=np.float64)
            v = v[np.isfinite(v)]
            summary[name][key] = round(float(v.mean()), 4) if v.size else None
            summary[name][key + "_se"] = round(float(v.std(ddof=1) / math.sqrt(v.size)), 4) if v.size > 1 else None
    return {
        "summary": summary,
        "per_user": rows,
        "protocol": {
            "k": k, "folds": folds, "seed": seed, "held_out": "items (all their interactions)",
            "items_played": int(played.size), "items_never_played": int(never.size),
            "users": len(inter.users()), "interactions": len(inter), "grouped_folds": groups is not None,
            "scorers": list(scorers), "baselines": list(baselines), "factors": factors, "cf": cf,
            "n_interests": n_interests, "diversity": diversity,
            "audio_to_factors_r2": round(float(np.mean(fit_r2)), 4) if fit_r2 else None,
            "popularity": "oracle: other users' plays of the held-out item (unavailable for truly cold items)",
        },
    }


def evaluate_store(store: Any, interactions: Interactions, *, space: str | None = None, **kwargs: Any) -> dict:
    """`evaluate` over a store's vectors (mapped into similarity space ``space`` when given)."""
    ids = store.ids()
    vectors = store.vectors(ids)
    if space:
        from .spaces.hooks import map_vectors

        vectors = map_vectors(store, space, vectors)
    out = evaluate(vectors, ids, interactions, **kwargs)
    out["unknown"] = interactions.unknown
    return out
