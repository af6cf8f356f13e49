"""Pretrained models: cards (JSON), the local cache, and the converter from the musicnn 0.1.0 wheel.

Installed as ``embedkit.pretrained``. Nothing here imports TensorFlow until a conversion runs.
Cache layout: ``$EMBEDKIT_HOME`` (default ``~/.cache/embedkit``) ``/models/<name>/{model.weights.h5,card.json}``.
"""
from __future__ import annotations

import hashlib
import json
import os
from functools import lru_cache
from pathlib import Path
from typing import Any

from embedkit.errors import EmbedkitError, WeightsMissingError
from embedkit.sidecar import sha256_file  # one file checksum (re-exported: convert.py, quantized.py use it)

MODEL_NAMES = ("msd_vgg", "msd_musicnn", "mtt_vgg", "mtt_musicnn")
DEFAULT_MODEL = "msd_vgg"
WEIGHTS_FILE = "model.weights.h5"
CARD_FILE = "card.json"
_CARDS_DIR = Path(__file__).resolve().parent / "cards"


def home() -> Path:
    """embedkit's cache folder: ``$EMBEDKIT_HOME`` or ``~/.cache/embedkit``."""
    return Path(os.environ.get("EMBEDKIT_HOME") or Path.home() / ".cache" / "embedkit").expanduser()


def model_dir(name: str) -> Path:
    return home() / "models" / check_name(name)


def check_name(name: str) -> str:
    """Normalise a model name (``MSD_vgg`` → ``msd_vgg``); raise a one-line error for unknown names."""
    key = name.strip().lower().replace("-", "_")
    if key not in MODEL_NAMES:
        from embedkit import model_cache  # models trained by `embedkit fit` (issue 10)

        if model_cache.exists(key):
            return key
        raise EmbedkitError(f"unknown model {name!r}; available: {', '.join([*MODEL_NAMES, *model_cache.names()])}")
    return key


def source_card(name: str) -> dict[str, Any]:
    """The card shipped with embedkit (no checksums of converted weights); a trained model's own card."""
    key = check_name(name)
    if key not in MODEL_NAMES:  # trained by `embedkit fit` (issue 10)
        from embedkit import model_cache

        return model_cache.load_card(key)
    return _packaged_card(key)


@lru_cache(maxsize=None)
def _packaged_card(name: str) -> dict[str, Any]:
    return json.loads((_CARDS_DIR / f"{name}.json").read_text())


def installed_card(name: str) -> dict[str, Any] | None:
    """The card written at conversion (adds ``weights_sha256``, versions, date), or None if not installed."""
    path = model_dir(name) / CARD_FILE
    if not (path.exists() and (model_dir(name) / WEIGHTS_FILE).exists()):
        return None
    return json.loads(path.read_text())


def is_installed(name: str) -> bool:
    return installed_card(name) is not None


def card(name: str) -> dict[str, Any]:
    """The installed card if there is one, else the source card; ``installed`` says which."""
    inst = installed_card(name)
    out = dict(inst or source_card(name))
    out["installed"] = inst is not None
    out["path"] = str(model_dir(name)) if inst else None
    return out


def fingerprint(card: dict[str, Any]) -> str:
    """sha256 of a model's weight values + preprocessing + feature layout: same fingerprint ⇒ same vectors."""
    payload = {
        "model": card["name"],
        "weights": card.get("tensor_sha256") or card.get("weights_sha256"),
        "preprocessing": card["preprocessing"],
        "blocks": [[b["name"], int(b["size"])] for b in card["feature_blocks"]],
        "feature_version": 1,
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()


def model_fingerprint(name: str) -> str | None:
    """`fingerprint` of an installed model, read from its card (no TensorFlow); None if not installed."""
    inst = installed_card(name)
    return None if inst is None else fingerprint(inst)


def weights_path(name: str, *, verify: bool = True) -> Path:
    """Path of the converted weights; raises `WeightsMissingError` naming the command that installs them."""
    name = check_name(name)
    inst = installed_card(name)
    path = model_dir(name) / WEIGHTS_FILE
    if inst is None:
        raise WeightsMissingError(
            f"weights for model '{name}' are not installed in {home()}; run: embedkit models fetch {name}"
        )
    if verify and sha256_file(path) != inst.get("weights_sha256"):
        raise WeightsMissingError(
            f"weights for model '{name}' at {path} fail their checksum; run: embedkit models fetch {name} --force"
        )
    return path
