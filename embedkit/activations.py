"""Numerically stable sigmoid and softmax on NumPy arrays: the one place logits become probabilities
outside a Keras graph (heads' Platt scaling and scores, TFLite outputs, fidelity to a teacher)."""
from __future__ import annotations

import numpy as np


def sigmoid(z: np.ndarray) -> np.ndarray:
    """``1 / (1 + exp(-z))`` element-wise, float64, without overflow for large ``|z|``."""
    z = np.asarray(z, dtype=np.float64)
    out = np.empty_like(z)
    pos = z >= 0
    out[pos] = 1.0 / (1.0 + np.exp(-z[pos]))
    e = np.exp(z[~pos])
    out[~pos] = e / (1.0 + e)
    return out


def softmax(z: np.ndarray, axis: int = -1) -> np.ndarray:
    """Softmax along ``axis`` (rows of ``(n, classes)`` logits by default), float64; each row sums to 1."""
    z = np.asarray(z, dtype=np.float64)
    e = np.exp(z - z.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


def scores(logits: np.ndarray, activation: str) -> np.ndarray:
    """``(n, L) float32`` scores of logits under ``activation`` ("softmax" or "sigmoid", see
    `embedkit.inputs.output_activation`)."""
    return (softmax(logits, axis=1) if activation == "softmax" else sigmoid(logits)).astype(np.float32)
