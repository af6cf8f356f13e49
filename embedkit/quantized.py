"""int8 networks through TensorFlow Lite (issue 15): ``int8`` (full integer) and ``int8dyn`` (dynamic range).

``int8``: the Keras backbone (float32 weights) plus its per-block mean pooling is frozen and converted by the
TensorFlow Lite converter with post-training full-integer quantization: int8 weights (per-channel scales),
int8 activations whose ranges come from a representative dataset of real music (log-mel patches of the
calibration audio, see `calibration_files`). Measured here it stays below its fidelity bar (track cosine
≈ 0.96: one int8 scale per activation tensor cannot hold channels whose ranges differ by orders of magnitude;
keeping BN, pooling and the logits in float does not lift it past 0.965).

``int8dyn``: post-training *dynamic-range* quantization of the same graph: int8 weights (per-channel scales),
activations quantized to int8 on the fly, each patch with its own range computed at run time, int32
accumulation, float32 everywhere between the convolutions. No calibration audio is needed; a patch's outputs
do not depend on the other patches of its batch (checked by tests).

Inputs and outputs stay float32. The converted model is cached next to the weights
(``$EMBEDKIT_HOME/models/<name>/<precision>-<key>.tflite``, key = recipe + weights + TensorFlow version
(+ calibration patches for ``int8``)), so a conversion runs once per machine and the vectors are reproducible.

Calibration audio (``int8`` only): ``$EMBEDKIT_CALIBRATION_AUDIO`` (a folder of music), else the project's
real-music fixtures (``../shared/data/fixtures/audio`` or ``$EMBEDKIT_SHARED``); without either, int8 refuses
with a one-line message naming the variable. Interpreter: LiteRT (``ai_edge_litert``) when installed, else
``tf.lite.Interpreter`` (XNNPACK delegate).
"""
from __future__ import annotations

import hashlib
import os
import threading
import warnings
from pathlib import Path

import numpy as np

from .activations import scores
from .errors import EmbedkitError
from .features import FeatureLayout
from .network import PatchOutputs

#: patches taken from each calibration file (from its middle), and the most files used
CAL_PATCHES_PER_FILE = 8
CAL_MAX_FILES = 40
#: bump when a conversion recipe changes (part of the cache key)
RECIPE = "int8-ptq-v1"
RECIPE_DYNAMIC = "int8-dynamic-range-v1"
#: the TFLite precisions this module builds
MODES = ("int8", "int8dyn")


def calibration_dir() -> Path | None:
    """The folder of real music used for calibration, or None when none is configured or found."""
    env = os.environ.get("EMBEDKIT_CALIBRATION_AUDIO")
    if env:
        return Path(env).expanduser()
    repo = Path(__file__).resolve().parent.parent
    shared = Path(os.environ.get("EMBEDKIT_SHARED", repo.parent / "shared"))
    d = shared / "data" / "fixtures" / "audio"
    return d if d.is_dir() else None


def calibration_files() -> list[Path]:
    """Up to `CAL_MAX_FILES` audio files of the calibration folder, sorted (deterministic)."""
    from . import audio

    d = calibration_dir()
    if d is None or not d.is_dir():
        raise EmbedkitError(
            "int8 needs real music to calibrate its activation ranges and found none; "
            "set EMBEDKIT_CALIBRATION_AUDIO=DIR (a folder of music files) or use --precision fp32"
        )
    files = sorted(p for p in d.rglob("*") if p.suffix.lower() in audio.AUDIO_EXTENSIONS and p.is_file())
    if not files:
        raise EmbedkitError(f"{d}: no audio files to calibrate int8 on; set EMBEDKIT_CALIBRATION_AUDIO=DIR")
    return files[:CAL_MAX_FILES]


def calibration_patches(input_kind: str = "logmel") -> np.ndarray:
    """``(n, 187, width) float32`` patches from the middle of each calibration file (files that fail are skipped)."""
    from . import audio, inputs

    kind = inputs.get(input_kind)
    out = []
    for f in calibration_files():
        try:
            info = audio.probe(f)
            span = CAL_PATCHES_PER_FILE * 3.0 + 1.0
            off = max(0.0, ((info.duration_s or span) - span) / 2)
            p = kind.patches(audio.load(f, offset_s=off, duration_s=span))
        except EmbedkitError:
            continue
        out.append(p.data[:CAL_PATCHES_PER_FILE])
    if not out:
        raise EmbedkitError("no calibration file could be decoded; set EMBEDKIT_CALIBRATION_AUDIO=DIR")
    return np.concatenate(out)


def _interpreter(model_path: str, threads: int):
    try:  # LiteRT, the maintained home of the TFLite runtime
        from ai_edge_litert.interpreter import Interpreter

        return Interpreter(model_path=model_path, num_threads=threads)
    except ImportError:
        from ._tf import import_tensorflow

        tf = import_tensorflow()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return tf.lite.Interpreter(model_path=model_path, num_threads=threads)


def convert(card: dict, weights_path: str, layout: FeatureLayout, calibration: np.ndarray | None, *,
            batch: int = 8) -> bytes:
    """The int8 TFLite flatbuffer of a model: outputs ``o00_logits`` then ``oKK_<block>`` (pooled), float32.

    ``calibration`` ``(n, 187, 96) float32`` patches: full-integer quantization calibrated on them (``int8``);
    ``None``: dynamic-range quantization (``int8dyn``: int8 weights, activations quantized at run time)."""
    from tensorflow.python.framework.convert_to_constants import convert_variables_to_constants_v2

    from . import inputs
    from ._tf import import_tensorflow
    from .network import build_backbone

    tf = import_tensorflow()
    opts = inputs.network_options(card)
    kind = opts.pop("input_kind")
    backbone = build_backbone(card["architecture"], weights_path, config=opts.get("config"))
    shape = inputs.get(kind).patch_shape

    def pooled(t):
        rank = len(t.shape)
        return tf.reduce_mean(t, axis=(1, 2)) if rank == 4 else tf.reduce_mean(t, axis=1) if rank == 3 else t

    @tf.function(input_signature=[tf.TensorSpec([batch, *shape], tf.float32)])
    def forward(x):
        out = backbone(inputs.to_model_input(kind, x), training=False)
        res = {"o00_logits": out["logits"]}
        for k, name in enumerate(layout.names, start=1):
            res[f"o{k:02d}_{name}"] = pooled(out[name])
        return res

    frozen = convert_variables_to_constants_v2(forward.get_concrete_function())
    conv = tf.lite.TFLiteConverter.from_concrete_functions([frozen])
    conv.optimizations = [tf.lite.Optimize.DEFAULT]

    def representative():
        for i in range(0, calibration.shape[0], batch):
            chunk = calibration[i : i + batch]
            if chunk.shape[0] < batch:
                chunk = np.concatenate([chunk, calibration[: batch - chunk.shape[0]]])
            yield [chunk]

    if calibration is not None:
        conv.representative_dataset = representative
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return conv.convert()


class QuantizedNetwork:
    """The `embedkit.network.Network` interface over an int8 TFLite model (same outputs, float32).

    ``precision``: ``int8`` (full integer, calibrated) or ``int8dyn`` (dynamic range). The model is converted
    for batches of exactly ``batch_size`` (one cached file per batch size); a partial batch is zero-padded.
    Rows never interact (static ranges for int8, per-row run-time ranges for int8dyn), so a patch's outputs
    do not depend on its batch.
    """

    def __init__(self, card: dict, weights_path: str, layout: FeatureLayout, *, batch_size: int = 32,
                 precision: str = "int8") -> None:
        from . import inputs, pretrained
        from ._tf import import_tensorflow

        if precision not in MODES:
            raise ValueError(f"QuantizedNetwork builds {', '.join(MODES)}, not {precision!r}")
        tf = import_tensorflow()
        self.precision = precision
        self.layout = layout
        self.batch_size = max(int(batch_size), 1)
        self.n_labels = len(card["labels"])
        self.output = inputs.output_activation(card)  # "softmax" for a single-label classifier, else "sigmoid"
        kind = inputs.for_card(card)
        self._shape = kind.patch_shape
        cal = calibration_patches(kind.name) if precision == "int8" else None
        key = hashlib.sha256()
        for part in (RECIPE if cal is not None else RECIPE_DYNAMIC, tf.__version__,
                     str(card.get("weights_sha256") or pretrained.sha256_file(weights_path)),
                     ",".join(layout.names), f"batch{self.batch_size}"):
            key.update(part.encode())
        if cal is not None:
            key.update(np.ascontiguousarray(cal).tobytes())
            self.calibration_sha256 = hashlib.sha256(np.ascontiguousarray(cal).tobytes()).hexdigest()
            self.n_calibration_patches = int(cal.shape[0])
        else:
            self.calibration_sha256, self.n_calibration_patches = None, 0
        path = Path(weights_path).parent / f"{precision}-{key.hexdigest()[:16]}.tflite"
        if not path.exists():
            blob = convert(card, weights_path, layout, cal, batch=self.batch_size)
            tmp = path.with_suffix(f".tmp{os.getpid()}")
            tmp.write_bytes(blob)
            tmp.replace(path)
        self.model_path = path
        threads = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
        self._it = _interpreter(str(path), threads)
        inp = self._it.get_input_details()[0]  # the graph was converted for batches of exactly batch_size
        self._it.allocate_tensors()
        self._in = inp["index"]
        outs = sorted(self._it.get_output_details(), key=lambda d: _suffix(d["name"]))
        self._out = [d["index"] for d in outs]
        sizes = [self.n_labels] + [b.size for b in layout.blocks]
        got = [int(d["shape"][-1]) for d in outs]
        if got != sizes:
            raise EmbedkitError(f"{path}: int8 model outputs {got} do not match the card {sizes}; delete it and rerun")
        self._lock = threading.Lock()

    def __call__(self, patches: np.ndarray) -> PatchOutputs:
        """``(n, 187, 96) float32`` → `PatchOutputs` (features ``(n, layout.dim)``, logits and tags ``(n, n_labels)``)."""
        patches = np.ascontiguousarray(patches, dtype=np.float32)
        if patches.ndim != 3 or patches.shape[1:] != self._shape:
            raise ValueError(f"expected patches of shape (n, {self._shape[0]}, {self._shape[1]}), given {patches.shape}")
        n, bs = patches.shape[0], self.batch_size
        feats, logits = [], []
        with self._lock:
            for start in range(0, n, bs):
                chunk = patches[start : start + bs]
                m = chunk.shape[0]
                if m < bs:
                    chunk = np.concatenate([chunk, np.zeros((bs - m, *self._shape), np.float32)])
                self._it.set_tensor(self._in, chunk)
                self._it.invoke()
                outs = [self._it.get_tensor(i)[:m].astype(np.float32) for i in self._out]
                logits.append(outs[0])
                feats.append(np.concatenate(outs[1:], axis=1))
        if not feats:
            empty = np.zeros((0, self.n_labels), np.float32)
            return PatchOutputs(np.zeros((0, self.layout.dim), np.float32), empty, empty.copy())
        lg = np.concatenate(logits)
        return PatchOutputs(np.concatenate(feats), lg, scores(lg, self.output))


def _suffix(name: str) -> int:
    """TFLite names outputs ``Identity``, ``Identity_1``, ... in the (sorted-key) order of the dict."""
    tail = name.rsplit("_", 1)
    return int(tail[1]) if len(tail) == 2 and tail[1].isdigit() else 0
