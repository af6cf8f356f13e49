"""Synthetic grouped stores for the spaces tests: the group signal hides under larger nuisance variance."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from embedkit.store import write_arrays


def grouped(n_groups: int = 10, per_group: int = 6, n_patches: int = 8, d: int = 32, *, signal: int = 6,
            seed: int = 0) -> tuple[np.ndarray, list[np.ndarray], np.ndarray]:
    """``(track vectors (n, d), per-track patch vectors [(n_patches, d)], group of each track (n,))``.

    Group identity lives in ``signal`` dims; the other dims carry recording-level nuisance with 3x the
    spread, and every vector is shifted by a large common offset (ReLU-like all-positive features).
    """
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(n_groups, signal))
    tracks, patches, groups = [], [], []
    for g in range(n_groups):
        for _ in range(per_group):
            rec = np.r_[centres[g] + 0.5 * rng.normal(size=signal), 3.0 * rng.normal(size=d - signal)]
            p = rec + 0.3 * rng.normal(size=(n_patches, d)) + 6.0
            patches.append(p.astype(np.float32))
            tracks.append(p.mean(axis=0))
            groups.append(f"g{g}")
    return np.asarray(tracks, np.float32), patches, np.asarray(groups)


def grouped_store(path: Path, *, fingerprint: str = "test", patches: bool = True, seed: int = 0, **kw):
    """A store of `grouped` tracks (paths /music/gK/tI.ogg) and the groups CSV beside it; returns (store, csv path)."""
    X, P, g = grouped(seed=seed, **kw)
    paths = [f"/music/{gg}/t{i}.ogg" for i, gg in enumerate(g)]
    st = write_arrays(path, paths, X, model="rand", fingerprint=fingerprint, patch=P if patches else None)
    csv = path.parent / f"{path.name}-groups.csv"
    csv.write_text("path,album\n" + "".join(f"{p},{gg}\n" for p, gg in zip(paths, g)))
    return st, csv
