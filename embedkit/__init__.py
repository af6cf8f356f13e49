"""embedkit: music transfer learning with MSD-pretrained CNN embeddings.

Importing embedkit is cheap: TensorFlow, Keras and FAISS load only when a model or index is used.

>>> from embedkit import Embedder                      # doctest: +SKIP
>>> emb = Embedder.from_pretrained("msd_vgg")           # doctest: +SKIP
>>> emb.embed_file("song.ogg").vector.shape             # doctest: +SKIP
(640,)
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ._version import __version__

if TYPE_CHECKING:  # pragma: no cover
    from .embedder import Embedder, FileFailure, TrackEmbedding

_LAZY = {
    "Embedder": ("embedkit.embedder", "Embedder"),
    "TrackEmbedding": ("embedkit.embedder", "TrackEmbedding"),
    "FileFailure": ("embedkit.embedder", "FileFailure"),
    "FeatureLayout": ("embedkit.features", "FeatureLayout"),
    "Store": ("embedkit.store", "Store"),
}

__all__ = ["__version__", *_LAZY]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        module, attr = _LAZY[name]
        return getattr(importlib.import_module(module), attr)
    raise AttributeError(f"module 'embedkit' has no attribute {name!r}")
