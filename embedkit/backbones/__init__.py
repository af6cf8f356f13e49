"""Keras 3 definitions of the pretrained networks. Importing a submodule imports Keras/TensorFlow."""
from __future__ import annotations

from typing import Any

ARCHITECTURES = ("vgg", "musicnn")


def build(architecture: str, **kwargs: Any):
    """Build an uninitialised Keras model for ``architecture`` ("vgg" or "musicnn")."""
    if architecture == "vgg":
        from .vgg import build_vgg

        return build_vgg(**kwargs)
    if architecture == "musicnn":
        from .musicnn import build_musicnn

        return build_musicnn(**kwargs)
    raise ValueError(f"unknown architecture {architecture!r}; expected one of {ARCHITECTURES}")
