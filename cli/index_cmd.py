"""``embedkit index``: build (or update) and inspect FAISS similarity indexes over a store."""
from __future__ import annotations

import click

from ._common import emit_json
from .options import distance_metric_option, json_option, segments_option, space_option, store_argument

name_option = click.option("--name", default="default", show_default=True,
                           help="Index name (saved as STORE/index/NAME.faiss + NAME.json).")


@click.group("index")
def index() -> None:
    """Build and inspect FAISS similarity indexes over a store (used by 'embedkit similar' and 'recommend')."""


@index.command("build")
@store_argument
@click.option("--kind", type=click.Choice(["auto", "flat", "hnsw", "ivf", "ivfpq", "ivfpq_disk"]), default="auto",
              show_default=True, help="Index kind; auto: exact below ~20k x 640 floats, HNSW above, IVF-PQ when over "
              "--memory, IVF-PQ with its lists on disk (ivfpq_disk) when even that does not fit.")
@click.option("--memory", default=None, metavar="SIZE", help="Memory budget for the index, e.g. 4G or 512M "
              "(default: half of this machine's RAM).")
@distance_metric_option
@click.option("--pca", "pca_dim", type=click.IntRange(1), default=None, metavar="N",
              help="Project vectors on their N main axes (PCA learned on the store).")
@click.option("--whiten", is_flag=True, help="Whiten (PCA with unit variance per axis) before normalising.")
@click.option("--target-recall", type=click.FloatRange(0, 1), default=0.95, show_default=True,
              help="Tune efSearch / nprobe until recall@k against exact search reaches this.")
@click.option("--recall-k", type=click.IntRange(1), default=10, show_default=True, help="k of the recall target.")
@segments_option  # saved as index 'patches' (old spelling: --patches)
@space_option  # recorded in the index card and applied to every query
@click.option("--rebuild", is_flag=True, help="Build from scratch even if an up-to-date-able index exists.")
@click.option("--gpu/--cpu", "use_gpu", default=None, help="Force GPU or CPU (default: GPU when faiss sees one).")
@name_option
@json_option
def build(store_path: str, kind: str, memory: str | None, metric: str, pca_dim: int | None, whiten: bool,
          target_recall: float, recall_k: int, segments: bool, space: str | None, rebuild: bool, use_gpu: bool | None,
          name: str, as_json: bool) -> None:
    """Build index NAME over STORE's vectors, or add the store's new items to it (incremental).

    The index is trained and its search parameters tuned until recall@k against exact search on a
    sample of stored vectors reaches --target-recall; the card beside it records kind, parameters,
    measured recall, store fingerprint and vector count.
    """
    from embedkit.index import build_for_store, parse_memory
    from embedkit.store import Store

    try:
        budget = parse_memory(memory)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--memory") from None
    patches = segments  # --segments: index the per-patch vectors (old spelling --patches)
    if patches and name == "default":
        name = "patches"
    with Store.open(store_path) as st:
        from embedkit.spaces.hooks import space_map

        vmap = space_map(st, space, source="patches" if patches else "tracks", fit_auto=True)
        try:
            _, summary = build_for_store(
                st, name=name, kind=kind, memory_budget_bytes=budget, metric=metric, pca_dim=pca_dim, whiten=whiten,
                target_recall=target_recall, k=recall_k, source="patches" if patches else "tracks", rebuild=rebuild,
                use_gpu=use_gpu, **({"vector_map": vmap} if vmap is not None else {}),
            )
        except ValueError as exc:
            from embedkit.errors import EmbedkitError

            raise EmbedkitError(f"{store_path}: {exc}") from None
    card = summary["card"]
    if as_json:
        emit_json({"action": summary["action"], "added": summary["added"], **card})
        return
    click.echo(f"{summary['action']} index {name!r} of {store_path}: {_describe(card)}")
    rec = card.get("recall") or {}
    if rec and rec.get("target_met") is False:
        click.echo(f"warning: recall@{rec['k']} {rec['measured']:.3f} is below the target {rec['target']:.2f}", err=True)


@index.command("info")
@store_argument
@name_option
@json_option
def info(store_path: str, name: str, as_json: bool) -> None:
    """Show index NAME of STORE: kind, parameters, recall, size, and whether it is up to date."""
    from embedkit.index import IndexStateError, list_indexes, open_for_store, read_card
    from embedkit.store import Store

    with Store.open(store_path) as st:
        card = read_card(st, name)
        try:
            vi = open_for_store(st, name=name, allow_new=True)
            from embedkit.index import check_store

            new = int(check_store(vi, st, name=name)["new"].size)
            status = "up to date" if new == 0 else f"{new} new store items not indexed (run 'embedkit index build')"
        except IndexStateError as exc:
            status = f"unusable: {exc}"
        names = list_indexes(st)
    if as_json:
        emit_json({**card, "status": status, "indexes": names})
        return
    rec = card.get("recall") or {}
    t = card.get("transform", {})
    lines = [
        f"index:      {name} ({', '.join(names)} beside this store)",
        f"kind:       {card['kind']} ({card['factory']}), {card['reason']}",
        f"vectors:    {card['n_vectors']} {card.get('source', 'tracks')} of dim {card['dim']}"
        + (f" -> {card['index_dim']}" if card['index_dim'] != card['dim'] else ""),
        f"similarity: {t.get('metric')}" + (f", PCA {t.get('pca_dim')}" if t.get("pca_dim") else "")
        + (" whitened" if t.get("whiten") else ""),
        f"search:     {_params(card.get('search_params') or {}) or 'exact'}",
        *([f"space:      {card['space'].get('name')} ({card['space'].get('kind')}, {card['space'].get('in_dim')} -> "
           f"{card['space'].get('out_dim')}; 'embedkit metric show {store_path} {card['space'].get('name')}')"]
          if isinstance(card.get("space"), dict) else []),
        f"recall@{rec.get('k', 10)}:  {_recall(rec)}",
        f"memory:     {_bytes(card.get('memory_bytes'))} (estimated)",
        f"store:      {card.get('store', {}).get('settings')} (fingerprint {str(card.get('store', {}).get('fingerprint'))[:16]}…)",
        f"built:      {card.get('created')} in {card.get('build_s')} s on {card.get('device')}, faiss {card.get('faiss_version')}"
        + (f"; {card['added_incrementally']} added since" if card.get("added_incrementally") else ""),
        f"status:     {status}",
    ]
    click.echo("\n".join(lines))


def _describe(card: dict) -> str:
    rec = card.get("recall") or {}
    return (f"{card['kind']} ({card['factory']}) over {card['n_vectors']} vectors, {_params(card.get('search_params') or {}) or 'exact'}, "
            f"recall@{rec.get('k', 10)} {_recall(rec)}, ~{_bytes(card.get('memory_bytes'))}, {card.get('build_s')} s")


def _params(p: dict) -> str:
    return ", ".join(f"{k}={v}" for k, v in p.items())


def _recall(rec: dict) -> str:
    m = rec.get("measured")
    if m is None or m != m:  # NaN
        return "not measured"
    if not rec.get("n_queries"):
        return f"{m:.3f} (exact)"
    return f"{m:.3f} on {rec['n_queries']} queries (target {rec.get('target')})"


def _bytes(n: int | None) -> str:
    from embedkit.index import format_bytes

    return format_bytes(n)
