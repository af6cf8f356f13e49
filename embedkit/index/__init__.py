"""FAISS nearest-neighbour indexes over store vectors: choose, build, tune, save, load, update, search.

The flow::

    plan = choose_index(n, dim, memory_budget_bytes)        # pure: which kind, which parameters, why
    vi = VectorIndex.build(vectors, ids, plan=plan)         # normalise (+PCA), train, add, tune to a recall
    vi.search(queries, k) -> (scores (nq, k), ids (nq, k))  # ids -1 / scores -inf pad missing results
    si, summary = StoreIndex.build(store, name="default")    # the same, bound to a store and saved beside it
    StoreIndex.open(store, name="default").search(queries, k)

Modules, one job each:

- `plan`: the pure planner (`choose_index`, `estimate_memory`, `parse_memory`): no FAISS, no arrays;
- `transform`: `VectorTransform` (L2-normalise, PCA / whitening) in numpy;
- `vector_index`: `VectorIndex` (FAISS build, tune to a recall target, search, checksummed save/load);
- `binding`: `StoreIndex`, an index bound to its store (spec, store identity, stale/foreign checks,
  incremental update, build lock, optional vector map for metric spaces).

Similarity is cosine by default: vectors are L2-normalised (optionally PCA-projected / whitened with a
transform learned on the store, then normalised again) and searched by inner product.
"""
from __future__ import annotations

from .base import (
    CARD_FORMAT,
    INDEX_DIR,
    KINDS,
    METRICS,
    IndexMismatchError,
    IndexMissingError,
    IndexStaleError,
    IndexStateError,
)
from .binding import (
    SOURCES,
    StoreIndex,
    VectorMap,
    _same_options,
    _store_card,
    _store_state,
    _store_vectors,
    build_for_store,
    build_lock,
    check_store,
    content_digest,
    index_dir,
    list_indexes,
    open_for_store,
    read_card,
    store_spec,
    update_for_store,
)
from .plan import (
    EF_GRID,
    FLAT_MAX_WORK,
    HNSW_EF_CONSTRUCTION,
    HNSW_M,
    MIN_HELD_OUT_TUNING,
    MIN_UPDATE_TUNING,
    NPROBE_GRID,
    RERANK_GRID,
    IndexPlan,
    _nlist_for,
    _pq_options,
    choose_index,
    default_memory_budget,
    estimate_memory,
    format_bytes,
    parse_memory,
)
from .transform import VectorTransform, _as_f32, _is_unit, _l2n
from .vector_index import (
    NonFiniteVectorsError,
    RecallReport,
    VectorIndex,
    _digest,
    _faiss,
    check_finite,
    gpu_count,
)
