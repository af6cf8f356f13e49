"""Exceptions of the store (every message is one line naming the store or the file, and the way out)."""
from __future__ import annotations

from ..errors import EmbedkitError
from ..spec import SpecMismatchError


class StoreError(EmbedkitError):
    """The store is missing, corrupt, locked or used the wrong way (message names the store)."""


class StoreExistsError(StoreError):
    """`Store.create` found a store already there."""


class StoreLockedError(StoreError):
    """Another process is writing this store."""


class StoreMismatchError(StoreError, SpecMismatchError):
    """The store was made with another model, preprocessing or settings than the caller's."""


class StoreCorruptError(StoreError):
    """A file of the store is damaged or disagrees with the others (message names it and the repair)."""


def verify_hint(store: object) -> str:
    """The way out for a damaged store."""
    return f"run: embedkit store verify {store} --repair"
