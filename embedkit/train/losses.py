"""Losses and validation metrics of the four training tasks.

``distill``: binary cross-entropy between the student's sigmoid outputs and the teacher's soft tags, plus
``fm_weight`` × mean squared error between a linear projection of the student's pooled taps and the
teacher's standardised features (feature matching). ``classification``: softmax cross-entropy.
``multilabel``: binary cross-entropy. ``regression``: mean squared error on standardised targets.
Metrics are computed on numpy outputs of the validation windows (see `metrics`).
"""
from __future__ import annotations

import numpy as np

from ..activations import sigmoid

TASKS = ("distill", "classification", "multilabel", "regression")
#: metric that early stopping and "best epoch" follow, and whether higher is better
MONITOR = {"distill": ("val_loss", False), "classification": ("val_loss", False),
           "multilabel": ("val_loss", False), "regression": ("val_loss", False)}
TOP_K = 3  # fidelity: a patch's teacher top-3 tags are its positives


def loss_fn(task: str, fm_weight: float = 0.0):
    """TF function ``(logits, y, proj, f) → scalar loss`` for ``task``."""
    import tensorflow as tf

    def fn(logits, y, proj=None, f=None):
        if task in ("distill", "multilabel"):
            loss = tf.reduce_mean(tf.nn.sigmoid_cross_entropy_with_logits(labels=y, logits=logits))
        elif task == "classification":
            loss = tf.reduce_mean(tf.nn.softmax_cross_entropy_with_logits(labels=y, logits=logits))
        else:
            loss = tf.reduce_mean(tf.square(logits - y))
        if fm_weight and proj is not None:
            loss = loss + fm_weight * tf.reduce_mean(tf.square(proj - f))
        return loss

    return fn


def fidelity(student_p: np.ndarray, teacher_p: np.ndarray, *, top_k: int = TOP_K) -> dict[str, float]:
    """Fidelity to the teacher on ``(n, L)`` tag probabilities.

    ``fidelity_roc_auc``: mean over tags of the ROC-AUC of the student's probability against "this tag is
    among the teacher's top-``top_k`` tags of the window" (tags with both classes only);
    ``fidelity_corr``: mean over windows of the Pearson correlation of the two tag-probability vectors.
    """
    from sklearn.metrics import roc_auc_score

    top = np.argsort(-teacher_p, axis=1)[:, :top_k]
    pos = np.zeros_like(teacher_p, dtype=bool)
    np.put_along_axis(pos, top, True, axis=1)
    aucs = [roc_auc_score(pos[:, j], student_p[:, j]) for j in range(teacher_p.shape[1]) if 0 < pos[:, j].sum() < len(pos)]
    s = student_p - student_p.mean(axis=1, keepdims=True)
    t = teacher_p - teacher_p.mean(axis=1, keepdims=True)
    corr = (s * t).sum(1) / np.maximum(np.sqrt((s * s).sum(1) * (t * t).sum(1)), 1e-12)
    return {"fidelity_roc_auc": float(np.mean(aucs)) if aucs else float("nan"), "fidelity_corr": float(np.mean(corr)),
            "fidelity_tags": len(aucs)}


def metrics(task: str, logits: np.ndarray, y: np.ndarray) -> dict[str, float]:
    """Validation metrics of one task from ``(n, L)`` logits and targets."""
    if task == "distill":
        return fidelity(sigmoid(logits), y)
    if task == "classification":
        return {"accuracy": float(np.mean(logits.argmax(1) == y.argmax(1)))}
    if task == "multilabel":
        from sklearn.metrics import roc_auc_score

        ok = [j for j in range(y.shape[1]) if 0 < y[:, j].sum() < len(y)]
        return {"roc_auc": float(np.mean([roc_auc_score(y[:, j], logits[:, j]) for j in ok])) if ok else float("nan")}
    ss = ((y - y.mean(0)) ** 2).sum(0)
    r2 = 1 - ((y - logits) ** 2).sum(0) / np.maximum(ss, 1e-12)
    return {"r2": float(np.mean(r2))}
