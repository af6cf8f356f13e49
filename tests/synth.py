"""Synthesized test audio (made by the tests themselves, so it may be committed)."""
from __future__ import annotations

import numpy as np


def tone(freq: float = 440.0, seconds: float = 4.0, sr: int = 16000, *, amp: float = 0.3, noise: float = 0.0,
         seed: int = 0) -> np.ndarray:
    """A sine tone (plus optional white noise), ``(n,) float32``."""
    t = np.arange(int(seconds * sr)) / sr
    y = amp * np.sin(2 * np.pi * freq * t)
    if noise:
        y = y + noise * np.random.default_rng(seed).standard_normal(t.size)
    return y.astype(np.float32)
