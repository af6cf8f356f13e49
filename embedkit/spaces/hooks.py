"""Spaces where similarity is used: the index's vector map, and vectors mapped for search / recommendation.

`SpaceMap` is what ``embedkit index build --space NAME`` hands to the index (`embedkit.index.binding`'s
vector-map hook): it maps store vectors and queries into the space, and its card names `load_map`,
which the index calls on open to get the same map back — refusing a space that was refit since
(fingerprint differs) or that does not fit the store's vectors.
"""
from __future__ import annotations

import logging
from typing import Any

import numpy as np

from .space import Space, SpaceError, load_space, space_path

LOADER = "embedkit.spaces.hooks:load_map"
log = logging.getLogger("embedkit.spaces")


class SpaceMap:
    """A `Space` as an index vector map: ``map(x (n, dim)) -> (n, out_dim) float32`` and ``card()``."""

    def __init__(self, space: Space, name: str, source: str = "tracks", condition: str | None = None) -> None:
        self.space = space
        self.name = name
        self.source = source
        self.condition = condition

    def __call__(self, x: np.ndarray) -> np.ndarray:
        return self.space.transform(x, condition=self.condition)

    def card(self) -> dict:
        sp = self.space
        return {"loader": LOADER, "name": self.name, "kind": sp.kind, "in_dim": sp.in_dim, "out_dim": sp.out_dim,
                "fingerprint": sp.fingerprint, "source": self.source, "condition": self.condition}


#: ``--space auto``: the zero-label baseline, chosen on the store's data and saved as space "auto".
AUTO = "auto"


def space_map(store: Any, name: str | None, *, source: str = "tracks", fit_auto: bool = False) -> SpaceMap | None:
    """The `SpaceMap` of space ``name`` of ``store`` (checked against the store's vectors); None for no space.

    ``fit_auto``: for ``name == "auto"``, (re)fit the zero-label baseline on the store first
    (`embedkit.spaces.fitting.fit_baseline`) and save it as space "auto" (what ``index build --space auto`` does).
    """
    if not name or name == "raw":
        return None
    condition = None
    if ":" in name:  # NAME:CONDITION: one subspace of a conditioned space
        base, cond = name.rsplit(":", 1)
        full, part = space_path(store, name), space_path(store, base)
        if not full.with_name(full.name + ".json").exists() and part.with_name(part.name + ".json").exists():
            name, condition = base, cond
    if name == AUTO and fit_auto:
        from .fitting import fit_baseline
        from .space import save_space

        sp, report = fit_baseline(store)
        save_space(store, sp, AUTO)
        log.info("space auto: %s (%s)", report["chosen"], report["reason"])
    sp = load_space(store, name, source=source)
    if condition is not None:
        sp.transform(np.zeros((1, sp.in_dim), np.float32), condition=condition)  # unknown condition: one-line error
    return SpaceMap(sp, name, source, condition)


def load_map(store: Any, card: dict) -> SpaceMap:
    """Index-side loader (named in index cards): the space the index was built with, unchanged since."""
    name = str(card.get("name") or "")
    full = name + (f":{card['condition']}" if card.get("condition") else "")
    m = space_map(store, full, source=str(card.get("source") or "tracks"))
    if m is None or m.space.fingerprint != card.get("fingerprint"):
        raise SpaceError(f"{m.space.path if m else name}: space {name!r} changed since the index was built with it; "
                         f"rebuild the index with 'embedkit index build {getattr(store, 'path', store)} --space {name} --rebuild'")
    return m


def map_vectors(store: Any, name: str | None, X: np.ndarray) -> np.ndarray:
    """``X`` of ``store`` mapped into space ``name`` (unchanged for None / "raw")."""
    m = space_map(store, name)
    return np.asarray(X, np.float32) if m is None else m(X)
