"""``embedkit tag``: tag probabilities (MSD or MTT top-50) for audio files."""
from __future__ import annotations

import click

from ._common import PartialFailure, display_path, emit_json, error_line, progress_enabled
from .options import batch_size_option, compose, excerpt_option, json_option, model_option, precision_option, top_k_option


@click.command("tag")
@click.argument("files", nargs=-1, required=True, type=click.Path(dir_okay=False, readable=False))
@compose(top_k_option, excerpt_option, model_option, batch_size_option, precision_option, json_option)
def tag(files: tuple[str, ...], k: int, excerpt: float | None, model: str, batch_size: int, precision: str | None,
        as_json: bool) -> None:
    """Print the top tags of each FILE (clip-level mean of 3-s patch probabilities).

    With several models (-m msd_vgg+msd_musicnn) each model's top tags are listed, labelled 'model:tag'.
    """
    from embedkit import Embedder
    from embedkit.progress import bar

    emb = Embedder.from_pretrained(model, batch_size=batch_size, precision=precision or "fp32")
    results, failures = [], 0
    stream = bar(emb.embed_files(files, excerpt_s=excerpt), total=len(files), unit="file", desc="tag",
                 enabled=progress_enabled())
    for res in stream:
        if not res.ok:
            failures += 1
            click.echo(error_line(res.error), err=True)
            results.append({"path": res.path, "error": res.error})
            continue
        top = emb.top_tags(res.tags, top_k=k)
        results.append({"path": res.path, "model": emb.name, "n_patches": res.n_patches, "padded": res.padded,
                        "duration_s": round(res.duration_s, 3), "tags": [{"tag": t, "p": round(p, 6)} for t, p in top]})
        if not as_json:
            note = " (shorter than one patch: repeat-padded)" if res.padded else ""
            click.echo(f"{display_path(res.path)}{note}")
            for t, p in top:
                click.echo(f"  {p:.3f}  {t}")
    if as_json:
        emit_json(results)
    if failures:
        raise PartialFailure(f"{failures} of {len(files)} files failed")
