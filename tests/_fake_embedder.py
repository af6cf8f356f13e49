"""A tiny deterministic stand-in for `embedkit.Embedder` (same interface, no TensorFlow) for fast tests.

It decodes files with the real `embedkit.audio` (so broken files fail with the real reasons), cuts
3-s patches, and uses the RMS of 20 equal segments of each patch as a 20-value "feature"
(5 blocks × 4, named pool1..pool5). Tags are 5 numbers derived from the features.
"""
from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Iterable, Iterator

import numpy as np

from embedkit import audio
from embedkit.embedder import FileFailure, TrackEmbedding
from embedkit.errors import EmbedkitError
from embedkit.features import Block, FeatureLayout, aggregate

SR = 16000
PATCH = 3 * SR


class FakeEmbedder:
    name = "fake"
    precision = "fp32"
    sample_rate = SR
    labels = ["a", "b", "c", "d", "e"]
    layout = FeatureLayout(tuple(Block(f"pool{i}", 4) for i in range(1, 6)))

    def __init__(self, *, delay_s: float = 0.0, salt: str = "") -> None:
        self.delay_s = delay_s
        self.salt = salt
        self.calls = 0

    @property
    def fingerprint(self) -> str:
        return hashlib.sha256(f"fake-embedder-v1{self.salt}".encode()).hexdigest()

    def _patch_features(self, y: np.ndarray) -> tuple[np.ndarray, bool]:
        padded = y.size < PATCH
        if padded:
            y = np.tile(y, int(np.ceil(PATCH / y.size)))[:PATCH]
        n = y.size // PATCH
        p = y[: n * PATCH].reshape(n, 20, PATCH // 20).astype(np.float64)
        return np.sqrt((p**2).mean(axis=2)).astype(np.float32), padded

    def embed_file(self, path, *, layers=None, aggregate="mean", excerpt_s=None, return_patches=False):
        (r,) = list(self.embed_files([path], layers=layers, aggregate=aggregate, excerpt_s=excerpt_s,
                                     return_patches=return_patches))
        if isinstance(r, FileFailure):
            raise EmbedkitError(r.error)
        return r

    def embed_files(
        self,
        paths: Iterable[str | os.PathLike],
        *,
        layers=None,
        aggregate: str = "mean",
        excerpt_s: float | None = None,
        return_patches: bool = False,
        workers: int = 2,
    ) -> Iterator[TrackEmbedding | FileFailure]:
        names = self.layout.parse_layers(layers)
        for p in paths:
            p = str(p)
            self.calls += 1
            if self.delay_s:
                time.sleep(self.delay_s)
            try:
                info = audio.probe(p)
                offset, dur = 0.0, None
                if excerpt_s and info.duration_s and info.duration_s > excerpt_s:
                    offset, dur = (info.duration_s - excerpt_s) / 2, excerpt_s
                y = audio.load(p, sr=SR, offset_s=offset, duration_s=dur)
            except EmbedkitError as exc:
                yield FileFailure(p, str(exc))
                continue
            feats, padded = self._patch_features(y)
            sel = self.layout.select(feats, names)
            tags = 1 / (1 + np.exp(-feats[:, :5].mean(axis=0)))
            yield TrackEmbedding(
                path=p,
                vector=aggregate_fn(sel, aggregate),
                tags=tags.astype(np.float32),
                n_patches=int(feats.shape[0]),
                padded=padded,
                duration_s=y.size / SR,
                samplerate=info.samplerate,
                patch_vectors=sel if return_patches else None,
                patch_tags=None,
                patch_start_s=offset + 3.0 * np.arange(feats.shape[0]) if return_patches else None,
                offset_s=offset,
            )


aggregate_fn = aggregate
