"""Store-level entry points behind ``embedkit metric``: fit a zero-label or a learned space on a store.

`fit_baseline(store)` chooses a zero-label space on the store's vectors (`zero_label`);
`fit_store(store, groups)` learns one from a groups file, or — with ``groups=None`` — from segments
of the same recording (needs per-patch vectors: a store embedded with ``--patches``). Both stamp the
store's vector spec into the space, so it is refused on vectors of another spec.
"""
from __future__ import annotations

import logging
from typing import Any

import numpy as np

from .groups import Groups
from .samples import halves, segments
from .space import Space, SpaceError
from .specs import store_spec
from .train import TrainConfig, fit_metric
from .zero_label import choose_zero_label

log = logging.getLogger("embedkit.spaces")

#: at most this many segments per recording are used for training (spread over the recording).
MAX_SEGMENTS = 12


def _patches(store: Any, ids: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray] | None:
    """``(item ids (m,), patch vectors (m, patch_dim))`` when the store has patches whose aggregate is a track vector."""
    if not getattr(store, "has_patches", False):
        return None
    item_ids, _, pv = store.patch_vectors(ids)
    agg = store.manifest.get("aggregation", "mean")
    if pv.shape[1] * (2 if agg == "mean+std" else 1) != store.dim:
        log.warning("%s: per-patch vectors (%d) do not aggregate to the track vectors (%d); using track vectors only",
                    store.path, pv.shape[1], store.dim)
        return None
    return np.asarray(item_ids, np.int64), pv


def fit_baseline(store: Any, *, seed: int = 0) -> tuple[Space, dict]:
    """Choose and fit the zero-label space of ``store`` (held-out self-retrieval proxy on its patches)."""
    ids = store.ids()
    if ids.size < 2:
        raise SpaceError(f"{store.path}: a space needs at least 2 embedded items, the store has {ids.size}")
    X = store.vectors(ids)
    A = B = fit_rows = None
    pp = _patches(store)
    if pp is not None:
        rng = np.random.default_rng(seed)
        held = np.zeros(ids.size, bool)
        held[rng.permutation(ids.size)[: ids.size // 2]] = True
        item_ids, pv = pp
        keep = np.isin(item_ids, ids[held])
        A, B, _ = halves(item_ids[keep], pv[keep], aggregation=store.manifest.get("aggregation", "mean"))
        fit_rows = np.flatnonzero(~held)
    space, report = choose_zero_label(X, A, B, fit_rows=fit_rows, seed=seed)
    space.spec = store_spec(store)
    space.info = {**space.info, "fitted_on": {"store": str(store.path), "tracks": int(ids.size)}}
    return space, report


def training_set(store: Any, groups: Groups | None, *, seg_patches: int = 3, max_segments: int = MAX_SEGMENTS,
                 ids: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray | None, dict]:
    """``(X, labels, recordings, description)`` to train on.

    With groups: segments of each grouped recording (labels = its group, recordings = its id) when the
    store has patches, else the track vectors. Without groups: segments labelled by their recording.
    """
    agg = store.manifest.get("aggregation", "mean")
    if groups is None:
        pp = _patches(store, ids)
        if pp is None:
            raise SpaceError(f"{store.path}: without a groups file a space is learnt from segments of the same "
                             f"recording, which needs per-patch vectors; embed with --patches or give GROUPS.csv")
        item_ids, pv = pp
        X, owner = segments(item_ids, pv, seg_patches, aggregation=agg, max_per_item=max_segments)
        keep = np.isin(owner, np.unique(owner)[np.unique(owner, return_counts=True)[1] >= 2])
        if np.unique(owner[keep]).size < 2:
            raise SpaceError(f"{store.path}: fewer than 2 recordings have {2 * seg_patches} patches or more; use a "
                             f"shorter --segment or give GROUPS.csv")
        return X[keep], owner[keep], None, {"mode": "self-supervised (segments of one recording)",
                                            "source": f"segments of {seg_patches} patches", "recordings": int(np.unique(owner[keep]).size)}
    pp = _patches(store, groups.ids)
    if pp is not None:
        item_ids, pv = pp
        X, owner = segments(item_ids, pv, seg_patches, aggregation=agg, max_per_item=max_segments)
        labels = groups.labels[np.searchsorted(groups.ids, owner)]
        return X, labels, owner, {"mode": "groups", "source": f"segments of {seg_patches} patches",
                                  "recordings": int(groups.ids.size), "groups": groups.n_groups}
    return (store.vectors(groups.ids), groups.labels, None,
            {"mode": "groups", "source": "track vectors", "recordings": int(groups.ids.size), "groups": groups.n_groups})


def fit_store(store: Any, groups: Groups | None = None, *, config: TrainConfig | None = None, seg_patches: int = 3,
              max_segments: int = MAX_SEGMENTS, ids: np.ndarray | None = None, progress: Any = None) -> Space:
    """Learn a space on ``store`` from ``groups`` (or self-supervised from segments of the items ``ids``,
    default all); see `training_set`."""
    X, labels, recordings, desc = training_set(store, groups, seg_patches=seg_patches, max_segments=max_segments, ids=ids)
    space, _ = fit_metric(X, labels, recordings=recordings, config=config, progress=progress)
    space.spec = store_spec(store)
    info = {**space.info, **desc, "fitted_on": {"store": str(store.path), "vectors": int(X.shape[0])}}
    if groups is not None:
        from ..sidecar import sha256_file

        from pathlib import Path

        digest = sha256_file(groups.source) if Path(groups.source).is_file() else None
        info["groups_file"] = {"path": groups.source, "sha256": digest, "column": groups.column,
                               "items": int(groups.ids.size), "groups": groups.n_groups, "skipped": len(groups.skipped)}
    space.info = info
    return space


def fit_store_conditioned(store: Any, groups: dict[str, Groups], *, config: TrainConfig | None = None,
                          seg_patches: int = 3, max_segments: int = MAX_SEGMENTS) -> Space:
    """Learn a conditioned space (`embedkit.spaces.conditioned`): one masked block per ``{condition: groups}``."""
    from .conditioned import fit_conditioned

    ids = np.unique(np.concatenate([g.ids for g in groups.values()]))
    pp = _patches(store, ids)
    if pp is not None:
        item_ids, pv = pp
        X, owner = segments(item_ids, pv, seg_patches, aggregation=store.manifest.get("aggregation", "mean"),
                            max_per_item=max_segments)
        rec, source = owner, f"segments of {seg_patches} patches"
    else:
        X, owner, rec, source = store.vectors(ids), ids, None, "track vectors"
    labels = {}
    for c, g in groups.items():
        lut = dict(zip(g.ids.tolist(), g.labels.tolist()))
        labels[c] = np.array([lut.get(int(i), "") for i in owner], dtype=object).astype(str)
    space, _ = fit_conditioned(X, labels, recordings=rec, config=config)
    space.spec = store_spec(store)
    space.info = {**space.info, "mode": f"conditioned ({', '.join(groups)})", "source": source,
                  "fitted_on": {"store": str(store.path), "vectors": int(X.shape[0])},
                  "groups_files": {c: {"path": g.source, "items": int(g.ids.size), "groups": g.n_groups} for c, g in groups.items()}}
    return space

