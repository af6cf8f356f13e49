"""Per-epoch checkpoints of a training run: model weights, optimizer state and the loop state.

Layout: ``<run>/ckpt/epoch-<k>/{model.weights.h5, optimizer.npz}`` and ``<run>/state.json`` naming the last
complete epoch. A checkpoint folder is complete before state.json points at it (atomic write), and older
folders are removed afterwards, so a run killed at any moment resumes from its last finished epoch.
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np

STATE = "state.json"


def json_safe(obj: Any) -> Any:
    """``obj`` with every non-finite float replaced by None (a metric undefined on a tiny validation set,
    e.g. ROC-AUC when no tag has both classes), so state files and cards stay standard JSON."""
    if isinstance(obj, float):
        return obj if np.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_safe(v) for v in obj]
    return obj


def save(run: Path, model, optimizer, state: dict[str, Any], *, best: bool = False) -> None:
    from .. import sidecar

    epoch = int(state["epoch"])
    ck = run / "ckpt" / f"epoch-{epoch}"
    tmp = ck.with_name(ck.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    model.save_weights(str(tmp / "model.weights.h5"))
    np.savez(tmp / "optimizer.npz", *[np.asarray(v.numpy()) for v in optimizer.variables])
    shutil.rmtree(ck, ignore_errors=True)
    tmp.rename(ck)
    if best:
        bt = run / "ckpt" / "best.weights.h5.tmp.weights.h5"
        shutil.copyfile(ck / "model.weights.h5", bt)
        bt.replace(run / "ckpt" / "best.weights.h5")
    sidecar.write_json(run / STATE, json_safe({**state, "checkpoint": ck.name}), kind="embedkit-fit-state", version=1)
    for old in (run / "ckpt").glob("epoch-*"):
        if old.name != ck.name:
            shutil.rmtree(old, ignore_errors=True)


def load_state(run: Path) -> dict[str, Any] | None:
    p = run / STATE
    if not p.exists():
        return None
    return json.loads(p.read_text())


def restore(run: Path, model, optimizer, state: dict[str, Any]) -> None:
    """Load the weights and optimizer variables of ``state``'s checkpoint into ``model``/``optimizer``."""
    ck = run / "ckpt" / state["checkpoint"]
    model.load_weights(str(ck / "model.weights.h5"))
    z = np.load(ck / "optimizer.npz")
    values = [z[f"arr_{i}"] for i in range(len(z.files))]
    if not optimizer.built:
        optimizer.build(model.trainable_variables)
    if len(values) != len(optimizer.variables):
        raise ValueError(f"{ck}: optimizer state has {len(values)} variables, expected {len(optimizer.variables)}")
    for var, val in zip(optimizer.variables, values):
        var.assign(val)
