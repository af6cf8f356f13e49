"""Training and proxy samples cut from per-patch vectors: segments of a track, and its two halves.

A segment is ``seg_patches`` consecutive 3-s patches aggregated the way the store aggregates a
track (``mean`` or ``mean+std``), so segment vectors live in the same space as track vectors.
"""
from __future__ import annotations

import numpy as np

from ..features import aggregate


def _runs(item_ids: np.ndarray) -> list[tuple[int, int, int]]:
    """(item id, first, stop) of each run of equal consecutive ``item_ids``."""
    ids = np.asarray(item_ids)
    if ids.size == 0:
        return []
    cut = np.flatnonzero(np.r_[True, ids[1:] != ids[:-1], True])
    return [(int(ids[a]), int(a), int(b)) for a, b in zip(cut[:-1], cut[1:])]


def segments(item_ids: np.ndarray, patch_vectors: np.ndarray, seg_patches: int = 3, *,
             aggregation: str = "mean", max_per_item: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Non-overlapping segments of ``seg_patches`` patches per item.

    ``item_ids`` ``(m,)`` and ``patch_vectors`` ``(m, patch_dim)`` as `Store.patch_vectors` returns them
    (patches of an item consecutive, in time order). Returns ``(X (s, dim) float32, item (s,) int64)``;
    an item shorter than one segment gives one segment of all its patches. ``max_per_item`` keeps that
    many segments spread evenly over the item.
    """
    if seg_patches < 1:
        raise ValueError(f"seg_patches must be >= 1, given {seg_patches}")
    X, owner = [], []
    for item, a, b in _runs(item_ids):
        n = b - a
        starts = list(range(a, b - seg_patches + 1, seg_patches)) or [a]
        if max_per_item and len(starts) > max_per_item:
            starts = [starts[i] for i in np.linspace(0, len(starts) - 1, max_per_item).round().astype(int)]
        for s in starts:
            X.append(aggregate(patch_vectors[s : min(s + seg_patches, b)], aggregation))
            owner.append(item)
        del n
    if not X:
        return np.zeros((0, patch_vectors.shape[1] * (2 if aggregation == "mean+std" else 1)), np.float32), np.zeros(0, np.int64)
    return np.asarray(X, np.float32), np.asarray(owner, np.int64)


def halves(item_ids: np.ndarray, patch_vectors: np.ndarray, *, aggregation: str = "mean",
           min_patches: int = 2) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """First-half and second-half vectors of each item with ≥ ``min_patches`` patches:
    ``(A (t, dim), B (t, dim), item (t,))`` — two views of one recording, for the self-retrieval proxy."""
    A, B, owner = [], [], []
    for item, a, b in _runs(item_ids):
        if b - a < min_patches:
            continue
        mid = a + (b - a) // 2
        A.append(aggregate(patch_vectors[a:mid], aggregation))
        B.append(aggregate(patch_vectors[mid:b], aggregation))
        owner.append(item)
    dim = patch_vectors.shape[1] * (2 if aggregation == "mean+std" else 1)
    if not A:
        return np.zeros((0, dim), np.float32), np.zeros((0, dim), np.float32), np.zeros(0, np.int64)
    return np.asarray(A, np.float32), np.asarray(B, np.float32), np.asarray(owner, np.int64)
