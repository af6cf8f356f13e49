"""`VectorIndex`: a FAISS index plus the ids of its vectors, the vector transform and a card.

    vi = VectorIndex.build(vectors, ids, plan=plan)         # normalise (+PCA), train, add, tune to a recall
    vi.search(queries, k) -> (scores (nq, k), ids (nq, k))  # ids -1 / scores -inf pad missing results
    vi.save(DIR, "default"); VectorIndex.load(DIR, "default")

Recall is always measured against exact search *in the same transformed space* on a sample of stored
vectors used as queries (the query itself is left out of both lists; ties at the k-th score count as
hits). Saved as ``NAME.faiss`` + ``NAME.npz`` (ids, store rows, transform) + ``NAME.json`` (the card,
written last as commit marker, holding the sha256 of the two data files: a damaged file is refused on
load). FAISS is imported lazily; a GPU is used for flat/IVF kinds when ``faiss.get_num_gpus() > 0``.
"""
from __future__ import annotations

import contextlib
import datetime as _dt
import hashlib
import json
import logging
import math
import os
import re
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .._version import __version__
from ..errors import EmbedkitError
from ..sidecar import dumps, fsync_dir, os_error_text, seal, seal_problem, sha256_file
from .base import CARD_FORMAT, IndexMismatchError, IndexMissingError, IndexStateError
from .plan import (
    EF_GRID,
    HNSW_EF_CONSTRUCTION,
    MIN_HELD_OUT_TUNING,
    NPROBE_GRID,
    RERANK_GRID,
    IndexPlan,
    _nlist_for,
    choose_index,
    estimate_memory,
)
from .transform import VectorTransform, _as_f32

log = logging.getLogger("embedkit.index")

#: Oldest card format whose data files carry no checksums (embedkit 0.1); newer cards must have them.
_UNCHECKSUMMED_FORMAT = 1


class NonFiniteVectorsError(IndexStateError, ValueError):
    """Vectors to index contain NaN or infinity (``ids``: the ids of those rows)."""

    def __init__(self, message: str, ids: np.ndarray) -> None:
        super().__init__(message)
        self.ids = ids


# ---- faiss helpers -------------------------------------------------------------------------------


def _faiss():
    try:
        import faiss  # noqa: PLC0415
    except ImportError as exc:  # pragma: no cover
        raise EmbedkitError(f"faiss is not installed ({exc}); pip install faiss-cpu") from None
    return faiss


def gpu_count() -> int:
    """Number of GPUs visible to the installed faiss build (0 for faiss-cpu)."""
    faiss = _faiss()
    try:
        return int(faiss.get_num_gpus()) if hasattr(faiss, "StandardGpuResources") else 0
    except Exception:  # pragma: no cover - broken driver
        return 0


_GPU_RES: Any = None


def _to_device(index: Any, kind: str, use_gpu: bool | None) -> tuple[Any, str]:
    """Move a flat/IVF index to GPU 0 when one is present (``use_gpu`` None = auto)."""
    if use_gpu is False or kind in ("hnsw", "ivfpq_disk") or gpu_count() == 0:
        if use_gpu:
            log.warning("GPU requested but faiss sees no GPU (or the kind %s has no GPU version); using the CPU", kind)
        return index, "cpu"
    global _GPU_RES
    faiss = _faiss()
    try:
        if _GPU_RES is None:
            _GPU_RES = faiss.StandardGpuResources()
        return faiss.index_cpu_to_gpu(_GPU_RES, 0, index), "gpu"
    except Exception as exc:  # pragma: no cover - depends on hardware
        log.warning("could not move the %s index to the GPU (%s); using the CPU", kind, exc)
        return index, "cpu"


def _to_cpu(index: Any, device: str) -> Any:
    if device == "gpu":  # pragma: no cover - needs a GPU build
        return _faiss().index_gpu_to_cpu(index)
    return index


def _set_search_params(index: Any, kind: str, params: dict) -> None:
    faiss = _faiss()
    ps = faiss.GpuParameterSpace() if type(index).__name__.startswith("Gpu") else faiss.ParameterSpace()
    if kind == "hnsw" and "efSearch" in params:
        ps.set_index_parameter(index, "efSearch", int(params["efSearch"]))
    if kind in ("ivf", "ivfpq", "ivfpq_disk") and "nprobe" in params:
        ps.set_index_parameter(index, "nprobe", int(params["nprobe"]))


# ---- the index -----------------------------------------------------------------------------------


@dataclass
class RecallReport:
    """Recall@k of the index against exact search on ``n_queries`` stored vectors used as queries."""

    k: int
    target: float
    measured: float
    n_queries: int
    target_met: bool
    search_params: dict
    measured_at_n: int
    held_out: bool = False
    tried: list = field(default_factory=list)


class VectorIndex:
    """A FAISS index plus the ids of its vectors, the vector transform and a card describing it.

    Labels inside FAISS are insertion positions; ``ids_[label]`` is the caller's id (store item id).
    ``rows_`` (optional, same length) records the store row of each vector, to detect re-embedding.
    """

    def __init__(self, index: Any, plan: IndexPlan, transform: VectorTransform, ids: np.ndarray, *,
                 search_params: dict | None = None, device: str = "cpu", card: dict | None = None,
                 rows: np.ndarray | None = None) -> None:
        self.index_ = index
        self.plan = plan
        self.transform = transform
        self.ids_ = np.asarray(ids, dtype=np.int64)
        self.rows_ = None if rows is None else np.asarray(rows, dtype=np.int64)
        self.search_params = dict(search_params or {})
        self.device = device
        self.card = dict(card or {})
        _set_search_params(self.index_, plan.kind, self.search_params)

    # -- construction --

    @classmethod
    def build(
        cls,
        vectors: np.ndarray,
        ids: np.ndarray | None = None,
        *,
        plan: IndexPlan | None = None,
        kind: str = "auto",
        memory_budget_bytes: int | None = None,
        metric: str = "cosine",
        pca_dim: int | None = None,
        whiten: bool = False,
        target_recall: float = 0.95,
        k: int = 10,
        n_tune_queries: int = 500,
        tune: bool = True,
        use_gpu: bool | None = None,
        rows: np.ndarray | None = None,
        seed: int = 0,
        max_train: int | None = None,
    ) -> VectorIndex:
        """Fit the transform, train, add all vectors ``(n, dim)`` and tune search parameters to ``target_recall``.

        ``ids`` ``(n,) int64`` default ``arange(n)``. Without ``plan``, one comes from `choose_index`.
        """
        t0 = time.perf_counter()
        x = _as_f32(vectors) if np.asarray(vectors).size else np.zeros((0, np.asarray(vectors).shape[-1]), np.float32)
        n, dim = x.shape
        ids = np.arange(n, dtype=np.int64) if ids is None else np.asarray(ids, dtype=np.int64)
        if ids.shape != (n,):
            raise ValueError(f"ids must have shape ({n},), given shape={ids.shape}")
        if n and np.unique(ids).size != n:
            raise ValueError("ids must be unique")
        check_finite(x, ids)
        transform = VectorTransform(metric=metric, pca_dim=pca_dim, whiten=whiten)
        if n >= 2 and (pca_dim or whiten):
            transform.fit(x, seed=seed)
        elif pca_dim or whiten:
            raise ValueError(f"PCA/whitening needs at least 2 vectors, given {n}")
        d = transform.out_dim(dim)
        if plan is None:
            plan = choose_index(n, dim, memory_budget_bytes, kind=kind, pca_dim=d if d != dim else None)
        if plan.kind in ("ivf", "ivfpq"):  # parameters may have been planned for another n
            nl = min(int(plan.params["nlist"]), _nlist_for(n)) if n else 1
            plan = IndexPlan(plan.kind, {**plan.params, "nlist": max(1, nl)}, n, dim, d,
                             estimate_memory(plan.kind, n, d, {**plan.params, "nlist": max(1, nl)}),
                             plan.fits_budget, plan.reason)
        faiss = _faiss()
        xt = transform.transform(x) if n else np.zeros((0, d), np.float32)
        faiss_metric = faiss.METRIC_INNER_PRODUCT if metric == "cosine" else faiss.METRIC_L2
        index = faiss.index_factory(d, plan.factory_string(), faiss_metric)
        if plan.kind == "ivfpq":
            ivfpq = faiss.downcast_index(index)
            ivfpq.do_polysemous_training = False  # polysemous codes are unused; they cost ~6x training time
            ivfpq.pq.cp.max_points_per_centroid = 64  # 16k points per sub-quantizer k-means is plenty
        if plan.kind == "hnsw":
            faiss.downcast_index(index).hnsw.efConstruction = int(plan.params.get("efConstruction", HNSW_EF_CONSTRUCTION))
        index, device = _to_device(index, plan.kind, use_gpu)
        if not index.is_trained:
            if n == 0:
                raise ValueError(f"a {plan.kind} index must be trained on vectors; the input is empty (use kind 'flat')")
            codebook = 2 ** int(plan.params.get("pq_nbits", 8)) if plan.kind == "ivfpq" else 1
            if n < codebook:  # refused here, before FAISS prints its own clustering warnings to stderr
                raise ValueError(f"cannot train a {plan.kind} index on {n} vectors (its product quantizer needs at "
                                 f"least {codebook}); use --kind flat (exact) or auto")
            limit = max_train or max(40 * int(plan.params["nlist"]), 256 * 40 if plan.kind == "ivfpq" else 0)
            train = xt if n <= limit else xt[np.sort(np.random.default_rng(seed).choice(n, limit, replace=False))]
            log.info("training %s on %d vectors", plan.factory_string(), train.shape[0])
            try:
                index.train(train)
            except RuntimeError as exc:
                raise ValueError(f"cannot train a {plan.kind} index on {train.shape[0]} vectors "
                                 f"({_faiss_reason(exc)}); use --kind flat (exact) or auto") from None
        rows = None if rows is None else np.asarray(rows, dtype=np.int64)
        held = np.zeros(0, dtype=np.int64)
        if tune and plan.kind != "flat" and n >= MIN_HELD_OUT_TUNING:
            # tune on vectors held out of the index (then added): stored vectors used as queries sit in
            # the graph / their own list and overstate recall for new queries
            held = np.sort(np.random.default_rng(seed).choice(n, min(n_tune_queries, n // 10), replace=False))
        first = np.setdiff1d(np.arange(n), held, assume_unique=True)
        _add_in_batches(index, xt, skip=held)
        vi = cls(index, plan, transform, ids[first], device=device, rows=None if rows is None else rows[first])
        vi.card = {"build_s": None, "created": _now()}
        if tune and n > 1 and plan.kind != "flat":
            if held.size:
                vi._tune_t(xt, first, xt[held], target_recall=target_recall, k=k, seed=seed)
                _add_in_batches(index, xt[held])
                vi.ids_ = np.concatenate([vi.ids_, ids[held]])
                if rows is not None:
                    vi.rows_ = np.concatenate([vi.rows_, rows[held]])
            else:
                qpos = np.sort(np.random.default_rng(seed).choice(n, min(n_tune_queries, n), replace=False))
                vi._tune_t(xt, first, xt[qpos], self_rows=qpos, target_recall=target_recall, k=k, seed=seed)
        else:
            vi.recall_ = RecallReport(k, target_recall, 1.0 if plan.kind == "flat" else float("nan"),
                                      0, plan.kind == "flat", dict(vi.search_params), n)
        vi.card["build_s"] = round(time.perf_counter() - t0, 3)
        return vi

    def __len__(self) -> int:
        return int(self.index_.ntotal)

    @property
    def dim(self) -> int:
        return self.plan.dim

    @property
    def kind(self) -> str:
        return self.plan.kind

    def add(self, vectors: np.ndarray, ids: np.ndarray, *, rows: np.ndarray | None = None) -> None:
        """Append vectors ``(m, dim)`` with new unique ``ids`` ``(m,)`` (no retraining, transform kept)."""
        x = _as_f32(vectors)
        ids = np.asarray(ids, dtype=np.int64)
        if x.shape[0] != ids.size:
            raise ValueError(f"{x.shape[0]} vectors but {ids.size} ids")
        if x.shape[1] != self.dim:
            raise IndexMismatchError(f"vectors have dim {x.shape[1]}, the index expects {self.dim}")
        if np.intersect1d(ids, self.ids_).size or np.unique(ids).size != ids.size:
            raise ValueError("ids to add must be new and unique")
        if ids.size == 0:
            return
        check_finite(x, ids)
        _add_in_batches(self.index_, self.transform.transform(x))
        self.ids_ = np.concatenate([self.ids_, ids])
        if self.rows_ is not None:
            self.rows_ = np.concatenate([self.rows_, np.full(ids.size, -1) if rows is None else np.asarray(rows, np.int64)])
        self.plan = IndexPlan(self.plan.kind, self.plan.params, len(self), self.plan.dim, self.plan.index_dim,
                              estimate_memory(self.plan.kind, len(self), self.plan.index_dim, self.plan.params),
                              self.plan.fits_budget, self.plan.reason)

    # -- search --

    def search(
        self,
        queries: np.ndarray,
        k: int = 10,
        *,
        rerank: Callable[[np.ndarray], np.ndarray] | None = None,
        search_params: dict | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Top-``k`` neighbours of each query ``(nq, dim)`` → ``(scores (nq, k) float32, ids (nq, k) int64)``.

        Scores are cosine similarities (metric cosine) or negative squared L2 distances, best first;
        missing results (k > number of vectors) have id -1 and score -inf. For ``ivfpq`` indexes,
        ``rerank(ids) -> (len(ids), dim)`` supplies exact vectors to re-score ``k_factor·k`` candidates.
        """
        q = _as_f32(queries)
        if q.shape[1] != self.dim:
            raise IndexMismatchError(f"query vectors have dim {q.shape[1]}, the index expects {self.dim}")
        return self._search_t(self.transform.transform(q), k, rerank=rerank, search_params=search_params)

    def _search_t(self, qt: np.ndarray, k: int, *, rerank=None, search_params: dict | None = None,
                  _label_vecs: Callable[[np.ndarray], np.ndarray] | None = None) -> tuple[np.ndarray, np.ndarray]:
        nq = qt.shape[0]
        k = int(k)
        if k < 1:
            raise ValueError(f"k must be >= 1, given k={k}")
        scores = np.full((nq, k), -np.inf, dtype=np.float32)
        out = np.full((nq, k), -1, dtype=np.int64)
        n = len(self)
        if n == 0 or nq == 0:
            return scores, out
        params = dict(self.search_params if search_params is None else search_params)
        if search_params is not None:
            _set_search_params(self.index_, self.kind, params)
        try:
            can_rerank = self.kind in ("ivfpq", "ivfpq_disk") and (rerank is not None or _label_vecs is not None)
            k_factor = int(params.get("k_factor", 1)) if can_rerank else 1
            kk = min(n, k * k_factor)
            d, lab = self.index_.search(np.ascontiguousarray(qt), kk)
            if k_factor > 1:
                d, lab = self._rerank(qt, lab, rerank, _label_vecs)
            m = min(k, lab.shape[1])
            lab, d = lab[:, :m], d[:, :m]
            valid = lab >= 0
            out[:, :m] = np.where(valid, self.ids_[np.where(valid, lab, 0)], -1)
            sc = d if self.transform.metric == "cosine" else -d
            scores[:, :m] = np.where(valid, sc, -np.inf)
        finally:
            if search_params is not None:
                _set_search_params(self.index_, self.kind, self.search_params)
        return scores, out

    def _rerank(self, qt: np.ndarray, lab: np.ndarray, rerank, label_vecs) -> tuple[np.ndarray, np.ndarray]:
        """Re-score candidate labels with exact (transformed) vectors; returns (d, labels) best first."""
        flat = np.unique(lab[lab >= 0])
        cand = label_vecs(flat) if label_vecs is not None else self.transform.transform(rerank(self.ids_[flat]))
        pos = np.searchsorted(flat, np.where(lab >= 0, lab, flat[0] if flat.size else 0))
        vecs = cand[pos]  # (nq, kk, d)
        if self.transform.metric == "cosine":
            s = np.einsum("qkd,qd->qk", vecs, qt)
        else:
            diff = vecs - qt[:, None]
            s = -np.einsum("qkd,qkd->qk", diff, diff)
        s = np.where(lab >= 0, s, -np.inf)
        order = np.argsort(-s, axis=1, kind="stable")
        s = np.take_along_axis(s, order, 1)
        lab = np.take_along_axis(lab, order, 1)
        d = s if self.transform.metric == "cosine" else -s
        return d.astype(np.float32), lab

    # -- tuning / recall --

    def tune(self, vectors: np.ndarray, *, queries: np.ndarray | None = None, target_recall: float = 0.95, k: int = 10,
             n_queries: int = 500, seed: int = 0) -> RecallReport:
        """Choose the cheapest efSearch / nprobe (/ re-rank depth) whose recall@k reaches ``target_recall``.

        ``vectors``: all indexed vectors in insertion order (for exact ground truth). ``queries``: vectors
        *not* in the index to measure recall on (best); without them, ``n_queries`` indexed vectors are
        used, each leaving itself out of both result lists.
        """
        xb = self.transform.transform(vectors)
        if xb.shape[0] != len(self):
            raise ValueError(f"tune needs all {len(self)} indexed vectors, given {xb.shape[0]}")
        labels = np.arange(len(self))
        if queries is not None:
            return self._tune_t(xb, labels, self.transform.transform(queries), target_recall=target_recall, k=k, seed=seed)
        qpos = np.sort(np.random.default_rng(seed).choice(len(self), min(n_queries, len(self)), replace=False))
        return self._tune_t(xb, labels, xb[qpos], self_rows=qpos, target_recall=target_recall, k=k, seed=seed)

    def _tune_t(self, xb: np.ndarray, label_rows: np.ndarray, q: np.ndarray, *, self_rows: np.ndarray | None = None,
                target_recall: float, k: int, seed: int) -> RecallReport:
        """Tune on transformed data: ``xb`` rows, ``label_rows[label]`` = row of each indexed vector,
        queries ``q``; ``self_rows``: each query's own row (left out) when queries are indexed vectors."""
        n_idx = label_rows.size
        k_eff = max(1, min(k, n_idx - (1 if self_rows is not None else 0)))
        kth = self._kth(xb, label_rows, q, k_eff, self_rows)
        tried, best, met_at = [], None, None
        for params in _candidate_params(self.kind, self.plan.params):
            t = time.perf_counter()
            rec = self._recall(xb, label_rows, q, kth, k_eff, params, self_rows)
            elapsed = time.perf_counter() - t
            tried.append({**params, "recall": round(rec, 4), "batch_ms_per_query": round(1e3 * elapsed / len(q), 4)})
            if best is None or rec > best[1] + 1e-9:
                best = (params, rec)
            if rec >= target_recall:
                best = (params, rec)
                if self.kind != "ivfpq":
                    break
                met_at = met_at if met_at is not None else params["nprobe"]
            if self.kind == "ivfpq" and met_at is not None and params["nprobe"] > 2 * met_at:
                break
        return self._adopt_tuning(tried, best, target_recall=target_recall, k_eff=k_eff, n_queries=len(q),
                                  n_indexed=n_idx, held_out_queries=self_rows is None,
                                  two_knobs=self.kind == "ivfpq", what=f"index {self.kind}")

    def _adopt_tuning(self, tried: list[dict], best: tuple[dict, float], *, target_recall: float, k_eff: int,
                      n_queries: int, n_indexed: int, held_out_queries: bool, two_knobs: bool,
                      what: str) -> RecallReport:
        """Set the tuned search parameters and ``recall_`` from the settings ``tried``; ``best`` = (params, recall).

        With ``two_knobs`` (IVF-PQ: nprobe × k_factor) the fastest setting that met the target wins."""
        if two_knobs:
            ok = [t for t in tried if t["recall"] >= target_recall]
            if ok:
                pick = min(ok, key=lambda t: t["batch_ms_per_query"])
                best = ({"nprobe": pick["nprobe"], "k_factor": pick["k_factor"]}, pick["recall"])
        params, rec = best
        self.search_params = dict(params)
        _set_search_params(self.index_, self.kind, self.search_params)
        self.recall_ = RecallReport(k_eff, target_recall, round(float(rec), 4), n_queries, rec >= target_recall,
                                    dict(params), n_indexed, held_out_queries, tried)
        if rec < target_recall:
            log.warning("%s reached recall@%d %.3f < target %.2f with %s", what, k_eff, rec, target_recall, params)
        return self.recall_

    def measure_recall(self, vectors: np.ndarray, *, queries: np.ndarray | None = None, k: int = 10,
                       n_queries: int = 500, seed: int = 0) -> float:
        """Recall@k with the current search parameters (``queries`` held out, or indexed vectors minus self)."""
        xb = self.transform.transform(vectors)
        labels = np.arange(xb.shape[0])
        if queries is not None:
            q, self_rows = self.transform.transform(queries), None
        else:
            if xb.shape[0] < 2:
                return 1.0
            self_rows = np.sort(np.random.default_rng(seed).choice(xb.shape[0], min(n_queries, xb.shape[0]), replace=False))
            q = xb[self_rows]
        k_eff = max(1, min(k, xb.shape[0] - (1 if self_rows is not None else 0)))
        kth = self._kth(xb, labels, q, k_eff, self_rows)
        return self._recall(xb, labels, q, kth, k_eff, self.search_params, self_rows)

    def _kth(self, xb: np.ndarray, label_rows: np.ndarray, q: np.ndarray, k: int, self_rows: np.ndarray | None) -> np.ndarray:
        """Exact k-th best score of each query among the indexed rows (self left out)."""
        indexed = np.zeros(xb.shape[0], dtype=bool)
        indexed[label_rows] = True
        extra = (xb.shape[0] - label_rows.size) + (1 if self_rows is not None else 0)
        kk = min(xb.shape[0], k + extra)
        scores, rows = _exact_topk(xb, q, kk, metric=self.transform.metric)
        valid = (rows >= 0) & indexed[np.maximum(rows, 0)]
        if self_rows is not None:
            valid &= rows != np.asarray(self_rows)[:, None]
        out = np.empty(q.shape[0], dtype=np.float64)
        for i in range(q.shape[0]):
            v = scores[i][valid[i]]
            out[i] = v[min(k, v.size) - 1] if v.size else -np.inf
        return out

    def _recall(self, xb: np.ndarray, label_rows: np.ndarray, q: np.ndarray, kth: np.ndarray, k: int, params: dict,
                self_rows: np.ndarray | None) -> float:
        """Fraction of the top-k results (self left out) scoring at least the exact k-th score (ties count)."""
        extra = 1 if self_rows is not None else 0
        _, found = self._search_t(q, k + extra, search_params=params, _label_vecs=lambda labs: xb[label_rows[labs]])
        labels = _positions(self.ids_, found)
        hits = 0
        for i in range(q.shape[0]):
            rows = label_rows[labels[i][labels[i] >= 0]]
            if self_rows is not None:
                rows = rows[rows != self_rows[i]]
            rows = rows[:k]
            if rows.size:
                hits += int(np.sum(_exact_scores(xb[rows], q[i], self.transform.metric) >= kth[i] - 1e-5))
        return hits / (k * q.shape[0])

    # -- persistence --

    def card_dict(self) -> dict:
        """The card: what was built, how it searches, how well (recall), for which vectors."""
        rec = getattr(self, "recall_", None)
        card = dict(self.card)
        card.update({
            "format": CARD_FORMAT,
            "kind": self.kind,
            "factory": self.plan.factory_string(),
            "params": self.plan.params,
            "search_params": self.search_params,
            "transform": self.transform.describe(),
            "dim": self.plan.dim,
            "index_dim": self.plan.index_dim,
            "n_vectors": len(self),
            "ids_sha256": _digest(self.ids_),
            "memory_bytes": self.plan.memory_bytes,
            "reason": self.plan.reason,
            "recall": None if rec is None else {k: v for k, v in asdict(rec).items() if k != "tried"},
            "device": self.device,
            "faiss_version": _faiss().__version__,
            "embedkit_version": __version__,
        })
        return card

    def save(self, directory: str | os.PathLike, name: str = "default", *, extra: dict | None = None) -> Path:
        """Write ``NAME.faiss``, ``NAME.npz`` and (last, as commit marker) ``NAME.json`` into ``directory``.

        The card records the sha256 of the two data files. A failure (disk full, permission denied)
        removes the temporary files, keeps any previous index intact and raises `IndexStateError`.
        """
        _check_name(name)
        d = Path(directory)
        faiss = _faiss()
        card = self.card_dict()
        card.update(extra or {})
        card["name"] = name
        card["updated"] = _now()
        finals = {"faiss": d / f"{name}.faiss", "npz": d / f"{name}.npz", "json": d / f"{name}.json"}
        tmps: dict[str, Path] = {}
        current = d
        try:
            d.mkdir(parents=True, exist_ok=True)
            for key in ("faiss", "npz", "json"):
                fd, tmp = tempfile.mkstemp(prefix=f".{name}.{key}.", suffix=".tmp", dir=d)
                os.close(fd)
                tmps[key] = Path(tmp)
            current = finals["faiss"]
            try:
                faiss.write_index(_to_cpu(self.index_, self.device), str(tmps["faiss"]))
            except RuntimeError as exc:  # faiss reports I/O errors (ENOSPC, ...) as RuntimeError
                raise OSError(_errno_of(exc), _faiss_reason(exc)) from None
            current = finals["npz"]
            arrays = {"ids": self.ids_, **self.transform.to_arrays()}
            if self.rows_ is not None:
                arrays["rows"] = self.rows_
            with open(tmps["npz"], "wb") as f:
                np.savez(f, **arrays)
                f.flush()
                os.fsync(f.fileno())
            card["files"] = {finals["faiss"].name: sha256_file(tmps["faiss"]), finals["npz"].name: sha256_file(tmps["npz"])}
            if self.kind == "ivfpq_disk":  # inverted lists written beside it by index.ondisk (never changed in place)
                card["files"][f"{name}.ivfdata"] = sha256_file(d / f"{name}.ivfdata")
            current = finals["json"]
            card = seal(_finite(card))  # the card's own fields checksummed too (card_sha256)
            text = dumps(card)
            with open(tmps["json"], "w", encoding="utf-8") as f:
                f.write(text)
                f.flush()
                os.fsync(f.fileno())
            mode = _umask_mode()
            for key in ("faiss", "npz", "json"):
                os.chmod(tmps[key], mode)
            for key in ("faiss", "npz", "json"):
                os.replace(tmps.pop(key), finals[key])
            fsync_dir(d)
        except OSError as exc:
            raise IndexStateError(os_error_text(current, exc) + " (the previous index, if any, is unchanged)") from None
        finally:
            for tmp in tmps.values():
                with contextlib.suppress(OSError):
                    tmp.unlink()
        self.card = dict(card)
        return finals["json"]

    @classmethod
    def load(cls, directory: str | os.PathLike, name: str = "default", *, use_gpu: bool | None = None) -> VectorIndex:
        """Read an index saved by `save`; raises `IndexMissingError` / `IndexStateError` with the path.

        The data files must match the sha256 recorded in the card (cards of embedkit 0.1 have none).
        """
        d = Path(directory)
        card_path = d / f"{name}.json"
        rebuild = "rebuild with 'embedkit index build --rebuild'"
        if not card_path.exists():
            raise IndexMissingError(f"{card_path}: no index named {name!r} (build one with 'embedkit index build')")
        try:
            card = json.loads(card_path.read_text(encoding="utf-8"), parse_constant=lambda c: float(c))
        except (OSError, ValueError) as exc:
            raise IndexStateError(f"{card_path}: unreadable index card ({' '.join(str(exc).split())[:100]}); {rebuild}") from None
        if not isinstance(card, dict):
            raise IndexStateError(f"{card_path}: not an index card; {rebuild}")
        if (problem := seal_problem(card)) is not None:
            raise IndexStateError(f"{card_path}: damaged index card ({problem}); {rebuild}")
        try:
            fmt = int(card.get("format", 0))
        except (TypeError, ValueError):
            raise IndexStateError(f"{card_path}: not an index card (format={card.get('format')!r}); {rebuild}") from None
        if fmt > CARD_FORMAT:
            raise IndexStateError(f"{card_path}: index format {card.get('format')} is newer than this embedkit; upgrade")
        files = card.get("files")
        if fmt > _UNCHECKSUMMED_FORMAT or files is not None:
            if not isinstance(files, dict):
                raise IndexStateError(f"{card_path}: the card lists no checksums of its data files; {rebuild}")
            for fname in (f"{name}.faiss", f"{name}.npz") + ((f"{name}.ivfdata",) if card.get("kind") == "ivfpq_disk" else ()):
                want = files.get(fname)
                try:
                    got = sha256_file(d / fname)
                except OSError as exc:
                    raise IndexStateError(os_error_text(d / fname, exc, action="cannot read index file") + f"; {rebuild}") from None
                if not isinstance(want, str) or got != want:
                    raise IndexStateError(f"{d / fname}: does not match its checksum in {card_path.name} "
                                          f"(damaged or edited); {rebuild}")
        faiss = _faiss()
        try:
            # on-disk inverted lists: NAME.ivfdata is looked up beside NAME.faiss (the folder may have moved)
            from .ondisk import stdout_to_stderr  # noqa: PLC0415

            with stdout_to_stderr():
                index = faiss.read_index(str(d / f"{name}.faiss"), faiss.IO_FLAG_ONDISK_SAME_DIR)
            with np.load(d / f"{name}.npz", allow_pickle=False) as z:
                arrays = {k: z[k] for k in z.files}
        except Exception as exc:
            raise IndexStateError(f"{d / name}.faiss: unreadable index ({_faiss_reason(exc)}); {rebuild}") from None
        try:
            ids = np.asarray(arrays["ids"], np.int64)
            if index.ntotal != ids.size or card.get("n_vectors") != ids.size or card.get("ids_sha256") != _digest(ids):
                raise IndexStateError(
                    f"{d / name}.faiss: index files disagree ({index.ntotal} vectors, {ids.size} ids, card says "
                    f"{card.get('n_vectors')}); an update was interrupted: {rebuild}"
                )
            t = card["transform"]
            transform = VectorTransform(metric=t["metric"], pca_dim=t.get("pca_dim"), whiten=bool(t.get("whiten")))
            if "pca_components" in arrays:
                transform.mean_, transform.components_, transform.scale_ = (
                    arrays["pca_mean"], arrays["pca_components"], arrays["pca_scale"])
            plan = IndexPlan(card["kind"], card["params"], ids.size, int(card["dim"]), int(card["index_dim"]),
                             int(card.get("memory_bytes") or 0), True, card.get("reason", ""))
            if index.d != plan.index_dim:
                raise IndexStateError(f"{d / name}.faiss: index dim {index.d} != card index_dim {plan.index_dim}; {rebuild}")
        except IndexStateError:
            raise
        except (KeyError, TypeError, ValueError) as exc:
            raise IndexStateError(f"{card_path}: malformed index card ({type(exc).__name__}: {exc}); {rebuild}") from None
        index, device = _to_device(index, plan.kind, use_gpu)
        try:
            vi = cls(index, plan, transform, ids, search_params=card.get("search_params"), device=device,
                     card=card, rows=arrays.get("rows"))
            rec = card.get("recall")
            if rec:
                vi.recall_ = RecallReport(**{**rec, "tried": []})
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise IndexStateError(f"{card_path}: malformed index card ({type(exc).__name__}: {exc}); {rebuild}") from None
        return vi


def check_finite(x: np.ndarray, ids: np.ndarray) -> None:
    """Raise `NonFiniteVectorsError` naming the ids of rows of ``x`` that hold NaN or infinity."""
    if x.size and not np.isfinite(x).all():
        bad = ids[~np.isfinite(x).all(axis=1)]
        raise NonFiniteVectorsError(
            f"{bad.size} vector(s) contain NaN or infinity (e.g. id {int(bad[0])}); the store is damaged: "
            "run 'embedkit store verify --repair' (or re-embed those files)", bad)


def _finite(o: Any) -> Any:
    """JSON-safe copy: NaN/inf floats become None (the card is standard JSON)."""
    if isinstance(o, dict):
        return {k: _finite(v) for k, v in o.items()}
    if isinstance(o, (list, tuple)):
        return [_finite(v) for v in o]
    if isinstance(o, (float, np.floating)) and not math.isfinite(float(o)):
        return None
    return o


def _umask_mode() -> int:
    um = os.umask(0)
    os.umask(um)
    return 0o666 & ~um


def _faiss_reason(exc: BaseException) -> str:
    """The useful first line of a FAISS error (its messages carry a C++ stack and file names)."""
    text = " ".join(str(exc).split())
    m = re.search(r"Error: '(.+?)' failed", text) or re.search(r"Error in .*?: (.*)", text)
    return (m.group(1) if m else text)[:160] or type(exc).__name__


def _errno_of(exc: BaseException) -> int:
    import errno

    text = str(exc).lower()
    if "no space" in text:
        return errno.ENOSPC
    if "permission denied" in text:
        return errno.EACCES
    return errno.EIO


def _candidate_params(kind: str, params: dict) -> list[dict]:
    if kind == "hnsw":
        return [{"efSearch": ef} for ef in EF_GRID]
    nlist = int(params["nlist"])
    probes = sorted({p for p in NPROBE_GRID if p < nlist} | {nlist})
    if kind == "ivf":
        return [{"nprobe": p} for p in probes]
    if kind in ("ivfpq", "ivfpq_disk"):
        return [{"nprobe": p, "k_factor": f} for p in probes for f in RERANK_GRID]
    return [{}]


def _add_in_batches(index: Any, xt: np.ndarray, batch: int = 65_536, *, skip: np.ndarray | None = None) -> None:
    """Add rows of ``xt`` in batches (bounded extra memory), leaving out the sorted row numbers ``skip``."""
    for i in range(0, xt.shape[0], batch):
        chunk = xt[i : i + batch]
        if skip is not None and skip.size:
            s = skip[(skip >= i) & (skip < i + batch)] - i
            if s.size:
                chunk = np.delete(chunk, s, axis=0)
        index.add(np.ascontiguousarray(chunk))


def _exact_topk(xb: np.ndarray, xq: np.ndarray, k: int, *, metric: str) -> tuple[np.ndarray, np.ndarray]:
    """Exact top-k (scores best first, rows) of each query against all of ``xb`` (faiss brute force, no copy)."""
    faiss = _faiss()
    m = faiss.METRIC_INNER_PRODUCT if metric == "cosine" else faiss.METRIC_L2
    d, i = faiss.knn(np.ascontiguousarray(xq, dtype=np.float32), np.ascontiguousarray(xb, dtype=np.float32), k, metric=m)
    return (d if metric == "cosine" else -d), i


def _exact_scores(xb: np.ndarray, q: np.ndarray, metric: str) -> np.ndarray:
    if metric == "cosine":
        return xb @ q
    return -np.sum((xb - q) ** 2, axis=1)


def _positions(ids_all: np.ndarray, ids: np.ndarray) -> np.ndarray:
    """Insertion positions of ``ids`` (any shape) within ``ids_all``; -1 where id is -1."""
    order = np.argsort(ids_all, kind="stable")
    sorted_ids = ids_all[order]
    p = np.searchsorted(sorted_ids, np.where(ids >= 0, ids, sorted_ids[0] if sorted_ids.size else 0))
    p = np.clip(p, 0, max(sorted_ids.size - 1, 0))
    return np.where(ids >= 0, order[p], -1)


def _digest(a: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(a, dtype="<i8").tobytes()).hexdigest()


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def _check_name(name: str) -> None:
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}", name or ""):
        raise ValueError(f"index name {name!r} must be letters, digits, '_', '.', '-' (max 64)")


def _json_default(o: Any) -> Any:
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, (np.floating, np.integer)):
        return o.item()
    return str(o)

