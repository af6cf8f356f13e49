"""Content-based and cold-start recommendation from listening histories; honest offline evaluation.

Scorers (each gives every candidate item a score from its audio vector):

- ``mean``: the taste profile is the (play-weighted) mean of the user's liked, L2-normalised vectors;
  score = cosine to the profile.
- ``multi``: multi-interest profile: k-means over the liked vectors (``n_interests`` clusters);
  score = the best cosine to any interest centroid, so a user who likes metal *and* piano is not
  averaged into neither.
- ``mapping`` (van den Oord, Dieleman & Schrauwen 2013): collaborative-filtering factors are fitted
  on the warm items of an interaction log with many users (implicit ALS, Hu, Koren & Volinsky 2008,
  or truncated SVD), a ridge regression learns audio vector → item factors on those warm items, and
  items are scored by ``user factors · predicted item factors``, so items nobody has played yet
  (cold) get scores from their audio alone.

`mmr` re-ranks for acoustic diversity (maximal marginal relevance). `evaluate` holds out *items*
(not interactions): folds of items become cold, every interaction with them is removed from training,
and each user's held-out items must be found among all cold items from audio only; it reports mean
per-user mAP@k, recall@k and AUC for each scorer against a popularity and a random baseline.

Interaction logs are read by `embedkit.interactions`; the evaluation lives in `embedkit.recommend_eval`
(both re-exported here).
"""
from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from .interactions import Interactions, RecommendError, load_interactions  # noqa: F401 (re-exported)

log = logging.getLogger("embedkit.recommend")

SCORERS = ("mean", "multi", "mapping")
BASELINES = ("popularity", "random")
#: The mapping scorer needs a log with at least this many users and warm items (else ``auto`` picks ``mean``).
MIN_USERS_FOR_MAPPING = 10
MIN_WARM_ITEMS_FOR_MAPPING = 20


# ---- content scorers -----------------------------------------------------------------------------


def _l2n(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)


class TasteProfile:
    """Content profile of one user from the vectors of liked items.

    ``kind`` "mean": one weighted mean direction; "multi": up to ``n_interests`` k-means centroids
    (k chosen as min(n_interests, number of liked items)). ``fit(X (n, d), weights (n,))``, then
    ``score(X (m, d)) -> (m,)`` cosine (best centroid for "multi").
    """

    def __init__(self, kind: str = "mean", *, n_interests: int = 3, seed: int = 0) -> None:
        if kind not in ("mean", "multi"):
            raise ValueError(f"unknown profile kind {kind!r}; expected 'mean' or 'multi'")
        self.kind = kind
        self.n_interests = n_interests
        self.seed = seed

    def fit(self, X: np.ndarray, weights: np.ndarray | None = None) -> TasteProfile:
        X = _l2n(X)
        if X.shape[0] == 0:
            raise RecommendError("no liked items with vectors to build a taste profile from")
        w = np.ones(X.shape[0]) if weights is None else np.asarray(weights, dtype=np.float64)
        if not np.any(w > 0):
            w = np.ones_like(w)
        keep = w > 0
        X, w = X[keep], w[keep]
        if self.kind == "mean" or X.shape[0] <= 1 or self.n_interests <= 1:
            self.centroids_ = _l2n((w[:, None] * X).sum(axis=0, keepdims=True))
            self.weights_ = np.array([1.0])
            return self
        from sklearn.cluster import KMeans

        k = min(self.n_interests, X.shape[0], np.unique(X.round(6), axis=0).shape[0])
        if k <= 1:
            self.centroids_, self.weights_ = _l2n((w[:, None] * X).sum(axis=0, keepdims=True)), np.array([1.0])
            return self
        from threadpoolctl import threadpool_limits

        with threadpool_limits(1):  # tiny problem: OpenMP start-up would dominate
            km = KMeans(n_clusters=k, n_init=3, random_state=self.seed).fit(X, sample_weight=w)
        self.centroids_ = _l2n(km.cluster_centers_)
        mass = np.bincount(km.labels_, weights=w, minlength=k)
        self.weights_ = mass / mass.sum()
        return self

    def score(self, X: np.ndarray) -> np.ndarray:
        return (_l2n(X) @ self.centroids_.T).max(axis=1)


# ---- collaborative filtering + audio mapping ----------------------------------------------------------


class ImplicitALS:
    """Implicit-feedback matrix factorisation (Hu, Koren & Volinsky 2008), numpy/scipy.

    ``fit(R)`` with ``R`` a ``(n_users, n_items)`` scipy sparse matrix of preference strengths ≥ 0:
    confidence ``1 + alpha·R``, preference ``R > 0``. Fitted: ``user_factors_`` ``(n_users, factors)``,
    ``item_factors_`` ``(n_items, factors)``.
    """

    def __init__(self, factors: int = 32, *, regularization: float = 0.1, alpha: float = 10.0, iterations: int = 15,
                 seed: int = 0) -> None:
        self.factors, self.regularization, self.alpha, self.iterations, self.seed = (
            factors, regularization, alpha, iterations, seed)

    def fit(self, R: Any) -> ImplicitALS:
        import scipy.sparse as sp

        R = sp.csr_matrix(R, dtype=np.float64)
        n_u, n_i = R.shape
        f = int(min(self.factors, max(1, min(n_u, n_i))))
        rng = np.random.default_rng(self.seed)
        U = rng.normal(0, 0.01, (n_u, f))
        V = rng.normal(0, 0.01, (n_i, f))
        Rt = R.T.tocsr()
        for _ in range(self.iterations):
            U = self._solve(R, V)
            V = self._solve(Rt, U)
        self.user_factors_, self.item_factors_ = U, V
        return self

    def _solve(self, R: Any, Y: np.ndarray) -> np.ndarray:
        f = Y.shape[1]
        YtY = Y.T @ Y
        reg = self.regularization * np.eye(f)
        out = np.zeros((R.shape[0], f))
        for u in range(R.shape[0]):
            a, b = R.indptr[u], R.indptr[u + 1]
            if a == b:
                continue
            idx, r = R.indices[a:b], R.data[a:b]
            c = 1.0 + self.alpha * r
            Yi = Y[idx]
            A = YtY + (Yi.T * (c - 1.0)) @ Yi + reg
            out[u] = np.linalg.solve(A, Yi.T @ (c * (r > 0)))
        return out


class SVDFactors:
    """Truncated SVD of the ``(n_users, n_items)`` strength matrix: ``R ≈ U S Vᵀ``; user factors
    ``U·S^½``, item factors ``V·S^½`` (scikit-learn `TruncatedSVD`)."""

    def __init__(self, factors: int = 32, *, seed: int = 0) -> None:
        self.factors, self.seed = factors, seed

    def fit(self, R: Any) -> SVDFactors:
        import scipy.sparse as sp
        from sklearn.decomposition import TruncatedSVD

        R = sp.csr_matrix(R, dtype=np.float64)
        f = int(min(self.factors, min(R.shape) - 1))
        if f < 1:
            raise RecommendError(f"truncated SVD needs at least 2 users and 2 items, given {R.shape}")
        svd = TruncatedSVD(n_components=f, random_state=self.seed).fit(R)
        s = np.sqrt(svd.singular_values_)
        self.item_factors_ = svd.components_.T * s
        self.user_factors_ = (R @ svd.components_.T) / np.maximum(s, 1e-12)
        return self


class AudioFactorMapping:
    """van den Oord mapping: CF item factors on warm items, regressed from audio vectors with ridge.

    ``fit(R, X_warm)``: ``R`` ``(n_users, n_warm)`` strengths, ``X_warm`` ``(n_warm, d)`` audio vectors.
    ``predict_factors(X) -> (n, factors)``; ``score(user_index, X) -> (n,)``. ``cf``: "als" or "svd".
    Fitted: ``cf_`` (with ``user_factors_``, ``item_factors_``), ``ridge_`` (scikit-learn RidgeCV),
    ``fit_r2_`` (R² of the audio→factor regression, leave-one-out over the ridge path).
    """

    def __init__(self, *, factors: int = 32, cf: str = "svd", alphas: Sequence[float] = (0.1, 1, 10, 100, 1000),
                 seed: int = 0) -> None:
        if cf not in ("als", "svd"):
            raise ValueError(f"unknown CF method {cf!r}; expected 'als' or 'svd'")
        self.factors, self.cf, self.alphas, self.seed = factors, cf, tuple(alphas), seed

    def fit(self, R: Any, X_warm: np.ndarray) -> AudioFactorMapping:
        from sklearn.linear_model import RidgeCV
        from sklearn.pipeline import make_pipeline
        from sklearn.preprocessing import StandardScaler

        self.cf_ = (ImplicitALS(self.factors, seed=self.seed) if self.cf == "als" else SVDFactors(self.factors, seed=self.seed)).fit(R)
        X = _l2n(X_warm)
        self.ridge_ = make_pipeline(StandardScaler(), RidgeCV(alphas=self.alphas)).fit(X, self.cf_.item_factors_)
        self.fit_r2_ = float(self.ridge_.score(X, self.cf_.item_factors_))
        return self

    @property
    def user_factors_(self) -> np.ndarray:
        return self.cf_.user_factors_

    def predict_factors(self, X: np.ndarray) -> np.ndarray:
        return self.ridge_.predict(_l2n(X))

    def score(self, user_index: int, X: np.ndarray) -> np.ndarray:
        return self.predict_factors(X) @ self.cf_.user_factors_[user_index]


# ---- diversity -----------------------------------------------------------------------------------


def mmr(relevance: np.ndarray, X: np.ndarray, k: int, *, diversity: float = 0.0) -> np.ndarray:
    """Maximal marginal relevance: pick ``k`` of ``n`` candidates, each time maximising
    ``(1 - diversity)·rel_i - diversity·max_j∈picked cos(x_i, x_j)``, relevance min-max scaled to [0, 1].

    ``relevance`` ``(n,)``, ``X`` ``(n, d)``; returns candidate indices in pick order. ``diversity`` 0 =
    plain ranking by relevance; 1 = as spread out as possible.
    """
    if not 0.0 <= diversity <= 1.0:
        raise ValueError(f"diversity must be in [0, 1], given diversity={diversity}")
    rel = np.asarray(relevance, dtype=np.float64)
    n = rel.size
    k = min(int(k), n)
    if k <= 0:
        return np.zeros(0, dtype=np.int64)
    if diversity == 0.0:
        return np.argsort(-rel, kind="stable")[:k]
    span = np.ptp(rel)
    r = (rel - rel.min()) / span if span > 0 else np.zeros_like(rel)
    Xn = _l2n(X)
    picked = [int(np.argmax(r))]
    max_sim = Xn @ Xn[picked[0]]
    chosen = np.zeros(n, bool)
    chosen[picked[0]] = True
    while len(picked) < k:
        gain = (1 - diversity) * r - diversity * max_sim
        gain[chosen] = -np.inf
        j = int(np.argmax(gain))
        picked.append(j)
        chosen[j] = True
        max_sim = np.maximum(max_sim, Xn @ Xn[j])
    return np.asarray(picked, dtype=np.int64)


def intra_list_similarity(X: np.ndarray) -> float:
    """Mean pairwise cosine similarity of a list's vectors (lower = more diverse); NaN below 2 items."""
    if X.shape[0] < 2:
        return float("nan")
    Xn = _l2n(X)
    S = Xn @ Xn.T
    n = S.shape[0]
    return float((S.sum() - np.trace(S)) / (n * (n - 1)))


# ---- recommending --------------------------------------------------------------------------------


@dataclass
class Recommendation:
    rank: int
    id: int
    path: str | None
    score: float
    cold: bool

    def to_dict(self) -> dict:
        return {"rank": self.rank, "id": self.id, "path": self.path, "score": round(self.score, 6), "cold": self.cold}


def choose_scorer(interactions: Interactions, user: str | None, requested: str = "auto") -> tuple[str, str]:
    """``(scorer, reason)``: the requested one, or for ``auto`` the van den Oord mapping when the log has
    enough users and warm items to learn CF factors (and the user is in it), else the multi-interest
    profile (which is the mean profile for a history of one item). Both rank first in their situation
    in ``benchmarks/recommend.py``."""
    if requested != "auto":
        if requested not in SCORERS:
            raise ValueError(f"unknown scorer {requested!r}; expected auto or one of {', '.join(SCORERS)}")
        return requested, "requested"
    n_users, n_items = len(interactions.users()), interactions.items().size
    if n_users >= MIN_USERS_FOR_MAPPING and n_items >= MIN_WARM_ITEMS_FOR_MAPPING and (user is None or user in set(interactions.user.tolist())):
        return "mapping", (f"interaction log has {n_users} users and {n_items} warm items: "
                           "CF factors regressed from audio (van den Oord et al. 2013)")
    return "multi", (f"interaction log too small for CF ({n_users} users, {n_items} items; mapping needs "
                     f">= {MIN_USERS_FOR_MAPPING} users and >= {MIN_WARM_ITEMS_FOR_MAPPING} items): multi-interest profile")


def _interaction_matrix(inter: Interactions, users: Sequence[str], items: np.ndarray) -> Any:
    import scipy.sparse as sp

    uix = {u: i for i, u in enumerate(users)}
    pos = np.searchsorted(items, inter.item)
    ok = (pos < items.size) & (items[np.minimum(pos, items.size - 1)] == inter.item)
    s = inter.strength()
    rows = np.array([uix.get(u, -1) for u in inter.user], dtype=np.int64)
    ok &= rows >= 0
    return sp.csr_matrix((s[ok], (rows[ok], pos[ok])), shape=(len(users), items.size))


def score_items(
    scorer: str,
    *,
    user: str,
    interactions: Interactions,
    vectors: np.ndarray,
    item_ids: np.ndarray,
    candidates: np.ndarray,
    n_interests: int = 3,
    factors: int = 32,
    cf: str = "svd",
    seed: int = 0,
    _mapping: AudioFactorMapping | None = None,
) -> np.ndarray:
    """Scores ``(len(candidates),)`` of candidate positions (into ``item_ids``/``vectors``) for ``user``.

    ``vectors`` ``(n, d)`` rows aligned with ``item_ids`` (ascending); ``interactions`` the training log.
    """
    hist_items, _ = interactions.of(user)
    s = interactions.strength()[interactions.user == user]
    pos = np.searchsorted(item_ids, hist_items)
    if scorer in ("mean", "multi"):
        prof = TasteProfile(scorer, n_interests=n_interests, seed=seed).fit(vectors[pos], s)
        return prof.score(vectors[candidates])
    if scorer == "mapping":
        m = _mapping or fit_mapping(interactions, vectors, item_ids, factors=factors, cf=cf, seed=seed)
        u = m.users_.index(user)
        return m.score(u, vectors[candidates])
    raise ValueError(f"unknown scorer {scorer!r}")


def fit_mapping(interactions: Interactions, vectors: np.ndarray, item_ids: np.ndarray, *, factors: int = 32,
                cf: str = "svd", seed: int = 0) -> AudioFactorMapping:
    """Fit `AudioFactorMapping` on the warm items of ``interactions`` (rows of ``vectors`` by ``item_ids``)."""
    users = interactions.users()
    warm = interactions.items()
    R = _interaction_matrix(interactions, users, warm)
    m = AudioFactorMapping(factors=factors, cf=cf, seed=seed).fit(R, vectors[np.searchsorted(item_ids, warm)])
    m.users_ = users
    m.warm_ = warm
    return m


def recommend(
    store: Any,
    interactions: Interactions,
    *,
    user: str | None = None,
    k: int = 20,
    scorer: str = "auto",
    cold_only: bool = False,
    diversity: float = 0.0,
    n_interests: int = 3,
    factors: int = 32,
    cf: str = "svd",
    seed: int = 0,
    space: str | None = None,
) -> dict:
    """Recommend ``k`` store items not in ``user``'s history.

    ``cold_only``: only items with no interaction in ``interactions`` (any user). ``diversity``: MMR
    trade-off in [0, 1]. ``space``: similarity space of the store (`embedkit.spaces`) the item vectors
    are mapped into first (None: raw cosine). Returns ``{"user", "scorer", "scorer_reason", "recommendations": [Recommendation
    dicts], "history": {...}, "unknown": [...], "intra_list_similarity", ...}``.
    """
    users = interactions.users()
    if user is None:
        if len(users) > 1:
            raise RecommendError(f"{interactions.source}: history has {len(users)} users; pick one with --user "
                                 f"(e.g. {', '.join(users[:3])})")
        if not users:
            raise RecommendError(f"{interactions.source}: no history item is in the store "
                                 f"({len(interactions.unknown)} unknown); nothing to recommend from")
        user = users[0]
    if user not in users:
        unknown_rows = [u for u in interactions.unknown if u["user"] == user]
        why = f" (all {len(unknown_rows)} of their items are unknown to the store)" if unknown_rows else ""
        raise RecommendError(f"{interactions.source}: no user {user!r} in the history{why}")
    item_ids = store.ids()
    vectors = store.vectors(item_ids)
    if space:
        from .spaces.hooks import map_vectors

        vectors = map_vectors(store, space, vectors)
    hist_items, _ = interactions.of(user)
    warm = interactions.items()
    cand_mask = ~np.isin(item_ids, hist_items)
    if cold_only:
        cand_mask &= ~np.isin(item_ids, warm)
    candidates = np.flatnonzero(cand_mask)
    name, reason = choose_scorer(interactions, user, scorer)
    out: dict = {
        "user": user,
        "scorer": name,
        "scorer_reason": reason,
        "k": k,
        "cold_only": cold_only,
        "diversity": diversity,
        "history": {"items": int(hist_items.size), "unknown": sum(1 for u in interactions.unknown if u["user"] == user)},
        "unknown": [u for u in interactions.unknown if u["user"] == user],
        "candidates": int(candidates.size),
        "recommendations": [],
    }
    if candidates.size == 0:
        return out
    mapping = None
    if name == "mapping":
        mapping = fit_mapping(interactions, vectors, item_ids, factors=factors, cf=cf, seed=seed)
        out["mapping"] = {"cf": cf, "factors": int(mapping.cf_.item_factors_.shape[1]), "warm_items": int(warm.size),
                          "users": len(users), "audio_to_factors_r2": round(mapping.fit_r2_, 4)}
    scores = score_items(name, user=user, interactions=interactions, vectors=vectors, item_ids=item_ids,
                         candidates=candidates, n_interests=n_interests, factors=factors, cf=cf, seed=seed,
                         _mapping=mapping)
    pool = np.argsort(-scores, kind="stable")[: max(10 * k, 200)] if diversity > 0 else np.argsort(-scores, kind="stable")
    order = pool[mmr(scores[pool], vectors[candidates[pool]], k, diversity=diversity)]
    warm_set = set(warm.tolist())
    recs = []
    for r, j in enumerate(order):
        iid = int(item_ids[candidates[j]])
        it = store.get(iid)
        recs.append(Recommendation(r + 1, iid, it.path if it else None, float(scores[j]), iid not in warm_set))
    out["recommendations"] = [x.to_dict() for x in recs]
    out["intra_list_similarity"] = round(intra_list_similarity(vectors[candidates[order]]), 4) if len(order) > 1 else None
    return out


# the interaction log and the evaluation, re-exported (0.1 imported them from here)
from .interactions import _columns, _merge, _sniff, _store_resolver  # noqa: E402,F401
from .recommend_eval import (  # noqa: E402,F401
    _fold_of,
    auc,
    average_precision_at_k,
    evaluate,
    evaluate_store,
    recall_at_k,
)
