"""musicnn (Pons & Serra, 2019) in Keras 3: musically motivated front end, dense mid end, temporal pooling back end.

Input ``(batch, 187, 96) float32`` log-mel. Front end: input BN; two timbral convs (7×38 and 7×67, 204 filters,
time-padded 'valid') and three temporal convs (128×1, 64×1, 32×1, 51 filters, 'same'), each ReLU → BN →
max over frequency → concatenated ``(batch, 187, 561)``. Mid end: three 7×C convs (64 filters) with residual
connections. Back end: max and mean over time of the 753 stacked features → BN → dense 200 ReLU → BN → dense 50.
Outputs a dict: ``logits`` (batch, 50), ``timbral`` (batch, 187, 408), ``temporal`` (batch, 187, 153),
``cnn1``/``cnn2``/``cnn3`` (batch, 187, 64), ``penultimate`` (batch, 200).
"""
from __future__ import annotations

import keras
from keras import layers, ops

N_FRAMES = 187
N_MELS = 96

CHECKPOINT_MAP = {
    "batch_normalization": "bn_input",
    "conv2d": "timbral_74", "batch_normalization_1": "bn_timbral_74",
    "conv2d_1": "timbral_77", "batch_normalization_2": "bn_timbral_77",
    "conv2d_2": "temporal_128", "batch_normalization_3": "bn_temporal_128",
    "conv2d_3": "temporal_64", "batch_normalization_4": "bn_temporal_64",
    "conv2d_4": "temporal_32", "batch_normalization_5": "bn_temporal_32",
    "conv2d_5": "midend_1", "batch_normalization_6": "bn_midend_1",
    "conv2d_6": "midend_2", "batch_normalization_7": "bn_midend_2",
    "conv2d_7": "midend_3", "batch_normalization_8": "bn_midend_3",
    "batch_normalization_9": "bn_pool",
    "dense": "penultimate", "batch_normalization_10": "bn_penultimate",
    "dense_1": "logits",
}

FEATURE_BLOCKS = (("timbral", 408), ("temporal", 153), ("cnn1", 64), ("cnn2", 64), ("cnn3", 64), ("penultimate", 200))


def _freq_max(x, name: str):
    """Max over the frequency axis: (b, t, f, c) → (b, t, c)."""
    return layers.Lambda(lambda t: ops.max(t, axis=2), name=name)(x)


def _frontend_block(x, filters: int, kernel: tuple[int, int], *, timbral: bool, name: str):
    if timbral:
        x = layers.ZeroPadding2D(((3, 3), (0, 0)), name=f"pad_{name}")(x)
        x = layers.Conv2D(filters, kernel, padding="valid", activation="relu", name=name)(x)
    else:
        x = layers.Conv2D(filters, kernel, padding="same", activation="relu", name=name)(x)
    x = layers.BatchNormalization(epsilon=1e-3, name=f"bn_{name}")(x)
    return _freq_max(x, f"fmax_{name}")


def _midend_block(x, filters: int, *, name: str):
    """(b, t, c) → conv over the whole feature axis → (b, t, filters)."""
    width = x.shape[-1]
    x = layers.Reshape((x.shape[1], width, 1), name=f"expand_{name}")(x)
    x = layers.ZeroPadding2D(((3, 3), (0, 0)), name=f"pad_{name}")(x)
    x = layers.Conv2D(filters, (7, width), padding="valid", activation="relu", name=name)(x)
    x = layers.BatchNormalization(epsilon=1e-3, name=f"bn_{name}")(x)
    return layers.Reshape((x.shape[1], filters), name=f"squeeze_{name}")(x)


def build_musicnn(*, n_classes: int = 50, n_filt_frontend: float = 1.6, n_filt_midend: int = 64, n_units_backend: int = 200) -> keras.Model:
    """The musicnn backbone with outputs described in the module docstring; weights uninitialised."""
    inp = keras.Input((N_FRAMES, N_MELS), name="logmel")
    x = layers.Reshape((N_FRAMES, N_MELS, 1), name="expand")(inp)
    x = layers.BatchNormalization(epsilon=1e-3, name="bn_input")(x)
    timbral_f = int(n_filt_frontend * 128)
    temporal_f = int(n_filt_frontend * 32)
    f74 = _frontend_block(x, timbral_f, (7, int(0.4 * N_MELS)), timbral=True, name="timbral_74")
    f77 = _frontend_block(x, timbral_f, (7, int(0.7 * N_MELS)), timbral=True, name="timbral_77")
    s1 = _frontend_block(x, temporal_f, (128, 1), timbral=False, name="temporal_128")
    s2 = _frontend_block(x, temporal_f, (64, 1), timbral=False, name="temporal_64")
    s3 = _frontend_block(x, temporal_f, (32, 1), timbral=False, name="temporal_32")
    front = layers.Concatenate(axis=-1, name="frontend")([f74, f77, s1, s2, s3])
    cnn1 = _midend_block(front, n_filt_midend, name="midend_1")
    cnn2 = layers.Add(name="res_2")([_midend_block(cnn1, n_filt_midend, name="midend_2"), cnn1])
    cnn3 = layers.Add(name="res_3")([_midend_block(cnn2, n_filt_midend, name="midend_3"), cnn2])
    stacked = layers.Concatenate(axis=-1, name="midend")([front, cnn1, cnn2, cnn3])  # (b, t, 753)
    max_pool = layers.Lambda(lambda t: ops.max(t, axis=1), name="max_pool")(stacked)
    mean_pool = layers.Lambda(lambda t: ops.mean(t, axis=1), name="mean_pool")(stacked)
    # TF1 flattened concat([max, mean], axis=2) of shape (b, 753, 2): interleave max/mean per feature.
    pooled = layers.Lambda(lambda ts: ops.reshape(ops.stack(ts, axis=-1), (-1, 2 * ts[0].shape[-1])), name="pool")(
        [max_pool, mean_pool]
    )
    pooled = layers.BatchNormalization(epsilon=1e-3, name="bn_pool")(pooled)
    dense = layers.Dense(n_units_backend, activation="relu", name="penultimate")(pooled)
    penultimate = layers.BatchNormalization(epsilon=1e-3, name="bn_penultimate")(dense)
    logits = layers.Dense(n_classes, name="logits")(penultimate)
    timbral = layers.Concatenate(axis=-1, name="timbral")([f74, f77])
    temporal = layers.Concatenate(axis=-1, name="temporal")([s1, s2, s3])
    outputs = {
        "logits": logits, "timbral": timbral, "temporal": temporal,
        "cnn1": cnn1, "cnn2": cnn2, "cnn3": cnn3, "penultimate": penultimate,
    }
    return keras.Model(inp, outputs, name="musicnn")
