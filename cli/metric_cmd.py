"""``embedkit metric``: similarity spaces tuned to what the user calls "similar" (fit, baseline, list, show, evaluate)."""
from __future__ import annotations

import click

from ._common import emit_json
from .options import force_option, json_option, store_argument, top_k_option


@click.group("metric")
def metric() -> None:
    """Similarity spaces: learn one from groups (albums, artists, playlists) or segments, or a zero-label baseline.

    A space is saved beside the store (STORE/spaces/NAME.json + NAME.npz) and used with
    'embedkit index build --space NAME', 'embedkit similar --space NAME' and 'embedkit recommend --space NAME'.
    """


@metric.command("fit")
@store_argument
@click.argument("groups_path", metavar="[GROUPS.csv]", required=False, type=click.Path(dir_okay=False))
@click.option("-o", "--output", "name", required=True, metavar="NAME",
              help="Space name (saved as STORE/spaces/NAME.*), or a path.")
@click.option("--projection", "model", type=click.Choice(["diagonal", "linear", "mlp"]), default="linear",
              show_default=True, help="Projection: one weight per feature (diagonal), linear to --dim, or linear + one "
              "ReLU layer (mlp).")  # not --model: that names the pretrained model
@click.option("--loss", type=click.Choice(["triplet", "contrastive"]), default="triplet", show_default=True,
              help="Batch-hard triplet loss, or supervised contrastive (softmax over the batch: soft hard-negative mining).")
@click.option("--dim", type=click.IntRange(2), default=128, show_default=True, help="Width of the space.")
@click.option("--steps", type=click.IntRange(1), default=600, show_default=True, help="Training steps (batches).")
@click.option("--margin", type=click.FloatRange(0, 2), default=0.2, show_default=True, help="Triplet margin (cosine).")
@click.option("--segment", "seg_patches", type=click.IntRange(1), default=3, show_default=True,
              help="Patches (3 s each) per training segment, when the store has per-patch vectors.")
@click.option("--skip-unknown", is_flag=True, help="Leave out GROUPS.csv lines whose item is not embedded in STORE.")
@click.option("--seed", type=int, default=0, show_default=True, help="Random seed (batches, validation split).")
@click.option("--condition", "conditions", multiple=True, metavar="COLUMN",
              help="Conditioned subspaces (Lee et al. 2020): one masked block of the space per GROUPS.csv column "
                   "named here (repeat: --condition album --condition artist); use as --space NAME:COLUMN.")
@force_option
@json_option
def fit(store_path: str, groups_path: str | None, name: str, model: str, loss: str, dim: int, steps: int, margin: float,
        seg_patches: int, skip_unknown: bool, seed: int, conditions: tuple[str, ...], force: bool, as_json: bool) -> None:
    """Learn space NAME on STORE's vectors from GROUPS.csv (columns item, group), or from segments of the
    same recording when no groups file is given (needs a store embedded with --patches).

    Batch-hard triplet loss (positives: same group, from another recording; negatives: other groups) or
    a supervised contrastive loss; the weights with the best mAP on held-out groups are kept, and that
    mAP is reported.
    """
    from embedkit.spaces import save_space, space_path
    from embedkit.spaces.fitting import fit_store
    from embedkit.spaces.groups import read_groups
    from embedkit.spaces.train import TrainConfig
    from embedkit.store import Store

    with Store.open(store_path) as st:
        target = space_path(st, name)
        _refuse_overwrite(target, force)
        cfg = TrainConfig(model=model, loss=loss, dim=dim, steps=steps, margin=margin, seed=seed)
        if conditions:
            if not groups_path:
                raise click.UsageError("--condition needs a GROUPS.csv with one column per condition")
            from embedkit.spaces.fitting import fit_store_conditioned

            by = {c: read_groups(groups_path, st, skip_unknown=skip_unknown, column=c, allow_empty=True)
                  for c in dict.fromkeys(conditions)}
            space = fit_store_conditioned(st, by, config=cfg, seg_patches=seg_patches)
            card_path = save_space(st, space, name)
            if as_json:
                emit_json({"name": space.name, "path": str(card_path), **space.card()})
            else:
                click.echo(f"fitted conditioned space {space.name!r} ({', '.join(space.conditions)}; {space.in_dim} -> "
                           f"{space.out_dim}), saved to {card_path}; held-out mAP {_f(space.info.get('val_map_init'))} -> "
                           f"{_f(space.info.get('val_map_best'))}")
            return
        groups = read_groups(groups_path, st, skip_unknown=skip_unknown) if groups_path else None
        if groups is not None and groups.skipped:
            click.echo(f"embedkit: {groups_path}: {len(groups.skipped)} lines left out (items not embedded)", err=True)

        def progress(step: int, hist: dict) -> None:
            if step % 100 == 0 and not (click.get_current_context().obj or {}).get("quiet"):
                vm = hist["val_map"][-1]
                click.echo(f"embedkit: step {step}/{steps}: loss {hist['loss'][-1]:.4f}"
                           + (f", held-out mAP {vm:.4f}" if vm is not None else ""), err=True)

        space = fit_store(st, groups, config=cfg, seg_patches=seg_patches, progress=progress)
        card_path = save_space(st, space, name)
    info = space.info
    if as_json:
        emit_json({"name": space.name, "path": str(card_path), **space.card()})
        return
    click.echo(f"fitted space {space.name!r} ({space.kind}, {space.in_dim} -> {space.out_dim}) on {info['fitted_on']['vectors']} "
               f"{info['source']} ({info['mode']}), saved to {card_path}")
    click.echo(f"held-out mAP ({info['validation']}): {_f(info.get('val_map_init'))} at the start -> "
               f"{_f(info.get('val_map_best'))} at step {info['best_step']}; {info['cpu_s']} CPU-s")


@metric.command("baseline")
@store_argument
@click.option("-o", "--output", "name", default="baseline", show_default=True, metavar="NAME", help="Space name or path.")
@click.option("--seed", type=int, default=0, show_default=True, help="Random seed of the proxy's split.")
@force_option
@json_option
def baseline(store_path: str, name: str, seed: int, force: bool, as_json: bool) -> None:
    """Choose a zero-label space for STORE (raw cosine, centring, standardisation, PCA, PCA-whitening)
    on a held-out self-retrieval proxy: the first half of a recording must find its second half.
    Raw cosine is kept unless another candidate beats it."""
    from embedkit.spaces import save_space, space_path
    from embedkit.spaces.fitting import fit_baseline
    from embedkit.store import Store

    with Store.open(store_path) as st:
        _refuse_overwrite(space_path(st, name), force)
        space, report = fit_baseline(st, seed=seed)
        card_path = save_space(st, space, name)
    if as_json:
        emit_json({"name": space.name, "path": str(card_path), **space.card()})
        return
    for c in report["candidates"]:
        mark = "*" if c["name"] == report["chosen"] else " "
        note = "" if c.get("eligible", True) else "  (measured only: not eligible as the default)"
        click.echo(f"{mark} {c['name']:<12} MRR {c['mrr']:.4f}  recall@1 {c['recall@1']:.4f}{note}")
    click.echo(f"chose {report['chosen']}: {report['reason']}; saved to {card_path}")


@metric.command("list")
@store_argument
@json_option
def list_cmd(store_path: str, as_json: bool) -> None:
    """The spaces saved beside STORE."""
    from embedkit.spaces import list_spaces

    cards = list_spaces(store_path)
    if as_json:
        emit_json([{k: c.get(k) for k in ("name", "space_kind", "in_dim", "out_dim", "created", "error")} for c in cards])
        return
    if not cards:
        click.echo(f"no spaces beside {store_path} (fit one with 'embedkit metric fit' or 'embedkit metric baseline')")
    for c in cards:
        if c.get("error"):
            click.echo(f"{c['name']:<20} {c['error']}")
            continue
        info = c.get("info") or {}
        how = info.get("mode") or ("zero-label: " + str((info.get("zero_label") or {}).get("chosen", c.get("space_kind"))))
        click.echo(f"{c['name']:<20} {c.get('space_kind'):<12} {c.get('in_dim')} -> {c.get('out_dim'):<5} {how}  {c.get('created')}")


@metric.command("show")
@store_argument
@click.argument("name")
@json_option
def show(store_path: str, name: str, as_json: bool) -> None:
    """Card of space NAME of STORE: kind, dims, vector spec, how it was fitted and how well it did."""
    from embedkit.spaces import Space, space_path

    sp = Space.load(space_path(store_path, name))
    card = sp.card()
    if as_json:
        emit_json({"name": sp.name, "path": str(sp.path), **card})
        return
    info = sp.info
    from embedkit.spaces.specs import describe

    lines = [f"space:    {sp.name} ({sp.path})", f"kind:     {sp.kind}, {sp.in_dim} -> {sp.out_dim}",
             f"vectors:  {describe(sp.spec)}", f"checksum: {sp.fingerprint[:16]}…"]
    if "zero_label" in info:
        z = info["zero_label"]
        lines.append(f"chosen:   {z.get('chosen')} ({z.get('reason')})")
    if "mode" in info:
        lines.append(f"fitted:   {info['mode']} on {info['fitted_on']['vectors']} {info['source']}; validation {info['validation']}")
        lines.append(f"held-out mAP: {_f(info.get('val_map_init'))} at start -> {_f(info.get('val_map_best'))} (step {info['best_step']})")
    click.echo("\n".join(lines))


@metric.command("evaluate")
@store_argument
@click.argument("groups_path", metavar="GROUPS.csv", type=click.Path(dir_okay=False))
@click.option("--space", "spaces", multiple=True, metavar="NAME", help="Space(s) to compare with raw cosine (repeatable).")
@top_k_option  # k of recall@k: neighbours retrieved per query
@click.option("--skip-unknown", is_flag=True, help="Leave out GROUPS.csv lines whose item is not embedded in STORE.")
@json_option
def evaluate(store_path: str, groups_path: str, spaces: tuple[str, ...], k: int, skip_unknown: bool, as_json: bool) -> None:
    """Same-group retrieval on STORE's tracks listed in GROUPS.csv: triplet accuracy, recall@k, mAP per space.

    Use groups that the spaces were NOT trained on, or the figures flatter them.
    """
    from embedkit.spaces import Space, load_space
    from embedkit.spaces.groups import read_groups
    from embedkit.spaces.metrics import retrieval_metrics, sample_triplets, triplet_accuracy
    from embedkit.store import Store

    rows = []
    with Store.open(store_path) as st:
        g = read_groups(groups_path, st, skip_unknown=skip_unknown)
        X = st.vectors(g.ids)
        trip = sample_triplets(g.labels, 5000, seed=0)
        cands = [("raw", Space("raw", st.dim, {}))] + [(n, load_space(st, n)) for n in spaces]
        for n, sp in cands:
            Z = sp.transform(X)
            m = retrieval_metrics(Z, g.labels, k=k)
            rows.append({"space": n, "triplet_accuracy": round(triplet_accuracy(Z, trip), 4), f"recall@{k}": round(m[f"recall@{k}"], 4),
                         "map": round(m["map"], 4), "queries": m["queries"]})
    if as_json:
        emit_json({"store": store_path, "groups": groups_path, "items": int(g.ids.size), "n_groups": g.n_groups, "results": rows})
        return
    click.echo(f"# {g.ids.size} items in {g.n_groups} groups; each item queries all others")
    click.echo(f"{'space':<20} {'triplet acc':>12} {'recall@' + str(k):>10} {'mAP':>8}")
    for r in rows:
        click.echo(f"{r['space']:<20} {r['triplet_accuracy']:>12.4f} {r[f'recall@{k}']:>10.4f} {r['map']:>8.4f}")


def _refuse_overwrite(target, force: bool) -> None:
    from embedkit.errors import EmbedkitError

    card = target.with_name(target.name + ".json")
    if card.exists() and not force:
        raise EmbedkitError(f"{card}: a space of that name exists; pass --force to replace it or choose another -o NAME")


def _f(v) -> str:
    return "n/a" if v is None else f"{v:.4f}"
