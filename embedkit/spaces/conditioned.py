"""Conditioned similarity subspaces (Lee, Bryan, Salamon, Jin & Nam, ICASSP 2020): one mask per notion.

One linear map ``W`` ``(d, m)`` is shared; each condition (e.g. "album", "artist", "mood") owns a
disjoint block of the ``m`` output dimensions (a fixed 0/1 mask), and is trained only with its own
groups, so "similar as an album" and "similar as an artist" live in separate coordinates of one space.
``space.transform(X, condition="artist")`` compares in that block; without a condition, in all of them.
Steps cycle over the conditions; each step is a batch-hard triplet (or contrastive) step of one condition
on its mask. The weights with the best mean held-out mAP over conditions are kept (held-out recordings).
"""
from __future__ import annotations

import math
import time
from dataclasses import asdict

import numpy as np

from .metrics import retrieval_metrics
from .space import Space, SpaceError
from .train import TrainConfig, _Adam, _forward, _pca_init, _unit, batch_hard_loss, contrastive_loss


def condition_masks(conditions: list[str], m: int) -> np.ndarray:
    """``(C, m)`` 0/1: condition ``c`` owns the ``c``-th of ``C`` contiguous blocks of the ``m`` dims."""
    if len(conditions) > m:
        raise SpaceError(f"{len(conditions)} conditions need a space of at least as many dims, --dim is {m}")
    edges = np.linspace(0, m, len(conditions) + 1).round().astype(int)
    M = np.zeros((len(conditions), m))
    for c in range(len(conditions)):
        M[c, edges[c] : edges[c + 1]] = 1.0
    return M


def fit_conditioned(X: np.ndarray, label_sets: dict[str, np.ndarray], *, recordings: np.ndarray | None = None,
                    config: TrainConfig | None = None) -> tuple[Space, dict]:
    """Learn one linear space with a masked block per condition.

    ``label_sets``: ``{condition: labels (n,)}``; an empty label means "not labelled for this condition".
    ``recordings`` ``(n,)``: positives come from other recordings and validation holds recordings out.
    """
    from threadpoolctl import threadpool_limits

    cfg = config or TrainConfig()
    with threadpool_limits(1):
        return _fit(np.asarray(X, np.float64), {k: np.asarray(v).astype(str) for k, v in label_sets.items()},
                    None if recordings is None else np.asarray(recordings), cfg)


def _fit(X: np.ndarray, label_sets: dict[str, np.ndarray], rec: np.ndarray | None, cfg: TrainConfig
         ) -> tuple[Space, dict]:
    conds = list(label_sets)
    if len(conds) < 2:
        raise SpaceError("conditioned spaces need at least 2 conditions (group columns)")
    n, d = X.shape
    rng = np.random.default_rng(cfg.seed)
    keys = rec if rec is not None else np.arange(n)
    uk = np.unique(keys)
    val = np.isin(keys, rng.choice(uk, max(2, int(round(cfg.val_fraction * uk.size))), replace=False)) \
        if cfg.val_fraction > 0 and uk.size >= 8 else np.zeros(n, bool)
    tr = ~val
    U = _unit(X)
    mean, std = U[tr].mean(axis=0), U[tr].std(axis=0)
    scale = np.maximum(std, 1e-6 * max(float(std.max()), 1e-12))
    S = (U - mean) / scale
    m = int(min(cfg.dim, d, max(int(tr.sum()) - 1, 1)))
    W0 = _pca_init(S[tr], m, cfg.init, cfg.shrink)
    masks = condition_masks(conds, m)
    params = {"W": W0.copy()}
    opt = _Adam(params, cfg.lr)
    pools = {}
    for c in conds:
        y = label_sets[c]
        ok = tr & (y != "")
        g, cnt = np.unique(y[ok], return_counts=True)
        usable = g[cnt >= 2]
        if usable.size < 2:
            raise SpaceError(f"condition {c!r}: need at least 2 groups with 2 or more items, found {usable.size}")
        pools[c] = {gg: np.flatnonzero(ok & (y == gg)) for gg in usable}

    def val_map(p: dict) -> float:
        scores = []
        for ci, c in enumerate(conds):
            sel = val & (label_sets[c] != "")
            if sel.sum() < 2 or np.unique(label_sets[c][sel]).size < 2:
                continue
            z = _unit((S[sel] @ p["W"]) * masks[ci])
            scores.append(retrieval_metrics(z, label_sets[c][sel], exclude=None if rec is None else rec[sel])["map"])
        return float(np.mean(scores)) if scores else math.nan

    t0 = time.process_time()
    history = {"step": [0], "loss": [None], "val_map": []}
    v0 = val_map(params)
    history["val_map"].append(None if math.isnan(v0) else round(v0, 4))
    best, bad, losses = (v0, 0, params["W"].copy()), 0, []
    for step in range(1, cfg.steps + 1):
        ci = (step - 1) % len(conds)
        c = conds[ci]
        groups = list(pools[c])
        gs = rng.choice(len(groups), min(cfg.batch_groups, len(groups)), replace=False)
        bi = np.concatenate([rng.choice(pools[c][groups[g]], cfg.per_group, replace=pools[c][groups[g]].size < cfg.per_group)
                             for g in gs])
        mask = masks[ci]
        z, cache = _forward(params, S[bi])  # forward of the full map, then the condition's mask
        y = z * cache["r"]
        ym = y * mask
        rm = np.maximum(np.linalg.norm(ym, axis=1, keepdims=True), 1e-12)
        zm = ym / rm
        lab, rr = label_sets[c][bi], None if rec is None else rec[bi]
        loss, dzm, _ = (contrastive_loss(zm, lab, rr, cfg.temperature) if cfg.loss == "contrastive"
                        else batch_hard_loss(zm, lab, rr, cfg.margin))
        dym = (dzm - zm * np.sum(dzm * zm, axis=1, keepdims=True)) / rm
        g = {"W": cache["s"].T @ (dym * mask)}  # the mask sits between the map and the normalisation
        g["W"] += cfg.weight_decay * (params["W"] - W0)
        opt.step(params, g)
        losses.append(loss)
        if step % cfg.eval_every == 0 or step == cfg.steps:
            vm = val_map(params)
            history["step"].append(step)
            history["loss"].append(round(float(np.mean(losses)), 5))
            history["val_map"].append(None if math.isnan(vm) else round(vm, 4))
            losses = []
            if math.isnan(vm) or math.isnan(best[0]) or vm > best[0] + 1e-4:
                best, bad = (vm, step, params["W"].copy()), 0
            else:
                bad += 1
                if bad >= cfg.patience:
                    break
    vbest, sbest, Wbest = best
    info = {"model": "linear", "conditions": conds, "config": asdict(cfg), "best_step": int(sbest),
            "val_map_init": history["val_map"][0], "val_map_best": None if math.isnan(vbest) else round(vbest, 4),
            "validation": f"{int(val.sum())} held-out vectors" if val.any() else "none", "train_vectors": int(tr.sum()),
            "cpu_s": round(time.process_time() - t0, 2), "history": history}
    sp = Space("linear", d, {"mean": mean, "scale": scale, "W": Wbest, "masks": masks}, info=info, conditions=conds)
    return sp, history


__all__ = ["condition_masks", "fit_conditioned"]
