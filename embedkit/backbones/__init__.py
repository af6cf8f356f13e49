"""Keras 3 model zoo: the pretrained networks and the survey's trainable families, in one table.

`ARCHS` maps an architecture name to its family, paper, builder, input kind (``logmel`` patches
``(b, frames, 96)`` or ``waveform`` ``(b, samples)`` at 16 kHz), default training input length and default
configuration. Importing this package is cheap; `build` imports Keras/TensorFlow.
Every model outputs a dict: ``logits`` ``(b, n_classes)`` plus per-block taps (see `tap_names`).
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Arch:
    """One trainable architecture: ``builder`` is ``"module:function"`` inside this package."""

    name: str
    family: str
    paper: str
    builder: str
    input_kind: str = "logmel"  # "logmel" | "waveform"
    input_s: float = 3.0  # paper's default training input length, seconds
    fixed_input: bool = False  # True: the graph only takes 187-frame patches
    defaults: dict[str, Any] = field(default_factory=dict)
    note: str = ""
    params: int = 0  # parameters of the default configuration with 50 outputs (tests check it)


ARCHS: dict[str, Arch] = {a.name: a for a in (
    Arch("vgg", "2-D CNN (musicnn VGG)", "Pons et al. 2018 (musicnn's VGG baseline)", "vgg:build_vgg",
         input_s=2.992, fixed_input=True, note="the msd_vgg / mtt_vgg graph; 187-frame input", params=607030),
    Arch("musicnn", "musicnn", "Pons & Serra 2019 (Pons et al. 2018)", "musicnn:build_musicnn",
         input_s=2.992, fixed_input=True, note="the msd_musicnn / mtt_musicnn graph; 187-frame input", params=792079),
    Arch("dieleman", "1-D CNN on mel", "Dieleman & Schrauwen 2014", "dieleman:build_dieleman", input_s=3.0,
         note="first conv spans all 96 mel bands", params=41566),
    Arch("fcn", "2-D CNN (FCN-5)", "Choi, Fazekas & Sandler 2016", "fcn:build_fcn", input_s=29.1, params=448758),
    Arch("crnn", "CRNN", "Choi, Fazekas, Sandler & Cho 2017", "crnn:build_crnn", input_s=29.1, params=394998),
    Arch("samplecnn", "sample-level CNN", "Lee, Park, Kim & Nam 2017 (3^9 model)", "samplecnn:build_samplecnn",
         input_kind="waveform", input_s=59049 / 16000, defaults={"variant": "basic"}, params=1875762),
    Arch("samplecnn_se", "sample-level CNN + SE", "Kim, Lee & Nam 2018 (SE)", "samplecnn:build_samplecnn",
         input_kind="waveform", input_s=59049 / 16000, defaults={"variant": "se"}, params=3521330),
    Arch("samplecnn_rese", "sample-level CNN + ReSE", "Kim, Lee & Nam 2018 (ReSE)", "samplecnn:build_samplecnn",
         input_kind="waveform", input_s=59049 / 16000, defaults={"variant": "rese"}, params=6966450),
    Arch("shortchunk", "short-chunk ResNet", "Won, Ferraro, Bogdanov & Serra 2020", "shortchunk:build_shortchunk",
         input_s=59049 / 16000, params=12116022),
)}

#: names `build` accepts (kept for older callers)
ARCHITECTURES = tuple(ARCHS)


def get(name: str) -> Arch:
    """The `Arch` called ``name``; ValueError (one line, listing the names) otherwise."""
    key = name.strip().lower().replace("-", "_")
    if key not in ARCHS:
        raise ValueError(f"unknown architecture {name!r}; expected one of {', '.join(ARCHS)}")
    return ARCHS[key]


def config(name: str, **overrides: Any) -> dict[str, Any]:
    """Builder keyword arguments: the family's defaults updated with ``overrides`` (None values dropped)."""
    return {**get(name).defaults, **{k: v for k, v in overrides.items() if v is not None}}


def build(architecture: str, **kwargs: Any):
    """Build an uninitialised Keras model for ``architecture`` (a key of `ARCHS`) with its default
    configuration updated by ``kwargs`` (e.g. ``n_classes=10``, ``input_len=None``)."""
    arch = get(architecture)
    if arch.fixed_input:
        kwargs.pop("input_len", None)
    module, fn = arch.builder.split(":")
    builder = getattr(importlib.import_module(f"{__name__}.{module}"), fn)
    return builder(**config(arch.name, **kwargs))


def tap_names(model) -> list[str]:
    """The model's feature taps in embedding order: every output but ``logits``, sorted by name."""
    return sorted(k for k in model.output if k != "logits")


def feature_blocks(model) -> list[dict[str, Any]]:
    """Card ``feature_blocks`` of a built model: ``[{"name", "size", "source"}]`` (size = channels)."""
    out = []
    for name in tap_names(model):
        t = model.output[name]
        pooled = {4: "mean over time and frequency", 3: "mean over time", 2: "per patch"}[len(t.shape)]
        out.append({"name": name, "size": int(t.shape[-1]), "source": f"{name} activations, {pooled}"})
    return out
