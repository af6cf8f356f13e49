"""``embedkit serve``: a local web page to explore a store — map, listen, tags, heads, neighbours.

    from embedkit.serve import Collection, create_app
    app = create_app(Collection("music.ekstore"))      # a Starlette (ASGI) app; run it with uvicorn

Modules, one job each: `collection` (what the server knows about a store and the library calls it
makes: `embedkit.search`, `embedkit.recommend`, `embedkit.heads`, `embedkit.highlight`), `files`
(which files may be sent, transcoding), `app` (routes and the JSON API, documented in docs/serve.md),
``static/`` (the page: hand-written HTML, CSS and a canvas map renderer, no CDN). The map layout
itself is `embedkit.layout2d`. Needs the ``serve`` extra: ``pip install 'embedkit[serve]'``.
"""
from __future__ import annotations

from typing import Any

__all__ = ["Collection", "create_app", "app_for_store"]


def __getattr__(name: str) -> Any:
    if name == "Collection":
        from .collection import Collection

        return Collection
    if name in ("create_app", "app_for_store"):
        from . import app

        return getattr(app, name)
    raise AttributeError(name)
