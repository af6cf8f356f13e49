"""``embedkit train``, ``embedkit evaluate`` and ``embedkit predict``: small heads on store vectors.

    embedkit evaluate STORE labels.csv [--head svm] [--shots 1,5,10,20] [--plots DIR]
    embedkit train    STORE labels.csv -o genre.head [--evaluate]
    embedkit predict  genre.head song.mp3 other/ [--store STORE] [--json | --csv]
"""
from __future__ import annotations

import csv
import logging
import sys
from typing import Any

import click
import numpy as np

from ._common import PartialFailure, display_path, emit_json
from .options import (
    batch_size_option, compose, force_option, json_option, layers_option, select_metric_option, store_argument,
    top_k_option,
)

log = logging.getLogger("embedkit")

HEAD_KINDS = ["auto", "svm", "logreg", "mlp", "svr", "ridge", "attention"]  # attention: per-patch input (cli.attention_cmd)

store_arg = store_argument
labels_arg = click.argument("labels_path", metavar="LABELS", type=click.Path(dir_okay=False))

data_options = compose(
    click.option("--task", type=click.Choice(["auto", "classification", "regression", "multilabel"]), default="auto",
                 show_default=True, help="What the labels are (auto: 'label' column → classification, 'labels' → "
                 "multilabel, numeric columns → regression)."),
    click.option("--target", "targets", metavar="COLS", default=None,
                 help="Label/value column(s) of LABELS to learn (comma-separated). Default: label, labels, or all numeric columns."),
    click.option("--key", metavar="COL", default=None, help="Column with paths or store ids (default: path/file/filename/id)."),
    click.option("--groups", "groups_col", metavar="COL", default=None,
                 help="Column of group ids (artist, album, recording) kept on one side of every split. Default: a 'group' column if present."),
    click.option("--no-groups", is_flag=True, help="Ignore any group column (plain stratified folds)."),
    click.option("--strict", is_flag=True, help="Error (instead of warn and skip) on labelled items missing from STORE."),
    click.option("--drop-rare", is_flag=True, help="Drop classes with a single example (with a warning) instead of failing."),
)

head_options = compose(
    click.option("--head", "kind", type=click.Choice(HEAD_KINDS), default="auto", show_default=True,
                 help="Estimator: svm/logreg/mlp (classification), svr/ridge/mlp (regression), logreg/mlp (multilabel); "
                 "auto = svm, svr, logreg."),
    layers_option,
    click.option("--layers-grid", metavar="SETS", default=None,
                 help="Search layer subsets as a hyper-parameter: 'default' (all, each block, last 2, last 3) or '1,2,3,4,5|4,5|5'."),
    click.option("--class-weight", type=click.Choice(["none", "balanced"]), default="none", show_default=True,
                 help="Weight classes inversely to their frequency (imbalanced data)."),
    click.option("--inner-folds", type=click.IntRange(2, 20), default=3, show_default=True,
                 help="Folds of the inner CV that picks hyper-parameters."),
    select_metric_option,  # old spelling --metric kept as a hidden alias
    click.option("--select-on", "selection_subsample", type=click.IntRange(10), default=None, metavar="N",
                 help="Choose hyper-parameters on a random (stratified) subset of N training items, then refit on all "
                 "(faster on big sets; default: all items)."),
    click.option("--seed", type=int, default=0, show_default=True, help="Seed of all folds and draws."),
    click.option("-j", "--jobs", type=click.IntRange(1, 64), default=2, show_default=True, help="Parallel folds."),
)


def _warn(msg: str) -> None:
    click.echo(f"embedkit: warning: {msg}", err=True)


def _info(msg: str) -> None:
    ctx = click.get_current_context(silent=True)
    if not (ctx and ctx.find_root().obj and ctx.find_root().obj.get("quiet")):
        click.echo(f"embedkit: {msg}", err=True)


def _load(store_path: str, labels_path: str, *, task: str, targets: str | None, key: str | None, groups_col: str | None,
          no_groups: bool, strict: bool, drop_rare: bool, split_col: str | None = None, need_two_per_class: bool = True):
    """`embedkit.heads.training.load_training_set`, its warnings shown."""
    from embedkit.heads.training import load_training_set

    ts = load_training_set(store_path, labels_path, task=task, targets=targets, key=key, groups_col=groups_col,
                           no_groups=no_groups, strict=strict, drop_rare=drop_rare, split_col=split_col,
                           need_two_per_class=need_two_per_class)
    for w in ts.warnings:
        _warn(w)
    return ts


def _make_head(table, manifest: dict, *, kind: str, layers: str | None, layers_grid: str | None, class_weight: str,
               inner_folds: int, selection_metric: str | None, selection_subsample: int | None, seed: int, jobs: int,
               spec=None):
    from embedkit.heads import Head

    if kind == "attention":  # issue 11
        from .attention_cmd import make_head
        return make_head(table.task, manifest, layers=layers, layers_grid=layers_grid, class_weight=class_weight,
                         inner_folds=inner_folds, selection_metric=selection_metric, seed=seed)
    return Head(task=table.task, kind=kind, layout=manifest.get("layout"), spec=spec, layers=layers, layers_grid=layers_grid,
                class_weight=None if class_weight == "none" else class_weight, inner_folds=inner_folds,
                selection_metric=selection_metric, selection_subsample=selection_subsample, random_state=seed, n_jobs=jobs)


def _fmt_params(p: dict) -> str:
    return " ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in p.items())


# ---- evaluate -------------------------------------------------------------------------------------


@click.command("evaluate")
@store_arg
@labels_arg
@data_options
@head_options
@click.option("--folds", type=click.IntRange(2, 100), default=10, show_default=True, help="Outer CV folds.")
@click.option("--split", "split_col", metavar="COL", default=None,
              help="Use the given train/valid/test split in this column of LABELS instead of outer CV (valid, if any, picks hyper-parameters).")
@click.option("--shots", default=None, metavar="LIST", help="Also draw a few-label learning curve, e.g. '1,5,10,20' (examples per class).")
@click.option("--repeats", type=click.IntRange(1, 1000), default=10, show_default=True, help="Random draws per learning-curve point.")
@click.option("--test-fraction", type=click.FloatRange(0.05, 0.9), default=0.25, show_default=True,
              help="Held-out share of each learning-curve draw.")
@click.option("--baseline", type=click.Choice(["none", "mfcc"]), default="none", show_default=True,
              help="Also evaluate Choi's MFCC baseline (20 MFCC + Δ + ΔΔ, mean/std) on the same items and folds.")
@click.option("--plots", "plots_dir", type=click.Path(file_okay=False), default=None, help="Write confusion_matrix.png / learning_curve.png here.")
@click.option("-o", "--output", type=click.Path(dir_okay=False), default=None, help="Write the report to this .json or .md file.")
@json_option
def evaluate(store_path: str, labels_path: str, task: str, targets: str | None, key: str | None, groups_col: str | None,
             no_groups: bool, strict: bool, drop_rare: bool, kind: str, layers: str | None, layers_grid: str | None,
             class_weight: str, inner_folds: int, selection_metric: str | None, selection_subsample: int | None, seed: int,
             jobs: int, folds: int, split_col: str | None, shots: str | None, repeats: int, test_fraction: float, baseline: str,
             plots_dir: str | None, output: str | None, as_json: bool) -> None:
    """Honest (nested) cross-validation of a head on STORE vectors labelled by LABELS.

    The outer folds hold out test items (stratified; whole groups when a group column is used); the head
    picks its hyper-parameters by an inner CV on the training folds only. Reports mean ± std over folds,
    chance levels, per-class precision/recall and a confusion matrix (classification), ROC-AUC/PR-AUC/P@K
    (multilabel) or R² and Pearson r (regression).
    """
    from embedkit.evaluation import learning_curve, nested_cv, write_report

    ts = _load(store_path, labels_path, task=task, targets=targets, key=key, groups_col=groups_col,
               no_groups=no_groups, strict=strict, drop_rare=drop_rare, split_col=split_col)
    manifest, X, table, ids, paths = ts.manifest, ts.X, ts.table, ts.ids, ts.paths
    if kind == "attention":  # issue 11: a track is its per-patch vectors
        from .attention_cmd import inputs as _attention_inputs
        X, manifest = _attention_inputs(store_path, ids, manifest)
    if split_col and table.split is None:
        raise click.BadParameter(f"LABELS has no split column {split_col!r}", param_hint="--split")
    head = _make_head(table, manifest, kind=kind, layers=layers, layers_grid=layers_grid, class_weight=class_weight,
                      inner_folds=inner_folds, selection_metric=selection_metric, selection_subsample=selection_subsample,
                      seed=seed, jobs=1, spec=ts.spec)
    base_X = None
    if baseline == "mfcc":
        base_X, ok = _mfcc_features(paths, jobs)
        if not ok.all():
            _warn(f"{int((~ok).sum())} items could not be decoded for the MFCC baseline; both evaluations use the other {int(ok.sum())}")
            X, base_X, table = X[ok], base_X[ok], table.subset(np.flatnonzero(ok))
    groups_name = None if table.groups is None else (groups_col or "group")
    _info(f"evaluating a {head.resolved_kind} head on {len(table)} items ({table.task}, {X.shape[1] if X.ndim == 2 else 'per-patch'} dims)…")
    report = nested_cv(head, X, table.y, groups=table.groups, label_names=table.names if table.task != "classification" else None,
                       folds=folds, split=table.split if split_col else None, seed=seed, n_jobs=jobs, groups_name=groups_name)
    report.extra["store"] = str(store_path)
    report.extra["labels_file"] = str(labels_path)
    report.extra["model"] = manifest.get("model")
    report.extra["aggregation"] = manifest.get("aggregation")
    if shots:
        try:
            shot_list = [int(s) for s in shots.split(",") if s.strip()]
        except ValueError:
            raise click.BadParameter(f"expected comma-separated integers, given {shots!r}", param_hint="--shots") from None
        _info(f"learning curve: shots {shot_list} × {repeats} draws…")
        report.learning_curve = learning_curve(head, X, table.y, shots=shot_list, repeats=repeats, groups=table.groups,
                                               label_names=table.names if table.task != "classification" else None,
                                               test_fraction=test_fraction, seed=seed, n_jobs=jobs)
    if base_X is not None:
        from embedkit.baselines import MFCC_LAYOUT

        _info("evaluating the MFCC baseline on the same folds…")
        bhead = head.clone().set_params(layout=MFCC_LAYOUT, spec=None, layers=None, layers_grid=None)
        b = nested_cv(bhead, base_X, table.y, groups=table.groups, label_names=table.names if table.task != "classification" else None,
                      folds=folds, split=table.split if split_col else None, seed=seed, n_jobs=jobs, groups_name=groups_name)
        report.extra["baseline"] = {"name": "mfcc (20 MFCC + Δ + ΔΔ, mean and std; 120 dims)", "metrics": b.metrics, "chance": b.chance}
    if plots_dir:
        for p in report.save_plots(plots_dir):
            _info(f"wrote {p}")
    if output:
        write_report(report, output)
        _info(f"wrote {output}")
    if as_json:
        emit_json(report.to_json())
        return
    text = report.to_markdown()
    if "baseline" in report.extra:
        bm = report.extra["baseline"]["metrics"]
        text += "\nMFCC baseline on the same folds:\n\n| metric | mean ± std |\n|---|---|\n"
        text += "".join(f"| {k} | {v['mean']:.3f} ± {v['std']:.3f} |\n" for k, v in bm.items() if v["mean"] == v["mean"])
    click.echo(text.rstrip("\n"))


def _mfcc_features(paths: list[str], jobs: int):
    from embedkit.baselines import DIM, mfcc_files

    X = np.zeros((len(paths), DIM), np.float32)
    ok = np.zeros(len(paths), bool)
    for i, (_p, v) in enumerate(mfcc_files(paths, workers=jobs)):
        if isinstance(v, str):
            _warn(v)
        else:
            X[i], ok[i] = v, True
    return X, ok


# ---- train ----------------------------------------------------------------------------------------


@click.command("train")
@store_arg
@labels_arg
@click.option("-o", "--output", "head_path", required=True, type=click.Path(), help="Folder to save the head in (e.g. genre.head).")
@data_options
@head_options
@click.option("--evaluate", "do_eval", is_flag=True, help="Also run nested CV first and store its (honest) metrics in the head's card.")
@click.option("--folds", type=click.IntRange(2, 100), default=10, show_default=True, help="Outer folds for --evaluate.")
@force_option  # replaces an existing head only, never another folder
@json_option
def train(store_path: str, labels_path: str, head_path: str, task: str, targets: str | None, key: str | None,
          groups_col: str | None, no_groups: bool, strict: bool, drop_rare: bool, kind: str, layers: str | None,
          layers_grid: str | None, class_weight: str, inner_folds: int, selection_metric: str | None,
          selection_subsample: int | None, seed: int, jobs: int, do_eval: bool, folds: int, force: bool, as_json: bool) -> None:
    """Train a head on all labelled STORE vectors and save it (plain arrays + a JSON card, no pickle).

    Hyper-parameters (and layers, with --layers-grid) are chosen by inner CV. The card records the task,
    classes, layers, the store's model fingerprint (checked when the head is used) and, with --evaluate,
    nested-CV metrics; the inner-CV score of the chosen setting is optimistic and is not reported as one.
    """
    from embedkit.heads.card import check_output
    from embedkit.heads.training import provenance

    check_output(head_path, overwrite=force)  # before any work: --force replaces a head, never another folder
    ts = _load(store_path, labels_path, task=task, targets=targets, key=key, groups_col=groups_col,
               no_groups=no_groups, strict=strict, drop_rare=drop_rare, need_two_per_class=do_eval)
    manifest, X, table, ids = ts.manifest, ts.X, ts.table, ts.ids
    if kind == "attention":  # issue 11: a track is its per-patch vectors
        from .attention_cmd import inputs as _attention_inputs
        X, manifest = _attention_inputs(store_path, ids, manifest)
    head = _make_head(table, manifest, kind=kind, layers=layers, layers_grid=layers_grid, class_weight=class_weight,
                      inner_folds=inner_folds, selection_metric=selection_metric, selection_subsample=selection_subsample,
                      seed=seed, jobs=jobs, spec=ts.spec)
    metrics = None
    protocol = None
    if do_eval:
        from embedkit.evaluation import nested_cv

        _info(f"nested {folds}-fold evaluation on {len(table)} items…")
        rep = nested_cv(head.clone().set_params(n_jobs=1), X, table.y, groups=table.groups,
                        label_names=table.names if table.task != "classification" else None, folds=folds, seed=seed, n_jobs=jobs)
        metrics, protocol = rep.to_json()["metrics"], rep.protocol
    _info(f"training a {head.resolved_kind} head on {len(table)} items…")
    head.fit(X, table.y, groups=table.groups, label_names=table.names if table.task != "classification" else None)
    if head.selection_["inner_folds"] == 0 and head.selection_["n_candidates"] > 1:
        _warn(f"too few examples per class for an inner CV: fixed default hyper-parameters {_fmt_params(head.params_)}")
    info = provenance(ts, metrics=metrics, protocol=protocol)
    if kind == "attention":  # issue 11: pin the vector spec of the per-patch input
        from .attention_cmd import card_info
        info.update(card_info(manifest))
    out = head.save(head_path, info=info, overwrite=force)
    card = head.card_
    if as_json:
        emit_json({"head": str(out), "card": card})
        return
    names = head.output_names
    what = {"classification": f"{len(names)} classes", "multilabel": f"{len(names)} labels", "regression": f"targets {', '.join(names)}"}[table.task]
    sel = card["selection"]
    lines = [
        f"trained a {card['kind']} head on {len(table)} items ({table.task}, {what})",
        f"  layers: {','.join(card['layers'])} ({len(head.columns_)} of {head.n_features_in_} dims)",
        f"  hyper-parameters: {_fmt_params(card['params'])} ({sel['reason']}; {sel['n_candidates']} candidates)",
    ]
    if metrics:
        lines.append("  nested-CV metrics: " + ", ".join(f"{k} {v['mean']:.3f} ± {v['std']:.3f}" for k, v in metrics.items()
                                                     if v["mean"] is not None and not k.startswith(("r2_", "pearson_r_"))))
    else:
        lines.append("  metrics: not evaluated (run 'embedkit evaluate' or add --evaluate for an honest estimate)")
    lines.append(f"saved to {out}")
    click.echo("\n".join(lines))


# ---- predict --------------------------------------------------------------------------------------


@click.command("predict")
@click.argument("head_path", metavar="HEAD", type=click.Path(exists=False))
@click.argument("inputs", metavar="[FILES|FOLDERS]...", nargs=-1, type=click.Path())
@click.option("--store", "store_path", type=click.Path(file_okay=False), default=None,
              help="Use vectors already in this store (all its items when no FILES are given); embed only what it lacks.")
@click.option("--csv", "as_csv", is_flag=True, help="CSV on stdout (one column per class/label/target).")
@top_k_option  # the k most likely classes/labels
@click.option("--threshold", type=click.FloatRange(0, 1), default=0.5, show_default=True, help="Multilabel: probability for a label to be on.")
@batch_size_option
@json_option
def predict(head_path: str, inputs: tuple[str, ...], store_path: str | None, as_csv: bool, k: int,
            threshold: float, batch_size: int, as_json: bool) -> None:
    """Labels, probabilities or values from a trained HEAD for audio FILES and/or the items of a --store.

    Files already embedded in --store (same path, size and mtime) use their stored vectors; the rest are
    embedded with the head's model, layers and aggregation. A head is refused on vectors from another
    model fingerprint. Files that cannot be decoded are reported on stderr (exit code 3).
    """
    from embedkit.heads import Head
    from embedkit.heads.apply import gather

    if as_json and as_csv:
        raise click.UsageError("choose one of --json and --csv")
    from embedkit.heads import read_card
    from embedkit.heads.attention import is_attention_card

    if is_attention_card(read_card(head_path)):  # issue 11: per-patch input, per-patch weights in --json
        from .attention_cmd import predict as _predict_attention
        return _predict_attention(head_path, inputs, store_path, as_csv=as_csv, top_k=k, threshold=threshold,
                                  batch_size=batch_size, as_json=as_json)
    if not inputs and not store_path:
        raise click.UsageError("give audio FILES/FOLDERS, or --store STORE to predict its items")
    head = Head.load(head_path)
    got = gather(head, inputs, store_path=store_path, batch_size=batch_size, info=_info, warn=_warn)
    for _path, err in got.failures:
        click.echo(f"embedkit: {err}", err=True)
    if got.keys:
        _emit_predictions(head, got.X, got.keys, got.ids, got.source, as_json=as_json, as_csv=as_csv, top_k=k,
                          threshold=threshold)
    elif not got.failures:
        _warn("nothing to predict")
    if got.failures:
        raise PartialFailure(f"{len(got.failures)} of {len(got.failures) + len(got.keys)} inputs failed")


def _unchanged(item: Any, path: str) -> bool:
    import os

    try:
        s = os.stat(path)
    except OSError:
        return False
    if item.size is None or item.mtime is None:
        return True
    return item.size == s.st_size and abs(item.mtime - s.st_mtime) < 1e-3


def _expand(inputs: tuple[str, ...]) -> tuple[list[str], list[tuple[str, str]]]:
    from embedkit.heads.apply import expand

    return expand(inputs)


def _emit_predictions(head, X: np.ndarray, keys: list[str], ids: list, source: list[str], *, as_json: bool, as_csv: bool,
                      top_k: int | None, threshold: float) -> None:
    from embedkit.heads.apply import PredictionInputs, prediction_records

    names = head.output_names
    task = head.task
    proba = True if head.has_proba else None
    records = prediction_records(head, PredictionInputs(X, list(keys), list(ids), list(source)), threshold=threshold)
    if as_json:
        emit_json(records)
        return
    out = sys.stdout
    if as_csv:
        w = csv.writer(out, lineterminator="\n")
        if task == "regression":
            w.writerow(["path"] + names)
            for r in records:
                w.writerow([r["path"]] + [f"{r['values'][n]:.6g}" for n in names])
        else:
            first = "label" if task == "classification" else "labels"
            w.writerow(["path", first] + ([f"p_{n}" for n in names] if proba is not None else []))
            for r in records:
                lab = r["label"] if task == "classification" else ";".join(r["labels"])
                w.writerow([r["path"], lab] + ([f"{r['probabilities'][n]:.6g}" for n in names] if proba is not None else []))
        return
    for r in records:
        if task == "regression":
            click.echo(f"{display_path(r['path'])}\t" + "\t".join(f"{n}={r['values'][n]:.4g}" for n in names))
            continue
        probs = r.get("probabilities")
        if task == "classification":
            if probs is None:
                click.echo(f"{display_path(r['path'])}\t{r['label']}")
                continue
            best = sorted(probs.items(), key=lambda kv: -kv[1])[: (top_k or 1)]
            click.echo(f"{display_path(r['path'])}\t{r['label']}\t" + "  ".join(f"{n} {p:.3f}" for n, p in best))
        else:
            best = sorted(probs.items(), key=lambda kv: -kv[1])[: (top_k or 5)]
            on = ";".join(r["labels"]) or "-"
            click.echo(f"{display_path(r['path'])}\t{on}\t" + "  ".join(f"{n} {p:.3f}" for n, p in best))

