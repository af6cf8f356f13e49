"""The collection options of ``embedkit embed ... --store STORE`` and the function that runs that mode.

The ``embed`` command (cli/embed_cmd.py) wires it like this::

    @click.command("embed")
    @store_options                        # top-most: it skips options the command already has
    @click.argument("inputs", nargs=-1, type=click.Path())
    @model_option @layers_option @aggregate_option @batch_size_option @json_option
    @click.pass_context
    def embed(ctx, inputs, **params):
        if params.get("store"):
            return run_store_embed(ctx, inputs, **params)
        ...
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

import click
from click.core import ParameterSource

from ._common import PartialFailure, emit_json, progress_enabled

#: name -> click.Option factory, in help order.
_OPTIONS: list[tuple[str, Callable[[], click.Option]]] = [
    ("store", lambda: click.Option(
        ["--store"], type=click.Path(file_okay=False), default=None, metavar="STORE",
        help="Embed into this resumable store folder (created on first use). A rerun skips files already "
             "embedded, recognises moved files by content hash, and embeds only what is new.")),
    ("from_list", lambda: click.Option(
        ["--from-list"], type=click.Path(allow_dash=True, dir_okay=False), default=None, metavar="FILE",
        help="Also embed the files/folders listed in FILE, one per line ('-' = stdin).")),
    ("extensions", lambda: click.Option(
        ["--ext", "extensions"], default=None, metavar="LIST",
        help="Extensions to take when walking folders, e.g. 'ogg,flac' (default: all common audio formats).")),
    ("globs", lambda: click.Option(
        ["--glob", "globs"], multiple=True, metavar="PATTERN",
        help="Only walked files whose name or relative path matches PATTERN (repeatable; overrides --ext).")),
    ("exclude", lambda: click.Option(
        ["--exclude"], multiple=True, metavar="PATTERN", help="Skip walked files matching PATTERN (repeatable).")),
    ("include_hidden", lambda: click.Option(
        ["--hidden", "include_hidden"], is_flag=True, help="Also walk hidden files and folders (names starting with '.').")),
    ("workers", lambda: click.Option(
        ["--workers"], type=click.IntRange(1, 64), default=2, show_default=True,
        help="Decoding threads running ahead of the network.")),
    ("excerpt", lambda: click.Option(
        ["--excerpt"], type=click.FloatRange(min=0), default=None, metavar="SECONDS",
        help="Embed only a centred excerpt of this many seconds of each file (MSD used 30-s previews).")),
    ("patches", lambda: click.Option(
        ["--patches"], is_flag=True, help="Also keep every 3-s patch vector (new store only; ~100× the space).")),
    ("tags", lambda: click.Option(
        ["--tags"], is_flag=True, help="Also keep the 50 tag probabilities of each file (new store only).")),
    ("retry_failed", lambda: click.Option(
        ["--retry-failed"], is_flag=True, help="Retry files that failed in an earlier run (default: skip them).")),
    ("wait", lambda: click.Option(
        ["--wait"], type=click.FloatRange(min=0), default=0.0, metavar="SECONDS",
        help="If another process is writing the store, wait up to SECONDS for it (default: fail at once).")),
]

#: parameters `run_store_embed` understands (others given explicitly are refused with --store).
_KNOWN = {name for name, _ in _OPTIONS} | {
    "model", "layers", "aggregate", "batch_size", "as_json", "excerpt_s", "workers", "include_tags", "quiet",
    "verbose",
}


def store_options(f: Callable) -> Callable:
    """Add the collection options (and ``--json``) to a click command, skipping ones it already has.

    Apply it as the top-most option decorator (just under ``@click.command``) so that it sees the others.
    """
    params = f.__dict__.setdefault("__click_params__", [])
    have = {p.name for p in params}
    # click lists options in the reverse order of this list: prepend ours so they come after the command's own.
    new = [make() for name, make in reversed(_OPTIONS) if name not in have]
    if "as_json" not in have:
        new.insert(0, click.Option(["--json", "as_json"], is_flag=True, help="Machine-readable JSON on stdout."))
    params[:0] = new
    return f


def _given(ctx: click.Context, name: str) -> bool:
    src = ctx.get_parameter_source(name)
    return src is not None and src not in (ParameterSource.DEFAULT, ParameterSource.DEFAULT_MAP)


def run_store_embed(ctx: click.Context, inputs: tuple[str, ...] | list[str], **params: Any) -> dict:
    """Run ``embed --store``: embed ``inputs`` into the store, print the summary, exit 3 if files failed.

    ``params`` are the command's own keyword arguments (all of them; unknown ones given explicitly are
    refused). Settings left at their defaults (model, layers, aggregate, excerpt) reuse the store's.
    """
    from embedkit.collection import embed_into_store, format_summary

    for name in params:
        if name not in _KNOWN and _given(ctx, name):
            raise click.UsageError(f"--{name.replace('_', '-')} cannot be used with --store", ctx=ctx)
    if not inputs and not params.get("from_list"):
        raise click.UsageError("give files or folders to embed, or --from-list FILE", ctx=ctx)

    def opt(name: str) -> Any:
        return params.get(name) if name in params and _given(ctx, name) else None

    excerpt = opt("excerpt") if "excerpt" in params else opt("excerpt_s")
    as_json = bool(params.get("as_json"))
    summary = embed_into_store(
        list(inputs),
        params["store"],
        model=opt("model"),
        layers=opt("layers"),
        aggregate=opt("aggregate"),
        excerpt_s=excerpt,
        patches=bool(params.get("patches")) or None,
        tags=bool(params.get("tags") or params.get("include_tags")) or None,
        from_list=params.get("from_list"),
        extensions=params.get("extensions"),
        globs=params.get("globs") or None,
        exclude=params.get("exclude") or None,
        include_hidden=bool(params.get("include_hidden")),
        workers=int(params.get("workers") or 2),
        batch_size=int(params.get("batch_size") or 32),
        retry_failed=bool(params.get("retry_failed")),
        wait=float(params.get("wait") or 0.0),
        progress=progress_enabled(ctx),
    )
    if as_json:
        emit_json(summary)
    else:
        click.echo(format_summary(summary))
    if summary["failed"]:
        n = summary["failed"]
        raise PartialFailure(f"{n} file{'s' if n != 1 else ''} failed; fix them and rerun with --retry-failed")
    return summary
