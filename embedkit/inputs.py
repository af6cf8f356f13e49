"""Input kinds of the embedding path, table-driven: what a model's patches are made of.

``logmel`` (every pretrained model): `embedkit.frontend`'s log-mel, patches ``(n, 187, 96) float32``.
``waveform`` (sample-level CNNs): raw 16 kHz samples cut into 256-sample frames on the same grid, patches
``(n, 187, 256) float32`` (47,872 samples ≈ 2.99 s, so start times and patch counts match the log-mel
models); `to_model_input` flattens them to ``(n, 47872)`` inside the graph.
A model card names its kind in ``input_kind`` (absent = ``logmel``). `embedkit.embedder` and
`embedkit.network` ask this table; nothing else about input kinds lives there.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from . import frontend


class WaveformStream:
    """Push 16 kHz blocks, get complete ``(m, 256) float32`` sample frames (the `LogMelStream` interface)."""

    width = frontend.HOP

    def __init__(self) -> None:
        self._rest = np.zeros(0, np.float32)
        self._n = 0

    @property
    def n_samples(self) -> int:
        return self._n

    def push(self, block: np.ndarray) -> np.ndarray:
        block = np.asarray(block, dtype=np.float32).ravel()
        self._n += block.size
        buf = np.concatenate([self._rest, block])
        m = buf.size // self.width
        self._rest = buf[m * self.width:]
        return buf[: m * self.width].reshape(m, self.width)

    def finish(self) -> np.ndarray:
        """The last partial frame, zero-padded to 256 samples (none if the signal ended on a frame edge)."""
        if self._rest.size == 0:
            return np.zeros((0, self.width), np.float32)
        out = np.zeros((1, self.width), np.float32)
        out[0, : self._rest.size] = self._rest
        self._rest = np.zeros(0, np.float32)
        return out


def waveform_frames(y16: np.ndarray) -> np.ndarray:
    """A whole 16 kHz signal ``(n,)`` → ``(ceil(n / 256), 256) float32`` frames (last one zero-padded)."""
    s = WaveformStream()
    head = s.push(y16)
    return np.concatenate([head, s.finish()])


def cut_patches(frames: np.ndarray, width: int) -> frontend.Patches:
    """``(T, width)`` frames → non-overlapping 187-frame patches; a clip shorter than one patch is tiled."""
    frames = np.asarray(frames, dtype=np.float32)
    if frames.ndim != 2 or frames.shape[1] != width or frames.shape[0] == 0:
        raise ValueError(f"expected (frames, {width}) with frames >= 1, given shape={frames.shape}")
    p = frontend.PATCH_FRAMES
    n_total = frames.shape[0]
    if n_total < p:
        data = np.tile(frames, (-(-p // n_total), 1))[:p][None]
        return frontend.Patches(np.ascontiguousarray(data), np.zeros(1, np.int64), True, 0)
    n = n_total // p
    data = np.ascontiguousarray(frames[: n * p].reshape(n, p, width))
    return frontend.Patches(data, np.arange(n, dtype=np.int64) * p, False, int(n_total - n * p))


@dataclass(frozen=True)
class InputKind:
    """How one kind of model input is computed: ``width`` values per frame, 187 frames per patch."""

    name: str
    width: int
    stream: Callable[[], Any]
    frames: Callable[[np.ndarray], np.ndarray]

    @property
    def patch_shape(self) -> tuple[int, int]:
        return (frontend.PATCH_FRAMES, self.width)

    def make_patches(self, frames: np.ndarray) -> frontend.Patches:
        """Frames of this kind → `frontend.Patches` ``(n, 187, width)``."""
        if self.name == "logmel":
            return frontend.make_patches(frames)
        return cut_patches(frames, self.width)

    def patches(self, y16: np.ndarray) -> frontend.Patches:
        """A whole 16 kHz mono signal → patches."""
        return self.make_patches(self.frames(y16))


KINDS: dict[str, InputKind] = {
    "logmel": InputKind("logmel", frontend.N_MELS, frontend.LogMelStream, frontend.logmel),
    "waveform": InputKind("waveform", frontend.HOP, WaveformStream, waveform_frames),
}


def get(name: str | None) -> InputKind:
    """The `InputKind` called ``name`` (None → ``logmel``)."""
    key = name or "logmel"
    if key not in KINDS:
        raise ValueError(f"unknown input kind {name!r}; expected one of {', '.join(KINDS)}")
    return KINDS[key]


def for_card(card: dict) -> InputKind:
    """The input kind a model card declares (``input_kind``; absent on the pretrained cards = ``logmel``)."""
    return get(card.get("input_kind"))


def output_activation(card: dict) -> str:
    """How a model's logits become its scores: ``"softmax"`` for a single-label classifier trained by
    ``embedkit fit`` (scores sum to 1), else ``"sigmoid"`` (independent tags, as the pretrained models)."""
    return "softmax" if (card.get("training") or {}).get("task") == "classification" else "sigmoid"


def network_options(card: dict) -> dict[str, Any]:
    """Extra `embedkit.network.Network` keyword arguments for a card: builder config, input kind, output."""
    return {"config": dict(card.get("arch_config") or {}), "input_kind": for_card(card).name,
            "output": output_activation(card)}


def to_model_input(kind: str, x):
    """Inside the graph: patches ``(b, 187, width)`` → what the Keras model takes (waveform: ``(b, 47872)``)."""
    if get(kind).name == "waveform":
        import tensorflow as tf

        return tf.reshape(x, (-1, frontend.PATCH_FRAMES * frontend.HOP))
    return x
