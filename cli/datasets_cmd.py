"""``embedkit datasets``: labels files from the real layouts of public MIR datasets."""
from __future__ import annotations

import click

from ._common import emit_json
from .options import force_option, json_option


@click.group("datasets")
def datasets() -> None:
    """Readers for GTZAN, Ballroom, EmoMusic, PMEmo, Jamendo, MagnaTagATune and FMA folders.

    'embedkit datasets labels NAME ROOT -o labels.csv' writes a labels file for 'embedkit evaluate/train'.
    """


@datasets.command("list")
@json_option
def list_(as_json: bool) -> None:
    """The dataset names and the layouts they read."""
    from embedkit.datasets import DATASETS

    if as_json:
        emit_json([{"name": k, "layout": v[2]} for k, v in DATASETS.items()])
        return
    width = max(len(k) for k in DATASETS)
    for k, v in DATASETS.items():
        click.echo(f"{k:<{width}}  {v[2]}")


@datasets.command("labels")
@click.argument("name", metavar="NAME")
@click.argument("root", metavar="ROOT", type=click.Path(file_okay=False))
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False), help="Labels file to write (CSV).")
@click.option("--clips-dir", type=click.Path(file_okay=False), default=None,
              help="jamendo: folder to cut the labelled clips into (16 kHz WAV; reused on reruns).")
@click.option("--clip-s", type=click.FloatRange(0.5, 60), default=None, help="jamendo: clip length in seconds [default: 3].")
@click.option("--top", type=click.IntRange(1, 188), default=None, help="magnatagatune: number of most frequent tags [default: 50].")
@click.option("--subset", type=click.Choice(["small", "medium", "large", "full"]), default=None, help="fma: subset [default: small].")
@force_option
@json_option
def labels(name: str, root: str, output: str, clips_dir: str | None, clip_s: float | None, top: int | None,
           subset: str | None, force: bool, as_json: bool) -> None:
    """Write the labels file of dataset NAME found under ROOT (see 'embedkit datasets list')."""
    from pathlib import Path

    from embedkit.datasets import DatasetError, read

    if Path(output).exists() and not force:
        raise DatasetError(f"{output}: already exists (use --force to overwrite)")
    d = read(name, root, clips_dir=clips_dir, clip_s=clip_s, top=top, subset=subset)
    path = d.write(output)
    summary = d.summary()
    summary["output"] = str(path)
    if as_json:
        emit_json(summary)
        return
    for n in d.notes:
        click.echo(f"embedkit: note: {n}", err=True)
    extra = ""
    if "classes" in summary:
        extra = f", {len(summary['classes'])} classes: " + ", ".join(f"{k} {v}" for k, v in summary["classes"].items())
    elif "labels" in summary:
        extra = f", {summary['labels']} labels"
    if "splits" in summary:
        extra += "; split " + ", ".join(f"{k} {v}" for k, v in summary["splits"].items())
    click.echo(f"wrote {len(d)} rows ({d.task}{extra}) to {path}")
