"""Shared Keras pieces of the model zoo: inputs, the conv blocks the survey's papers share, global pooling.

Layouts: log-mel inputs are ``(batch, frames, 96)`` (time first, as embedkit's front end makes them);
raw-waveform inputs are ``(batch, samples)`` at 16 kHz. Every builder returns a `keras.Model` whose output
is a dict: ``logits`` ``(batch, n_classes)`` plus one *tap* per block (its activation before pooling), which
`embedkit.network.Network` pools over time (and frequency) into the multi-layer feature.
"""
from __future__ import annotations

import keras
from keras import layers, ops

N_MELS = 96
SR = 16000
HOP = 256


def frames_for(seconds: float) -> int:
    """Log-mel frames covering ``seconds`` of audio (``1 + samples // 256``)."""
    return 1 + int(round(seconds * SR)) // HOP


def logmel_input(input_len: int | None, *, bn: bool = True):
    """``(batch, input_len or None, 96)`` input → (input tensor, ``(batch, T, 96, 1)`` tensor after input BN)."""
    inp = keras.Input((input_len, N_MELS), name="logmel")
    x = layers.Reshape((-1, N_MELS, 1), name="expand")(inp)
    if bn:
        x = layers.BatchNormalization(name="bn_input")(x)
    return inp, x


def waveform_input(input_len: int | None):
    """``(batch, samples)`` input → (input tensor, ``(batch, samples, 1)`` tensor)."""
    inp = keras.Input((input_len,), name="waveform")
    return inp, layers.Reshape((-1, 1), name="expand")(inp)


def conv2d_block(x, filters: int, pool: tuple[int, int] | None, *, name: str):
    """3×3 conv 'same' → BN → ReLU → max-pool ``pool`` (time, freq), 'same' padding so short inputs survive."""
    x = layers.Conv2D(filters, 3, padding="same", name=f"{name}_conv")(x)
    x = layers.BatchNormalization(name=f"{name}_bn")(x)
    x = layers.ReLU(name=f"{name}_relu")(x)
    if pool:
        x = layers.MaxPooling2D(pool, padding="same", name=f"{name}_pool")(x)
    return x


def conv2d_blocks(x, channels, pools, out: dict):
    """One `conv2d_block` per (channels, pool), named ``block1``, ``block2``, ...; each block's output is also
    stored in ``out`` under its name (the taps). Returns the last block's output."""
    for k, (c, pool) in enumerate(zip(channels, pools), start=1):
        x = conv2d_block(x, int(c), pool, name=f"block{k}")
        out[f"block{k}"] = x
    return x


def conv1d_block(x, filters: int, *, kernel: int = 3, stride: int = 1, pool: int = 1, name: str):
    """1-D conv 'same' → BN → ReLU → max-pool (sample-level CNN block, Lee et al. 2017)."""
    x = layers.Conv1D(filters, kernel, strides=stride, padding="same", name=f"{name}_conv")(x)
    x = layers.BatchNormalization(name=f"{name}_bn")(x)
    x = layers.ReLU(name=f"{name}_relu")(x)
    if pool > 1:
        x = layers.MaxPooling1D(pool, padding="same", name=f"{name}_pool")(x)
    return x


def global_max_time(x, *, name: str):
    """Max over the time axis: ``(b, t, c)`` → ``(b, c)``; ``(b, t, f, c)`` → ``(b, f·c)`` after max over time."""
    if len(x.shape) == 4:
        x = layers.Lambda(lambda t: ops.max(t, axis=1), name=f"{name}_tmax")(x)
        return layers.Flatten(name=name)(x)
    return layers.GlobalMaxPooling1D(name=name)(x)


def squeeze_freq(x, *, name: str):
    """``(b, t, f, c)`` → ``(b, t, f·c)`` (f is 1 after the papers' frequency pooling)."""
    return layers.Reshape((-1, x.shape[2] * x.shape[3]), name=name)(x)
