"""On-the-fly augmentation, each switchable and seeded; every transform keeps length, rate and finiteness.

Waveform transforms act on a 16 kHz mono excerpt ``(n,) float32`` and return ``(n,) float32``:

==============  =======================================================  ==========================
name            what                                                      default range (hard bound)
==============  =======================================================  ==========================
``pitch``       pitch shift, python-stretch (Signalsmith Stretch, MIT)    ±2 semitones (±4)
``stretch``     time stretch, python-stretch, then cropped/tiled to n     ×0.9–1.1 tempo (0.8–1.25)
``gain``        gain                                                      ±6 dB (±12)
``noise``       additive white noise                                      SNR 20–40 dB (≥ 10 dB)
==============  =======================================================  ==========================

The bounds keep a tag's meaning (a 4-semitone shift or a 25 % tempo change still sounds like the same
kind of music; larger ones stop doing so for tempo- or key-sensitive labels). Model-input transforms:
``specaugment`` (SpecAugment-style masks: 2 time masks of ≤ 10 % of the frames and, for log-mel, 2
frequency masks of ≤ 12 bands, filled with the patch mean) on one input ``(frames, 96)`` or ``(samples,)``;
``mixup`` (Zhang et al. 2018, λ ~ Beta(0.2, 0.2)) mixes pairs of a batch and their targets.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

NAMES = ("pitch", "stretch", "gain", "noise", "specaugment", "mixup")
BOUNDS = {"pitch": 4.0, "stretch": (0.8, 1.25), "gain": 12.0, "noise": 10.0}


@dataclass(frozen=True)
class AugmentConfig:
    """Which transforms run (``enabled``) and their ranges; validated against `BOUNDS`."""

    enabled: frozenset[str] = frozenset()
    pitch_semitones: float = 2.0
    stretch: tuple[float, float] = (0.9, 1.1)
    gain_db: float = 6.0
    snr_db: tuple[float, float] = (20.0, 40.0)
    time_mask: float = 0.1
    freq_mask: int = 12
    mixup_alpha: float = 0.2
    sr: int = 16000
    _checked: bool = field(default=False, repr=False, compare=False)

    @classmethod
    def parse(cls, spec: str | None, **ranges) -> AugmentConfig:
        """From ``"pitch,gain,mixup"`` / ``"all"`` / ``"none"`` / None (= none)."""
        if spec is None or spec.strip().lower() in ("", "none"):
            names: set[str] = set()
        elif spec.strip().lower() == "all":
            names = set(NAMES)
        else:
            names = {s.strip().lower() for s in spec.split(",") if s.strip()}
            bad = sorted(names - set(NAMES))
            if bad:
                raise ValueError(f"unknown augmentation {', '.join(bad)}; choose from {', '.join(NAMES)}, all, none")
        cfg = cls(enabled=frozenset(names), **ranges)
        cfg.check()
        return cfg

    def check(self) -> None:
        if not 0 <= self.pitch_semitones <= BOUNDS["pitch"]:
            raise ValueError(f"pitch shift ±{self.pitch_semitones} semitones is outside ±{BOUNDS['pitch']}")
        lo, hi = self.stretch
        if not (BOUNDS["stretch"][0] <= lo <= hi <= BOUNDS["stretch"][1]):
            raise ValueError(f"time stretch {lo}–{hi} is outside {BOUNDS['stretch'][0]}–{BOUNDS['stretch'][1]}")
        if not 0 <= self.gain_db <= BOUNDS["gain"]:
            raise ValueError(f"gain ±{self.gain_db} dB is outside ±{BOUNDS['gain']} dB")
        if min(self.snr_db) < BOUNDS["noise"]:
            raise ValueError(f"noise SNR {self.snr_db} dB goes below {BOUNDS['noise']} dB")

    def on(self, name: str) -> bool:
        return name in self.enabled

    def to_json(self) -> dict:
        return {"enabled": sorted(self.enabled), "pitch_semitones": self.pitch_semitones, "stretch": list(self.stretch),
                "gain_db": self.gain_db, "snr_db": list(self.snr_db), "time_mask": self.time_mask,
                "freq_mask": self.freq_mask, "mixup_alpha": self.mixup_alpha}


def _fit_length(y: np.ndarray, n: int) -> np.ndarray:
    """Crop or tile ``y`` to exactly ``n`` samples."""
    if y.size >= n:
        return y[:n]
    return np.tile(y, -(-n // max(1, y.size)))[:n] if y.size else np.zeros(n, np.float32)


def _signalsmith(y: np.ndarray, sr: int, *, semitones: float = 0.0, tempo: float = 1.0) -> np.ndarray:
    """python-stretch on one mono signal; latency trimmed; length is ``len(y) / tempo`` before fitting."""
    try:
        import python_stretch.Signalsmith as S
    except ImportError:
        from ..errors import EmbedkitError

        raise EmbedkitError("pitch/stretch augmentation needs python-stretch: pip install 'embedkit[train]'") from None

    s = S.Stretch()
    s.preset(1, float(sr), True)
    if semitones:
        s.setTransposeSemitones(float(semitones))
    if tempo != 1.0:
        s.setTimeFactor(float(tempo))
    lat = int(s.inputLatency() + s.outputLatency())
    padded = np.concatenate([y, np.zeros(int(lat * tempo) + 1, np.float32)])[None, :]
    out = s.process(np.ascontiguousarray(padded, dtype=np.float32))[0]
    return out[lat:]


def pitch_shift(y: np.ndarray, semitones: float, sr: int = 16000) -> np.ndarray:
    """Shift pitch by ``semitones`` (|s| ≤ 4), same length and rate."""
    if abs(semitones) > BOUNDS["pitch"]:
        raise ValueError(f"pitch shift {semitones} outside ±{BOUNDS['pitch']} semitones")
    return _fit_length(_signalsmith(y, sr, semitones=semitones), y.size).astype(np.float32)


def time_stretch(y: np.ndarray, rate: float, sr: int = 16000) -> np.ndarray:
    """Play ``rate`` times faster (0.8–1.25), then crop/tile back to ``len(y)`` samples."""
    lo, hi = BOUNDS["stretch"]
    if not lo <= rate <= hi:
        raise ValueError(f"time stretch {rate} outside {lo}–{hi}")
    return _fit_length(_signalsmith(y, sr, tempo=rate), y.size).astype(np.float32)


def add_noise(y: np.ndarray, snr_db: float, rng: np.random.Generator) -> np.ndarray:
    power = float(np.mean(np.square(y, dtype=np.float64))) or 1e-10
    noise = rng.standard_normal(y.size) * np.sqrt(power / 10 ** (snr_db / 10))
    return (y + noise).astype(np.float32)


def augment_waveform(y: np.ndarray, cfg: AugmentConfig, rng: np.random.Generator) -> np.ndarray:
    """Apply the enabled waveform transforms in a fixed order (stretch, pitch, gain, noise)."""
    y = np.asarray(y, np.float32)
    if cfg.on("stretch"):
        y = time_stretch(y, float(rng.uniform(*cfg.stretch)), cfg.sr)
    if cfg.on("pitch") and cfg.pitch_semitones:
        y = pitch_shift(y, float(rng.uniform(-cfg.pitch_semitones, cfg.pitch_semitones)), cfg.sr)
    if cfg.on("gain"):
        y = (y * 10 ** (rng.uniform(-cfg.gain_db, cfg.gain_db) / 20)).astype(np.float32)
    if cfg.on("noise"):
        y = add_noise(y, float(rng.uniform(*cfg.snr_db)), rng)
    return np.nan_to_num(y, nan=0.0, posinf=0.0, neginf=0.0)


def spec_augment(x: np.ndarray, cfg: AugmentConfig, rng: np.random.Generator) -> np.ndarray:
    """Masks on one model input: ``(frames, bands)`` log-mel or ``(samples,)`` waveform; same shape."""
    x = np.array(x, np.float32, copy=True)
    fill = float(x.mean())
    t = x.shape[0]
    for _ in range(2):
        w = int(rng.integers(0, max(1, int(cfg.time_mask * t)) + 1))
        s = int(rng.integers(0, max(1, t - w) + 1))
        x[s:s + w] = fill
    if x.ndim == 2:
        f = x.shape[1]
        for _ in range(2):
            w = int(rng.integers(0, min(cfg.freq_mask, f) + 1))
            s = int(rng.integers(0, max(1, f - w) + 1))
            x[:, s:s + w] = fill
    return x


def mixup(x: np.ndarray, y: np.ndarray, alpha: float, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Mix each item with a shuffled partner: ``λx + (1-λ)x'``, same for the (soft / one-hot) targets."""
    lam = rng.beta(alpha, alpha, size=x.shape[0]).astype(np.float32)
    perm = rng.permutation(x.shape[0])
    lx = lam.reshape((-1,) + (1,) * (x.ndim - 1))
    ly = lam.reshape((-1,) + (1,) * (y.ndim - 1))
    return (lx * x + (1 - lx) * x[perm]).astype(np.float32), (ly * y + (1 - ly) * y[perm]).astype(np.float32)
