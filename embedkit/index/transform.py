"""Vectors → index space (numpy only): L2-normalise (cosine), optional PCA / whitening, renormalise."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .base import METRICS

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

