"""``embedkit highlight``: the most representative segment of each track (start/end, thumbnail, curve PNG).

    embedkit highlight song.ogg other/ --length 30 --head mood.head -o highlights/ --json
    embedkit highlight --store music.ekstore --method repetition --json
"""
from __future__ import annotations

from pathlib import Path

import click

from ._common import PartialFailure, batch_size_option, display_path, emit_json, json_option

force_option = click.option("-f", "--force", is_flag=True,
                            help="Replace an existing output of the same kind (never a folder of other files).")

METHOD_HELP = ("attention: a trained attention head's weight × activation of the target class (Huang et al. 2018); "
               "tags: the teacher's top-5 tag activity; loudness: loudest window; repetition: the window most "
               "similar to the rest of the track. Default: attention with --head, else tags.")


@click.command("highlight")
@click.argument("inputs", metavar="[FILES|FOLDERS]...", nargs=-1, type=click.Path())
@click.option("--length", "length_s", type=click.FloatRange(min=0.5), default=30.0, show_default=True, metavar="SECONDS",
              help="Length of the highlight (a file no longer than this is returned whole).")
@click.option("--head", "head_path", type=click.Path(), default=None, metavar="HEAD",
              help="A trained attention head (embedkit train ... --head attention) for --method attention.")
@click.option("--method", type=click.Choice(["attention", "tags", "loudness", "repetition"]), default=None, help=METHOD_HELP)
@click.option("--class", "target", default=None, metavar="NAME",
              help="Class or label of the head to highlight (default: each track's predicted one).")
@click.option("-o", "--output-dir", "out_dir", type=click.Path(file_okay=False), default=None, metavar="DIR",
              help="Write an audio thumbnail and a PNG of the curve of each track here (NAME.highlight.EXT / .png).")
@click.option("--format", "audio_format", type=click.Choice(["ogg", "flac", "wav"]), default="ogg", show_default=True,
              help="Audio format of the thumbnails.")
@click.option("--fade", "fade_s", type=click.FloatRange(0.0, 5.0), default=0.5, show_default=True, metavar="SECONDS",
              help="Fade-in/out of the thumbnails.")
@click.option("--no-audio", is_flag=True, help="With -o: write only the PNG, no audio thumbnail.")
@click.option("--no-plot", is_flag=True, help="With -o: write only the audio thumbnail, no PNG.")
@click.option("--curve", "with_curve", is_flag=True, help="With --json: include the per-patch curve and its times.")
@click.option("--store", "store_path", type=click.Path(file_okay=False), default=None, metavar="STORE",
              help="Use the per-patch vectors of this store (embedded with --patches) for its items; all its items when no FILES are given.")
@batch_size_option
@force_option
@json_option
def highlight(inputs: tuple[str, ...], length_s: float, head_path: str | None, method: str | None, target: str | None,
              out_dir: str | None, audio_format: str, fade_s: float, no_audio: bool, no_plot: bool, with_curve: bool,
              store_path: str | None, batch_size: int, force: bool, as_json: bool) -> None:
    """The most representative LENGTH seconds of each audio FILE (or store item): start and end times, and
    with -o an audio thumbnail (short fades) and a PNG of the curve the segment was chosen on.

    Files that cannot be decoded are reported on stderr, one line each, and the others go on (exit code 3).
    Existing thumbnails are kept unless --force (a rerun only adds what is missing).
    """
    from embedkit.highlight import Highlighter, HighlightError, plot_curve

    if not inputs and not store_path:
        raise click.UsageError("give audio FILES/FOLDERS, or --store STORE to highlight its items")
    method = method or ("attention" if head_path else "tags")
    if method == "attention" and not head_path:
        raise click.UsageError("--method attention needs --head HEAD (a head trained with --head attention)")
    if target and method != "attention":
        raise click.UsageError("--class applies to --method attention only")
    hl = Highlighter(method, head=head_path, target=target, length_s=length_s, batch_size=batch_size)
    if target and hl.head is not None and target not in hl.head.output_names:
        raise click.BadParameter(f"{head_path} has no class or label {target!r} (it knows: {', '.join(hl.head.output_names[:12])})",
                                 param_hint="--class")
    results: list[dict] = []
    failures: list[str] = []

    def emit(h) -> None:
        rec = h.to_json(curve=with_curve)
        rec["source"] = source
        if out_dir:
            stem = Path(h.path).stem
            if not no_audio:
                out = Path(out_dir) / f"{stem}.highlight.{audio_format}"
                if out.exists() and not force:
                    rec["thumbnail"] = str(out)
                    rec["thumbnail_kept"] = True
                else:
                    rec["thumbnail"] = str(hl.thumbnail(h, out, fade_s=fade_s, overwrite=force))
            if not no_plot:
                png = Path(out_dir) / f"{stem}.highlight.png"
                if not png.exists() or force:
                    plot_curve(h, png, overwrite=True)
                rec["plot"] = str(png)
        results.append(rec)
        if not as_json:
            what = " (whole file)" if h.whole_file else ""
            tgt = f" [{h.target}]" if h.target else ""
            click.echo(f"{display_path(h.path)}\t{h.start_s:.2f}\t{h.end_s:.2f}{what}{tgt}")

    def run(key: str, fn) -> None:
        try:
            emit(fn())
        except (HighlightError, OSError) as exc:
            failures.append(f"{key}: {exc}" if not str(exc).startswith(str(key)) else str(exc))
        except Exception as exc:
            from embedkit.errors import AudioError, EmbedkitError

            if isinstance(exc, (AudioError,)) or (isinstance(exc, EmbedkitError) and not _fatal(exc)):
                failures.append(str(exc) if str(key) in str(exc) else f"{key}: {exc}")
            else:
                raise

    files: list[str] = []
    if inputs:
        from embedkit.discovery import discover

        d = discover(inputs)
        files = [f.path for f in d.files]
        failures += [f"{p}: {r}" for p, r in d.errors]
    if store_path:
        from embedkit.store import Store

        with Store.open(store_path) as st:
            _check_store(hl, st, store_path)
            items = [st.get(f) for f in files] if files else st.items("ok")
            rest = []
            for f, it in zip(files or [None] * len(items), items):
                if it is None or it.status != "ok":
                    rest.append(f)
                    continue
                source = "store"
                run(it.path, lambda it=it: hl.highlight_store_item(st, it))
            files = [f for f in rest if f is not None]
    source = "audio"
    for f in files:
        run(f, lambda f=f: hl.highlight_file(f))
    for msg in failures:
        click.echo(f"embedkit: error: {msg}", err=True)
    if as_json:
        emit_json(results)
    if failures:
        raise PartialFailure(f"{len(failures)} of {len(failures) + len(results)} inputs failed")


def _fatal(exc: Exception) -> bool:
    """Errors that concern every input (model or head mismatch) stop the command instead of being per-file."""
    from embedkit.errors import ModelMismatchError, WeightsMissingError

    return isinstance(exc, (ModelMismatchError, WeightsMissingError))


def _check_store(hl, st, store_path: str) -> None:
    """Refuse a store whose per-patch vectors the head cannot read (other model or blocks)."""
    from embedkit.highlight import HighlightError

    if hl.method in ("attention", "repetition") and not st.has_patches:
        raise HighlightError(f"{store_path}: store has no per-patch vectors (re-embed with --patches), or give the audio files without --store")
    if hl.head is None:
        return
    from embedkit.heads import check_compatible

    card = hl.head.card_
    check_compatible(card, model_fingerprint=st.model_fingerprint, source=f"vectors in {store_path}")
    pdim = st.manifest.get("patch_dim")
    if pdim and int(pdim) != hl.head.n_features_in_:
        raise HighlightError(f"{store_path}: per-patch vectors have {pdim} values, head {card.get('kind')} expects "
                             f"{hl.head.n_features_in_} (other --layers); retrain the head on this store")
