"""Choi, Fazekas & Sandler 2016, "Automatic tagging using deep convolutional neural networks": FCN-5.

Default (as reproduced in Won et al.'s sota-music-tagging-models): input BN; five [3×3 conv 'same' → BN →
ReLU → max-pool] blocks of 64, 128, 128, 128, 64 channels with pools (time, freq) (4,2), (4,2), (4,2),
(5,3), (4,4) — 96 mel bands pool to 1, ~29 s (1,819 frames) pool to 2 frames; global max over time;
dropout 0.5; dense 50. Pools use 'same' padding so a 3-s patch still reaches the last block.
Input ``(batch, frames, 96)``; taps ``block1``..``block5`` (4-D, pooled over time and frequency).
"""
from __future__ import annotations

import keras
from keras import layers

from ._common import conv2d_blocks, global_max_time, logmel_input

CHANNELS = (64, 128, 128, 128, 64)
POOLS = ((4, 2), (4, 2), (4, 2), (5, 3), (4, 4))


def build_fcn(*, n_classes: int = 50, channels: tuple[int, ...] = CHANNELS, input_len: int | None = None,
              dropout: float = 0.5) -> keras.Model:
    inp, x = logmel_input(input_len)
    out: dict = {}
    x = conv2d_blocks(x, channels, POOLS, out)
    x = global_max_time(x, name="tmax")
    x = layers.Dropout(dropout, name="dropout")(x)
    out["logits"] = layers.Dense(n_classes, name="logits")(x)
    return keras.Model(inp, out, name="fcn")
