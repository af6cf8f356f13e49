"""Won, Ferraro, Bogdanov & Serra 2020, "Evaluation of CNN-based automatic music tagging models": the
short-chunk CNN with residual blocks (ShortChunkCNN_Res), on ~3.69-s inputs.

Default: input BN; seven residual blocks [3×3 conv stride 2 → BN → ReLU → 3×3 conv → BN, plus a strided
3×3 conv + BN shortcut when the shape changes, add, ReLU] of 128, 128, 256, 256, 256, 256, 512 channels
(stride 2 in time and frequency: 96 bands → 1); global max over time; dense 512 → BN → ReLU → dropout
0.5 → dense 50. Deviation: embedkit's 96-band front end (paper 128 bands; the last blocks still reach 1).
Input ``(batch, frames, 96)``; taps ``block1``..``block7`` (4-D), ``embedding`` ``(b, 512)``.
"""
from __future__ import annotations

import keras
from keras import layers

from ._common import global_max_time, logmel_input

CHANNELS = (128, 128, 256, 256, 256, 256, 512)


def _res2d(x, filters: int, *, stride: int = 2, name: str):
    y = layers.Conv2D(filters, 3, strides=stride, padding="same", name=f"{name}_conv1")(x)
    y = layers.ReLU(name=f"{name}_relu1")(layers.BatchNormalization(name=f"{name}_bn1")(y))
    y = layers.Conv2D(filters, 3, padding="same", name=f"{name}_conv2")(y)
    y = layers.BatchNormalization(name=f"{name}_bn2")(y)
    if stride != 1 or x.shape[-1] != filters:
        x = layers.Conv2D(filters, 3, strides=stride, padding="same", name=f"{name}_short")(x)
        x = layers.BatchNormalization(name=f"{name}_short_bn")(x)
    return layers.ReLU(name=f"{name}_relu2")(layers.Add(name=f"{name}_add")([x, y]))


def build_shortchunk(*, n_classes: int = 50, channels: tuple[int, ...] = CHANNELS, input_len: int | None = None,
                     dropout: float = 0.5) -> keras.Model:
    inp, x = logmel_input(input_len)
    out = {}
    for k, c in enumerate(channels, start=1):
        x = _res2d(x, int(c), name=f"block{k}")
        out[f"block{k}"] = x
    x = global_max_time(x, name="tmax")
    c_last = int(channels[-1])
    x = layers.Dense(c_last, name="embedding_dense")(x)
    x = layers.ReLU(name="embedding")(layers.BatchNormalization(name="embedding_bn")(x))
    out["embedding"] = x
    x = layers.Dropout(dropout, name="dropout")(x)
    out["logits"] = layers.Dense(n_classes, name="logits")(x)
    return keras.Model(inp, out, name="shortchunk_res")
