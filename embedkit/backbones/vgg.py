"""musicnn's VGG-like 2-D CNN (Pons et al.) in Keras 3.

Input ``(batch, 187, 96) float32`` log-mel patches → input BN → 5 × [conv 3×3 128 ReLU → BN (eps 1e-3) →
max-pool 'valid'] (pools (4,1)/(2,2), then (2,2)/(2,2) ×3, then (4,4)/(4,4)) → flatten 2·1·128 → dense 50 logits.
Outputs a dict: ``logits`` ``(batch, 50)`` and ``pool1``..``pool5`` (the max-pool outputs, i.e. musicnn's
``features['poolK']``: 92×48, 46×24, 23×12, 11×6, 2×1 spatial × 128 channels).
"""
from __future__ import annotations

from collections.abc import Sequence

import keras
from keras import layers

N_FRAMES = 187
N_MELS = 96
POOLS = (((4, 1), (2, 2)), ((2, 2), (2, 2)), ((2, 2), (2, 2)), ((2, 2), (2, 2)), ((4, 4), (4, 4)))

#: checkpoint variable scope → Keras layer name
CHECKPOINT_MAP = {
    "batch_normalization": "bn_input",
    **{f"{k}CNN": f"conv{k}" for k in range(1, 6)},
    **{f"batch_normalization_{k}": f"bn{k}" for k in range(1, 6)},
    "dense": "logits",
}


def block_filters(n_filters: int | Sequence[int]) -> list[int]:
    """Filters of each of the 5 conv blocks: one count for all, or one per block."""
    widths = [int(n_filters)] * len(POOLS) if isinstance(n_filters, (int, float)) else [int(n) for n in n_filters]
    if len(widths) != len(POOLS) or min(widths) < 1:
        raise ValueError(f"n_filters: give one count or {len(POOLS)} positive counts (one per block), not {n_filters!r}")
    return widths


def build_vgg(*, n_classes: int = 50, n_filters: int | Sequence[int] = 128) -> keras.Model:
    """The VGG backbone with outputs ``{"logits", "pool1".."pool5"}``; weights uninitialised.

    ``n_filters``: filters of every conv block (128 in musicnn), or 5 counts, one per block (pruned students).
    """
    inp = keras.Input((N_FRAMES, N_MELS), name="logmel")
    x = layers.Reshape((N_FRAMES, N_MELS, 1), name="expand")(inp)
    x = layers.BatchNormalization(epsilon=1e-3, name="bn_input")(x)
    outputs = {}
    for k, ((pool, stride), width) in enumerate(zip(POOLS, block_filters(n_filters)), start=1):
        x = layers.Conv2D(width, (3, 3), padding="same", activation="relu", name=f"conv{k}")(x)
        x = layers.BatchNormalization(epsilon=1e-3, name=f"bn{k}")(x)
        x = layers.MaxPooling2D(pool, strides=stride, padding="valid", name=f"pool{k}")(x)
        outputs[f"pool{k}"] = x
    flat = layers.Flatten(name="flatten")(x)
    outputs["logits"] = layers.Dense(n_classes, name="logits")(flat)
    return keras.Model(inp, outputs, name="musicnn_vgg")


#: feature blocks (name, size) in embedding order, and the model output each one pools
FEATURE_BLOCKS = tuple((f"pool{k}", 128) for k in range(1, 6))
