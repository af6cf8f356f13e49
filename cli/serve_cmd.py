"""``embedkit serve``: a local web page to explore a store; ``embedkit store map``: the same map as a picture."""
from __future__ import annotations

import ipaddress
import socket
import sys

import click

from ._common import emit_json

from .options import json_option, store_argument

LOOPBACK = ("127.0.0.1", "localhost", "::1")

index_name_option = click.option("--index", "index_name", default="default", show_default=True, metavar="NAME",
                                 help="Saved index to search with (exact search when the store has none).")
heads_option = click.option("--head", "heads", multiple=True, type=click.Path(exists=True), metavar="HEAD",
                            help="A saved head whose predictions are shown and can colour the map (repeatable).")
labels_option = click.option("--labels", "labels", multiple=True, type=click.Path(exists=True, dir_okay=False),
                             metavar="CSV", help="A labels file whose label/group columns can colour the map (repeatable).")
layout_option = click.option("--layout", "layout_method", type=click.Choice(["auto", "tsne", "pca"]), default="auto",
                             show_default=True, help="Map layout: t-SNE (openTSNE) or PCA; auto chooses by size.")


def _progress():  # type: ignore[no-untyped-def]
    """What the server is doing, on stderr (silenced by -q)."""
    import logging

    def say(msg: str) -> None:
        if logging.getLogger("embedkit").getEffectiveLevel() <= logging.WARNING:
            click.echo(f"embedkit: {msg}", err=True)

    return say


def _serve_deps() -> None:
    try:
        import starlette  # noqa: F401
        import uvicorn  # noqa: F401
    except ImportError:
        raise click.ClickException("'embedkit serve' needs the serve extra: pip install 'embedkit[serve]'") from None


def _is_loopback(host: str) -> bool:
    if host in LOOPBACK:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _check_port(host: str, port: int) -> None:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError as exc:
            raise click.ClickException(f"cannot listen on {host}:{port} ({exc.strerror or exc}); "
                                       f"choose another --port or --host") from None


@click.command("serve")
@store_argument
@index_name_option
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to listen on. Anything but localhost exposes your collection to the network.")
@click.option("--port", type=click.IntRange(0, 65535), default=8000, show_default=True, help="TCP port (0 = any free one).")
@click.option("--open", "open_browser", is_flag=True, help="Open the page in the default web browser.")
@heads_option
@labels_option
@layout_option
def serve(store_path: str, index_name: str, host: str, port: int, open_browser: bool, heads: tuple[str, ...],
          labels: tuple[str, ...], layout_method: str) -> None:
    """Explore STORE in a web page: a map coloured by tags / heads / labels / folder, listen, neighbours,
    query by a dropped audio file, recommendations from a pasted history.

    Read-only on the store (the map layout is cached in STORE/layout/). Serves only the audio files of
    the store's items, inside the collection's folders. Ctrl-C stops it. API: docs/serve.md.
    """
    _serve_deps()
    import uvicorn

    from embedkit.serve.app import create_app, tune_for_serving
    from embedkit.serve.collection import Collection

    tune_for_serving()
    if not _is_loopback(host):
        click.echo(f"embedkit: warning: listening on {host}: anyone who can reach this machine can browse and "
                   "download the collection's audio; use the default --host 127.0.0.1 unless you mean it", err=True)
    _check_port(host, port)
    say = _progress()
    col = Collection(store_path, index=index_name, heads=heads, labels=labels, layout_method=layout_method, progress=say)
    app = create_app(col, close_collection=True)
    config = uvicorn.Config(app, host=host, port=port, log_level="warning", access_log=False)
    server = uvicorn.Server(config)
    shown_host = f"[{host}]" if ":" in host else host

    def announce() -> None:
        real_port = port
        for s in getattr(server, "servers", []) or []:
            for sock in getattr(s, "sockets", []) or []:
                real_port = sock.getsockname()[1]
        url = f"http://{shown_host}:{real_port}/"
        click.echo(f"embedkit: serving {store_path} ({len(col.ids)} tracks) at {url}  (Ctrl-C stops)", err=True)
        if open_browser:
            import webbrowser

            webbrowser.open(url)

    _run(server, announce)


def _run(server, announce) -> None:  # type: ignore[no-untyped-def]
    """Run uvicorn, calling ``announce()`` once it listens."""
    import asyncio

    async def main() -> None:
        task = asyncio.create_task(server.serve())
        while not server.started and not task.done():
            await asyncio.sleep(0.05)
        if server.started:
            announce()
        await task

    try:
        asyncio.run(main())
    except KeyboardInterrupt:  # pragma: no cover - interactive
        pass
    if not server.started:
        sys.exit(1)


@click.command("map")
@store_argument
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False), help="Picture to write (.png, .svg, .pdf).")
@click.option("--color-by", "color_by", default=None, metavar="FIELD",
              help="Colour field: folder, duration, tag:top, tag:NAME, head:NAME, label:NAME, group:NAME "
                   "(default: a head or labels when given, else the top tag, else the folder).")
@heads_option
@labels_option
@layout_option
@click.option("--size", type=click.FloatRange(2, 40), default=8.0, show_default=True, help="Figure width and height (inches).")
@json_option
def store_map(store_path: str, output: str, color_by: str | None, heads: tuple[str, ...], labels: tuple[str, ...],
              layout_method: str, size: float, as_json: bool) -> None:
    """Draw the 2-D map of STORE (the layout 'embedkit serve' shows, same cache) into a picture."""
    from embedkit.layout2d import plot_map
    from embedkit.serve.collection import Collection

    say = _progress()
    col = Collection(store_path, heads=heads, labels=labels, layout_method=layout_method, progress=say, load_index=False)
    try:
        names = [f["name"] for f in col.field_list()]
        if color_by is None:
            color_by = next((n for n in names if n.startswith(("head:", "label:"))), "tag:top" if "tag:top" in names else "folder")
        if color_by not in names:
            raise click.UsageError(f"unknown --color-by {color_by!r}; choose one of {', '.join(names[:12])}"
                                   + (" …" if len(names) > 12 else ""))
        f = col.field(color_by)
        out = plot_map(col.layout.xy, output, kind=f.kind, codes=f.codes, categories=f.categories, values=f.values,
                       title=f"{col.store.path.name}: {len(col.ids)} tracks, {col.layout.method} map, colour: {f.label}",
                       size=size)
    finally:
        col.close()
    if as_json:
        emit_json({"store": store_path, "output": str(out), "items": int(len(col.ids)), "color_by": color_by,
                   "layout": col.layout.info})
    else:
        click.echo(f"{out}: map of {len(col.ids)} tracks ({col.layout.method}), coloured by {color_by}")
