"""Teachers for distillation: one pretrained model or the ensemble of the four musicnn models.

A teacher turns a 16 kHz signal into per-patch soft tags ``(n_patches, n_labels)`` and per-patch features
``(n_patches, D)`` on embedkit's 2.99-s patch grid. The ensemble averages the two models of each label set
(MSD: msd_vgg + msd_musicnn; MTT: mtt_vgg + mtt_musicnn) and concatenates the two label sets (MTT labels
carry a ``mtt:`` prefix); its features are msd_vgg's.
"""
from __future__ import annotations

import numpy as np

ENSEMBLE = "ensemble"
ENSEMBLE_MODELS = (("msd_vgg", "msd_musicnn"), ("mtt_vgg", "mtt_musicnn"))


def check(name: str) -> list[str]:
    """The pretrained models a teacher needs; raises the one-line `WeightsMissingError` if one is missing."""
    from embedkit import pretrained

    models = [m for pair in ENSEMBLE_MODELS for m in pair] if name == ENSEMBLE else [pretrained.check_name(name)]
    for m in models:
        pretrained.weights_path(m, verify=False)
    return models


class Teacher:
    """Callable: ``teacher(y16)`` → ``(tags (n, L) float32, features (n, D) float32)``."""

    def __init__(self, name: str, *, batch_size: int = 32) -> None:
        from embedkit import Embedder

        self.name = name
        check(name)
        if name == ENSEMBLE:
            self._groups = [[Embedder.from_pretrained(m, batch_size=batch_size) for m in pair] for pair in ENSEMBLE_MODELS]
            self.labels = list(self._groups[0][0].labels) + [f"mtt:{t}" for t in self._groups[1][0].labels]
        else:
            self._groups = [[Embedder.from_pretrained(name, batch_size=batch_size)]]
            self.labels = list(self._groups[0][0].labels)
        self.feature_model = self._groups[0][0]

    def __call__(self, y16: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        tags, feats = [], None
        for group in self._groups:
            outs = [e.embed_audio(y16, 16000, return_patches=True) for e in group]
            tags.append(np.mean([o.patch_tags for o in outs], axis=0))
            if feats is None:
                feats = outs[0].patch_vectors
        return np.concatenate(tags, axis=1).astype(np.float32), np.asarray(feats, np.float32)
