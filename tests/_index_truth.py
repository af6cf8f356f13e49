"""Ground truth for the index tests, computed here by brute force (independently of the library)."""
from __future__ import annotations

import numpy as np


def exact_neighbours(x: np.ndarray, q: np.ndarray, k: int) -> np.ndarray:
    """Rows of ``x`` ``(n, d)`` nearest each query ``q`` ``(m, d)`` by cosine → ``(m, k)`` indices (ties: lower row)."""
    xn = x / np.linalg.norm(x, axis=1, keepdims=True)
    qn = q / np.linalg.norm(q, axis=1, keepdims=True)
    return np.argsort(-(qn @ xn.T), axis=1, kind="stable")[:, :k]


def recall(found: np.ndarray, truth: np.ndarray) -> float:
    """Mean fraction of each truth row found in the matching ``found`` row (recall@k, k = truth's width)."""
    return float(np.mean([len(set(a) & set(b)) / len(b) for a, b in zip(found, truth)]))
