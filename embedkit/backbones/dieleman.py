"""Dieleman & Schrauwen 2014, "End-to-end learning for music audio": a 1-D CNN on mel spectrograms.

The first convolution spans all 96 mel bands (the bands are its input channels) and slides over time only.
Default (paper): 2 conv layers of 32 filters, length 8, max-pool 4 then 2 over time, a 100-unit dense
layer, 50 sigmoid outputs. Deviations: embedkit's shared 96-band log-mel front end (paper: 128 bands),
an input batch norm, and a global max over time before the dense layer so any input length works
(the paper flattened a fixed ~3-s window).
Input ``(batch, frames, 96)``; taps ``block1`` ``(b, t/4, 32)``, ``block2`` ``(b, t/8, 32)``,
``embedding`` ``(b, 100)``.
"""
from __future__ import annotations

import keras
from keras import layers

from ._common import N_MELS, global_max_time


def build_dieleman(*, n_classes: int = 50, filters: int = 32, kernel: int = 8, dense: int = 100,
                   input_len: int | None = None) -> keras.Model:
    inp = keras.Input((input_len, N_MELS), name="logmel")
    x = layers.BatchNormalization(name="bn_input")(inp)
    out = {}
    for k, pool in ((1, 4), (2, 2)):
        x = layers.Conv1D(filters, kernel, padding="same", activation="relu", name=f"block{k}_conv")(x)
        x = layers.MaxPooling1D(pool, padding="same", name=f"block{k}_pool")(x)
        out[f"block{k}"] = x
    x = global_max_time(x, name="tmax")
    emb = layers.Dense(dense, activation="relu", name="embedding_dense")(x)
    out["embedding"] = emb
    out["logits"] = layers.Dense(n_classes, name="logits")(emb)
    return keras.Model(inp, out, name="dieleman")
