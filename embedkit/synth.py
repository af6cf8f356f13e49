"""Synthesized music-like example audio (made here, so it can be shipped and committed freely).

Three styles that a music model can tell apart: ``pads`` (slow chords of detuned saws through a soft
filter), ``beats`` (kick/snare/hi-hat patterns at 96–132 BPM) and ``arps`` (plucked Karplus–Strong arpeggios).
Every track is deterministic given its style, variant and rate.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

STYLES = ("pads", "beats", "arps")
_ROOTS = (110.0, 130.81, 146.83, 164.81, 196.0, 220.0)


def _chord_freqs(root: float, minor: bool) -> list[float]:
    third = 2 ** (3 / 12) if minor else 2 ** (4 / 12)
    return [root, root * third, root * 2 ** (7 / 12), root * 2]


def pads(seconds: float, sr: int, rng: np.random.Generator) -> np.ndarray:
    n = int(seconds * sr)
    t = np.arange(n) / sr
    y = np.zeros(n)
    chord_len = rng.uniform(2.0, 3.5)
    for k in range(int(seconds / chord_len) + 1):
        root = _ROOTS[rng.integers(len(_ROOTS))]
        start, stop = int(k * chord_len * sr), min(n, int((k + 1) * chord_len * sr))
        seg = t[: stop - start]
        env = np.minimum(1, seg / 0.6) * np.minimum(1, (seg[::-1] + 1e-3) / 0.6)
        for f in _chord_freqs(root, bool(rng.integers(2))):
            for detune in (0.997, 1.003):
                phase = (f * detune * seg + rng.random()) % 1.0
                y[start:stop] += env * (2 * phase - 1) * 0.06
    kernel = np.hanning(64)
    return np.convolve(y, kernel / kernel.sum(), mode="same")


def beats(seconds: float, sr: int, rng: np.random.Generator) -> np.ndarray:
    n = int(seconds * sr)
    y = np.zeros(n)
    bpm = rng.uniform(96, 132)
    step = 60.0 / bpm / 4  # sixteenth notes
    kick_t = np.arange(int(0.25 * sr)) / sr
    kick = np.sin(2 * np.pi * (50 + 90 * np.exp(-kick_t * 30)) * kick_t) * np.exp(-kick_t * 12)
    snare = rng.standard_normal(int(0.18 * sr)) * np.exp(-np.arange(int(0.18 * sr)) / sr * 25) * 0.5
    hat = np.diff(rng.standard_normal(int(0.05 * sr) + 1)) * np.exp(-np.arange(int(0.05 * sr)) / sr * 90) * 0.2
    pattern_kick = [0, 6, 8] if rng.integers(2) else [0, 8, 10]
    for i in range(int(seconds / step)):
        pos = int(i * step * sr)
        for hit, on in ((kick, i % 16 in pattern_kick), (snare, i % 16 in (4, 12)), (hat, i % 2 == 0)):
            if on and pos < n:
                m = min(hit.size, n - pos)
                y[pos : pos + m] += hit[:m]
    return 0.5 * y


def arps(seconds: float, sr: int, rng: np.random.Generator) -> np.ndarray:
    n = int(seconds * sr)
    y = np.zeros(n)
    note = rng.uniform(0.12, 0.2)
    root = _ROOTS[rng.integers(len(_ROOTS))] * 2
    freqs = _chord_freqs(root, bool(rng.integers(2)))
    order = freqs + freqs[-2:0:-1]
    for i in range(int(seconds / note)):
        f = order[i % len(order)] * (2 if (i // len(order)) % 2 else 1)
        period = max(2, int(sr / f))
        m = min(int(note * 3 * sr), n - int(i * note * sr))
        if m <= 0:
            break
        buf = rng.uniform(-1, 1, period)
        out = np.empty(m)
        for j in range(m):  # Karplus-Strong pluck
            out[j] = buf[j % period]
            buf[j % period] = 0.996 * 0.5 * (buf[j % period] + buf[(j + 1) % period])
        start = int(i * note * sr)
        y[start : start + m] += 0.25 * out
    return y


_MAKERS = {"pads": pads, "beats": beats, "arps": arps}


def track(style: str, variant: int = 0, *, seconds: float = 12.0, sr: int = 22050) -> np.ndarray:
    """One synthesized track, ``(round(seconds * sr),) float32`` in [-1, 1]."""
    if style not in _MAKERS:
        raise ValueError(f"unknown style {style!r}; expected one of {STYLES}")
    rng = np.random.default_rng([STYLES.index(style), variant])
    y = _MAKERS[style](seconds, sr, rng)
    peak = np.abs(y).max() or 1.0
    return (0.8 * y / peak).astype(np.float32)


def write_collection(folder: str | Path, *, per_style: int = 4, seconds: float = 12.0) -> list[tuple[Path, str]]:
    """Write ``per_style`` tracks of each style into ``folder/<style>/`` in mixed formats; returns (path, style)."""
    import soundfile as sf

    folder = Path(folder)
    formats = [("wav", {}), ("flac", {}), ("ogg", {"format": "OGG", "subtype": "VORBIS"})]
    out = []
    for style in STYLES:
        (folder / style).mkdir(parents=True, exist_ok=True)
        for v in range(per_style):
            ext, kw = formats[v % len(formats)]
            sr = (22050, 44100, 48000)[v % 3]
            path = folder / style / f"{style}_{v:02d}.{ext}"
            if not path.exists():
                sf.write(path, track(style, v, seconds=seconds, sr=sr), sr, **kw)
            out.append((path, style))
    return out
