"""Index constants and errors shared by the planner, the vector index and the store binding."""
from __future__ import annotations

from ..errors import EmbedkitError, ModelMismatchError

KINDS = ("flat", "hnsw", "ivf", "ivfpq", "ivfpq_disk")
METRICS = ("cosine", "l2")
INDEX_DIR = "index"
CARD_FORMAT = 2

class IndexStateError(EmbedkitError):
    """An index is missing, unreadable, or does not fit its store."""


class IndexMissingError(IndexStateError):
    """No index of that name beside the store."""


class IndexStaleError(IndexStateError):
    """The store changed since the index was built (new, removed or re-embedded items)."""


class IndexMismatchError(IndexStateError, ModelMismatchError):
    """The index was built over vectors from other model/settings or of another dimension."""

