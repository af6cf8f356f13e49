"""IVF-PQ with on-disk inverted lists: built from batches in bounded memory, searched with exact re-ranking.

For collections whose index does not fit in memory (`plan.choose_index` returns kind ``ivfpq_disk``)::

    vi = build_ondisk(batches, n, dim, DIR, "default", plan=plan, exact=store.vectors)
    vi.search(q, k, rerank=store.vectors)     # PQ candidates re-scored with the exact stored vectors

``batches()`` yields ``(ids (b,) int64, vectors (b, dim) float32)`` in a fixed order each time it is called
(`Store.iter_vectors`). The build reads the data four times: for a training sample, to encode shards of
``shard_rows`` vectors (each written to a temporary FAISS file), and (tuning) for a query sample and the
queries' exact neighbours. Shards are merged into ``NAME.ivfdata`` with FAISS ``OnDiskInvertedLists`` (memory-mapped);
``NAME.faiss`` holds the coarse quantizer and PQ tables only. Peak memory ≈ training sample + one shard +
8 bytes per id (see `plan.ondisk_build_bytes`). Saved by `VectorIndex.save` like every other kind (the card
holds the sha256 of ``NAME.ivfdata`` too); an on-disk index is never changed in place (rebuild instead).
"""
from __future__ import annotations

import contextlib
import logging
import os
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from .base import IndexStateError
from .plan import ONDISK_KIND, ONDISK_SHARD_ROWS, IndexPlan, ondisk_train_rows
from .transform import VectorTransform, _as_f32
from .vector_index import (
    NonFiniteVectorsError,
    RecallReport,
    VectorIndex,
    _candidate_params,
    _check_name,
    _faiss,
    _now,
    check_finite,
)

log = logging.getLogger("embedkit.index")

Batches = Callable[[], Iterator[tuple[np.ndarray, np.ndarray]]]


@contextlib.contextmanager
def stdout_to_stderr() -> Iterator[None]:
    """Send C-level writes to stdout (FAISS prints "resizing ..." there) to stderr, keeping ``--json`` clean."""
    import sys

    sys.stdout.flush()
    saved = os.dup(1)
    try:
        os.dup2(2, 1)
        yield
    finally:
        os.dup2(saved, 1)
        os.close(saved)


def ivfdata_name(name: str) -> str:
    """File of the inverted lists of index ``name``."""
    return f"{name}.ivfdata"


def _sample(batches: Batches, n: int, rows: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """``(positions (m,), vectors (m, dim))`` of ``rows`` evenly random positions, read in one pass."""
    pick = np.sort(np.random.default_rng(seed).choice(n, min(rows, n), replace=False))
    out, start = [], 0
    for _, x in batches():
        b = x.shape[0]
        sel = pick[(pick >= start) & (pick < start + b)] - start
        if sel.size:
            out.append(_as_f32(x[sel]))
        start += b
    if start != n:
        raise IndexStateError(f"the vectors changed while building the index ({start} read, {n} expected); build again")
    return pick, np.concatenate(out) if out else np.zeros((0, 0), np.float32)


def build_ondisk(
    batches: Batches,
    n: int,
    dim: int,
    directory: str | os.PathLike,
    name: str,
    *,
    plan: IndexPlan,
    exact: Callable[[np.ndarray], np.ndarray],
    metric: str = "cosine",
    pca_dim: int | None = None,
    whiten: bool = False,
    target_recall: float = 0.95,
    k: int = 10,
    n_tune_queries: int = 200,
    shard_rows: int = ONDISK_SHARD_ROWS,
    seed: int = 0,
    vector_map: Callable[[np.ndarray], np.ndarray] | None = None,
    train_rows: int | None = None,
    tune: bool = True,
) -> VectorIndex:
    """Train on a sample, encode ``n`` vectors shard by shard, merge into ``DIR/NAME.ivfdata``, tune.

    ``exact(ids) -> (len(ids), dim)`` returns stored vectors by caller id (for re-ranking while tuning).
    ``vector_map`` (optional) is applied to every batch before the transform (metric spaces).
    ``tune`` False keeps the default search parameters (recall not measured).
    Returns a `VectorIndex` of kind ``ivfpq_disk`` whose inverted lists are memory-mapped from
    ``DIR/NAME.ivfdata``; call ``save(DIR, NAME)`` to write its card and small files.
    """
    _check_name(name)
    if plan.kind != ONDISK_KIND:
        raise ValueError(f"build_ondisk needs a {ONDISK_KIND} plan, given {plan.kind}")
    if n < 2:
        raise ValueError(f"an on-disk IVF-PQ index needs vectors to train on, given {n}")
    t0 = time.perf_counter()
    faiss = _faiss()
    vmap = vector_map or (lambda x: x)
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    nlist = int(plan.params["nlist"])

    # 1. training sample (bounded) -> transform + coarse quantizer + PQ
    _, xs = _sample(batches, n, train_rows or ondisk_train_rows(plan.params), seed)
    xs = _as_f32(vmap(xs))
    transform = VectorTransform(metric=metric, pca_dim=pca_dim, whiten=whiten)
    if pca_dim or whiten:
        transform.fit(xs, seed=seed)
    xt = transform.transform(xs)
    del xs
    fmetric = faiss.METRIC_INNER_PRODUCT if metric == "cosine" else faiss.METRIC_L2
    factory = f"IVF{nlist},PQ{plan.params['pq_m']}x{plan.params['pq_nbits']}"
    trained = faiss.index_factory(xt.shape[1], factory, fmetric)
    ivfpq = faiss.downcast_index(trained)
    ivfpq.do_polysemous_training = False
    ivfpq.pq.cp.max_points_per_centroid = 64
    # the sample is capped (plan.ondisk_train_rows) to bound the build's memory: past ~6.5M vectors that is
    # < 39 rows per list, FAISS's advice, and FAISS would print a warning into the user's terminal
    ivfpq.cp.min_points_per_centroid = max(1, min(39, xt.shape[0] // nlist))
    ivfpq.pq.cp.min_points_per_centroid = max(1, min(39, xt.shape[0] // (1 << int(plan.params["pq_nbits"]))))
    log.info("training %s on %d vectors", factory, xt.shape[0])
    try:
        trained.train(xt)
    except RuntimeError as exc:
        raise ValueError(f"cannot train an on-disk IVF-PQ index on {xt.shape[0]} vectors ({exc}); use --kind flat") from None
    del xt

    # 2. encode shard by shard into temporary FAISS files (labels = insertion positions)
    tmpdir = Path(tempfile.mkdtemp(prefix=f".{name}.shards.", dir=d))
    data_tmp = d / f".{name}.ivfdata.tmp"
    try:
        shard_files: list[str] = []
        ids_parts: list[np.ndarray] = []
        buf_ids: list[np.ndarray] = []
        buf_x: list[np.ndarray] = []
        pos = 0

        def flush() -> None:
            nonlocal pos
            if not buf_x:
                return
            x = transform.transform(_as_f32(vmap(np.concatenate(buf_x))))
            shard = faiss.clone_index(trained)
            shard.add_with_ids(x, np.arange(pos, pos + x.shape[0], dtype=np.int64))
            f = str(tmpdir / f"shard{len(shard_files):05d}.ivl")
            _write_lists(faiss.extract_index_ivf(shard).invlists, f)  # lists only: no copy of the quantizer
            del shard
            shard_files.append(f)
            pos += x.shape[0]
            ids_parts.append(np.concatenate(buf_ids))
            buf_ids.clear()
            buf_x.clear()

        buffered = 0
        for ids_b, x_b in batches():
            buf_ids.append(np.asarray(ids_b, np.int64))
            buf_x.append(np.asarray(x_b))
            buffered += len(ids_b)
            if buffered >= shard_rows:
                flush()
                buffered = 0
        flush()
        ids = np.concatenate(ids_parts) if ids_parts else np.zeros(0, np.int64)
        if ids.size != n or np.unique(ids).size != n:
            raise IndexStateError(f"the vectors changed while building the index ({ids.size} read, {n} expected); build again")
        with contextlib.suppress(FileNotFoundError):
            data_tmp.unlink()
        with stdout_to_stderr():
            _merge_shards(trained, shard_files, data_tmp)
        with open(data_tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(data_tmp, d / ivfdata_name(name))
        # the .faiss file records this path; loading uses IO_FLAG_ONDISK_SAME_DIR (store folders may move)
        faiss.downcast_InvertedLists(faiss.extract_index_ivf(trained).invlists).filename = str(d / ivfdata_name(name))
    except BaseException:
        with contextlib.suppress(OSError):
            data_tmp.unlink()
        raise
    finally:
        for f in tmpdir.glob("*"):
            with contextlib.suppress(OSError):
                f.unlink()
        with contextlib.suppress(OSError):
            tmpdir.rmdir()

    vi = VectorIndex(trained, plan, transform, ids)
    vi.card = {"created": _now(), "build_s": None, "ivfdata": ivfdata_name(name), "shard_rows": int(shard_rows),
               "n_shards": len(shard_files)}
    # 3. tune nprobe / re-rank depth against exact search (streamed ground truth)
    if tune:
        tune_ondisk(vi, batches, n, exact=lambda i: vmap(exact(i)), target_recall=target_recall, k=k,
                    n_queries=n_tune_queries, seed=seed, vector_map=vector_map)
    else:
        vi.search_params = {"nprobe": min(16, nlist), "k_factor": 4}
        vi.recall_ = RecallReport(k, target_recall, float("nan"), 0, False, dict(vi.search_params), n)
    vi.card["build_s"] = round(time.perf_counter() - t0, 3)
    return vi


def _write_lists(invlists: Any, path: str) -> None:
    """Write a shard's inverted lists (FAISS ``ilar`` format) to ``path``, closed when this returns."""
    faiss = _faiss()
    writer = faiss.FileIOWriter(path)
    try:
        faiss.write_InvertedLists(invlists, writer)
    finally:
        del writer  # closes the file


def _merge_shards(trained: Any, shard_files: list[str], out: Path) -> None:
    """Merge the inverted lists of the shard files (memory-mapped) into ``out`` (`OnDiskInvertedLists`) and
    attach them to the empty ``trained`` index (as `faiss.contrib.ondisk.merge_ondisk`, but each shard file
    holds its lists only, not a copy of the coarse quantizer as a whole index would: the merge's memory does
    not grow with the number of shards × centroids; the mappings are released afterwards, so the deleted
    temporary files free their disk space at once)."""
    faiss = _faiss()
    lists, owners = [], []
    for f in shard_files:
        reader = faiss.FileIOReader(f)
        il = faiss.read_InvertedLists(reader, faiss.IO_FLAG_MMAP)
        del reader
        owners.append(_lists_owner(il))
        lists.append(il)
    ivf = faiss.extract_index_ivf(trained)
    if ivf.ntotal != 0:
        raise ValueError("the trained index must be empty")
    invlists = faiss.OnDiskInvertedLists(ivf.nlist, ivf.code_size, str(out))
    vec = faiss.InvertedListsPtrVector()
    for il in lists:
        vec.push_back(il)
    ntotal = invlists.merge_from_multiple(vec.data(), vec.size(), False)
    trained.ntotal = ivf.ntotal = ntotal
    ivf.replace_invlists(invlists, True)
    invlists.this.disown()
    del vec, lists, owners  # the shards' mapped lists: freed (unmapped) with their owners here


def _lists_owner(invlists: Any) -> Any:
    """A minimal IVF index (empty quantizer, 1-d sub-quantizers) that owns ``invlists``, so that deleting it
    frees them: SWIG wraps no destructor for `OnDiskInvertedLists` itself. ≈ 80 KB at 80-byte codes."""
    faiss = _faiss()
    size = int(invlists.code_size)
    owner = faiss.IndexIVFPQ(faiss.IndexFlatL2(size), size, int(invlists.nlist), size, 8)
    owner.replace_invlists(invlists, True)
    return owner


def exact_topk_streamed(batches: Batches, q: np.ndarray, k: int, *, transform: VectorTransform,
                        vector_map: Callable[[np.ndarray], np.ndarray] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Exact top-``k`` ``(scores (nq, k), ids (nq, k))`` of transformed queries ``q`` over all batches.

    Memory: one batch plus ``(nq, 2k)`` candidates. Scores are inner products (cosine) or -L2².
    """
    faiss = _faiss()
    m = faiss.METRIC_INNER_PRODUCT if transform.metric == "cosine" else faiss.METRIC_L2
    best_s = np.full((q.shape[0], k), -np.inf, np.float32)
    best_i = np.full((q.shape[0], k), -1, np.int64)
    for ids_b, x_b in batches():
        x = transform.transform(_as_f32(x_b if vector_map is None else vector_map(x_b)))
        kk = min(k, x.shape[0])
        s, lab = faiss.knn(np.ascontiguousarray(q), np.ascontiguousarray(x), kk, metric=m)
        s = s if transform.metric == "cosine" else -s
        ids_b = np.asarray(ids_b, np.int64)
        s_all = np.concatenate([best_s, s.astype(np.float32)], axis=1)
        i_all = np.concatenate([best_i, np.where(lab >= 0, ids_b[np.maximum(lab, 0)], -1)], axis=1)
        order = np.argsort(-s_all, axis=1, kind="stable")[:, :k]
        best_s, best_i = np.take_along_axis(s_all, order, 1), np.take_along_axis(i_all, order, 1)
    return best_s, best_i


def tune_ondisk(vi: VectorIndex, batches: Batches, n: int, *, exact: Callable[[np.ndarray], np.ndarray],
                target_recall: float, k: int, n_queries: int, seed: int,
                vector_map: Callable[[np.ndarray], np.ndarray] | None = None) -> RecallReport:
    """Pick the fastest ``(nprobe, k_factor)`` whose recall@k (stored vectors as queries, each leaving itself
    out; ties at the k-th exact score count as hits) reaches ``target_recall``; sets ``vi.search_params``."""
    qpos, qx = _sample(batches, n, n_queries, seed + 1)
    qids = vi.ids_[qpos]
    qt = vi.transform.transform(_as_f32(qx if vector_map is None else vector_map(qx)))
    k_eff = max(1, min(k, n - 1))
    ex_s, ex_i = exact_topk_streamed(batches, qt, k_eff + 1, transform=vi.transform, vector_map=vector_map)
    kth = np.empty(qt.shape[0])
    for j in range(qt.shape[0]):
        s = ex_s[j][ex_i[j] != qids[j]]
        kth[j] = s[k_eff - 1]
    rr = exact
    tried, best = [], None
    met_at = None
    for params in _candidate_params("ivfpq", vi.plan.params):
        t = time.perf_counter()
        sc, found = vi._search_t(qt, k_eff + 1, rerank=rr, search_params=params)
        el = time.perf_counter() - t
        hits = 0
        for j in range(qt.shape[0]):
            keep = found[j] != qids[j]
            hits += int(np.sum(sc[j][keep][:k_eff] >= kth[j] - 1e-5))
        rec = hits / (k_eff * qt.shape[0])
        tried.append({**params, "recall": round(rec, 4), "batch_ms_per_query": round(1e3 * el / len(qt), 4)})
        if best is None or rec > best[1] + 1e-9:
            best = (params, rec)
        if rec >= target_recall:
            met_at = met_at if met_at is not None else params["nprobe"]
        if met_at is not None and params["nprobe"] > 2 * met_at:
            break
    return vi._adopt_tuning(tried, best, target_recall=target_recall, k_eff=k_eff, n_queries=len(qt), n_indexed=n,
                            held_out_queries=False, two_knobs=True, what="on-disk index")


def build_store_ondisk(store: Any, directory: Path, name: str, *, ids: np.ndarray, rows: np.ndarray, kind: str,
                       budget: int | None, metric: str, pca_dim: int | None, whiten: bool, target_recall: float,
                       k: int, seed: int, vector_map: Any = None,
                       shard_rows: int = ONDISK_SHARD_ROWS) -> VectorIndex | None:
    """Build an on-disk index over ``store``'s track vectors when the planner picks ``ivfpq_disk`` for
    ``kind``/``budget`` (else None: the caller builds in memory). Vectors are streamed with
    `Store.iter_vectors` (memory-mapped shards) and re-ranked from the store; ``rows`` are recorded so that
    re-embedded items make the index stale like any other kind."""
    from .plan import choose_index  # noqa: PLC0415

    n, dim = int(ids.size), int(store.dim)
    if vector_map is not None:
        dim = int(np.asarray(vector_map(store.vectors(ids[:1]))).shape[1])
    plan = choose_index(n, dim, budget, kind=kind, pca_dim=pca_dim)
    if plan.kind != ONDISK_KIND:
        return None
    batch = max(1024, min(65_536, shard_rows))

    def batches() -> Iterator[tuple[np.ndarray, np.ndarray]]:
        for b_ids, b_x in store.iter_vectors(batch_size=batch):
            check_finite(b_x, b_ids)
            yield b_ids, b_x

    try:
        vi = build_ondisk(batches, n, dim, directory, name, plan=plan, exact=store.vectors, metric=metric,
                          pca_dim=pca_dim, whiten=whiten, target_recall=target_recall, k=k, seed=seed,
                          shard_rows=shard_rows, vector_map=vector_map)
    except NonFiniteVectorsError as exc:
        raise NonFiniteVectorsError(f"{store.path}: {exc}", exc.ids) from None
    if not np.array_equal(vi.ids_, ids):
        raise IndexStateError(f"{store.path}: the store changed while the index was built; build again")
    vi.rows_ = np.asarray(rows, np.int64)
    return vi
