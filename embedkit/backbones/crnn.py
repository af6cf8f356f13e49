"""Choi, Fazekas, Sandler & Cho 2017, "Convolutional recurrent neural networks for music classification".

Default (Won et al.'s reproduction): input BN; four [3×3 conv → BN → ReLU → max-pool] blocks of 64, 128,
128, 128 channels with pools (2,2), (3,3), (4,4), (4,4) (96 mel bands pool to 1); a 2-layer GRU of 32
units over the remaining time steps; its last state → dropout 0.5 → dense 50. Input ~29 s by default.
Input ``(batch, frames, 96)``; taps ``block1``..``block4`` (4-D), ``gru`` ``(b, t', 32)`` (GRU outputs,
pooled over time).
"""
from __future__ import annotations

import keras
from keras import layers

from ._common import conv2d_blocks, logmel_input, squeeze_freq

CHANNELS = (64, 128, 128, 128)
POOLS = ((2, 2), (3, 3), (4, 4), (4, 4))


def build_crnn(*, n_classes: int = 50, channels: tuple[int, ...] = CHANNELS, gru_units: int = 32,
               input_len: int | None = None, dropout: float = 0.5) -> keras.Model:
    inp, x = logmel_input(input_len)
    out: dict = {}
    x = conv2d_blocks(x, channels, POOLS, out)
    seq = squeeze_freq(x, name="squeeze")
    seq = layers.GRU(gru_units, return_sequences=True, name="gru1")(seq)
    seq = layers.GRU(gru_units, return_sequences=True, name="gru2")(seq)
    out["gru"] = seq
    last = layers.Lambda(lambda t: t[:, -1, :], name="last_step")(seq)
    last = layers.Dropout(dropout, name="dropout")(last)
    out["logits"] = layers.Dense(n_classes, name="logits")(last)
    return keras.Model(inp, out, name="crnn")
