"""The fit loop: Adam, one checkpoint per epoch, resume, early stopping, CPU-time budget, progress bar.

`train` runs epochs ``state.epoch + 1 .. epochs - 1`` of a `trainer` (a Keras model with outputs
``logits`` and, for feature matching, ``proj``). Before each epoch the Keras seed is set from
``(seed, epoch)`` and the sampler draws that epoch's windows from the same seed, so a resumed run
follows the uninterrupted one. ``max_cpu_s`` (process CPU seconds, `time.process_time`) ends training
early, after validating the partial epoch; rerunning with a larger budget continues from there (CPU
seconds count across runs).
"""
from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from . import checkpoint
from .losses import MONITOR, loss_fn, metrics


def _predict(trainer, x: np.ndarray, batch: int = 32) -> dict[str, np.ndarray]:
    outs: dict[str, list] = {}
    for s in range(0, len(x), batch):
        o = trainer(x[s:s + batch], training=False)
        for k, v in o.items():
            outs.setdefault(k, []).append(np.asarray(v))
    return {k: np.concatenate(v) for k, v in outs.items()}


def train(trainer, sampler, val: tuple, *, task: str, run: Path, epochs: int, batch_size: int = 16,
          lr: float = 1e-3, patience: int = 5, fm_weight: float = 0.0, seed: int = 0,
          windows_per_epoch: int | None = None, max_cpu_s: float | None = None, progress: bool = False,
          log: Callable[[str], None] = lambda m: None, stop_after: int | None = None) -> dict[str, Any]:
    """Train and return ``{"history", "best_epoch", "epochs_run", "stopped", "cpu_s", "epoch_wall_s"}``.

    ``stop_after``: return after that many epochs of this call (tests use it to simulate a kill).
    """
    import keras
    import tensorflow as tf

    from ..progress import bar

    optimizer = keras.optimizers.Adam(learning_rate=lr)
    optimizer.build(trainer.trainable_variables)
    loss = loss_fn(task, fm_weight)
    use_fm = "proj" in trainer.output and fm_weight > 0
    monitor, higher = MONITOR[task]
    state = checkpoint.load_state(run)
    if state is not None:
        checkpoint.restore(run, trainer, optimizer, state)
        log(f"resuming after epoch {state['epoch'] + 1} ({run})")
        if _budget_stop(state) and (max_cpu_s is None or float(state["cpu_s"]) < max_cpu_s):
            state["stopped"] = None  # a larger budget continues a run the old one ended
            log(f"continuing: {state['cpu_s']:.0f} CPU-s used, budget now "
                f"{'unlimited' if max_cpu_s is None else f'{max_cpu_s:.0f} s'}")
    else:
        state = {"epoch": -1, "history": [], "best": None, "best_epoch": None, "cpu_s": 0.0, "stopped": None}
    n_windows = windows_per_epoch or sampler.windows_per_epoch()
    variables = trainer.trainable_variables

    @tf.function(reduce_retracing=True)
    def step(x, y, f):
        with tf.GradientTape() as tape:
            out = trainer(x, training=True)
            value = loss(out["logits"], y, out.get("proj") if use_fm else None, f)
        grads = tape.gradient(value, variables)
        optimizer.apply_gradients(zip(grads, variables))
        return value

    vx, vy, vf = val
    cpu0 = time.process_time() - float(state["cpu_s"])
    ran = 0
    for epoch in range(int(state["epoch"]) + 1, epochs):
        if state.get("stopped"):
            break
        keras.utils.set_random_seed(int(seed) * 1000 + epoch)
        t0 = time.perf_counter()
        losses = []
        steps = -(-n_windows // batch_size)
        over_budget = False
        with bar(total=steps, desc=f"epoch {epoch + 1}/{epochs}", enabled=progress, unit="batch", leave=False) as pb:
            for x, y, f in sampler.dataset(epoch, n_windows, batch_size):
                losses.append(float(step(x, y, f)))
                pb.update(1)
                pb.set_postfix(loss=f"{losses[-1]:.4f}")
                if max_cpu_s is not None and time.process_time() - cpu0 >= max_cpu_s:
                    over_budget = True
                    break
        wall = time.perf_counter() - t0
        pred = _predict(trainer, vx)
        vloss = float(loss(tf.constant(pred["logits"]), tf.constant(vy),
                           tf.constant(pred["proj"]) if use_fm else None, tf.constant(vf)))
        row = {"epoch": epoch + 1, "loss": float(np.mean(losses)) if losses else float("nan"), "val_loss": vloss,
               "wall_s": wall, "steps": len(losses), **metrics(task, pred["logits"], vy)}
        state["history"].append(row)
        value = row[monitor]
        improved = state["best"] is None or (value > state["best"] if higher else value < state["best"])
        if improved:
            state["best"], state["best_epoch"] = value, epoch + 1
        state["epoch"] = epoch
        state["cpu_s"] = time.process_time() - cpu0
        if over_budget:
            state["stopped"] = f"CPU budget of {max_cpu_s:.0f} s reached in epoch {epoch + 1}"
        elif epoch + 1 - state["best_epoch"] >= patience:
            state["stopped"] = f"early stopping: no better {monitor} for {patience} epochs"
        shown = ", ".join(f"{k} {v:.4f}" for k, v in row.items() if k not in ("epoch", "steps") and isinstance(v, float))
        log(f"epoch {epoch + 1}/{epochs}: {shown}{' (best)' if improved else ''}")
        checkpoint.save(run, trainer, optimizer, state, best=improved)
        ran += 1
        if stop_after is not None and ran >= stop_after:
            return {**state, "interrupted": True}
    best = run / "ckpt" / "best.weights.h5"
    if best.exists():
        trainer.load_weights(str(best))
    walls = [h["wall_s"] for h in state["history"]]
    return {**state, "epochs_run": len(state["history"]), "epoch_wall_s": float(np.median(walls)) if walls else None}


def _budget_stop(state: dict) -> bool:
    """Whether the run in ``state`` was ended by its CPU budget (not by early stopping)."""
    return str(state.get("stopped") or "").startswith("CPU budget")
