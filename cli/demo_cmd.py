"""``embedkit demo``: the main job end to end on a built-in, synthesized example collection."""
from __future__ import annotations

from pathlib import Path

import click

from ._common import emit_json
from .options import DEFAULT_MODEL, json_option


@click.command("demo")
@click.option("--out", type=click.Path(file_okay=False), default=None,
              help="Working folder (default: $EMBEDKIT_HOME/demo). Reruns reuse what is there.")
@click.option("--per-style", type=click.IntRange(3, 50), default=4, show_default=True, help="Tracks per style.")
@json_option
def demo(out: str | None, per_style: int, as_json: bool) -> None:
    """Synthesize 3 styles of music, embed them into a store, tag, search and classify them.

    Steps: write the audio (pads, beats, arps; wav/flac/ogg at 22.05/44.1/48 kHz) → `embedkit embed DIR
    --store` → MSD tags of one track per style → nearest neighbours → nested-CV accuracy of a small head.
    """
    import numpy as np

    from embedkit import pretrained, synth
    from embedkit.collection import embed_into_store, format_summary
    from embedkit.evaluation import nested_cv
    from embedkit.heads import Head
    from embedkit.search import similar
    from embedkit.store import Store

    root = Path(out) if out else pretrained.home() / "demo"
    audio_dir, store_dir = root / "audio", root / "store"
    say = (lambda *a, **k: None) if as_json else (lambda msg="": click.echo(msg))
    say(f"1. synthesizing {3 * per_style} example tracks into {audio_dir}")
    tracks = synth.write_collection(audio_dir, per_style=per_style)

    say(f"2. embedkit embed {audio_dir} --store {store_dir}")
    summary = embed_into_store([audio_dir], store_dir, model=DEFAULT_MODEL, progress=False)
    say("   " + format_summary(summary).replace("\n", "\n   "))

    with Store.open(store_dir) as st:
        items = {Path(it.path).resolve(): it for it in st.items(status="ok")}
        ids = [items[p.resolve()].id for p, _ in tracks]
        X = st.vectors(ids)
        layout = st.manifest["layout"]
    styles = [s for _, s in tracks]

    say("3. MSD tags (top 3) of one track per style")
    from embedkit import Embedder

    emb = Embedder.from_pretrained(DEFAULT_MODEL)
    firsts = [p for i, (p, s) in enumerate(tracks) if i % per_style == 0]
    tag_rows = []
    for p in firsts:
        top = emb.tag(p, top_k=3)
        tag_rows.append({"path": str(p), "tags": top})
        say(f"   {p.name:<16} " + ", ".join(f"{t} {v:.2f}" for t, v in top))

    say("4. nearest neighbours (cosine) of the same tracks")
    k = min(3, per_style - 1)
    results = similar(store_dir, [str(p) for p in firsts], k=k, index=None, exact=True, embedder=emb)
    sim_rows = []
    hits = 0
    for p, res in zip(firsts, results):
        hits += sum(Path(n.path).parent.name == p.parent.name for n in res.neighbors)
        sim_rows.append(res.to_dict())
        say(f"   {p.name:<16} → " + ", ".join(f"{Path(n.path).name} ({n.score:.3f})" for n in res.neighbors))
    say(f"   {hits} of {k * len(firsts)} neighbours share the query's style")

    say("5. nested 4-fold cross-validation of a logistic-regression head on the 3 styles")
    report = nested_cv(Head("classification", "logreg", layout=layout, inner_folds=3), X, np.array(styles),
                       folds=min(4, per_style), seed=0)
    acc = report.metrics["accuracy"]
    say(f"   accuracy {acc['mean']:.3f} ± {acc['std']:.3f} (chance {report.chance.get('accuracy', 1 / 3):.3f})")
    say(f"\nstore: {store_dir}   try: embedkit similar {store_dir} {firsts[0]} -k 5")
    if as_json:
        emit_json({"audio": str(audio_dir), "store": str(store_dir), "embed": summary, "tags": tag_rows,
                   "similar": sim_rows, "same_style_neighbours": hits, "neighbours": k * len(firsts), "evaluation": report.to_json()})
