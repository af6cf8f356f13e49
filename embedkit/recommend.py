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
"""
from __future__ import annotations

import csv
import io
import logging
import math
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import numpy as np

from .errors import EmbedkitError

log = logging.getLogger("embedkit.recommend")

SCORERS = ("mean", "multi", "mapping")
BASELINES = ("popularity", "random")
#: The mapping scorer needs a log with at least this many users and warm items (else ``auto`` picks ``mean``).
MIN_USERS_FOR_MAPPING = 10
MIN_WARM_ITEMS_FOR_MAPPING = 20

_USER_COLS = ("user", "user_id", "userid", "listener", "uid")
_ITEM_COLS = ("item", "item_id", "itemid", "id", "track", "track_id", "song", "path", "file")
_PLAY_COLS = ("plays", "play_count", "playcount", "count", "n", "listens", "weight")
_RATING_COLS = ("rating", "ratings", "score", "stars")


class RecommendError(EmbedkitError):
    """Bad history / interaction log, unknown user, or nothing to recommend from."""


# ---- interactions --------------------------------------------------------------------------------


@dataclass
class Interactions:
    """An interaction log resolved against a store: one row per (user, item) pair, duplicates merged.

    ``user`` ``(n,)`` str; ``item`` ``(n,) int64`` store ids; ``value`` ``(n,) float64`` play counts
    (``kind`` "plays"), ratings ("ratings") or 1 ("binary"). ``unknown``: rows whose item is not an
    embedded store item: ``{"line", "user", "item", "reason"}``.
    """

    user: np.ndarray
    item: np.ndarray
    value: np.ndarray
    kind: str = "binary"
    unknown: list[dict] = field(default_factory=list)
    source: str | None = None

    def __len__(self) -> int:
        return int(self.item.size)

    def users(self) -> list[str]:
        return sorted(set(self.user.tolist()))

    def items(self) -> np.ndarray:
        """Ids of the items with at least one interaction (warm items), ascending."""
        return np.unique(self.item)

    def of(self, user: str) -> tuple[np.ndarray, np.ndarray]:
        """``(items, values)`` of one user."""
        m = self.user == user
        return self.item[m], self.value[m]

    def strength(self) -> np.ndarray:
        """Non-negative preference strength per row: log1p(plays), rating above the user's mean, or 1."""
        cached = self.__dict__.get("_strength")
        if cached is None or cached.size != self.value.size:
            cached = self.__dict__["_strength"] = self._strength()
        return cached

    def _strength(self) -> np.ndarray:
        if self.kind == "plays":
            return np.log1p(np.maximum(self.value, 0.0))
        if self.kind == "ratings":
            out = np.zeros_like(self.value)
            for u in np.unique(self.user):
                m = self.user == u
                v = self.value[m]
                out[m] = np.maximum(v - v.mean(), 0.0) if np.ptp(v) > 0 else 1.0
            return out
        return np.ones_like(self.value)

    def subset(self, mask: np.ndarray) -> Interactions:
        """The rows where ``mask`` is True (strengths are recomputed on them: no leak of other rows' ratings)."""
        return Interactions(self.user[mask], self.item[mask], self.value[mask], self.kind, [], self.source)

    @classmethod
    def from_arrays(cls, users: Sequence[Any], items: Sequence[int], values: Sequence[float] | None = None, *,
                    kind: str | None = None) -> Interactions:
        """Build from parallel arrays (duplicate (user, item) pairs: plays summed, ratings averaged)."""
        u = np.asarray([str(x) for x in users], dtype=object)
        i = np.asarray(items, dtype=np.int64)
        v = np.ones(i.size) if values is None else np.asarray(values, dtype=np.float64)
        kind = kind or ("binary" if values is None else "plays")
        return _merge(u, i, v, kind)


def _merge(u: np.ndarray, i: np.ndarray, v: np.ndarray, kind: str, unknown: list | None = None,
           source: str | None = None) -> Interactions:
    if u.size == 0:
        return Interactions(u, i, v, kind, unknown or [], source)
    keys = {}
    for n, key in enumerate(zip(u.tolist(), i.tolist())):
        keys.setdefault(key, []).append(n)
    uu = np.array([k[0] for k in keys], dtype=object)
    ii = np.array([k[1] for k in keys], dtype=np.int64)
    if kind == "ratings":
        vv = np.array([v[idx].mean() for idx in keys.values()])
    elif kind == "binary":
        vv = np.ones(len(keys))
    else:
        vv = np.array([v[idx].sum() for idx in keys.values()])
    return Interactions(uu, ii, vv, kind, unknown or [], source)


def load_interactions(
    source: str | os.PathLike | IO[str],
    store: Any = None,
    *,
    resolve: Callable[[str], tuple[int | None, str | None]] | None = None,
    default_user: str = "user",
) -> Interactions:
    """Read a history / interaction log (CSV or TSV) and resolve its items to store ids.

    Columns, by header name: user (``user``, ``user_id``…, optional), item (``item``, ``id``, ``track``,
    ``path``…: a store id or a stored path), and optionally play counts (``plays``, ``count``…) or
    ratings (``rating``, ``stars``…). Without a header: ``item`` | ``user,item`` | ``user,item,plays``.
    Rows whose item is not an embedded store item are kept in ``unknown`` with the reason.
    """
    name = getattr(source, "name", None) if not isinstance(source, (str, os.PathLike)) else os.fspath(source)
    if isinstance(source, (str, os.PathLike)):
        try:
            text = Path(source).read_text(encoding="utf-8-sig")
        except OSError as exc:
            raise RecommendError(f"{source}: cannot read history ({exc.strerror or exc})") from None
    else:
        text = source.read()
    base = Path(name).parent if name and name != "<stdin>" else Path.cwd()
    resolve = resolve or _store_resolver(store, base)
    rows = [r for r in csv.reader(io.StringIO(text), dialect=_sniff(text)) if r and any(c.strip() for c in r)]
    rows = [r for r in rows if not r[0].lstrip().startswith("#")]
    if not rows:
        raise RecommendError(f"{name}: history is empty")
    header = [c.strip().lower() for c in rows[0]]
    cols = _columns(header)
    if cols is not None:
        body, first_line = rows[1:], 2
    else:
        body, first_line = rows, 1
        width = len(rows[0])
        cols = {1: (None, 0, None, None), 2: (0, 1, None, None)}.get(width, (0, 1, 2, None))
    ucol, icol, pcol, rcol = cols
    kind = "ratings" if rcol is not None else "plays" if pcol is not None else "binary"
    vcol = rcol if rcol is not None else pcol
    users, items, values, unknown = [], [], [], []
    cache: dict[str, tuple[int | None, str | None]] = {}
    for n, r in enumerate(body, start=first_line):
        user = r[ucol].strip() if ucol is not None and ucol < len(r) else default_user
        raw = r[icol].strip() if icol < len(r) else ""
        if vcol is not None:
            try:
                value = float(r[vcol]) if vcol < len(r) and r[vcol].strip() else 1.0
            except ValueError:
                raise RecommendError(f"{name}: line {n}: {kind[:-1]} value {r[vcol]!r} is not a number") from None
            if not math.isfinite(value):
                raise RecommendError(f"{name}: line {n}: {kind[:-1]} value {r[vcol]!r} is not finite")
        else:
            value = 1.0
        if raw not in cache:
            cache[raw] = resolve(raw) if raw else (None, "empty item")
        item_id, reason = cache[raw]
        if item_id is None:
            unknown.append({"line": n, "user": user, "item": raw, "reason": reason})
            continue
        users.append(user)
        items.append(item_id)
        values.append(value)
    out = _merge(np.asarray(users, dtype=object), np.asarray(items, dtype=np.int64), np.asarray(values, dtype=np.float64),
                 kind, unknown, name)
    return out


def _sniff(text: str) -> type[csv.Dialect] | str:
    first = text.split("\n", 1)[0]
    return "excel-tab" if "\t" in first else "excel"


def _columns(header: list[str]) -> tuple[int | None, int, int | None, int | None] | None:
    def find(names: Sequence[str]) -> int | None:
        for i, h in enumerate(header):
            if h in names:
                return i
        return None

    icol = find(_ITEM_COLS)
    if icol is None:
        return None
    return find(_USER_COLS), icol, find(_PLAY_COLS), find(_RATING_COLS)


def _store_resolver(store: Any, base: Path) -> Callable[[str], tuple[int | None, str | None]]:
    def resolve(raw: str) -> tuple[int | None, str | None]:
        if store is None:
            try:
                return int(raw), None
            except ValueError:
                return None, "not an item id (no store to look paths up in)"
        item = store.get(raw)
        if item is None and not os.path.isabs(raw):
            item = store.get(str(base / raw))
        if item is None and raw.lstrip("-").isdigit():
            item = store.get(int(raw))
        if item is None:
            return None, f"not in the store {store.path}"
        if item.status != "ok":
            return None, f"in the store but not embedded (status {item.status})"
        return int(item.id), None

    return resolve


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
) -> dict:
    """Recommend ``k`` store items not in ``user``'s history.

    ``cold_only``: only items with no interaction in ``interactions`` (any user). ``diversity``: MMR
    trade-off in [0, 1]. Returns ``{"user", "scorer", "scorer_reason", "recommendations": [Recommendation
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


def evaluate_store(store: Any, interactions: Interactions, **kwargs: Any) -> dict:
    """`evaluate` over a store's vectors."""
    ids = store.ids()
    out = evaluate(store.vectors(ids), ids, interactions, **kwargs)
    out["unknown"] = interactions.unknown
    return out
