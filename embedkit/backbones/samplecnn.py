"""Sample-level CNNs on raw 16 kHz waveforms: Lee et al. 2017 and Kim, Lee & Nam 2018 (SE / ReSE blocks).

Lee 2017 (3^9 model, 59,049 samples ≈ 3.69 s): a strided conv (3, stride 3, 128 filters) → nine blocks of
[conv 3 → BN → ReLU → max-pool 3] with 128, 128, 256, 256, 256, 256, 256, 256, 512 filters → conv 1×1 512 →
dropout 0.5 → dense 50. Kim 2018 replaces each block by an SE block (conv → BN → ReLU → squeeze-excite →
max-pool) or a ReSE block (two convs, SE, residual, ReLU, max-pool), and ends with dense 512 → BN → ReLU
→ dropout → dense 50 (as in Won et al.'s reproduction, whose SE width ratio 1 is the default here; the
paper's amplifying ratio 16 is ``se_ratio=16``). Pools use 'same' padding and a global max over the
remaining time steps replaces the fixed 1-frame squeeze, so any length works (embedding uses 2.99-s
patches of 47,872 samples, the log-mel models' patch grid).
Input ``(batch, samples)``; taps ``block01``..``block11`` ``(b, t_k, c_k)`` pooled over time.
"""
from __future__ import annotations

import keras
from keras import layers

from ._common import conv1d_block, waveform_input

CHANNELS = (128, 128, 256, 256, 256, 256, 256, 256, 512)
VARIANTS = ("basic", "se", "rese")


def _se(x, ratio: float, *, name: str):
    """Squeeze (mean over time) and excite (dense c·ratio ReLU → dense c sigmoid), rescale channels."""
    c = x.shape[-1]
    s = layers.GlobalAveragePooling1D(name=f"{name}_squeeze")(x)
    s = layers.Dense(max(1, int(c * ratio)), activation="relu", name=f"{name}_se1")(s)
    s = layers.Dense(c, activation="sigmoid", name=f"{name}_se2")(s)
    s = layers.Reshape((1, c), name=f"{name}_se_shape")(s)
    return layers.Multiply(name=f"{name}_excite")([x, s])


def _se_block(x, filters: int, *, pool: int, ratio: float, name: str):
    x = conv1d_block(x, filters, name=name)
    x = _se(x, ratio, name=name)
    return layers.MaxPooling1D(pool, padding="same", name=f"{name}_pool")(x) if pool > 1 else x


def _rese_block(x, filters: int, *, kernel: int = 3, stride: int = 1, pool: int, ratio: float, name: str):
    y = layers.Conv1D(filters, kernel, strides=stride, padding="same", name=f"{name}_conv1")(x)
    y = layers.ReLU(name=f"{name}_relu1")(layers.BatchNormalization(name=f"{name}_bn1")(y))
    y = layers.Conv1D(filters, kernel, padding="same", name=f"{name}_conv2")(y)
    y = layers.BatchNormalization(name=f"{name}_bn2")(y)
    y = _se(y, ratio, name=name)
    if stride != 1 or x.shape[-1] != filters:
        x = layers.Conv1D(filters, kernel, strides=stride, padding="same", name=f"{name}_short")(x)
        x = layers.BatchNormalization(name=f"{name}_short_bn")(x)
    y = layers.ReLU(name=f"{name}_relu2")(layers.Add(name=f"{name}_add")([x, y]))
    return layers.MaxPooling1D(pool, padding="same", name=f"{name}_pool")(y) if pool > 1 else y


def build_samplecnn(*, n_classes: int = 50, variant: str = "basic", channels: tuple[int, ...] = CHANNELS,
                    se_ratio: float = 1.0, input_len: int | None = None, dropout: float = 0.5) -> keras.Model:
    if variant not in VARIANTS:
        raise ValueError(f"unknown sample-level variant {variant!r}; expected one of {VARIANTS}")
    inp, x = waveform_input(input_len)
    out = {}
    first = int(channels[0])
    if variant == "rese":
        x = _rese_block(x, first, stride=3, pool=1, ratio=se_ratio, name="block01")
    else:
        x = conv1d_block(x, first, stride=3, name="block01")
    out["block01"] = x
    for k, c in enumerate(channels, start=2):
        name = f"block{k:02d}"
        if variant == "basic":
            x = conv1d_block(x, int(c), pool=3, name=name)
        elif variant == "se":
            x = _se_block(x, int(c), pool=3, ratio=se_ratio, name=name)
        else:
            x = _rese_block(x, int(c), pool=3, ratio=se_ratio, name=name)
        out[name] = x
    last = f"block{len(channels) + 2:02d}"
    c_last = int(channels[-1])
    if variant == "rese":
        x = _rese_block(x, c_last, kernel=1, pool=1, ratio=se_ratio, name=last)
    else:
        x = conv1d_block(x, c_last, kernel=1, name=last)
    out[last] = x
    x = layers.GlobalMaxPooling1D(name="tmax")(x)
    if variant != "basic":
        x = layers.Dense(c_last, name="dense1")(x)
        x = layers.ReLU(name="dense1_relu")(layers.BatchNormalization(name="dense1_bn")(x))
    x = layers.Dropout(dropout, name="dropout")(x)
    out["logits"] = layers.Dense(n_classes, name="logits")(x)
    return keras.Model(inp, out, name=f"samplecnn_{variant}")
