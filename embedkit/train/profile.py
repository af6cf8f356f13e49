"""Size and cost of a zoo model: parameters and multiply-add FLOPs per second of audio (analytic).

FLOPs count 2 per multiply-add of convolutions, dense layers and GRUs, over one embedding patch
(187 frames / 47,872 samples = 2.992 s); batch norm, activations and pooling are left out (< 2 %).
"""
from __future__ import annotations

import numpy as np

PATCH_SECONDS = 187 * 256 / 16000


def _n(shape) -> int:
    return int(np.prod([d for d in shape if d is not None]))


def flops_per_patch(model) -> int:
    """Multiply-add FLOPs of one forward pass of ``model`` built with a fixed input length, batch 1."""
    import keras

    total = 0
    for layer in model.layers:
        if isinstance(layer, (keras.layers.Conv1D, keras.layers.Conv2D)):
            k = _n(layer.kernel.shape[:-1])  # kernel size × input channels
            total += 2 * k * _n(layer.output.shape[1:])
        elif isinstance(layer, keras.layers.Dense):
            total += 2 * _n(layer.kernel.shape) * max(1, _n(layer.output.shape[1:-1]))
        elif isinstance(layer, keras.layers.GRU):
            t = layer.output.shape[1] or 1
            units = layer.units
            inp = layer.input.shape[-1]
            total += 2 * 3 * (inp * units + units * units) * t
    return int(total)


def gflop_per_second(arch: str, **config) -> float:
    """GFLOP per second of audio for ``arch`` at the embedding patch length."""
    from .. import backbones

    spec = backbones.get(arch)
    length = 187 * 256 if spec.input_kind == "waveform" else 187
    m = backbones.build(arch, **{**config, "input_len": length})
    return flops_per_patch(m) / PATCH_SECONDS / 1e9
