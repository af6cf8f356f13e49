"""Applying a saved head to audio files and store items: gather vectors, embed what is missing, predict.

    inputs = gather(head, ["song.mp3", "album/"], store_path="music.ekstore")
    records = prediction_records(head, inputs)              # one dict per file: label, probabilities, ...

Files that the store holds *as they are now* (`Store.resolve` / `Store.is_current`) use their stored
vectors; the rest are embedded the way the head's vector spec says (`VectorSpec.embedder`). Vectors of
another spec are refused (`embedkit.spec.SpecMismatchError`, one line).
"""
from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..spec import VectorSpec
from .head import Head
from .training import store_spec

log = logging.getLogger("embedkit")


@dataclass
class PredictionInputs:
    """Vectors to predict: ``X (n, input_dim)``, per row the input ``keys`` (paths), store ``ids`` (None when
    embedded now) and ``source`` ("store" | "embedded"); ``failures`` ``[(path, one-line error)]``."""

    X: np.ndarray
    keys: list[str] = field(default_factory=list)
    ids: list[int | None] = field(default_factory=list)
    source: list[str] = field(default_factory=list)
    failures: list[tuple[str, str]] = field(default_factory=list)


def head_spec(head: Head, *, warn: Callable[[str], None] | None = None) -> VectorSpec:
    """The head's vector spec; a head saved without one (0.1's Python API) is assumed to use the default
    model's defaults, with a warning."""
    spec = getattr(head, "spec_", None)
    if spec is not None:
        return spec
    from ..pretrained import DEFAULT_MODEL

    (warn or log.warning)(f"head {getattr(head, 'path_', '')} carries no vector spec (saved without spec=); assuming "
                          f"{DEFAULT_MODEL} vectors: re-save it with Head(..., spec=store.spec) so it can check its input")
    return VectorSpec.for_model(DEFAULT_MODEL, aggregation=head.card_.get("aggregation") or "mean")


def expand(inputs: Sequence[str]) -> tuple[list[str], list[tuple[str, str]]]:
    """Audio files under ``inputs`` (files and folders) and ``[(path, error)]`` of the unusable ones."""
    from ..discovery import discover

    d = discover(list(inputs))
    return [f.path for f in d.files], [(p, f"{p}: {r}") for p, r in d.errors]


def gather(head: Head, inputs: Sequence[str] = (), *, store_path: str | None = None, batch_size: int = 32,
           info: Callable[[str], None] | None = None, warn: Callable[[str], None] | None = None) -> PredictionInputs:
    """Vectors for ``inputs`` (files / folders; with no inputs, every embedded item of the store).

    Raises `embedkit.spec.SpecMismatchError` when the store's vectors were made another way than the head's.
    """
    out = PredictionInputs(np.zeros((0, head.n_features_in_), np.float32))
    vecs: list[np.ndarray] = []
    to_embed: list[str] = []
    if store_path:
        from ..store import Store

        with Store.open(store_path) as st:
            sspec = store_spec(st)
            if getattr(head, "spec_", None) is None:
                (warn or log.warning)(f"head {getattr(head, 'path_', '')} carries no vector spec (saved without spec=): "
                                      f"it cannot check that the vectors in {store_path} were made like its training "
                                      "vectors; re-save it with Head(..., spec=store.spec)")
            elif sspec is not None:
                head.check_spec(sspec, source=f"the vectors in {store_path}")
            elif getattr(head, "spec_", None) is not None:
                from ..spec import SpecMismatchError

                raise SpecMismatchError(f"{store_path}: the store's manifest says nothing about how its vectors were made; "
                                        "cannot check them against this head (embed the files again into a new store)")
            ids: list[int] = []
            if inputs:
                files, errs = expand(inputs)
                out.failures += errs
                for f in files:
                    resolve = getattr(st, "resolve", None)
                    it = resolve(f) if resolve is not None else st.get(f)
                    if it is not None and it.status == "ok":
                        out.keys.append(f)
                        ids.append(int(it.id))
                    else:
                        to_embed.append(f)
            else:
                for it in st.items("ok"):
                    out.keys.append(it.path)
                    ids.append(int(it.id))
            if ids:
                out.ids += ids
                out.source += ["store"] * len(ids)
                vecs.append(head.align(st.vectors(np.asarray(ids, np.int64)), st.layout))
    else:
        files, errs = expand(inputs)
        out.failures += errs
        to_embed = files
    if to_embed:
        keys, X, fails = embed_for_head(head, to_embed, batch_size=batch_size, info=info, warn=warn)
        out.keys += keys
        out.ids += [None] * len(keys)
        out.source += ["embedded"] * len(keys)
        if keys:
            vecs.append(X)
        out.failures += fails
    if vecs:
        out.X = np.concatenate(vecs)
    return out


def embed_for_head(head: Head, paths: list[str], *, batch_size: int = 32, info: Callable[[str], None] | None = None,
                   warn: Callable[[str], None] | None = None) -> tuple[list[str], np.ndarray, list[tuple[str, str]]]:
    """Embed ``paths`` exactly as the head's vectors were made: ``(keys, X (n, input_dim), failures)``."""
    from ..embedder import FileFailure

    spec = head_spec(head, warn=warn)
    emb = spec.embedder(batch_size=batch_size)
    if info is not None:
        info(f"embedding {len(paths)} file(s) with {spec.model}…")
    keys, rows, fails = [], [], []
    for r in emb.embed_files(paths):
        if isinstance(r, FileFailure):
            fails.append((r.path, r.error))
        else:
            keys.append(r.path)
            rows.append(r.vector)
    if not rows:
        return keys, np.zeros((0, head.n_features_in_), np.float32), fails
    return keys, head.align(np.stack(rows), spec.layout_json()), fails


def prediction_records(head: Head, inputs: PredictionInputs, *, threshold: float = 0.5) -> list[dict]:
    """One dict per input row: ``path``, ``id``, ``source`` and ``label`` + ``probabilities``
    (classification), ``labels`` + ``probabilities`` (multilabel, on at ``threshold``) or ``values``."""
    X, names, task = inputs.X, head.output_names, head.task
    proba = head.predict_proba(X) if head.has_proba and len(X) else None
    labels = head.predict(X) if task == "classification" and len(X) else None
    values = head.predict(X).reshape(len(X), -1) if task == "regression" and len(X) else None
    records = []
    for i, k in enumerate(inputs.keys):
        rec: dict[str, Any] = {"path": k, "id": inputs.ids[i], "source": inputs.source[i]}
        if task == "classification":
            rec["label"] = str(labels[i])
            if proba is not None:
                rec["probabilities"] = {n: float(p) for n, p in zip(names, proba[i])}
        elif task == "multilabel":
            order = np.argsort(-proba[i])
            rec["labels"] = [names[j] for j in order if proba[i, j] >= threshold]
            rec["probabilities"] = {n: float(p) for n, p in zip(names, proba[i])}
        else:
            rec["values"] = {n: float(v) for n, v in zip(names, values[i])}
        records.append(rec)
    return records
