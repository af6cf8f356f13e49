"""Embedding engines: where ``embed_into_store`` runs the network. The store's code does everything else.

* ``local`` (default): the embedder in this process (`embedkit.Embedder.embed_files`); needs no Ray.
* ``ray``: a Ray Data pipeline over a pool of embedder actors, on this machine or on a cluster
  (`embedkit.engines.ray_engine`; ``pip install 'embedkit[ray]'``).

An engine is a function ``wrap(embedder) -> embedder``: the returned object has the same ``embed_files``
(one result per path, in input order) and the same attributes as the embedder it wraps, so the store's
resume plan, hashing, failure records and commits stay the ones of `embedkit.collection`.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ..errors import EmbedkitError

ENGINES = ("local", "ray")
DEFAULT_ENGINE = "local"

Engine = Callable[[Any], Any]


class EngineUnavailableError(EmbedkitError):
    """The engine asked for cannot run here (Ray not installed, cluster unreachable)."""


def engine_for(name: str | None, *, address: str | None = None, **options: Any) -> Engine | None:
    """The engine ``name`` as a wrap function; None for the local engine (nothing to wrap).

    ``address``: a Ray cluster (``ray://HEAD:10001``, ``HOST:6379`` or ``auto``); None starts Ray on this
    machine. ``options``: `ray_engine.RayEmbedder` settings (``files_per_task``, ``actors``, ...).
    """
    name = (name or DEFAULT_ENGINE).lower()
    if name not in ENGINES:
        raise EmbedkitError(f"unknown engine {name!r}: use one of {', '.join(ENGINES)}")
    if name == "local":
        if address:
            raise EmbedkitError("--address needs --engine ray")
        return None
    from .ray_engine import RayEmbedder, require_ray

    require_ray()  # fail before any work when Ray is missing

    def wrap(emb: Any) -> Any:
        return RayEmbedder(emb, address=address, **options)

    return wrap


__all__ = ["DEFAULT_ENGINE", "ENGINES", "EngineUnavailableError", "engine_for"]
