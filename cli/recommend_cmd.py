"""``embedkit recommend``: content-based and cold-start recommendations from a listening history."""
from __future__ import annotations

import click

from ._common import display_path, emit_json
from .options import json_option, space_option, store_argument, top_k_option


@click.command("recommend")
@store_argument
@click.option("--history", "history", required=True, type=click.Path(dir_okay=False, allow_dash=True), metavar="CSV",
              help="History / interaction log: columns user (optional), item (store id or path), and optionally "
                   "plays/count or rating. '-' reads stdin.")
@click.option("--user", default=None, help="Whose recommendations (needed when the log has several users).")
@top_k_option
@click.option("--cold-only", is_flag=True, help="Only items with no interactions in the log (cold start).")
@click.option("--scorer", type=click.Choice(["auto", "mean", "multi", "mapping"]), default="auto", show_default=True,
              help="mean: mean taste profile; multi: multi-interest (clusters of the history); mapping: CF factors "
                   "regressed from audio (van den Oord 2013, needs many users); auto: mapping when the log allows, else multi.")
@click.option("--interests", "n_interests", type=click.IntRange(1), default=3, show_default=True,
              help="Interest clusters of the multi-interest profile.")
@click.option("--diversity", type=click.FloatRange(0, 1), default=0.0, show_default=True,
              help="Maximal-marginal-relevance trade-off: 0 = pure relevance, 1 = most acoustically diverse list.")
@click.option("--factors", type=click.IntRange(1), default=32, show_default=True, help="CF factors (mapping scorer).")
@click.option("--cf", type=click.Choice(["svd", "als"]), default="svd", show_default=True,
              help="CF method of the mapping scorer: truncated SVD or implicit ALS.")
@click.option("--evaluate", "do_evaluate", is_flag=True,
              help="Hold out items, recommend them from audio only, report per-user mAP@k, recall@k, AUC vs baselines.")
@click.option("--folds", type=click.IntRange(2), default=5, show_default=True, help="Item folds for --evaluate.")
@click.option("--per-user", is_flag=True, help="With --evaluate --json: include every user's metrics.")
@click.option("--seed", type=int, default=0, show_default=True, help="Random seed (folds, k-means, baselines).")
@space_option
@json_option
def recommend(store_path: str, history: str, user: str | None, k: int, cold_only: bool, scorer: str, n_interests: int,
              diversity: float, factors: int, cf: str, do_evaluate: bool, folds: int, per_user: bool, seed: int,
              space: str | None, as_json: bool) -> None:
    """Recommend K items of STORE for a user from their --history (items not already in it).

    With an interaction log of many users, the van den Oord mapping (CF factors regressed from
    audio) scores items nobody has played; otherwise the taste profile of the user's history does.
    The scorer used is reported. History items not in the store are listed on stderr (and in --json).
    """
    import sys

    from embedkit.recommend import evaluate_store, load_interactions
    from embedkit.recommend import recommend as run_recommend
    from embedkit.store import Store

    with Store.open(store_path) as st:
        src = sys.stdin if history == "-" else history
        inter = load_interactions(src, st)
        _report_unknown(inter.unknown, user if not do_evaluate else None)
        if do_evaluate:
            scorers = ("mean", "multi", "mapping") if scorer == "auto" else (scorer,)
            res = evaluate_store(st, inter, k=k, folds=folds, scorers=scorers, n_interests=n_interests,
                                 factors=factors, cf=cf, seed=seed, space=space)
            if as_json:
                if not per_user:
                    res.pop("per_user")
                emit_json(res)
            else:
                _print_evaluation(res, k)
            return
        res = run_recommend(st, inter, user=user, k=k, scorer=scorer, cold_only=cold_only, diversity=diversity,
                            n_interests=n_interests, factors=factors, cf=cf, seed=seed, space=space)
    if as_json:
        emit_json(res)
        return
    click.echo(f"# user {res['user']}: {res['history']['items']} history items, scorer {res['scorer']} ({res['scorer_reason']})"
               + (", cold items only" if cold_only else "") + (f", diversity {diversity:g}" if diversity else ""))
    if not res["recommendations"]:
        click.echo("  (no candidates left to recommend)")
    for r in res["recommendations"]:
        click.echo(f"{r['rank']:>4}  {r['score']:.4f}  {r['id']:>7}  {'cold' if r['cold'] else 'warm'}  {display_path(r['path'])}")


def _report_unknown(unknown: list[dict], user: str | None) -> None:
    rows = [u for u in unknown if user is None or u["user"] == user]
    if not rows:
        return
    for u in rows[:10]:
        click.echo(f"embedkit: history line {u['line']}: {u['item']}: {u['reason']}", err=True)
    if len(rows) > 10:
        click.echo(f"embedkit: ... {len(rows) - 10} more history items not in the store", err=True)


def _print_evaluation(res: dict, k: int) -> None:
    p = res["protocol"]
    click.echo(f"# item hold-out, {p['folds']} folds: {p['items_played']} played items, {p['users']} users, "
               f"{p['interactions']} interactions; per-user means ± standard error")
    click.echo(f"{'scorer':<12} {'users':>6} {'mAP@' + str(k):>16} {'recall@' + str(k):>16} {'AUC':>16}")
    for name, s in res["summary"].items():
        def cell(key: str) -> str:
            v, se = s.get(key), s.get(key + "_se")
            return "n/a" if v is None else f"{v:.3f} ± {se or 0:.3f}"

        click.echo(f"{name:<12} {s['users']:>6} {cell(f'map@{k}'):>16} {cell(f'recall@{k}'):>16} {cell('auc'):>16}")
    if p.get("audio_to_factors_r2") is not None:
        click.echo(f"# mapping: audio -> CF factors ridge R^2 on warm items {p['audio_to_factors_r2']:.3f}")
    click.echo("# popularity is an oracle baseline (other users' plays of held-out items); random is chance")
