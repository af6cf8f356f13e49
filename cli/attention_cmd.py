"""The attention head's side of ``embedkit train / evaluate / predict --head attention`` (per-patch input).

`cli.heads_cmd` hands over here when the head kind is ``attention``: the vectors of a track are then its
per-patch vectors (a store made with ``--patches``, or files embedded with ``return_patches``), and
``predict --json`` adds each track's per-patch attention weights.
"""
from __future__ import annotations

from typing import Any

import click
import numpy as np

from ._common import PartialFailure, emit_json


def inputs(store_path: str, ids: np.ndarray, manifest: dict) -> tuple[np.ndarray, dict]:
    """``(bags (n,) object array of (T_i, D), manifest with the per-patch layout)`` for the labelled items."""
    from embedkit.heads.attention import patch_layout, store_bags
    from embedkit.store import Store

    with Store.open(store_path) as st:
        bags, _ = store_bags(st, ids)
    return bags, {**manifest, "layout": patch_layout(manifest), "patch_input": True}


def make_head(task: str, manifest: dict, *, layers: str | None, class_weight: str | None, inner_folds: int,
              selection_metric: str | None, seed: int, layers_grid: str | None = None, **_: Any):
    """An `AttentionHead` with the CLI's settings (``layers_grid`` is refused: one fixed layer set)."""
    from embedkit.heads.attention import AttentionHead

    if layers_grid:
        raise click.UsageError("--layers-grid does not apply to --head attention (choose --layers)")
    return AttentionHead(task=task, layout=manifest.get("layout"), layers=layers,
                         class_weight=None if class_weight in (None, "none") else class_weight,
                         inner_folds=inner_folds, selection_metric=selection_metric, random_state=seed)


def card_info(manifest: dict) -> dict:
    """Card fields that pin the vector spec the head was trained on (model, fingerprint, layers, excerpt)."""
    from embedkit.spec import VectorSpec

    try:
        return VectorSpec.from_json(manifest).card_fields()
    except Exception:
        return {}


def predict(head_path: str, inputs_: tuple[str, ...], store_path: str | None, *, as_csv: bool, top_k: int | None,
            threshold: float, batch_size: int, as_json: bool) -> None:
    """``embedkit predict`` for an attention head: per-patch input, per-patch weights in ``--json``."""
    from embedkit.heads import check_compatible
    from embedkit.heads.attention import AttentionHead, store_bags

    from .heads_cmd import _emit_predictions, _expand, _unchanged

    head = AttentionHead.load(head_path)
    card = head.card_
    keys: list[str] = []
    ids: list[int | None] = []
    source: list[str] = []
    bags: list[np.ndarray] = []
    times: list[np.ndarray] = []
    failures: list[tuple[str, str]] = []
    to_embed: list[str] = []
    files: list[str] = []
    if inputs_:
        files, errs = _expand(inputs_)
        failures += errs
    if store_path:
        from embedkit.store import Store

        with Store.open(store_path) as st:
            check_compatible(card, model_fingerprint=st.model_fingerprint, source=f"vectors in {store_path}")
            pdim = st.manifest.get("patch_dim")
            if pdim and int(pdim) != head.n_features_in_:
                raise click.ClickException(f"{store_path}: per-patch vectors have {pdim} values, the head expects "
                                           f"{head.n_features_in_}; retrain the head on this store")
            items = []
            if files:
                for f in files:
                    it = st.get(f)
                    if it is not None and it.status == "ok" and _unchanged(it, f):
                        items.append(it)
                    else:
                        to_embed.append(f)
            else:
                items = st.items("ok")
            if items:
                b, t = store_bags(st, [it.id for it in items])
                bags += list(b)
                times += t
                keys += [it.path for it in items]
                ids += [int(it.id) for it in items]
                source += ["store"] * len(items)
    else:
        to_embed = files
    if to_embed:
        from embedkit.embedder import FileFailure
        from embedkit.spec import VectorSpec

        emb = VectorSpec.from_json(card, source=head_path).embedder(batch_size=batch_size)
        click.echo(f"embedkit: embedding {len(to_embed)} file(s) with {emb.spec.model}…", err=True)
        for r in emb.embed_files(to_embed, return_patches=True):
            if isinstance(r, FileFailure):
                failures.append((r.path, r.error))
                continue
            keys.append(r.path)
            ids.append(None)
            source.append("embedded")
            bags.append(np.asarray(r.patch_vectors, np.float32))
            times.append(np.asarray(r.patch_start_s, np.float64))
    for _, err in failures:
        click.echo(f"embedkit: {err}", err=True)
    if keys:
        X = np.empty(len(bags), dtype=object)
        X[:] = bags
        if as_json:
            emit_json(_records(head, X, keys, ids, source, times, threshold))
        else:
            _emit_predictions(head, X, keys, ids, source, as_json=False, as_csv=as_csv, top_k=top_k, threshold=threshold)
    elif not failures:
        click.echo("embedkit: warning: nothing to predict", err=True)
    if failures:
        raise PartialFailure(f"{len(failures)} of {len(failures) + len(keys)} inputs failed")


def _records(head, X: np.ndarray, keys: list[str], ids: list, source: list[str], times: list[np.ndarray],
             threshold: float) -> list[dict]:
    names = head.output_names
    out = []
    for i, k in enumerate(keys):
        ex = head.explain_one(X[i])
        rec: dict[str, Any] = {"path": k, "id": ids[i], "source": source[i]}
        o = ex["output"]
        if head.task == "classification":
            rec["label"] = names[int(np.argmax(o))]
            rec["probabilities"] = {n: float(p) for n, p in zip(names, o)}
        elif head.task == "multilabel":
            rec["labels"] = [names[j] for j in np.argsort(-o) if o[j] >= threshold]
            rec["probabilities"] = {n: float(p) for n, p in zip(names, o)}
        else:
            rec["values"] = {n: float(v) for n, v in zip(names, o)}
        w = ex["weights"]
        rec["patch_start_s"] = [round(float(t), 3) for t in times[i]]
        rec["patch_weights"] = [float(x) for x in w]
        rec["attention_peak_s"] = round(float(times[i][int(np.argmax(w))]), 3)
        out.append(rec)
    return out
