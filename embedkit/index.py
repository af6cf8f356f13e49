"""FAISS nearest-neighbour indexes over store vectors: choose, build, tune, save, load, update, search.

The flow::

    plan = choose_index(n, dim, memory_budget_bytes)        # pure: which kind, which parameters, why
    vi = VectorIndex.build(vectors, ids, plan=plan)         # normalise (+PCA), train, add, tune to a recall
    vi.search(queries, k) -> (scores (nq, k), ids (nq, k))  # ids -1 / scores -inf pad missing results
    vi.save(STORE/index, "default"); VectorIndex.load(...)

Similarity is cosine by default: vectors are L2-normalised (optionally PCA-projected / whitened with a
transform learned on the store, then normalised again) and searched by inner product. Recall is always
measured against exact search *in the same transformed space* on a sample of stored vectors used as
queries (the query itself is left out of both lists; ties at the k-th score count as hits).

Store binding (`build_for_store`, `open_for_store`, `update_for_store`): an index lives beside its store
as ``STORE/index/NAME.faiss`` (the FAISS index), ``NAME.npz`` (ids, store rows, transform) and
``NAME.json`` (the card: kind, parameters, measured recall, store fingerprint, vector count). An index
whose store settings differ, or whose items were re-embedded or removed, is refused; one that merely
lacks new store items can be brought up to date incrementally (`update_for_store`).

FAISS is imported lazily; a GPU is used for flat/IVF kinds when ``faiss.get_num_gpus() > 0``.
"""
from __future__ import annotations

import datetime as _dt
import hashlib
import json
import logging
import math
import os
import re
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ._version import __version__
from .errors import EmbedkitError, ModelMismatchError

log = logging.getLogger("embedkit.index")

KINDS = ("flat", "hnsw", "ivf", "ivfpq")
METRICS = ("cosine", "l2")
INDEX_DIR = "index"
CARD_FORMAT = 1

#: Exact (flat) search while n_vectors * dim stays below this. Measured on this project's 2-core CPU
#: (docs/search.md, benchmarks/search.py): one 640-d query against 20k vectors takes ~2 ms on one core
#: (~0.13 ns per stored float), the single-query latency target; below that, exact search is both the
#: fastest to build (nothing to train) and perfectly accurate.
FLAT_MAX_WORK = 20_000 * 640
#: HNSW graph degree and construction breadth (faiss defaults are 32/40; M=32 measured better at 640-d).
HNSW_M = 32
HNSW_EF_CONSTRUCTION = 40
#: Search-time grids tried in increasing cost until the target recall is met.
EF_GRID = (16, 24, 32, 48, 64, 96, 128, 192, 256, 384, 512, 768, 1024)
NPROBE_GRID = (1, 2, 4, 6, 8, 12, 16, 24, 32, 48, 64, 96, 128, 192, 256, 384, 512)
RERANK_GRID = (2, 4, 8, 16, 32)
#: From this many vectors on, recall is tuned on vectors held out of the index (added afterwards).
MIN_HELD_OUT_TUNING = 2000
#: An incremental update re-tunes search parameters when it adds at least this many vectors.
MIN_UPDATE_TUNING = 50


class IndexStateError(EmbedkitError):
    """An index is missing, unreadable, or does not fit its store."""


class IndexMissingError(IndexStateError):
    """No index of that name beside the store."""


class IndexStaleError(IndexStateError):
    """The store changed since the index was built (new, removed or re-embedded items)."""


class IndexMismatchError(IndexStateError, ModelMismatchError):
    """The index was built over vectors from other model/settings or of another dimension."""


# ---- planning (pure) ---------------------------------------------------------------------------


@dataclass(frozen=True)
class IndexPlan:
    """What to build: ``kind`` with ``params``, for ``n_vectors`` of ``dim`` (after any PCA: ``index_dim``).

    ``memory_bytes`` is the estimated resident size of the index; ``fits_budget`` whether that is within
    the budget given to `choose_index`; ``reason`` one line saying why this kind was chosen.
    """

    kind: str
    params: dict
    n_vectors: int
    dim: int
    index_dim: int
    memory_bytes: int
    fits_budget: bool
    reason: str

    def factory_string(self) -> str:
        """The FAISS ``index_factory`` string for this plan (e.g. ``"IVF1024,PQ64x8"``)."""
        p = self.params
        if self.kind == "flat":
            return "Flat"
        if self.kind == "hnsw":
            return f"HNSW{p['M']}"
        if self.kind == "ivf":
            return f"IVF{p['nlist']},Flat"
        if self.kind == "ivfpq":
            return f"IVF{p['nlist']},PQ{p['pq_m']}x{p['pq_nbits']}"
        raise ValueError(f"unknown index kind {self.kind!r}")


def estimate_memory(kind: str, n_vectors: int, dim: int, params: dict) -> int:
    """Bytes an index of ``kind`` takes in memory (vectors + structure + our 8-byte id per vector)."""
    n, d = int(n_vectors), int(dim)
    ids = 8 * n
    if kind == "flat":
        return 4 * n * d + ids
    if kind == "hnsw":
        m = int(params["M"])
        # level-0 links (2M int32) + upper levels (~M/(M-1) links on average) + offsets/levels
        return n * (4 * d + 8 * m + 4 * m // max(m - 1, 1) + 12) + ids
    if kind == "ivf":
        return n * (4 * d + 8) + 4 * int(params["nlist"]) * d + ids
    if kind == "ivfpq":
        code = math.ceil(int(params["pq_m"]) * int(params["pq_nbits"]) / 8)
        return n * (code + 8) + 4 * int(params["nlist"]) * d + 4 * d * (1 << int(params["pq_nbits"])) + ids
    raise ValueError(f"unknown index kind {kind!r}; expected one of {KINDS}")


def _nlist_for(n: int) -> int:
    """IVF list count: a power of two near 4·sqrt(n), with at least 39 training points per list."""
    if n <= 0:
        return 1
    target = 4 * math.sqrt(n)
    nlist = 1 << max(0, round(math.log2(max(target, 1))))
    while nlist > 1 and n < 39 * nlist:
        nlist //= 2
    return max(1, min(nlist, 65536))


def _pq_options(dim: int) -> list[int]:
    """Sub-quantizer counts that divide ``dim``, largest (most accurate) first.

    Each sub-vector keeps at least 8 dimensions: PQ training runs one 256-centroid k-means per
    sub-quantizer; measured on 20k 640-d vectors, 160 sub-quantizers (4-d) took 134 s against 36 s
    for 80 (8-d), and results are re-ranked with exact vectors anyway.
    """
    opts = [m for m in range(max(dim // 8, 1), 0, -1) if dim % m == 0 and m <= 256]
    return opts or [1]


def choose_index(
    n_vectors: int,
    dim: int,
    memory_budget_bytes: int | None = None,
    *,
    kind: str = "auto",
    pca_dim: int | None = None,
    flat_max_work: int = FLAT_MAX_WORK,
    hnsw_m: int = HNSW_M,
) -> IndexPlan:
    """Pick an index kind and its parameters for ``n_vectors`` vectors of ``dim`` floats. Pure function.

    ``auto``: exact ``flat`` while ``n_vectors * dim <= flat_max_work`` (≈ 20k × 640: exact search then
    costs ≤ 2 ms per query on one core); above that ``hnsw`` (best recall/latency measured, graph kept in
    memory with the full vectors) if it fits ``memory_budget_bytes``; otherwise ``ivfpq`` with the
    largest product-quantizer code that fits (results re-ranked with exact vectors read from the store).
    An explicit ``kind`` is honoured even when it exceeds the budget (``fits_budget`` False).
    ``memory_budget_bytes`` None means no limit. ``pca_dim`` shrinks the indexed dimension.
    """
    if kind != "auto" and kind not in KINDS:
        raise ValueError(f"unknown index kind {kind!r}; expected auto or one of {', '.join(KINDS)}")
    n = int(n_vectors)
    if n < 0 or dim <= 0:
        raise ValueError(f"need n_vectors >= 0 and dim > 0, given n_vectors={n_vectors}, dim={dim}")
    d = int(pca_dim) if pca_dim else int(dim)
    if d > dim:
        raise ValueError(f"pca_dim={pca_dim} is larger than the vectors' dim={dim}")
    budget = None if memory_budget_bytes is None else int(memory_budget_bytes)

    def plan(k: str, params: dict, reason: str) -> IndexPlan:
        mem = estimate_memory(k, n, d, params)
        return IndexPlan(k, params, n, int(dim), d, mem, budget is None or mem <= budget, reason)

    def pq_params(nlist: int) -> dict | None:
        nbits = 8 if n >= 39 * 256 else max(4, min(8, int(math.log2(max(n, 16) / 39)) if n >= 39 * 16 else 4))
        for m in _pq_options(d):
            params = {"nlist": nlist, "pq_m": m, "pq_nbits": nbits}
            if budget is None or estimate_memory("ivfpq", n, d, params) <= budget:
                return params
        return None

    hnsw = {"M": int(hnsw_m), "efConstruction": HNSW_EF_CONSTRUCTION}
    if kind == "flat":
        return plan("flat", {}, "flat requested: exact search")
    if kind == "hnsw":
        return plan("hnsw", hnsw, "hnsw requested")
    if kind == "ivf":
        return plan("ivf", {"nlist": _nlist_for(n)}, "ivf requested")
    if kind == "ivfpq":
        params = pq_params(_nlist_for(n)) or {"nlist": _nlist_for(n), "pq_m": _pq_options(d)[-1], "pq_nbits": 8}
        return plan("ivfpq", params, "ivfpq requested")

    flat_mem = estimate_memory("flat", n, d, {})
    if n * d <= flat_max_work and (budget is None or flat_mem <= budget):
        return plan("flat", {}, f"{n} x {d} is small enough for exact search (<= {flat_max_work:,} floats)")
    if budget is None or estimate_memory("hnsw", n, d, hnsw) <= budget:
        why = "too many vectors for exact search" if n * d > flat_max_work else "exact index exceeds memory"
        return plan("hnsw", hnsw, f"{why}; HNSW graph with full vectors fits the memory budget")
    params = pq_params(_nlist_for(n))
    if params is None:
        need = estimate_memory("ivfpq", n, d, {"nlist": _nlist_for(n), "pq_m": _pq_options(d)[-1], "pq_nbits": 8})
        raise ValueError(
            f"memory budget {format_bytes(budget)} is too small for {n} vectors of dim {d}: the smallest "
            f"index (IVF-PQ, {_pq_options(d)[-1]} bytes per vector) needs about {format_bytes(need)}"
        )
    return plan(
        "ivfpq",
        params,
        f"HNSW ({format_bytes(estimate_memory('hnsw', n, d, hnsw))}) exceeds the budget "
        f"{format_bytes(budget)}; IVF-PQ codes of {params['pq_m']} bytes per vector fit",
    )


_UNITS = {"": 1, "B": 1, "K": 2**10, "KB": 2**10, "KIB": 2**10, "M": 2**20, "MB": 2**20, "MIB": 2**20,
          "G": 2**30, "GB": 2**30, "GIB": 2**30, "T": 2**40, "TB": 2**40, "TIB": 2**40}


def parse_memory(text: str | int | None) -> int | None:
    """``"4G"``, ``"512MB"``, ``"1.5GiB"``, ``"1000000"`` → bytes (binary units); None stays None."""
    if text is None or isinstance(text, int):
        return text
    m = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([A-Za-z]*)\s*", str(text))
    if not m or m.group(2).upper() not in _UNITS:
        raise ValueError(f"cannot read memory size {text!r}; use e.g. 512M, 4G, 1.5GiB")
    return int(float(m.group(1)) * _UNITS[m.group(2).upper()])


def format_bytes(n: int | None) -> str:
    """``3221225472`` → ``"3.0 GiB"``."""
    if n is None:
        return "unlimited"
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return str(n)


def default_memory_budget() -> int:
    """Half of this machine's physical memory, in bytes."""
    try:
        return int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // 2)
    except (ValueError, OSError, AttributeError):  # pragma: no cover
        return 4 * 2**30


# ---- vector transform (numpy) --------------------------------------------------------------------


@dataclass
class VectorTransform:
    """Vectors → index space: L2-normalise (cosine), optional PCA to ``pca_dim`` (+ ``whiten``), renormalise.

    Fit on the store's vectors; ``mean_``, ``components_`` ``(pca_dim, dim)`` and ``scale_`` ``(pca_dim,)``
    are the learned PCA (empty when unused).
    """

    metric: str = "cosine"
    pca_dim: int | None = None
    whiten: bool = False
    mean_: np.ndarray | None = None
    components_: np.ndarray | None = None
    scale_: np.ndarray | None = None

    @property
    def normalize(self) -> bool:
        return self.metric == "cosine"

    def fit(self, x: np.ndarray, *, max_samples: int = 100_000, seed: int = 0) -> VectorTransform:
        if self.metric not in METRICS:
            raise ValueError(f"unknown metric {self.metric!r}; expected one of {METRICS}")
        if self.whiten and not self.pca_dim:
            self.pca_dim = int(x.shape[1])
        if not self.pca_dim:
            return self
        x = _as_f32(x)
        if x.shape[0] < 2:
            raise ValueError(f"PCA needs at least 2 vectors, given {x.shape[0]}")
        if self.pca_dim > min(x.shape):
            raise ValueError(f"pca_dim={self.pca_dim} exceeds min(n_vectors, dim)={min(x.shape)}")
        if x.shape[0] > max_samples:
            x = x[np.sort(np.random.default_rng(seed).choice(x.shape[0], max_samples, replace=False))]
        x = _l2n(x) if self.normalize else x
        mean = x.mean(axis=0, dtype=np.float64)
        xc = x.astype(np.float64) - mean
        _, s, vt = np.linalg.svd(xc, full_matrices=False)
        comps = vt[: self.pca_dim]
        var = (s[: self.pca_dim] ** 2) / max(x.shape[0] - 1, 1)
        scale = 1.0 / np.sqrt(var + 1e-6 * max(var.max(), 1e-12)) if self.whiten else np.ones(self.pca_dim)
        self.mean_, self.components_, self.scale_ = (a.astype(np.float32) for a in (mean, comps, scale))
        return self

    def transform(self, x: np.ndarray) -> np.ndarray:
        """``(n, dim)`` → ``(n, index_dim) float32`` contiguous."""
        x = _as_f32(x)
        if self.normalize and not (self.components_ is None and _is_unit(x)):
            x = _l2n(x)
        if self.components_ is not None:
            x = ((x - self.mean_) @ self.components_.T) * self.scale_
            if self.normalize:
                x = _l2n(x)
        return np.ascontiguousarray(x, dtype=np.float32)

    def out_dim(self, dim: int) -> int:
        return int(self.components_.shape[0]) if self.components_ is not None else int(dim)

    def to_arrays(self) -> dict[str, np.ndarray]:
        if self.components_ is None:
            return {}
        return {"pca_mean": self.mean_, "pca_components": self.components_, "pca_scale": self.scale_}

    def describe(self) -> dict:
        return {"metric": self.metric, "normalize": self.normalize, "pca_dim": self.pca_dim, "whiten": self.whiten}


def _as_f32(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    if x.ndim == 1:
        x = x[None, :]
    if x.ndim != 2:
        raise ValueError(f"expected vectors of shape (n, dim), given shape={x.shape}")
    return x


def _is_unit(x: np.ndarray) -> bool:
    """Rows already L2-normalised (then the transform need not copy them); checks a sample for big inputs."""
    rows = x if x.shape[0] <= 4096 else x[:: max(1, x.shape[0] // 4096)]
    if not np.allclose(np.einsum("ij,ij->i", rows, rows), 1.0, atol=1e-5):
        return False
    return x.shape[0] <= 4096 or bool(np.allclose(np.einsum("ij,ij->i", x, x), 1.0, atol=1e-5))


def _l2n(x: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return x / np.maximum(norms, 1e-12)


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
    if use_gpu is False or kind == "hnsw" or gpu_count() == 0:
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
    if kind in ("ivf", "ivfpq") and "nprobe" in params:
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
            limit = max_train or max(40 * int(plan.params["nlist"]), 256 * 40 if plan.kind == "ivfpq" else 0)
            train = xt if n <= limit else xt[np.sort(np.random.default_rng(seed).choice(n, limit, replace=False))]
            log.info("training %s on %d vectors", plan.factory_string(), train.shape[0])
            index.train(train)
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
            can_rerank = self.kind == "ivfpq" and (rerank is not None or _label_vecs is not None)
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
        if self.kind == "ivfpq":  # two knobs: take the fastest setting that met the target
            ok = [t for t in tried if t["recall"] >= target_recall]
            if ok:
                pick = min(ok, key=lambda t: t["batch_ms_per_query"])
                best = ({"nprobe": pick["nprobe"], "k_factor": pick["k_factor"]}, pick["recall"])
        params, rec = best
        self.search_params = dict(params)
        _set_search_params(self.index_, self.kind, self.search_params)
        self.recall_ = RecallReport(k_eff, target_recall, round(float(rec), 4), len(q), rec >= target_recall,
                                    dict(params), n_idx, self_rows is None, tried)
        if rec < target_recall:
            log.warning("index %s reached recall@%d %.3f < target %.2f with %s", self.kind, k_eff, rec, target_recall, params)
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
        """Write ``NAME.faiss``, ``NAME.npz`` and (last, as commit marker) ``NAME.json`` into ``directory``."""
        _check_name(name)
        d = Path(directory)
        d.mkdir(parents=True, exist_ok=True)
        faiss = _faiss()
        card = self.card_dict()
        card.update(extra or {})
        card["name"] = name
        card["updated"] = _now()
        self.card = {k: v for k, v in card.items()}
        tmp_faiss = d / f".{name}.faiss.tmp"
        faiss.write_index(_to_cpu(self.index_, self.device), str(tmp_faiss))
        arrays = {"ids": self.ids_, **self.transform.to_arrays()}
        if self.rows_ is not None:
            arrays["rows"] = self.rows_
        tmp_npz = d / f".{name}.npz.tmp"
        with open(tmp_npz, "wb") as f:
            np.savez(f, **arrays)
        tmp_card = d / f".{name}.json.tmp"
        tmp_card.write_text(json.dumps(card, indent=2, default=_json_default) + "\n", encoding="utf-8")
        for tmp, final in ((tmp_faiss, d / f"{name}.faiss"), (tmp_npz, d / f"{name}.npz"), (tmp_card, d / f"{name}.json")):
            os.replace(tmp, final)
        return d / f"{name}.json"

    @classmethod
    def load(cls, directory: str | os.PathLike, name: str = "default", *, use_gpu: bool | None = None) -> VectorIndex:
        """Read an index saved by `save`; raises `IndexMissingError` / `IndexStateError` with the path."""
        d = Path(directory)
        card_path = d / f"{name}.json"
        if not card_path.exists():
            raise IndexMissingError(f"{card_path}: no index named {name!r} (build one with 'embedkit index build')")
        try:
            card = json.loads(card_path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise IndexStateError(f"{card_path}: unreadable index card ({exc}); rebuild with 'embedkit index build --rebuild'") from None
        if int(card.get("format", 0)) > CARD_FORMAT:
            raise IndexStateError(f"{card_path}: index format {card.get('format')} is newer than this embedkit; upgrade")
        faiss = _faiss()
        try:
            index = faiss.read_index(str(d / f"{name}.faiss"))
            with np.load(d / f"{name}.npz") as z:
                arrays = {k: z[k] for k in z.files}
        except Exception as exc:
            raise IndexStateError(f"{d / name}.faiss: unreadable index ({exc}); rebuild with 'embedkit index build --rebuild'") from None
        ids = arrays["ids"]
        if index.ntotal != ids.size or card.get("n_vectors") != ids.size or card.get("ids_sha256") != _digest(ids):
            raise IndexStateError(
                f"{d / name}.faiss: index files disagree ({index.ntotal} vectors, {ids.size} ids, card says "
                f"{card.get('n_vectors')}); an update was interrupted: rebuild with 'embedkit index build --rebuild'"
            )
        t = card["transform"]
        transform = VectorTransform(metric=t["metric"], pca_dim=t.get("pca_dim"), whiten=bool(t.get("whiten")))
        if "pca_components" in arrays:
            transform.mean_, transform.components_, transform.scale_ = (
                arrays["pca_mean"], arrays["pca_components"], arrays["pca_scale"])
        plan = IndexPlan(card["kind"], card["params"], ids.size, int(card["dim"]), int(card["index_dim"]),
                         int(card.get("memory_bytes", 0)), True, card.get("reason", ""))
        index, device = _to_device(index, plan.kind, use_gpu)
        vi = cls(index, plan, transform, ids, search_params=card.get("search_params"), device=device,
                 card=card, rows=arrays.get("rows"))
        rec = card.get("recall")
        if rec:
            vi.recall_ = RecallReport(**{**rec, "tried": []})
        return vi


def _candidate_params(kind: str, params: dict) -> list[dict]:
    if kind == "hnsw":
        return [{"efSearch": ef} for ef in EF_GRID]
    nlist = int(params["nlist"])
    probes = sorted({p for p in NPROBE_GRID if p < nlist} | {nlist})
    if kind == "ivf":
        return [{"nprobe": p} for p in probes]
    if kind == "ivfpq":
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


# ---- binding to a store --------------------------------------------------------------------------

SOURCES = ("tracks", "patches")


def index_dir(store: Any) -> Path:
    """``STORE/index`` for a `Store` or a store path."""
    return Path(getattr(store, "path", store)) / INDEX_DIR


def _store_state(store: Any, source: str) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """(item ids, store rows, patch start_s or None): one entry per indexable vector, in store order.

    ``tracks``: one entry per embedded item; its vector row changes when the item is re-embedded.
    ``patches``: one entry per stored patch (items in id order), with the patch's row and start (s).
    """
    if source == "tracks":
        ids, rows = store.rows()
        return np.asarray(ids, np.int64), np.asarray(rows, np.int64), None
    if source == "patches":
        if not store.has_patches:
            raise IndexStateError(f"{store.path}: store has no per-patch vectors (embed with --patches for segment search)")
        item_ids, starts, _ = store.patch_vectors()
        first = {it.id: (-1 if it.patch_row is None else it.patch_row) for it in store.items("ok")}
        item_ids = np.asarray(item_ids, np.int64)
        if item_ids.size == 0:
            return item_ids, item_ids.copy(), np.zeros(0)
        change = np.r_[True, item_ids[1:] != item_ids[:-1]]
        group_start = np.maximum.accumulate(np.where(change, np.arange(item_ids.size), 0))
        offset = np.arange(item_ids.size) - group_start
        rows = np.array([first[i] for i in item_ids], dtype=np.int64) + offset
        return item_ids, rows, np.asarray(starts, np.float64)
    raise ValueError(f"unknown index source {source!r}; expected one of {SOURCES}")


def _store_vectors(store: Any, source: str, ids: np.ndarray | None = None) -> np.ndarray:
    """Track vectors of ``ids`` (default all), or all patch vectors (``ids`` then selects positions)."""
    if source == "tracks":
        return store.vectors(ids)
    pv = store.patch_vectors()[2]
    return pv if ids is None else pv[ids]


def build_for_store(
    store: Any,
    *,
    name: str = "default",
    kind: str = "auto",
    memory_budget_bytes: int | None = None,
    metric: str = "cosine",
    pca_dim: int | None = None,
    whiten: bool = False,
    target_recall: float = 0.95,
    k: int = 10,
    source: str = "tracks",
    rebuild: bool = False,
    use_gpu: bool | None = None,
    seed: int = 0,
) -> tuple[VectorIndex, dict]:
    """Build index ``name`` over the store's ``source`` vectors and save it under ``STORE/index``.

    When a compatible index of that name exists and ``rebuild`` is False, only the store's new items are
    added (incremental update). Returns ``(index, summary)``; summary ``action`` is "built", "updated" or
    "unchanged", ``added`` the number of vectors added, ``card`` the saved card.
    """
    _check_name(name)
    d = index_dir(store)
    if not rebuild and (d / f"{name}.json").exists():
        try:
            old = read_card(store, name)
            if _same_options(old, kind=kind, metric=metric, pca_dim=pca_dim, whiten=whiten, source=source):
                vi, added = update_for_store(store, name=name, use_gpu=use_gpu, target_recall=target_recall, seed=seed)
                return vi, {"action": "updated" if added else "unchanged", "added": added, "card": vi.card}
            log.info("index %s was built with other options; rebuilding it", name)
        except (IndexStaleError, IndexMismatchError) as exc:
            log.warning("%s; rebuilding it", str(exc).split(";")[0])
    ids, rows, starts = _store_state(store, source)
    x = _store_vectors(store, source)
    budget = default_memory_budget() if memory_budget_bytes is None else int(memory_budget_bytes)
    if x.shape[0] == 0 and kind not in ("auto", "flat"):
        raise IndexStateError(f"{store.path}: store has no embedded {source}; a {kind} index needs vectors to train on")
    labels = ids if source == "tracks" else np.arange(ids.size, dtype=np.int64)
    vi = VectorIndex.build(
        x, labels, kind=kind, memory_budget_bytes=budget, metric=metric, pca_dim=pca_dim, whiten=whiten,
        target_recall=target_recall, k=k, use_gpu=use_gpu, rows=rows, seed=seed,
    )
    vi.card.update(_store_card(store, source, ids, rows))
    vi.card.update({"budget_bytes": budget, "requested_kind": kind})
    vi.save(d, name)
    if starts is not None:
        vi.starts_, vi.item_ids_ = starts, ids
    return vi, {"action": "built", "added": int(labels.size), "card": vi.card}


def _same_options(card: dict, *, kind: str, metric: str, pca_dim: int | None, whiten: bool, source: str) -> bool:
    """Whether an existing index (its card) was built with these options (then it can be updated)."""
    t = card.get("transform", {})
    same_pca = (pca_dim or None) == (t.get("pca_dim") or None) or (whiten and not pca_dim and t.get("whiten"))
    return (
        (kind == "auto" or kind == card.get("kind"))
        and metric == t.get("metric")
        and bool(same_pca)
        and bool(whiten) == bool(t.get("whiten"))
        and card.get("source", "tracks") == source
    )


def _store_card(store: Any, source: str, ids: np.ndarray, rows: np.ndarray) -> dict:
    m = store.manifest
    return {
        "source": source,
        "store": {
            "path": str(Path(store.path).resolve()),
            "fingerprint": store.fingerprint,
            "model": m.get("model"),
            "model_fingerprint": store.model_fingerprint,
            "settings": store.describe_settings() if hasattr(store, "describe_settings") else None,
        },
        "items_sha256": _digest(np.concatenate([ids, rows])),
    }


def check_store(vi: VectorIndex, store: Any, *, name: str = "default") -> dict:
    """Compare an index with its store; raises `IndexMismatchError` (other settings/dim) or
    `IndexStaleError` (indexed items removed or re-embedded). Items only added to the store since are
    not an error: returns ``{"new": positions/ids of those, "state": (ids, rows, starts)}``.
    """
    card = vi.card
    where = f"{index_dir(store) / name}.faiss"
    rebuild = f"rebuild with 'embedkit index build {store.path} --name {name} --rebuild'"
    s = card.get("store", {})
    if s.get("fingerprint") != store.fingerprint:
        raise IndexMismatchError(
            f"{where}: index was built over vectors with settings {str(s.get('fingerprint'))[:12]}… "
            f"({s.get('settings')}), the store has {store.fingerprint[:12]}…; {rebuild}"
        )
    source = card.get("source", "tracks")
    dim = store.dim if source == "tracks" else int(store.manifest.get("patch_dim") or 0)
    if vi.dim != dim:
        raise IndexMismatchError(f"{where}: index dim {vi.dim} != store {source} dim {dim}; {rebuild}")
    ids, rows, starts = _store_state(store, source)
    if source == "tracks":
        order = np.argsort(ids)
        sids, srows = ids[order], rows[order]
        if sids.size:
            pos = np.clip(np.searchsorted(sids, vi.ids_), 0, sids.size - 1)
            present = sids[pos] == vi.ids_
        else:
            pos, present = np.zeros(vi.ids_.size, np.int64), np.zeros(vi.ids_.size, bool)
        if not np.all(present):
            gone = vi.ids_[~present]
            raise IndexStaleError(
                f"{where}: {gone.size} indexed items are no longer embedded in the store (e.g. id {int(gone[0])}); {rebuild}"
            )
        if vi.rows_ is not None and vi.ids_.size and np.any(srows[pos] != vi.rows_):
            changed = vi.ids_[srows[pos] != vi.rows_]
            raise IndexStaleError(
                f"{where}: {changed.size} items were re-embedded since the index was built (e.g. id {int(changed[0])}); {rebuild}"
            )
        new = np.setdiff1d(ids, vi.ids_)
    else:
        n_old = len(vi)
        if ids.size < n_old or (vi.rows_ is not None and np.any(rows[:n_old] != vi.rows_)):
            raise IndexStaleError(f"{where}: the store's patches changed since the index was built; {rebuild}")
        new = np.arange(n_old, ids.size, dtype=np.int64)
    return {"new": new, "state": (ids, rows, starts)}


def open_for_store(store: Any, *, name: str = "default", allow_new: bool = False, use_gpu: bool | None = None) -> VectorIndex:
    """Load index ``name`` of ``store`` and check that it fits; refuses stale/mismatched indexes (one line).

    ``allow_new``: accept an index that lacks items added to the store since (those are not searched).
    Patch indexes get ``item_ids_`` and ``starts_`` (per label: item id, start in s).
    """
    vi = VectorIndex.load(index_dir(store), name, use_gpu=use_gpu)
    state = check_store(vi, store, name=name)
    if state["new"].size and not allow_new:
        raise IndexStaleError(
            f"{index_dir(store) / name}.faiss: {state['new'].size} store items are not in the index yet; "
            f"run 'embedkit index build {store.path} --name {name}' to add them"
        )
    ids, _, starts = state["state"]
    if starts is not None:
        vi.item_ids_, vi.starts_ = ids[: len(vi)], starts[: len(vi)]
    return vi


def update_for_store(store: Any, *, name: str = "default", use_gpu: bool | None = None,
                     target_recall: float | None = None, seed: int = 0) -> tuple[VectorIndex, int]:
    """Add the store's new items to index ``name`` (no retraining), re-tune search parameters, save.

    Returns ``(index, number of vectors added)``.
    """
    vi = VectorIndex.load(index_dir(store), name, use_gpu=use_gpu)
    state = check_store(vi, store, name=name)
    new = state["new"]
    ids, rows, starts = state["state"]
    source = vi.card.get("source", "tracks")
    if new.size:
        if source == "tracks":
            new_rows = rows[np.searchsorted(ids, new)]
            xnew = store.vectors(new)
        else:
            new_rows = rows[new]
            xnew = _store_vectors(store, source, new)
        prev = getattr(vi, "recall_", None)
        target = target_recall or (prev.target if prev else 0.95)
        k = prev.k if prev and prev.k else 10
        if vi.kind != "flat" and len(vi) > k and xnew.shape[0] >= MIN_UPDATE_TUNING:
            # the new vectors are not in the index yet: held-out queries for re-tuning, then added
            xold = store.vectors(vi.ids_) if source == "tracks" else _store_vectors(store, source, np.arange(len(vi)))
            pick = np.sort(np.random.default_rng(seed).choice(xnew.shape[0], min(500, xnew.shape[0]), replace=False))
            vi.tune(xold, queries=xnew[pick], target_recall=target, k=k, seed=seed)
            del xold
        elif vi.kind == "flat":
            vi.recall_ = RecallReport(k, target, 1.0, 0, True, {}, len(vi) + int(new.size))
        vi.add(xnew, new, rows=new_rows)
        vi.card.update(_store_card(store, source, ids, rows))
        vi.card["added_incrementally"] = int(vi.card.get("added_incrementally", 0)) + int(new.size)
        vi.save(index_dir(store), name)
    if starts is not None:
        vi.item_ids_, vi.starts_ = ids[: len(vi)], starts[: len(vi)]
    return vi, int(new.size)


def list_indexes(store: Any) -> list[str]:
    """Names of the indexes saved beside ``store``."""
    d = index_dir(store)
    return sorted(p.stem for p in d.glob("*.json")) if d.exists() else []


def read_card(store: Any, name: str = "default") -> dict:
    """The card JSON of index ``name`` (no FAISS import)."""
    p = index_dir(store) / f"{name}.json"
    if not p.exists():
        raise IndexMissingError(f"{p}: no index named {name!r} (build one with 'embedkit index build')")
    try:
        return json.loads(p.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise IndexStateError(f"{p}: unreadable index card ({exc})") from None
