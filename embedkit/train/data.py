"""Data pipeline: decode each track once into a run-folder cache, then sample patches on the fly (tf.data).

`prepare` decodes every track to 16 kHz mono float16 (``prep/<i>.npy``; only the middle ``excerpt_s`` seconds
when given) and, when distilling, stores the teacher's per-patch soft tags and features beside it
(``prep/<i>.teacher.npz``). Each file is written atomically, so a killed run resumes the preparation.
`PatchSampler` draws random windows of ``input_samples`` from memory-mapped tracks (bounded memory: one
batch and a prefetch queue of two), augments them, turns them into model inputs and attaches targets: the
track's label, or the teacher outputs of the patches the window overlaps, weighted by overlap.
"""
from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .. import frontend
from .augment import AugmentConfig, augment_waveform, mixup, spec_augment
from .sources import Track

PATCH_SAMPLES = frontend.PATCH_FRAMES * frontend.HOP  # teacher patch: 47,872 samples ≈ 2.99 s


@dataclass
class Prepared:
    """One decoded track: ``audio`` memory-mapped ``(n,) float16``; teacher ``tags``/``feats`` per patch."""

    track: Track
    audio: np.ndarray
    tags: np.ndarray | None = None
    feats: np.ndarray | None = None


def _save_atomic(path: Path, save) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "wb") as f:
        save(f)
    os.replace(tmp, path)


def prepare(tracks: list[Track], folder: Path, *, teacher=None, excerpt_s: float | None = None,
            progress: bool = False, log=None) -> list[Prepared]:
    """Decode (and teacher-label) every track into ``folder``; reuse files already there. Unreadable files
    are skipped with a one-line warning (``log``); returns the usable tracks in input order."""
    from .. import audio
    from ..errors import EmbedkitError
    from ..progress import bar

    folder.mkdir(parents=True, exist_ok=True)
    out: list[Prepared] = []
    for i, t in enumerate(bar(tracks, desc="decode" + (" + teacher" if teacher else ""), enabled=progress, unit="track")):
        wav = folder / f"{i:06d}.npy"
        tch = folder / f"{i:06d}.teacher.npz"
        try:
            if not wav.exists():
                off, dur = 0.0, None
                if excerpt_s:
                    total = audio.probe(t.path).duration_s or 0.0
                    off, dur = max(0.0, (total - excerpt_s) / 2), excerpt_s
                y = audio.load(t.path, sr=16000, offset_s=off, duration_s=dur)
                if y.size < frontend.HOP * 8:
                    raise EmbedkitError(f"{t.path}: too short to train on ({y.size / 16000:.2f} s)")
                _save_atomic(wav, lambda f: np.save(f, y.astype(np.float16)))
            y16 = np.load(wav, mmap_mode="r")
            if teacher is not None and not tch.exists():
                tags, feats = teacher(np.asarray(y16, np.float32))
                _save_atomic(tch, lambda f: np.savez(f, tags=tags, feats=feats))
            p = Prepared(t, y16)
            if teacher is not None:
                z = np.load(tch)
                p.tags, p.feats = z["tags"], z["feats"]
            out.append(p)
        except EmbedkitError as exc:
            (log or (lambda m: print(m, file=sys.stderr)))(f"skipping {exc}")
    return out


def window_teacher(p: Prepared, start: int, length: int) -> tuple[np.ndarray, np.ndarray]:
    """Teacher tags and features for samples ``[start, start + length)``: overlap-weighted patch mean."""
    n = p.tags.shape[0]
    first = min(n - 1, start // PATCH_SAMPLES)
    last = min(n - 1, max(first, (start + length - 1) // PATCH_SAMPLES))
    idx = np.arange(first, last + 1)
    lo = np.maximum(idx * PATCH_SAMPLES, start)
    hi = np.minimum((idx + 1) * PATCH_SAMPLES, start + length)
    w = np.maximum(hi - lo, 1).astype(np.float64)
    w /= w.sum()
    return (w @ p.tags[idx]).astype(np.float32), (w @ p.feats[idx]).astype(np.float32)


class PatchSampler:
    """Random training windows and fixed validation windows as model inputs with targets.

    ``kind``: ``"logmel"`` → ``x`` ``(b, frames, 96)``; ``"waveform"`` → ``(b, samples)``. ``targets``:
    ``"teacher"`` (soft tags + features) or ``"label"`` (``Track.target``). Windows are drawn with a
    generator seeded by ``(seed, epoch)``, so an epoch's batches are the same whether or not the run
    was interrupted before it.
    """

    def __init__(self, items: list[Prepared], *, kind: str, input_samples: int, targets: str,
                 augment: AugmentConfig | None = None, seed: int = 0, feat_mean=None, feat_std=None) -> None:
        self.items = items
        self.kind = kind
        self.input_samples = int(input_samples)
        self.targets = targets
        self.augment = augment or AugmentConfig()
        self.seed = int(seed)
        self.frames = self.input_samples // frontend.HOP if kind == "logmel" else None  # log-mel frames kept
        self.feat_mean, self.feat_std = feat_mean, feat_std
        lengths = np.array([max(1, it.audio.size) for it in items], np.float64)
        self._p = lengths / lengths.sum()

    # ---- one window ------------------------------------------------------------------------------

    def _slice(self, p: Prepared, start: int) -> np.ndarray:
        y = np.asarray(p.audio[start:start + self.input_samples], np.float32)
        if y.size < self.input_samples:  # a track shorter than the input: tile
            y = np.tile(y, -(-self.input_samples // max(1, y.size)))[: self.input_samples]
        return y

    def to_input(self, y: np.ndarray) -> np.ndarray:
        """A window ``(input_samples,)`` → model input (log-mel ``(frames, 96)`` or the waveform itself)."""
        if self.kind == "logmel":
            return frontend.logmel(y)[: self.frames]
        return y

    def _target(self, p: Prepared, start: int) -> tuple[np.ndarray, np.ndarray]:
        if self.targets == "teacher":
            tags, feats = window_teacher(p, start, self.input_samples)
            if self.feat_mean is not None:
                feats = (feats - self.feat_mean) / self.feat_std
            return tags, feats.astype(np.float32)
        return p.track.target, np.zeros(1, np.float32)

    def example(self, p: Prepared, start: int, rng: np.random.Generator | None) -> tuple:
        y = self._slice(p, start)
        if rng is not None:
            y = augment_waveform(y, self.augment, rng)
        x = self.to_input(y)
        if rng is not None and self.augment.on("specaugment"):
            x = spec_augment(x, self.augment, rng)
        t, f = self._target(p, start)
        return x.astype(np.float32), t, f

    # ---- batches ---------------------------------------------------------------------------------

    def epoch_batches(self, epoch: int, n_windows: int, batch_size: int) -> Iterator[tuple]:
        """``n_windows`` random windows of epoch ``epoch`` in batches ``(x, y, f)`` (numpy)."""
        rng = np.random.default_rng([self.seed, int(epoch)])
        for b0 in range(0, n_windows, batch_size):
            xs, ys, fs = [], [], []
            for _ in range(min(batch_size, n_windows - b0)):
                p = self.items[int(rng.choice(len(self.items), p=self._p))]
                start = int(rng.integers(0, max(1, p.audio.size - self.input_samples + 1)))
                x, t, f = self.example(p, start, rng)
                xs.append(x), ys.append(t), fs.append(f)
            x, y, f = np.stack(xs), np.stack(ys).astype(np.float32), np.stack(fs)
            if self.augment.on("mixup") and x.shape[0] > 1:
                state = rng.bit_generator.state
                x, y = mixup(x, y, self.augment.mixup_alpha, np.random.default_rng(rng.integers(1 << 31)))
                rng.bit_generator.state = state
            yield x, y, f

    def dataset(self, epoch: int, n_windows: int, batch_size: int):
        """The same batches as a ``tf.data.Dataset`` with a prefetch queue of two batches."""
        import tensorflow as tf

        x0, y0, f0 = self.example(self.items[0], 0, None)
        sig = (tf.TensorSpec((None, *x0.shape), tf.float32), tf.TensorSpec((None, *y0.shape), tf.float32),
               tf.TensorSpec((None, *f0.shape), tf.float32))
        ds = tf.data.Dataset.from_generator(lambda: self.epoch_batches(epoch, n_windows, batch_size), output_signature=sig)
        return ds.prefetch(2)

    def fixed_windows(self, per_track: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Validation: up to ``per_track`` non-overlapping windows from each track's start, no augmentation →
        ``(x, y, f, track_index)``."""
        xs, ys, fs, ti = [], [], [], []
        for k, p in enumerate(self.items):
            n = max(1, min(per_track, p.audio.size // self.input_samples))
            for j in range(n):
                x, t, f = self.example(p, j * self.input_samples, None)
                xs.append(x), ys.append(t), fs.append(f), ti.append(k)
        return np.stack(xs), np.stack(ys).astype(np.float32), np.stack(fs), np.asarray(ti)

    def windows_per_epoch(self) -> int:
        """One epoch ≈ the training audio once: total samples / window length (at least one batch)."""
        return max(8, int(sum(it.audio.size for it in self.items) // self.input_samples))
