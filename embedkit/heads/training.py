"""Training sets for heads from a store and a label file, and the provenance a trained head records.

    ts = load_training_set("music.ekstore", "labels.csv")       # vectors, labels, groups, spec
    head = make_head(ts, kind="svm").fit(ts.X, ts.y, groups=ts.groups, label_names=ts.label_names)
    head.save("genre.head", info=provenance(ts))

The labels are bound to store items by `embedkit.labels.bind` (which asks `Store.resolve`); the head is
given the store's `VectorSpec`, so the saved head refuses vectors made another way.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..spec import SpecError, VectorSpec
from .head import Head


@dataclass
class TrainingSet:
    """Labelled store vectors: ``X (n, D) float32`` aligned with ``table`` (labels, groups, split),
    store ``ids`` ``(n,)``, file ``paths``, the store ``manifest`` and ``spec``; ``warnings`` to show."""

    X: np.ndarray
    table: Any
    ids: np.ndarray
    paths: list[str]
    manifest: dict
    spec: VectorSpec | None
    store_path: str
    labels_path: str
    warnings: list[str] = field(default_factory=list)

    @property
    def task(self) -> str:
        return self.table.task

    @property
    def y(self) -> Any:
        return self.table.y

    @property
    def groups(self) -> np.ndarray | None:
        return self.table.groups

    @property
    def label_names(self) -> list[str] | None:
        """Target / tag names (None for classification, whose classes come from ``y``)."""
        return self.table.names if self.table.task != "classification" else None

    def __len__(self) -> int:
        return len(self.table)


def store_spec(store: Any) -> VectorSpec | None:
    """The store's vector spec (``Store.spec``; read from the manifest for stores that predate it)."""
    spec = getattr(store, "spec", None)
    if isinstance(spec, VectorSpec):
        return spec
    try:
        return VectorSpec.from_json(dict(store.manifest))
    except SpecError:
        return None


def load_training_set(store_path: str, labels_path: str, *, task: str = "auto", targets: str | None = None,
                      key: str | None = None, groups_col: str | None = None, no_groups: bool = False,
                      strict: bool = False, drop_rare: bool = False, split_col: str | None = None,
                      need_two_per_class: bool = True) -> TrainingSet:
    """Read LABELS, bind them to the store's items and fetch their vectors.

    Classification: classes with fewer than 2 examples raise (or are dropped with ``drop_rare``) when
    ``need_two_per_class``. ``no_groups`` ignores a group column.
    """
    from ..labels import bind, check_classes, read_labels
    from ..store import Store

    table = read_labels(labels_path, task=task, targets=targets, key=key, group=groups_col, split=split_col)
    with Store.open(store_path) as st:
        b = bind(table, st, strict=strict)
        X = st.vectors(b.ids)
        manifest = dict(st.manifest)
        spec = store_spec(st)
        paths = [st.get(int(i)).path for i in b.ids]
    table = b.table
    if no_groups:
        table.groups = None
    ids = b.ids
    if table.task == "classification":
        table = check_classes(table, min_count=2 if need_two_per_class else 1, drop=drop_rare)
        if len(table) < len(b.ids):
            kept = set(table.keys)
            keep = [i for i, k in enumerate(b.table.keys) if k in kept]
            X, ids = X[keep], b.ids[keep]
            paths = [paths[i] for i in keep]
    return TrainingSet(X, table, ids, paths, manifest, spec, str(store_path), str(labels_path), list(table.warnings))


def make_head(ts: TrainingSet, *, kind: str = "auto", layers: str | None = None, layers_grid: str | None = None,
              class_weight: str | None = None, inner_folds: int = 3, selection_metric: str | None = None,
              selection_subsample: int | None = None, seed: int = 0, jobs: int = 1) -> Head:
    """An unfitted `Head` for this training set (its task, the store's layout and spec)."""
    return Head(task=ts.task, kind=kind, layout=ts.manifest.get("layout"), spec=ts.spec, layers=layers,
                layers_grid=layers_grid, class_weight=None if class_weight in (None, "none") else class_weight,
                inner_folds=inner_folds, selection_metric=selection_metric, selection_subsample=selection_subsample,
                random_state=seed, n_jobs=jobs)


def provenance(ts: TrainingSet, *, metrics: dict | None = None, protocol: Any = None) -> dict:
    """Card fields of a head trained on ``ts``: the store's vector spec (0.1's ``model``/``store_*`` keys
    too), what it was trained on (store, labels, counts, groups) and nested-CV ``metrics`` if measured."""
    table = ts.table
    counts: dict[str, Any]
    if table.task == "classification":
        counts = table.class_counts()
    elif table.task == "multilabel":
        counts = {n: int(c) for n, c in zip(table.names, np.asarray(table.y).sum(axis=0))}
    else:
        counts = {}
    m = ts.manifest
    info: dict[str, Any] = {
        "model": m.get("model"),
        "model_fingerprint": m.get("fingerprint"),
        "store_settings_fingerprint": m.get("settings_fingerprint"),
        "aggregation": m.get("aggregation"),
        "store_layers": m.get("layers"),
        "excerpt_s": m.get("excerpt_s"),
    }
    if ts.spec is not None:
        info.update(ts.spec.card_fields())
    info.update({
        "trained_on": {"store": str(Path(ts.store_path).resolve()), "labels": str(Path(ts.labels_path).resolve()),
                       "n_items": len(table), "counts": counts,
                       "groups": None if table.groups is None else int(len(set(table.groups.tolist())))},
        "metrics": metrics,
        "evaluation": protocol,
    })
    return info
