"""Exceptions that embedkit raises on purpose.

Every message is one line and names the offending file or value, so that the CLI can print it as is.
"""
from __future__ import annotations


class EmbedkitError(Exception):
    """Base class: an error whose message is fit to show to a user as one line."""


class AudioError(EmbedkitError):
    """An audio file could not be read or is unusable (corrupt, empty, not audio, missing)."""

    def __init__(self, path: object, reason: str) -> None:
        self.path = str(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")


class WeightsMissingError(EmbedkitError):
    """Pretrained weights are not in the cache yet."""


class ModelMismatchError(EmbedkitError):
    """Two artefacts (store, index, head) were made with different models or preprocessing."""
