"""Learn a similarity space from groups: batch-hard triplet or contrastive loss, numpy, Adam (no TensorFlow).

Model (see `embedkit.spaces.space`): unit vectors are standardised, then projected by ``W`` ``(d, m)``
(``linear``; ``W`` starts as the ``m`` main axes of the standardised training vectors, i.e. near the
zero-label ``standardize`` space), by one weight per feature (``diagonal``; starts at 1 = standardisation),
or by ``W`` plus a ReLU branch ``relu(s W1 + b1) W2`` (``mlp``; ``W2`` starts at zero, so training starts
from the linear map); then L2-normalised.

Losses: ``triplet`` (Hermans, Beyer & Leibe 2017, "batch hard"): each batch holds ``batch_groups`` groups ×
``per_group`` samples; for every anchor, the least similar positive (same group — from another
recording when ``recordings`` are given, so a group is not learnt as "same recording") and the most
similar negative (other group) give ``max(0, margin - cos(a, p) + cos(a, n))``. ``contrastive``
(supervised contrastive / NCA): a softmax over the batch, which weights each negative by its closeness.
A weight-decay term pulls the weights towards their start. Training keeps the weights with the best
mAP on held-out *groups* (or held-out recordings when there are fewer than 5 groups), measured every
``eval_every`` steps — step 0 included, so a space that learning does not improve stays at its start.
"""
from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass

import numpy as np

from .metrics import retrieval_metrics
from .space import Space, SpaceError

MODELS = ("diagonal", "linear", "mlp")
LOSSES = ("triplet", "contrastive")


@dataclass
class TrainConfig:
    """Settings of `fit_metric` (defaults measured in benchmarks/metric.py)."""

    model: str = "linear"
    loss: str = "triplet"
    temperature: float = 0.1
    dim: int = 128
    hidden: int = 256
    margin: float = 0.2
    steps: int = 600
    lr: float = 2e-3
    batch_groups: int = 16
    per_group: int = 6
    weight_decay: float = 1e-3
    init: str = "pca"
    shrink: float = 0.1
    val_fraction: float = 0.25
    eval_every: int = 25
    patience: int = 8
    seed: int = 0


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


class _Adam:
    def __init__(self, params: dict[str, np.ndarray], lr: float) -> None:
        self.lr, self.t = lr, 0
        self.m = {k: np.zeros_like(v) for k, v in params.items()}
        self.v = {k: np.zeros_like(v) for k, v in params.items()}

    def step(self, params: dict[str, np.ndarray], grads: dict[str, np.ndarray]) -> None:
        self.t += 1
        b1, b2 = 0.9, 0.999
        for k, g in grads.items():
            self.m[k] = b1 * self.m[k] + (1 - b1) * g
            self.v[k] = b2 * self.v[k] + (1 - b2) * g * g
            mh = self.m[k] / (1 - b1 ** self.t)
            vh = self.v[k] / (1 - b2 ** self.t)
            params[k] -= self.lr * mh / (np.sqrt(vh) + 1e-8)


def _forward(p: dict[str, np.ndarray], s: np.ndarray) -> tuple[np.ndarray, dict]:
    y = s * p["w"] if "w" in p else s @ p["W"]
    cache: dict = {"s": s}
    if "W1" in p:
        pre = s @ p["W1"] + p["b1"]
        h = np.maximum(pre, 0.0)
        y = y + h @ p["W2"]
        cache.update(pre=pre, h=h)
    r = np.maximum(np.linalg.norm(y, axis=1, keepdims=True), 1e-12)
    z = y / r
    cache.update(z=z, r=r)
    return z, cache


def batch_hard_loss(z: np.ndarray, labels: np.ndarray, recordings: np.ndarray | None, margin: float
                    ) -> tuple[float, np.ndarray, float]:
    """Batch-hard triplet loss on unit rows ``z`` ``(b, m)``: ``(loss, dL/dz (b, m), share of active triplets)``."""
    S = z @ z.T
    b = z.shape[0]
    same = labels[:, None] == labels[None, :]
    eye = np.eye(b, dtype=bool)
    pos = same & ~eye
    if recordings is not None:
        pos &= recordings[:, None] != recordings[None, :]
    neg = ~same
    ok = pos.any(axis=1) & neg.any(axis=1)
    if not np.any(ok):
        return 0.0, np.zeros_like(z), 0.0
    sp = np.where(pos, S, np.inf)
    sn = np.where(neg, S, -np.inf)
    p_idx = np.argmin(sp, axis=1)
    n_idx = np.argmax(sn, axis=1)
    rows = np.arange(b)
    viol = margin - S[rows, p_idx] + S[rows, n_idx]
    active = ok & (viol > 0)
    n_ok = int(ok.sum())
    loss = float(np.where(active, viol, 0.0).sum() / n_ok)
    G = np.zeros_like(S)  # dL/dS
    w = active / n_ok
    np.add.at(G, (rows, p_idx), -w)
    np.add.at(G, (rows, n_idx), w)
    dz = G @ z + G.T @ z
    return loss, dz, float(active.sum() / n_ok)


def contrastive_loss(z: np.ndarray, labels: np.ndarray, recordings: np.ndarray | None, temperature: float
                     ) -> tuple[float, np.ndarray, float]:
    """Supervised contrastive (NCA / InfoNCE) loss on unit rows ``z``: for each anchor,
    ``-log(Σ_pos exp(s/τ) / Σ_{j≠a} exp(s/τ))``. The softmax weights every negative by how close it is, so
    hard negatives dominate the gradient (soft hard-negative mining). Returns ``(loss, dL/dz, share of anchors used)``."""
    b = z.shape[0]
    S = z @ z.T / temperature
    eye = np.eye(b, dtype=bool)
    same = labels[:, None] == labels[None, :]
    pos = same & ~eye
    if recordings is not None:
        pos &= recordings[:, None] != recordings[None, :]
    ok = pos.any(axis=1) & (~same).any(axis=1)
    if not np.any(ok):
        return 0.0, np.zeros_like(z), 0.0
    # the anchor's own recording (other than positives) is left out of the denominator as well
    keep = ~eye if recordings is None else ~eye & ~(same & ~pos)
    L = np.where(keep, S, -np.inf)
    m = L.max(axis=1, keepdims=True)
    E = np.exp(L - m)
    Pall = E / E.sum(axis=1, keepdims=True)
    Epos = np.where(pos, E, 0.0)
    spos = Epos.sum(axis=1, keepdims=True)
    Ppos = Epos / np.maximum(spos, 1e-300)
    n_ok = int(ok.sum())
    loss_rows = -np.log(np.maximum(spos[:, 0], 1e-300)) + np.log(E.sum(axis=1))
    loss = float(loss_rows[ok].sum() / n_ok)
    G = np.where(ok[:, None], (Pall - Ppos) / (temperature * n_ok), 0.0)  # dL/dS(unscaled)
    dz = G @ z + G.T @ z
    return loss, dz, n_ok / b


def _backward(p: dict[str, np.ndarray], cache: dict, dz: np.ndarray) -> dict[str, np.ndarray]:
    z, r, s = cache["z"], cache["r"], cache["s"]
    dy = (dz - z * np.sum(dz * z, axis=1, keepdims=True)) / r
    g = {"w": np.einsum("ij,ij->j", s, dy)} if "w" in p else {"W": s.T @ dy}
    if "W1" in p:
        g["W2"] = cache["h"].T @ dy
        dh = (dy @ p["W2"].T) * (cache["pre"] > 0)
        g["W1"] = s.T @ dh
        g["b1"] = dh.sum(axis=0)
    return g


def _split(labels: np.ndarray, recordings: np.ndarray | None, frac: float, rng: np.random.Generator
           ) -> tuple[np.ndarray, np.ndarray, str]:
    """Boolean (train, val) masks: whole groups held out when there are ≥ 5 groups, else whole recordings."""
    ug = np.unique(labels)
    n = labels.size
    if frac <= 0:
        return np.ones(n, bool), np.zeros(n, bool), "none"
    if ug.size >= 5:
        n_val = max(2, int(round(frac * ug.size)))
        val_g = rng.choice(ug, n_val, replace=False)
        val = np.isin(labels, val_g)
        return ~val, val, f"{n_val} held-out groups"
    keys = recordings if recordings is not None else np.arange(n)
    uk = np.unique(keys)
    if uk.size < 8:
        return np.ones(n, bool), np.zeros(n, bool), "none (too few groups and recordings)"
    val_k = rng.choice(uk, max(2, int(round(frac * uk.size))), replace=False)
    val = np.isin(keys, val_k)
    return ~val, val, f"{val_k.size} held-out recordings (fewer than 5 groups)"


def _pca_init(S: np.ndarray, m: int, init: str, shrink: float) -> np.ndarray:
    """``(d, m)``: the ``m`` main axes of zero-mean ``S`` (``pca``), scaled to unit variance (+ ``shrink`` ×
    mean variance) for ``whiten``."""
    _, sv, vt = np.linalg.svd(S, full_matrices=False)
    if init == "pca":
        return vt[:m].T
    if init != "whiten":
        raise SpaceError(f"unknown init {init!r}; expected 'pca' or 'whiten'")
    var = sv[:m] ** 2 / max(S.shape[0] - 1, 1)
    return vt[:m].T / np.sqrt(var + shrink * var.mean() + 1e-12)


def fit_metric(X: np.ndarray, labels: np.ndarray, *, recordings: np.ndarray | None = None,
               config: TrainConfig | None = None, progress=None) -> tuple[Space, dict]:
    """Learn a space on vectors ``X`` ``(n, d)`` whose ``labels`` ``(n,)`` say which are similar.

    ``recordings`` ``(n,)``: the recording each vector comes from (segments of one track share it);
    positives then come from other recordings of the group, and validation holds recordings apart.
    For self-supervised training pass ``labels = recordings`` and ``recordings=None``.
    Returns ``(space, history)``; ``history`` has the training loss and validation mAP per evaluation.
    """
    from threadpoolctl import threadpool_limits

    with threadpool_limits(1):  # small matrices: one thread is fastest and kind to a shared machine
        return _fit(X, labels, recordings, config or TrainConfig(), progress)


def _fit(X: np.ndarray, labels: np.ndarray, recordings: np.ndarray | None, cfg: TrainConfig, progress
         ) -> tuple[Space, dict]:
    if cfg.loss not in LOSSES:
        raise SpaceError(f"unknown loss {cfg.loss!r}; expected one of {', '.join(LOSSES)}")
    if cfg.model not in MODELS:
        raise SpaceError(f"unknown model {cfg.model!r}; expected one of {', '.join(MODELS)}")
    X = np.asarray(X, np.float64)
    labels = np.asarray(labels)
    if X.ndim != 2 or X.shape[0] != labels.size:
        raise SpaceError(f"need vectors (n, d) and n labels, given {X.shape} and {labels.size}")
    rec = None if recordings is None else np.asarray(recordings)
    rng = np.random.default_rng(cfg.seed)
    tr, va, val_how = _split(labels, rec, cfg.val_fraction, rng)
    Xtr, ytr = X[tr], labels[tr]
    rtr = None if rec is None else rec[tr]
    groups, counts = np.unique(ytr, return_counts=True)
    usable = groups[counts >= 2]
    if usable.size < 2:
        raise SpaceError(f"need at least 2 groups with 2 or more vectors to train on, found {usable.size}")
    t0 = time.process_time()
    U = _unit(Xtr)
    mean = U.mean(axis=0)
    std = U.std(axis=0)
    scale = np.maximum(std, 1e-6 * max(float(std.max()), 1e-12))
    S_all = (U - mean) / scale
    m = int(min(cfg.dim, X.shape[1], max(Xtr.shape[0] - 1, 1)))
    W0 = _pca_init(S_all, m, cfg.init, cfg.shrink)  # start: main axes of the standardised vectors (zero mean)
    if cfg.model == "diagonal":  # one weight per standardised feature, starting at 1 (= standardisation)
        W0 = np.ones(X.shape[1])
        params: dict[str, np.ndarray] = {"w": W0.copy()}
    else:
        params = {"W": W0.copy()}
    if cfg.model == "mlp":
        params["W1"] = rng.normal(0, math.sqrt(2.0 / X.shape[1]), (X.shape[1], cfg.hidden))
        params["b1"] = np.zeros(cfg.hidden)
        params["W2"] = np.zeros((cfg.hidden, m))
    opt = _Adam(params, cfg.lr)
    idx_of = {g: np.flatnonzero(ytr == g) for g in usable}
    Xva = X[va]
    yva = labels[va]
    rva = None if rec is None else rec[va]
    exclude_va = rva if rva is not None else None

    def val_map(p: dict[str, np.ndarray]) -> float:
        if Xva.shape[0] < 2 or np.unique(yva).size < 2:
            return math.nan
        z = _forward(p, (_unit(Xva) - mean) / scale)[0]
        return retrieval_metrics(z, yva, exclude=exclude_va)["map"]

    history = {"step": [], "loss": [], "active": [], "val_map": []}
    best = (val_map(params), 0, {k: v.copy() for k, v in params.items()})
    history["step"].append(0)
    history["loss"].append(None)
    history["active"].append(None)
    history["val_map"].append(None if math.isnan(best[0]) else round(best[0], 4))
    P = min(cfg.batch_groups, usable.size)
    losses, actives, bad = [], [], 0
    for step in range(1, cfg.steps + 1):
        gs = rng.choice(usable, P, replace=False)
        bi = np.concatenate([rng.choice(idx_of[g], cfg.per_group, replace=idx_of[g].size < cfg.per_group) for g in gs])
        z, cache = _forward(params, S_all[bi])
        if cfg.loss == "contrastive":
            loss, dz, active = contrastive_loss(z, ytr[bi], None if rtr is None else rtr[bi], cfg.temperature)
        else:
            loss, dz, active = batch_hard_loss(z, ytr[bi], None if rtr is None else rtr[bi], cfg.margin)
        grads = _backward(params, cache, dz)
        key = "w" if "w" in params else "W"
        grads[key] += cfg.weight_decay * (params[key] - W0)
        if "W2" in grads:
            grads["W2"] += cfg.weight_decay * params["W2"]
            grads["W1"] += cfg.weight_decay * params["W1"]
        opt.step(params, grads)
        losses.append(loss)
        actives.append(active)
        if step % cfg.eval_every == 0 or step == cfg.steps:
            vm = val_map(params)
            history["step"].append(step)
            history["loss"].append(round(float(np.mean(losses)), 5))
            history["active"].append(round(float(np.mean(actives)), 4))
            history["val_map"].append(None if math.isnan(vm) else round(vm, 4))
            losses, actives = [], []
            if progress is not None:
                progress(step, history)
            if math.isnan(vm):
                best = (vm, step, {k: v.copy() for k, v in params.items()})
            elif math.isnan(best[0]) or vm > best[0] + 1e-4:
                best, bad = (vm, step, {k: v.copy() for k, v in params.items()}), 0
            else:
                bad += 1
                if bad >= cfg.patience:
                    break
    vbest, sbest, pbest = best
    if "w" in pbest:  # saved as a linear map: W = diag(|w|)
        pbest = {"W": np.diag(np.abs(pbest.pop("w")))}
    arrays = {"mean": mean, "scale": scale, **pbest}
    info = {
        "model": cfg.model, "config": asdict(cfg), "validation": val_how, "train_vectors": int(Xtr.shape[0]),
        "train_groups": int(usable.size), "val_vectors": int(Xva.shape[0]), "val_groups": int(np.unique(yva).size),
        "best_step": int(sbest), "val_map_init": history["val_map"][0],
        "val_map_best": None if math.isnan(vbest) else round(vbest, 4), "cpu_s": round(time.process_time() - t0, 2),
        "history": history,
    }
    return Space("mlp" if cfg.model == "mlp" else "linear", X.shape[1], arrays, info=info), history
