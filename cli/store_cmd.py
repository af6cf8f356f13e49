"""``embedkit store``: inspect, list, export and prune embedding stores."""
from __future__ import annotations

import click

from ._common import display_path, emit_json
from .options import json_option, patches_option, store_argument, wait_option


@click.group("store")
def store() -> None:
    """Inspect, export and prune embedding stores (made by 'embedkit embed DIR --store STORE')."""


@store.command("info")
@store_argument
@click.option("--failures", "all_failures", is_flag=True, help="List every failed file with its reason.")
@json_option
def info(store_path: str, all_failures: bool, as_json: bool) -> None:
    """Counts, dimensions, model, settings, disk size and failures of STORE."""
    from embedkit.store import Store

    with Store.open(store_path) as st:
        d = st.info()
        failed = st.items("failed")
    d["failures"] = [{"id": it.id, "path": it.path, "error": it.error} for it in failed]
    if as_json:
        emit_json(d)
        return
    layout = ", ".join(f"{b['name']} {b['start']}:{b['stop']}" for b in d["layout"])
    extras = []
    if d["patches"]:
        extras.append(f"per-patch vectors (dim {d['patch_dim']}, {d['patch_rows']} patches)")
    if d["tags"]:
        extras.append("tag probabilities")
    ex = "none" if d["excerpt_s"] is None else f"{d['excerpt_s']:g} s centred"
    lines = [
        f"store:      {d['path']}",
        f"model:      {d['model']} (fingerprint {d['fingerprint'][:16]}…)",
        f"settings:   layers {_layers(d)}, aggregation {d['aggregation']}, excerpt {ex}, precision {d['precision']}"
        f" (fingerprint {d['settings_fingerprint'][:16]}…)",
        f"dim:        {d['dim']} float32 ({layout})",
        f"items:      {d['embedded']} embedded, {d['failed']} failed, {d['missing']} missing",
        "integrity:  sha256 per commit"
        + (f"; {d['unchecked_rows']} rows from embedkit 0.1 without checksums" if d["unchecked_rows"] else "")
        + ("; a checksum per item row" if d["item_rows_sealed"] else "; item rows without checksums (embedkit 0.1; "
           "verify --repair seals them)")
        + f" (check: embedkit store verify {d['path']})",
        f"audio:      {d['audio_hours']:.2f} h embedded",
        f"extras:     {', '.join(extras) or 'none'}",
        f"disk:       {_size(d['disk_bytes'])}",
        f"created:    {d['created']} with embedkit {d['embedkit_version']} (format {d['format_version']})",
    ]
    shown = d["failures"] if all_failures else d["failures"][:10]
    if shown:
        lines.append(f"failures ({len(d['failures'])}):")
        lines += [f"  {f['error']}" for f in shown]
        if len(shown) < len(d["failures"]):
            lines.append(f"  ... {len(d['failures']) - len(shown)} more (--failures lists all)")
    click.echo("\n".join(lines))


@store.command("list")
@store_argument
@click.option("--status", type=click.Choice(["ok", "failed", "missing"]), default=None, help="Only items with this status.")
@json_option
def ls(store_path: str, status: str | None, as_json: bool) -> None:
    """List the items of STORE: id, status, duration, path (and error)."""
    import dataclasses

    from embedkit.store import Store

    with Store.open(store_path) as st:
        items = st.items(status)
    if as_json:
        emit_json([dataclasses.asdict(it) for it in items])
        return
    for it in items:
        dur = f"{it.duration_s:8.1f}s" if it.duration_s is not None else " " * 9
        tail = f"\t{it.error}" if it.error else ""
        click.echo(f"{it.id}\t{it.status}\t{dur}\t{display_path(it.path)}{display_path(tail)}")


@store.command("export")
@store_argument
@click.option("--format", "fmt", type=click.Choice(["npz", "csv", "parquet"]), required=True, help="Output format.")
@click.option("-o", "--output", required=True, type=click.Path(allow_dash=True),
              help="Output file ('-' = stdout, csv only); parquet: a name not ending in .parquet is a folder of "
              "shards + _manifest.json.")
@click.option("--shard-rows", type=click.IntRange(1), default=None, metavar="N",
              help="parquet: items per shard file (default 1,000,000); implies a folder of shards.")
@patches_option  # npz only
@json_option
def export(store_path: str, fmt: str, output: str, shard_rows: int | None, patches: bool, as_json: bool) -> None:
    """Export the embedded vectors of STORE with ids, paths and metadata.

    npz: arrays ids, paths, vectors, duration_s, samplerate (+ tags, tag_labels, patch_* when kept) and
    the manifest as JSON. csv: one row per item, one column per vector value (named after its block).
    parquet: a fixed-size-list 'vector' column, the manifest in the schema metadata (needs pyarrow);
    to a folder (OUTPUT not ending in .parquet, or --shard-rows): part-NNNNN.parquet shards plus
    _manifest.json, the layout embedding-reader, autofaiss and Spark read (embedkit.interchange).
    """
    from embedkit.store import export_store

    if output == "-" and fmt != "csv":
        raise click.UsageError("only --format csv can be written to stdout")
    if patches and fmt != "npz":
        raise click.UsageError("--patches is only supported with --format npz")
    from embedkit.store import Store

    sharded = fmt == "parquet" and (shard_rows is not None or not output.lower().endswith(".parquet"))
    if shard_rows is not None and fmt != "parquet":
        raise click.UsageError("--shard-rows is only supported with --format parquet")
    shards = None
    with Store.open(store_path) as st:
        _check_path_text(st, fmt)
        if sharded:
            from embedkit.interchange import SHARD_ROWS, write_parquet_shards

            shards = write_parquet_shards(st, output, shard_rows=shard_rows or SHARD_ROWS)["shards"]
            n = sum(s["rows"] for s in shards)
        else:
            n = export_store(st, output, fmt=fmt, patches=patches)
    if as_json:
        emit_json({"store": store_path, "output": output, "format": fmt, "items": n,
                   **({"shards": len(shards), "manifest": f"{output}/_manifest.json"} if shards is not None else {})})
    elif output != "-":
        click.echo(f"{output}: {n} items exported ({fmt})")


@store.command("prune")
@store_argument
@click.option("--delete", is_flag=True, help="Remove vanished items from the store instead of marking them 'missing'.")
@click.option("--dry-run", is_flag=True, help="Only report what would change.")
@wait_option
@json_option
def prune(store_path: str, delete: bool, dry_run: bool, wait: float, as_json: bool) -> None:
    """Mark items whose file has vanished as 'missing' (kept, but out of vectors()/ids()).

    Failed items whose file vanished are removed. A missing file that reappears unchanged is restored
    by the next 'embed --store' run without recomputing it; a moved file is recognised by its hash.
    """
    from embedkit.collection import prune as prune_store
    from embedkit.store import Store

    with Store.open(store_path, mode="r" if dry_run else "a", wait=wait) as st:
        out = prune_store(st, delete=delete, dry_run=dry_run)
        out["store_counts"] = st.counts()
    if as_json:
        emit_json(out)
        return
    verb = "would be" if dry_run else "were"
    if delete:
        click.echo(f"{len(out['deleted'])} vanished items {verb} removed ({out['checked']} checked)")
    else:
        click.echo(
            f"{len(out['missing'])} vanished items {verb} marked missing, {len(out['deleted'])} failed ones "
            f"{verb} removed ({out['checked']} checked)"
        )
    for p in (out["deleted"] if delete else out["missing"])[:20]:
        click.echo(f"  {p}", err=False)


store.add_command(ls, "ls")  # the 0.1 spelling, kept as an alias of 'store list'


@store.command("verify")
@store_argument
@click.option("--repair", is_flag=True,
              help="Repair what can be: restore a damaged manifest from its copy, restore row counts, re-embed "
                   "items whose stored vectors are damaged (from their audio, when the file is there unchanged).")
@wait_option  # with --repair
@json_option
def verify(store_path: str, repair: bool, wait: float, as_json: bool) -> None:
    """Check that STORE's manifest, item table and shards agree and that every checksum holds.

    Exit code 0 when the store is sound (or was repaired), 1 when problems remain (each printed as one
    line naming the file, the problem and the repair).
    """
    from embedkit.progress import default_enabled
    from embedkit.store.errors import StoreCorruptError
    from embedkit.store.verify import verify as verify_store

    say = (lambda msg: click.echo(f"embedkit: {msg}", err=True)) if default_enabled() else None
    rep = verify_store(store_path, repair=repair, wait=wait, on_progress=say)
    if as_json:
        emit_json(rep.to_json())
    else:
        for prob in rep.problems:
            click.echo(prob.line())
        for note in rep.notes:
            click.echo(f"note: {note}")
        state = "sound" if not rep.problems else ("repaired" if rep.ok else "DAMAGED")
        click.echo(f"{store_path}: {state}: {rep.items} items, {rep.segments} checksummed segments "
                   f"({rep.checked_rows} rows), {len(rep.problems)} problem(s)"
                   + (f", {rep.reembedded} re-embedded, {rep.marked_failed} marked failed" if repair else ""))
    if not rep.ok:
        n = sum(not p.repaired for p in rep.problems)
        hint = "" if repair else f"; run: embedkit store verify {store_path} --repair"
        raise StoreCorruptError(f"{store_path}: {n} problem(s) remain{hint}")


# `embedkit store map` (issue 13) lives with `embedkit serve`, which draws the same layout.
from .serve_cmd import store_map as _store_map  # noqa: E402

store.add_command(_store_map)


def _check_path_text(st, fmt: str) -> None:
    """Paths that are not UTF-8 (legal Linux file names): parquet cannot hold them (one-line error before any
    work); csv writes their raw bytes, and says so on stderr."""
    from embedkit.export import ExportError
    from embedkit.store.items import is_utf8

    odd = [it for it in st.items("ok") if not is_utf8(it.path)]
    if not odd:
        return
    from ._common import display_path

    shown = display_path(odd[0].path)
    if fmt == "parquet":
        raise ExportError(f"{st.path}: {len(odd)} item path(s) are not valid UTF-8 (e.g. id {odd[0].id}: {shown}) and "
                          "parquet strings must be; export with --format npz or csv (they keep the raw bytes), or "
                          "rename the files and embed again")
    if fmt == "csv":
        from ._common import log

        log.warning(f"note: {len(odd)} path(s) are not valid UTF-8 (e.g. {shown}); written as their raw bytes")


def _layers(d: dict) -> str:
    blocks = [b["name"] for b in d.get("model_blocks") or []]
    if not d.get("layers") or d["layers"] == blocks:
        return "all"
    return ",".join(d["layers"])


def _size(n: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n} B"  # pragma: no cover

