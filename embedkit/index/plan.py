"""Choosing an index: which FAISS kind, which parameters, how much memory, and why. Pure: no FAISS,
no numpy arrays, no files; everything here is a function of sizes and a memory budget.

    plan = choose_index(n, dim, memory_budget_bytes)   # IndexPlan(kind, params, memory_bytes, reason, ...)
"""
from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass

from .base import KINDS

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
#: IVF-PQ whose inverted lists (codes + ids) live in a memory-mapped file (`ondisk`), not in memory.
ONDISK_KIND = "ivfpq_disk"
#: Vectors encoded per temporary shard while building an on-disk index (bounds the build's memory).
ONDISK_SHARD_ROWS = 65_536
#: Auto planning keeps IVF-PQ codes in memory only while they keep >= 1 byte per this many dimensions;
#: coarser codes are a judgement call (not measured here): then the on-disk kind with the finest code.
ONDISK_MIN_CODE_DIMS = 32


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
        if self.kind in ("ivfpq", ONDISK_KIND):
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
    if kind == ONDISK_KIND:  # resident: coarse centroids + PQ tables + our id and store-row arrays
        return 4 * int(params["nlist"]) * d + 4 * d * (1 << int(params["pq_nbits"])) + 2 * ids
    raise ValueError(f"unknown index kind {kind!r}; expected one of {KINDS}")


def ondisk_disk_bytes(n_vectors: int, params: dict) -> int:
    """Bytes of an on-disk index's inverted-list file: PQ code + 8-byte label per vector."""
    return int(n_vectors) * (math.ceil(int(params["pq_m"]) * int(params["pq_nbits"]) / 8) + 8)


def ondisk_train_rows(params: dict) -> int:
    """Training sample of an on-disk IVF-PQ index: 40 per list, at least 64 per PQ centroid, ≤ 262,144."""
    return int(min(262_144, max(40 * int(params["nlist"]), 64 * (1 << int(params["pq_nbits"])))))


def ondisk_build_bytes(dim: int, params: dict, shard_rows: int = ONDISK_SHARD_ROWS) -> int:
    """Peak extra memory of building an on-disk index (training sample + one shard read and encoded), bytes."""
    code = math.ceil(int(params["pq_m"]) * int(params["pq_nbits"]) / 8)
    return 4 * int(dim) * ondisk_train_rows(params) + int(shard_rows) * (3 * 4 * int(dim) + code + 16)


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
    largest product-quantizer code that fits (results re-ranked with exact vectors read from the store);
    when even the smallest IVF-PQ codes exceed the budget, ``ivfpq_disk``: the same index with its
    inverted lists in a memory-mapped file (only centroids, PQ tables and ids stay resident), built from
    shards in bounded memory (`ondisk_build_bytes`) and re-ranked with the exact vectors on disk.
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

    nbits = 8 if n >= 39 * 256 else max(4, min(8, int(math.log2(max(n, 16) / 39)) if n >= 39 * 16 else 4))

    def pq_params(nlist: int, min_m: int = 1) -> dict | None:
        for m in (m for m in _pq_options(d) if m >= min_m):
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
    disk = {"nlist": _nlist_for(n), "pq_m": _pq_options(d)[0], "pq_nbits": nbits}  # codes on disk: the largest
    if kind == ONDISK_KIND:
        return plan(ONDISK_KIND, disk, "ivfpq_disk requested: inverted lists memory-mapped from disk")

    flat_mem = estimate_memory("flat", n, d, {})
    if n * d <= flat_max_work and (budget is None or flat_mem <= budget):
        return plan("flat", {}, f"{n} x {d} is small enough for exact search (<= {flat_max_work:,} floats)")
    if budget is None or estimate_memory("hnsw", n, d, hnsw) <= budget:
        why = "too many vectors for exact search" if n * d > flat_max_work else "exact index exceeds memory"
        return plan("hnsw", hnsw, f"{why}; HNSW graph with full vectors fits the memory budget")
    min_m = max(1, d // ONDISK_MIN_CODE_DIMS)
    params = pq_params(_nlist_for(n), min_m)
    if params is None and estimate_memory(ONDISK_KIND, n, d, disk) <= budget:
        coarse = {**disk, "pq_m": min([m for m in _pq_options(d) if m >= min_m])}
        return plan(
            ONDISK_KIND, disk,
            f"in-memory IVF-PQ with >= {coarse['pq_m']}-byte codes ({format_bytes(estimate_memory('ivfpq', n, d, coarse))}) "
            f"exceeds the budget {format_bytes(budget)}; IVF-PQ with {disk['pq_m']}-byte codes in an on-disk file "
            f"({format_bytes(ondisk_disk_bytes(n, disk))}), re-ranked with the exact vectors",
        )
    params = params or pq_params(_nlist_for(n))
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

