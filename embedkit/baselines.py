"""Choi et al.'s (ISMIR 2017) MFCC baseline: 20 MFCCs + Δ + ΔΔ, mean and std over frames → 120 values.

Implemented with numpy/scipy on top of `embedkit.frontend`'s Slaney mel filterbank (librosa is not
a dependency: it would pull numba), following librosa's defaults scaled to the model's 16 kHz:

    16 kHz mono → STFT (n_fft 1024 = 64 ms, hop 256 = 16 ms, periodic Hann, centred, reflect pad)
    → power → 128 Slaney mel bands (0–8 kHz) → dB (``10·log10(max(S, 1e-10))``, floored 80 dB below
    the clip's peak, as ``librosa.power_to_db(top_db=80)``) → DCT-II (orthonormal) → first 20
    → Δ and ΔΔ (Savitzky–Golay, 9 frames, as ``librosa.feature.delta``) → mean and std over frames.

Output layout (120 columns): ``mfcc_mean`` [0:20], ``delta_mean`` [20:40], ``delta2_mean`` [40:60],
``mfcc_std`` [60:80], ``delta_std`` [80:100], ``delta2_std`` [100:120] (`MFCC_LAYOUT`).
"""
from __future__ import annotations

import os
from collections.abc import Iterable, Iterator

import numpy as np

SR = 16000
N_FFT = 1024
HOP = 256
N_MELS = 128
N_MFCC = 20
DELTA_WIDTH = 9
TOP_DB = 80.0

MFCC_LAYOUT = [
    {"name": name, "start": 20 * i, "stop": 20 * (i + 1)}
    for i, name in enumerate(["mfcc_mean", "delta_mean", "delta2_mean", "mfcc_std", "delta_std", "delta2_std"])
]
DIM = 6 * N_MFCC


def mfcc(y: np.ndarray, *, sr: int = SR, n_mfcc: int = N_MFCC) -> np.ndarray:
    """MFCCs of a 16 kHz mono signal ``(n,)`` → ``(frames, n_mfcc) float64``, frames = 1 + n // 256."""
    from scipy.fft import dct

    from .frontend import mel_filterbank

    y = np.asarray(y, dtype=np.float64)
    if y.ndim != 1 or y.size == 0:
        raise ValueError(f"mfcc expects a non-empty 1-D signal, given y.shape={y.shape}")
    pad = N_FFT // 2
    padded = np.pad(y, pad, mode="reflect" if y.size > pad else "constant")
    n_frames = 1 + y.size // HOP
    frames = np.lib.stride_tricks.sliding_window_view(padded[: (n_frames - 1) * HOP + N_FFT], N_FFT)[::HOP]
    window = 0.5 - 0.5 * np.cos(2.0 * np.pi * np.arange(N_FFT) / N_FFT)  # periodic Hann
    power = np.abs(np.fft.rfft(frames * window, axis=1)) ** 2
    mel = power @ mel_filterbank(sr, N_FFT, N_MELS, sr / 2).astype(np.float64)
    db = 10.0 * np.log10(np.maximum(mel, 1e-10))
    db = np.maximum(db, db.max() - TOP_DB)
    return dct(db, type=2, norm="ortho", axis=1)[:, :n_mfcc]


def deltas(c: np.ndarray, *, order: int = 1, width: int = DELTA_WIDTH) -> np.ndarray:
    """``librosa.feature.delta`` along frames (axis 0): Savitzky–Golay derivative, ``mode="interp"``.

    Clips shorter than ``width`` frames use the widest odd window that fits (at least 3 frames).
    """
    from scipy.signal import savgol_filter

    n = c.shape[0]
    w = min(width, n if n % 2 else n - 1)
    if w < 3 or w <= order:
        return np.zeros_like(c)
    return savgol_filter(c, w, polyorder=order, deriv=order, axis=0, mode="interp")


def mfcc_stats(y: np.ndarray, sr: int = SR) -> np.ndarray:
    """The 120-value baseline vector of a signal (any rate; resampled to 16 kHz), float32."""
    from .audio import to_mono_resampled

    y16 = to_mono_resampled(y, sr, target_sr=SR) if sr != SR or np.asarray(y).ndim != 1 else np.asarray(y, np.float32)
    c = mfcc(y16)
    feats = [c, deltas(c, order=1), deltas(c, order=2)]
    return np.concatenate([f.mean(axis=0) for f in feats] + [f.std(axis=0) for f in feats]).astype(np.float32)


def mfcc_file(path: str | os.PathLike, *, offset_s: float = 0.0, duration_s: float | None = None) -> np.ndarray:
    """`mfcc_stats` of a file (or an excerpt of it); raises `embedkit.errors.AudioError` on bad files."""
    from .audio import load

    return mfcc_stats(load(path, sr=SR, offset_s=offset_s, duration_s=duration_s), SR)


def mfcc_files(paths: Iterable[str | os.PathLike], *, workers: int = 2) -> Iterator[tuple[str, np.ndarray | str]]:
    """``(path, vector or one-line error)`` per file, in input order, decoded in ``workers`` threads."""
    from concurrent.futures import ThreadPoolExecutor

    from .errors import EmbedkitError

    def one(p: str) -> np.ndarray | str:
        try:
            return mfcc_file(p)
        except EmbedkitError as exc:
            return str(exc)

    paths = [str(p) for p in paths]
    with ThreadPoolExecutor(max_workers=max(1, workers)) as ex:
        yield from zip(paths, ex.map(one, paths))
