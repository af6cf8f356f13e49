"""``embedkit similar``: the songs nearest to queries (stored ids/paths, audio files, vector files)."""
from __future__ import annotations

import sys

import click

from ._common import PartialFailure, display_path, emit_json
from .options import json_option, queries_option, segments_option, space_option, store_argument, top_k_option


@click.command("similar")
@store_argument
@click.argument("queries", metavar="QUERY...", nargs=-1)
@top_k_option
@queries_option
@click.option("--include-self", is_flag=True, help="Keep the query item itself in its results.")
@click.option("--exclude-same-folder", is_flag=True, help="Drop results from the query's folder (album).")
@click.option("--min-duration", type=click.FloatRange(0), default=None, metavar="S", help="Only results at least S seconds long.")
@click.option("--max-duration", type=click.FloatRange(0), default=None, metavar="S", help="Only results at most S seconds long.")
@segments_option  # which part of which song sounds like each clip
@click.option("--index", "index_name", default="default", show_default=True, help="Saved index to use (exact search if "
              "'default' does not exist).")
@click.option("--exact", is_flag=True, help="Exact search over the stored vectors, ignoring any index.")
@space_option  # an index built with that space is used, otherwise exact search in it
@json_option
def similar(store_path: str, queries: tuple[str, ...], k: int, queries_file, include_self: bool,
            exclude_same_folder: bool, min_duration: float | None, max_duration: float | None, segments: bool,
            index_name: str, exact: bool, space: str | None, as_json: bool) -> None:
    """The K stored songs nearest to each QUERY, best first: rank, score (cosine), id, path.

    A QUERY is a stored id or path, an audio file not in the store (embedded on the fly with the
    store's model and settings), or a .npy file of one or more vectors. The query itself is left out.
    """
    from embedkit.errors import EmbedkitError
    from embedkit.search import Searcher

    qs = list(queries)
    if queries_file is not None:
        qs += queries_file  # lines already read and checked by the option (no NUL bytes)
    if not qs:
        raise click.UsageError("give at least one QUERY (or --queries FILE)")
    if min_duration is not None and max_duration is not None and min_duration > max_duration:
        raise click.BadParameter(f"--min-duration {min_duration} > --max-duration {max_duration}")
    filters = dict(exclude_same_folder=exclude_same_folder, min_duration_s=min_duration, max_duration_s=max_duration)
    with Searcher.open(store_path, index=index_name, exact=exact, space=space) as s:
        if segments:
            results = s.segments(qs, k=k, exclude_self=not include_self, **filters)
        else:
            results = s.similar(qs, k=k, exclude_self=not include_self, **filters)
        info = dict(s.index_info)
    failed = [r for r in results if not r.ok]
    if as_json:
        emit_json({"store": store_path, "k": k, "index": info, "queries": [r.to_dict() for r in results]})
    else:
        for r in results:
            if not r.ok:
                continue
            head = r.query if r.query_path in (None, r.query) else f"{r.query} ({r.query_path})"
            click.echo(f"# {display_path(head)}" + (f"  [id {r.query_id}]" if r.query_id is not None else ""))
            if not r.neighbors:
                click.echo("  (no results)")
            for n in r.neighbors:
                at = f"  @{n.offset_s:7.1f}s" if n.offset_s is not None else ""
                click.echo(f"{n.rank:>4}  {n.score:.4f}  {n.id:>7}{at}  {display_path(n.path)}")
    if failed and len(failed) == len(results) == 1:
        raise EmbedkitError(failed[0].error)
    for r in failed:
        click.echo(f"embedkit: {r.error}", err=True)
    if failed and len(failed) == len(results):
        raise EmbedkitError(f"all {len(failed)} queries failed")
    if failed:
        sys.stdout.flush()
        raise PartialFailure(f"{len(failed)} of {len(results)} queries failed")
