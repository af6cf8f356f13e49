"""``embedkit embed``: vectors for a few files (-o OUT) or a whole collection into a resumable store (--store)."""
from __future__ import annotations

import os

import click

from ._common import PartialFailure, display_path, emit_json, error_line, progress_enabled
from .embed_store_options import run_store_embed, store_options
from .options import (
    address_option, aggregate_option, batch_size_option, compose, engine_option, excerpt_option, json_option, layers_option, model_option,
    patches_option, precision_option, store_option, workers_option,
)

DEFAULT_STORE = "embedkit-store"


@click.command("embed")
@store_options  # collection options (--from-list, --ext, --glob, --retry-failed, --tags, --wait, ...)
@click.argument("inputs", nargs=-1, type=click.Path(readable=False))  # unreadable = a failed input (exit 3)
@click.option("-o", "--output", type=click.Path(dir_okay=False), help="Write vectors to one file (.npz, .npy, .csv, .jsonl).")
@compose(store_option, excerpt_option, patches_option, workers_option, engine_option, address_option)
@compose(model_option, layers_option, aggregate_option, batch_size_option, precision_option, json_option)
@click.pass_context
def embed(ctx: click.Context, inputs: tuple[str, ...], output: str | None, store: str | None, excerpt: float | None,
          patches: bool, workers: int, model: str, layers: str | None, aggregate: str, batch_size: int,
          precision: str | None, as_json: bool, engine: str = "local", address: str | None = None,
          **store_kwargs) -> None:
    """Embed audio INPUTS (files or folders).

    With -o OUT the vectors of a handful of files go to one file. With --store STORE (or when a folder is
    given) everything goes into a resumable store: reruns skip what is done. Exit code 3 if some files failed.
    """
    if not inputs and not store_kwargs.get("from_list"):
        raise click.UsageError("give audio files or folders to embed (or --from-list)")
    folders = [p for p in inputs if os.path.isdir(p)]
    if store or (folders and not output) or store_kwargs.get("from_list"):
        if output:
            raise click.UsageError("use either -o OUT (a few files) or --store STORE (a collection), not both")
        run_store_embed(ctx, inputs=inputs, store=store or DEFAULT_STORE, excerpt=excerpt, patches=patches,
                        workers=workers, model=model, layers=layers, aggregate=aggregate, batch_size=batch_size,
                        precision=precision, as_json=as_json, engine=engine, address=address, **store_kwargs)
        return
    if engine != "local" or address:
        raise click.UsageError("--engine ray writes into a store: use --store STORE")
    if folders:
        raise click.UsageError(f"{folders[0]} is a folder: use --store STORE to embed a collection")
    _embed_to_file(list(inputs), output, excerpt=excerpt, patches=patches, workers=workers, model=model,
                   layers=layers, aggregate=aggregate, batch_size=batch_size, precision=precision, as_json=as_json)


def _embed_to_file(files: list[str], output: str | None, *, excerpt, patches, workers, model, layers, aggregate,
                   batch_size, as_json, precision=None) -> None:
    from embedkit import Embedder
    from embedkit.export import check_output, write_embeddings

    if output:
        check_output(output)  # an unsupported extension or unwritable folder fails before any embedding
    from embedkit.progress import bar

    emb = Embedder.from_pretrained(model, batch_size=batch_size, precision=precision or "fp32")
    try:
        layout = emb.layout.subset(layers).to_json(aggregation=aggregate)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--layers") from None
    ok, failed = [], []
    stream = bar(emb.embed_files(files, layers=layers, aggregate=aggregate, excerpt_s=excerpt,
                                 return_patches=patches, workers=workers),
                 total=len(files), unit="file", desc="embed", enabled=progress_enabled())
    for res in stream:
        if res.ok:
            ok.append(res)
        else:
            failed.append({"path": res.path, "error": res.error})
            click.echo(error_line(res.error), err=True)
    out_path = None
    if output and ok:
        out_path = write_embeddings(output, ok, labels=emb.labels, layout=layout, model=emb.name,
                                    fingerprint=emb.fingerprint)
    summary = {
        "model": emb.name, "precision": emb.precision, "fingerprint": emb.fingerprint,
        "dim": int(ok[0].vector.size) if ok else None,
        "aggregation": aggregate, "layers": emb.layout.parse_layers(layers), "output": str(out_path) if out_path else None,
        "embedded": len(ok), "failed": len(failed), "failures": failed,
        "items": [{"path": r.path, "n_patches": r.n_patches, "padded": r.padded, "duration_s": round(r.duration_s, 3)}
                  for r in ok],
    }
    if as_json:
        emit_json(summary)
    elif output is None:
        for r in ok:  # no output file: print vectors as TSV (path, then values)
            click.echo(display_path(r.path) + "\t" + " ".join(f"{x:.6g}" for x in r.vector))
    else:
        click.echo(f"embedded {len(ok)} of {len(files)} files -> {out_path} ({summary['dim']}-d, {aggregate})", err=True)
    for r in ok:
        if r.padded:
            click.echo(f"embedkit: note: {display_path(r.path)} is shorter than one 3-s patch: repeat-padded", err=True)
    if failed:
        raise PartialFailure(f"{len(failed)} of {len(files)} files failed")
