"""Turn the musicnn 0.1.0 wheel's TensorFlow-1 checkpoints into Keras 3 weights (+ a model card).

The wheel is fetched with ``pip download --no-deps musicnn==0.1.0`` (never installed: its metadata pins
numpy<1.17) or taken from a local path, and its sha256 is checked. Checkpoints have an empty basename
(``MSD_vgg/.index``) and a ``checkpoint`` file pointing at the author's home, so the directory prefix is read
directly with ``tf.compat.v1.train.NewCheckpointReader('<dir>/MSD_vgg/')``.
"""
from __future__ import annotations

import datetime as _dt
import hashlib
import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

from embedkit.errors import EmbedkitError

from . import CARD_FILE, WEIGHTS_FILE, check_name, home, model_dir, sha256_file, source_card

log = logging.getLogger("embedkit")

WHEEL_NAME = "musicnn-0.1.0-py3-none-any.whl"
WHEEL_SHA256 = "f38a4890c648c1ddbb141c5d96d2b0a8cfcd36746002d896989f7b88beb65cfa"
_OPTIMIZER_SUFFIXES = ("/Adam", "/Adam_1")


def obtain_wheel(wheel: str | os.PathLike | None = None) -> Path:
    """The verified musicnn wheel: ``wheel`` if given, else the cached copy, else ``pip download``."""
    if wheel is not None:
        path = Path(wheel)
        if not path.is_file():
            raise EmbedkitError(f"{path}: no such wheel file")
    else:
        path = home() / "downloads" / WHEEL_NAME
        if not path.exists() or sha256_file(path) != WHEEL_SHA256:
            path.parent.mkdir(parents=True, exist_ok=True)
            with tempfile.TemporaryDirectory(dir=path.parent) as tmp:
                cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--disable-pip-version-check",
                       "-q", "-d", tmp, "musicnn==0.1.0"]
                log.warning("downloading musicnn 0.1.0 (29 MB, ISC licence) with pip ...")
                proc = subprocess.run(cmd, capture_output=True, text=True)
                got = Path(tmp) / WHEEL_NAME
                if proc.returncode != 0 or not got.exists():
                    last = (proc.stderr.strip().splitlines() or ["no output"])[-1]
                    raise EmbedkitError(
                        f"pip download musicnn==0.1.0 failed ({last}); on an offline machine pass --wheel PATH"
                    )
                os.replace(got, path)
    digest = sha256_file(path)
    if digest != WHEEL_SHA256:
        raise EmbedkitError(f"{path}: sha256 {digest[:12]}… does not match musicnn 0.1.0 ({WHEEL_SHA256[:12]}…)")
    return path


def extract_checkpoint(wheel: Path, checkpoint: str, dest: Path) -> Path:
    """Extract ``musicnn/<checkpoint>/`` from the wheel into ``dest``; returns the checkpoint prefix dir."""
    prefix = f"musicnn/{checkpoint}/"
    with zipfile.ZipFile(wheel) as zf:
        members = [m for m in zf.namelist() if m.startswith(prefix)]
        if not members:
            raise EmbedkitError(f"{wheel}: no {prefix} in the wheel")
        for m in members:
            zf.extract(m, dest)
    return dest / "musicnn" / checkpoint


def checkpoint_to_keras(ckpt_dir: Path, architecture: str):
    """Build the Keras model for ``architecture`` and load the checkpoint's variables into it.

    Every trainable/BN variable of the checkpoint must be used exactly once and every Keras weight set.
    """
    import numpy as np

    from embedkit import backbones
    from embedkit._tf import import_tensorflow

    tf = import_tensorflow()

    reader = tf.compat.v1.train.NewCheckpointReader(str(ckpt_dir) + "/")
    shapes = reader.get_variable_to_shape_map()
    wanted = {k for k in shapes if not k.endswith(_OPTIMIZER_SUFFIXES) and "/" in k}
    module = __import__(f"embedkit.backbones.{architecture}", fromlist=["CHECKPOINT_MAP"])
    model = backbones.build(architecture)
    used: set[str] = set()
    for scope, layer_name in module.CHECKPOINT_MAP.items():
        layer = model.get_layer(layer_name)
        if "batch_normalization" in scope:
            names = [f"{scope}/{v}" for v in ("gamma", "beta", "moving_mean", "moving_variance")]
        else:
            names = [f"{scope}/kernel", f"{scope}/bias"]
        values = [reader.get_tensor(n).astype(np.float32) for n in names]
        for have, want in zip(layer.get_weights(), values):
            if have.shape != want.shape:
                raise EmbedkitError(f"{ckpt_dir}: {scope} has shape {want.shape}, Keras layer {layer_name} wants {have.shape}")
        layer.set_weights(values)
        used.update(names)
    if used != wanted:
        raise EmbedkitError(f"{ckpt_dir}: unmapped checkpoint variables {sorted(wanted - used)[:5]}")
    return model


def convert(name: str, *, wheel: str | os.PathLike | None = None, force: bool = False) -> dict:
    """Fetch (if needed), convert and cache model ``name``; returns its installed card."""
    from embedkit._tf import import_tensorflow

    tf = import_tensorflow()
    import keras

    name = check_name(name)
    src = source_card(name)
    target = model_dir(name)
    if not force and (target / CARD_FILE).exists() and (target / WEIGHTS_FILE).exists():
        card = json.loads((target / CARD_FILE).read_text())
        if sha256_file(target / WEIGHTS_FILE) == card.get("weights_sha256"):
            return card
    wheel_path = obtain_wheel(wheel)
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent) as tmp:
        ckpt = extract_checkpoint(wheel_path, src["source"]["checkpoint"].split("/")[1], Path(tmp))
        model = checkpoint_to_keras(ckpt, src["architecture"])
        n_params = int(model.count_params())
        if src.get("parameters") and n_params != src["parameters"]:
            raise EmbedkitError(f"{name}: converted model has {n_params} parameters, card says {src['parameters']}")
        staging = Path(tmp) / "out"
        staging.mkdir()
        model.save_weights(staging / WEIGHTS_FILE)
        card = dict(src)
        card.update(
            parameters=n_params,
            weights_file=WEIGHTS_FILE,
            weights_sha256=sha256_file(staging / WEIGHTS_FILE),
            tensor_sha256=_tensor_digest(model),
            converted={
                "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
                "keras": keras.__version__,
                "tensorflow": tf.__version__,
                "wheel_sha256": WHEEL_SHA256,
            },
        )
        (staging / CARD_FILE).write_text(json.dumps(card, indent=1))
        if target.exists():
            shutil.rmtree(target)
        os.replace(staging, target)  # atomic: a half-written model is never visible
    log.info("converted %s (%d parameters) into %s", name, n_params, target)
    return card


def _tensor_digest(model) -> str:
    """sha256 over the weight values (independent of the HDF5 container): the model's identity."""
    h = hashlib.sha256()
    for w in model.weights:
        h.update(w.path.encode())
        h.update(w.numpy().astype("<f4").tobytes())
    return h.hexdigest()
