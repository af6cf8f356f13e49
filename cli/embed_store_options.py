"""The collection mode of ``embedkit embed ... --store STORE``: its extra options and the function that runs it.

Every option is DEFINED in cli/options.py; this module only groups the ones that the collection mode adds to
``embed`` (``store_options``) and runs that mode (``run_store_embed``). The ``embed`` command (cli/embed_cmd.py)
wires it like this::

    @click.command("embed")
    @store_options                        # top-most: it skips options the command already has
    @click.argument("inputs", nargs=-1, type=click.Path())
    @store_option @excerpt_option @patches_option @workers_option
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
from .options import (
    exclude_option, excerpt_option, ext_option, from_list_option, glob_option, hidden_option, json_option, option_object,
    patches_option, retry_failed_option, store_option, tags_option, wait_option, workers_option,
)

#: name -> option decorator (from cli/options.py), in help order.
_OPTIONS: list[tuple[str, Callable]] = [
    ("store", store_option),
    ("from_list", from_list_option),
    ("extensions", ext_option),
    ("globs", glob_option),
    ("exclude", exclude_option),
    ("include_hidden", hidden_option),
    ("workers", workers_option),
    ("excerpt", excerpt_option),
    ("patches", patches_option),
    ("tags", tags_option),
    ("retry_failed", retry_failed_option),
    ("wait", wait_option),
]

#: parameters `run_store_embed` understands (others given explicitly are refused with --store).
_KNOWN = {name for name, _ in _OPTIONS} | {
    "model", "layers", "aggregate", "batch_size", "as_json", "excerpt_s", "workers", "include_tags", "quiet",
    "verbose", "precision", "engine", "address",
}


def store_options(f: Callable) -> Callable:
    """Add the collection options (and ``--json``) to a click command, skipping ones it already has.

    Apply it as the top-most option decorator (just under ``@click.command``) so that it sees the others.
    """
    params = f.__dict__.setdefault("__click_params__", [])
    have = {p.name for p in params}
    # click lists options in the reverse order of this list: prepend ours so they come after the command's own.
    new = [option_object(deco) for name, deco in reversed(_OPTIONS) if name not in have]
    if "as_json" not in have:
        new.insert(0, option_object(json_option))
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
    from embedkit.engines import engine_for

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
        precision=opt("precision"),
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
        engine=engine_for(params.get("engine"), address=params.get("address")),
    )
    if as_json:
        emit_json(summary)
    else:
        click.echo(format_summary(summary))
    if summary["failed"]:
        n = summary["failed"]
        raise PartialFailure(f"{n} file{'s' if n != 1 else ''} failed; fix them and rerun with --retry-failed")
    return summary
