"""The pretrained network as one compiled function: log-mel patches in, pooled features and tags out.

This is the only module (with `embedkit.backbones` and the converter) that imports TensorFlow/Keras.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ._tf import import_tensorflow
from .features import FeatureLayout


@dataclass
class PatchOutputs:
    """Per-patch network outputs: ``features`` ``(n, layout.dim)``, ``logits``/``tags`` ``(n, n_labels)``, float32."""

    features: np.ndarray
    logits: np.ndarray
    tags: np.ndarray


#: A partial batch is zero-padded to a multiple of this. oneDNN computes each patch bit-identically for every
#: batch size of 2 or more (measured on AVX-512; checked by tests), but not for a batch of one. On AVX2-only
#: CPUs the pooled features stay bit-identical but the logits (a small GEMM) may move in their last bit with
#: the patch's position in its batch.
_PAD_MULTIPLE = 8


def build_backbone(architecture: str, weights_path: str, *, config: dict | None = None, precision: str = "fp32"):
    """The Keras backbone with its pretrained weights. ``bf16`` builds it under Keras' ``mixed_bfloat16``
    policy (bfloat16 compute, float32 variables: the same weights); ``fp32`` is the reference graph."""
    import_tensorflow()
    import keras

    from . import backbones

    if precision not in ("fp32", "bf16"):
        raise ValueError(f"Keras backbones run in fp32 or bf16, not {precision!r} (int8: embedkit.quantized)")
    saved = keras.config.dtype_policy()
    if precision == "bf16":
        keras.config.set_dtype_policy("mixed_bfloat16")
    try:
        backbone = backbones.build(architecture, **(config or {}))
    finally:
        keras.config.set_dtype_policy(saved)
    backbone.load_weights(weights_path)
    return backbone


class Network:
    """A Keras backbone plus in-graph pooling of each feature block (mean over time and frequency).

    ``batch_size`` patches go through the graph at a time; a partial batch is zero-padded to a multiple of 8,
    so a patch's outputs never depend on which other patches share its batch (bit-identical reruns).
    ``precision``: ``fp32`` (the reference) or ``bf16`` (`embedkit.precision`); outputs are float32 either way.
    """

    def __init__(self, architecture: str, weights_path: str, layout: FeatureLayout, *, batch_size: int = 32,
                 config: dict | None = None, input_kind: str = "logmel", precision: str = "fp32",
                 output: str = "sigmoid") -> None:
        tf = import_tensorflow()

        from . import inputs  # input kinds (issue 10): see embedkit.inputs

        self.layout = layout
        self.batch_size = int(batch_size)
        self.precision = precision
        backbone = build_backbone(architecture, weights_path, config=config, precision=precision)
        self._shape = inputs.get(input_kind).patch_shape
        self._backbone = backbone
        self.n_params = int(backbone.count_params())
        self.n_labels = int(backbone.output["logits"].shape[-1])
        names = layout.names

        def pooled(t):
            rank = len(t.shape)
            # means accumulate in float64: pool1 averages 4,416 values per channel
            if rank == 4:  # (b, t, f, c): mean over time and frequency
                return tf.cast(tf.reduce_mean(tf.cast(t, tf.float64), axis=(1, 2)), tf.float32)
            if rank == 3:  # (b, t, c): mean over time
                return tf.cast(tf.reduce_mean(tf.cast(t, tf.float64), axis=1), tf.float32)
            return t if t.dtype == tf.float32 else tf.cast(t, tf.float32)  # (b, c): already one vector per patch

        @tf.function(input_signature=[tf.TensorSpec([None, *self._shape], tf.float32)], reduce_retracing=True)
        def forward(x):
            out = backbone(inputs.to_model_input(input_kind, x), training=False)
            feats = tf.concat([pooled(out[n]) for n in names], axis=-1)
            logits = out["logits"]
            if logits.dtype != tf.float32:  # bf16: float32 outputs like fp32's
                logits = tf.cast(logits, tf.float32)
            return feats, logits, (tf.nn.softmax(logits) if output == "softmax" else tf.sigmoid(logits))

        self._forward = forward

    def __call__(self, patches: np.ndarray) -> PatchOutputs:
        """``(n, 187, 96) float32`` → `PatchOutputs` for all n patches (any n ≥ 0)."""
        patches = np.ascontiguousarray(patches, dtype=np.float32)
        n = patches.shape[0]
        if patches.ndim != 3 or patches.shape[1:] != self._shape:
            raise ValueError(f"expected patches of shape (n, {self._shape[0]}, {self._shape[1]}), given {patches.shape}")
        feats, logits, tags = [], [], []
        bs = self.batch_size
        for start in range(0, n, bs):
            chunk = patches[start : start + bs]
            m = chunk.shape[0]
            padded = -(-m // _PAD_MULTIPLE) * _PAD_MULTIPLE
            if m < padded:
                chunk = np.concatenate([chunk, np.zeros((padded - m, *self._shape), np.float32)])
            f, lg, tg = self._forward(chunk)
            feats.append(f.numpy()[:m])
            logits.append(lg.numpy()[:m])
            tags.append(tg.numpy()[:m])
        if not feats:
            empty = np.zeros((0, self.n_labels), np.float32)
            return PatchOutputs(np.zeros((0, self.layout.dim), np.float32), empty, empty.copy())
        return PatchOutputs(np.concatenate(feats), np.concatenate(logits), np.concatenate(tags))
