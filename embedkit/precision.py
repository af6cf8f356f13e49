"""Numeric precision of the network: ``fp32`` (the reference), ``bf16``, ``int8``, and ``auto``.

* ``fp32``: float32 through TensorFlow/oneDNN; bit-identical to embedkit 0.1.
* ``bf16``: the same Keras graph under Keras' ``mixed_bfloat16`` policy (bfloat16 compute, float32 weights);
  fast where the hardware has bfloat16 arithmetic (AVX-512 BF16 / AMX on x86, any recent GPU), emulated
  (slower than fp32) elsewhere.
* ``int8``: full-integer TensorFlow Lite model (int8 weights and activations, per-channel weight scales),
  calibrated on real music (`embedkit.quantized`).
* ``int8dyn``: dynamic-range TensorFlow Lite model: int8 weights (per-channel scales), activations quantized
  to int8 at run time with each patch's own range, float32 between the convolutions; no calibration.
* ``auto``: the fastest precision this machine runs that meets its fidelity bar (`FIDELITY_BARS`), found
  by timing each candidate here and comparing its vectors with fp32's on real music; cached in
  ``$EMBEDKIT_HOME/precision.json``.

Fidelity bars: the minimum cosine between a precision's track vectors and the fp32 ones on real music
(`benchmarks/precision.py` measures them; the tests assert them).
"""
from __future__ import annotations

import json
import os
import platform
import time
from pathlib import Path

from .errors import EmbedkitError

PRECISIONS = ("fp32", "bf16", "int8", "int8dyn")
CHOICES = (*PRECISIONS, "auto")
DEFAULT = "fp32"
#: minimum cosine similarity of track vectors to fp32 on real music
FIDELITY_BARS = {"fp32": 1.0, "bf16": 0.999, "int8": 0.995, "int8dyn": 0.995}
_ALIASES = {"float32": "fp32", "f32": "fp32", "bfloat16": "bf16", "mixed_bfloat16": "bf16", "i8": "int8", "qint8": "int8",
            "int8-dynamic": "int8dyn", "int8-dyn": "int8dyn", "dynamic-int8": "int8dyn", "dynamic": "int8dyn"}


def check(precision: str | None) -> str:
    """Normalise a precision name (``None`` → fp32); one-line error naming the choices otherwise."""
    if precision is None:
        return DEFAULT
    key = str(precision).strip().lower()
    key = _ALIASES.get(key, key)
    if key not in CHOICES:
        raise EmbedkitError(f"unknown precision {precision!r}; choose one of {', '.join(CHOICES)}")
    return key


def cpu_flags() -> set[str]:
    """The x86 CPU feature flags of this machine (empty where /proc/cpuinfo is absent)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def cpu_model() -> str:
    """The CPU's model name from /proc/cpuinfo (``platform.processor()`` or the machine type where absent)."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return cpu


def has_gpu() -> bool:
    """True when TensorFlow sees a GPU (imports TensorFlow)."""
    from ._tf import import_tensorflow

    return bool(import_tensorflow().config.list_physical_devices("GPU"))


def native(precision: str, flags: set[str] | None = None) -> bool:
    """Whether the CPU computes ``precision`` in hardware (bf16: AVX-512 BF16 or AMX-BF16; int8, int8dyn: VNNI or AVX2)."""
    flags = cpu_flags() if flags is None else flags
    if precision == "fp32":
        return True
    if precision == "bf16":
        return bool(flags & {"avx512_bf16", "amx_bf16"})
    if precision in ("int8", "int8dyn"):
        return bool(flags & {"avx512_vnni", "avx_vnni", "amx_int8", "avx2"})
    return False


def _cache_path() -> Path:
    from . import pretrained

    return pretrained.home() / "precision.json"


def _machine_key(model: str) -> str:
    from ._tf import import_tensorflow

    cpu = cpu_model()
    tf = import_tensorflow()
    gpu = "gpu" if tf.config.list_physical_devices("GPU") else "cpu"
    return f"{model}|{cpu}|{os.cpu_count()}|{gpu}|tf{tf.__version__}|{','.join(PRECISIONS)}"


def time_precision(model: str, precision: str, *, batch_size: int = 32, seconds: float = 2.0) -> float:
    """Seconds per patch of the network at ``precision`` on this machine (best of repeated batches)."""
    import numpy as np

    from .embedder import Embedder

    emb = Embedder.from_pretrained(model, batch_size=batch_size, precision=precision)
    x = np.random.default_rng(0).standard_normal((batch_size, 187, 96)).astype(np.float32)
    emb.forward(x)  # trace / allocate
    best, t_end = float("inf"), time.perf_counter() + seconds
    while time.perf_counter() < t_end or best == float("inf"):
        t0 = time.perf_counter()
        emb.forward(x)
        best = min(best, (time.perf_counter() - t0) / batch_size)
    return best


def fidelity(model: str, precision: str, *, n_files: int = 8, excerpt_s: float = 30.0) -> float:
    """Smallest cosine between ``precision``'s and fp32's track vectors (mean+std, all blocks) over up to
    ``n_files`` real recordings (30-s excerpts of the calibration audio, `embedkit.quantized.calibration_files`)."""
    import numpy as np

    from .embedder import Embedder
    from .quantized import calibration_files

    files = calibration_files()[:n_files]
    ref = Embedder.from_pretrained(model, precision="fp32")
    emb = Embedder.from_pretrained(model, precision=precision)
    worst = 1.0
    for a, b in zip(ref.embed_files(files, aggregate="mean+std", excerpt_s=excerpt_s),
                    emb.embed_files(files, aggregate="mean+std", excerpt_s=excerpt_s)):
        if a.ok and b.ok:
            x, y = a.vector.astype(np.float64), b.vector.astype(np.float64)
            worst = min(worst, float(x @ y / (np.linalg.norm(x) * np.linalg.norm(y))))
    return worst


def resolve(precision: str | None, model: str = "msd_vgg", *, batch_size: int = 32) -> str:
    """A concrete precision: ``auto`` → the fastest one this machine runs that meets its fidelity bar.

    Candidates are fp32 and the precisions the hardware computes natively (`native`; bf16 also on a GPU).
    Each candidate is timed (`time_precision`) and its track vectors compared with fp32's on real music
    (`fidelity`); one below its bar in `FIDELITY_BARS` is never chosen. The result is cached per machine,
    model, TensorFlow version and list of precisions in ``$EMBEDKIT_HOME/precision.json`` (the first call takes ~1 min).
    """
    p = check(precision)
    if p != "auto":
        return p
    key = _machine_key(model)
    path = _cache_path()
    try:
        cache = json.loads(path.read_text())
    except (OSError, ValueError):
        cache = {}
    if key in cache and cache[key].get("choice") in PRECISIONS:
        return cache[key]["choice"]
    flags = cpu_flags()
    gpu = has_gpu()
    times: dict[str, float] = {}
    fid: dict[str, float | str] = {"fp32": 1.0}
    for cand in PRECISIONS:
        if cand == "fp32" or (gpu and cand == "bf16") or native(cand, flags):
            try:
                if cand != "fp32":
                    fid[cand] = fidelity(model, cand)
                    if fid[cand] < FIDELITY_BARS[cand]:
                        continue
                times[cand] = time_precision(model, cand, batch_size=batch_size)
            except Exception as exc:  # cannot run or cannot be checked here: not a candidate
                fid[cand] = f"not available: {str(exc).splitlines()[0][:120]}"
                continue
    choice = min(times, key=times.get) if times else DEFAULT
    cache[key] = {"choice": choice, "s_per_patch": times, "min_track_cosine": fid,
                  "measured": time.strftime("%Y-%m-%d %H:%M:%S")}
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(cache, indent=1))
        tmp.replace(path)
    except OSError:
        pass
    return choice
