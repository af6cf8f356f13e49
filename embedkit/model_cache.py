"""Models trained by ``embedkit fit``: saved next to the pretrained ones, found by the same name lookup.

Layout (shared with `embedkit.pretrained`): ``$EMBEDKIT_HOME/models/<name>/{model.weights.h5, card.json}``.
A trained model's card has ``kind: "embedkit-trained-model"`` plus everything a pretrained card has
(architecture, ``arch_config``, ``input_kind``, preprocessing, labels, feature_blocks, ``weights_sha256``)
and a ``training`` record (mode, teacher, init, data fingerprint, epochs, metrics, history).
`save` writes into a temporary folder and renames it into place, so the cache never holds half a model.
No TensorFlow here (`save` receives a Keras model but only calls its ``save_weights``).
"""
from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import Any

from .errors import EmbedkitError

KIND = "embedkit-trained-model"
FORMAT_VERSION = 1
WEIGHTS_FILE = "model.weights.h5"
CARD_FILE = "card.json"
_NAME = re.compile(r"^[a-z0-9][a-z0-9_]{0,63}$")


class ModelCacheError(EmbedkitError):
    """A trained model cannot be saved, found or read (message names the path and the way out)."""


def root() -> Path:
    """``$EMBEDKIT_HOME/models`` (see `embedkit.pretrained.home`)."""
    from embedkit import pretrained

    return pretrained.home() / "models"


def _norm(name: str) -> str:
    return name.strip().lower().replace("-", "_")


def check_new_name(name: str) -> str:
    """A valid name for a new trained model (lower-case letters, digits, ``_``; not a pretrained name)."""
    from embedkit import pretrained

    key = _norm(name)
    if not _NAME.match(key):
        raise ModelCacheError(f"invalid model name {name!r}: use letters, digits and '_' (at most 64)")
    if key in pretrained.MODEL_NAMES:
        raise ModelCacheError(f"{key!r} is a pretrained model's name; choose another -o NAME")
    return key


def card_path(name: str) -> Path:
    return root() / _norm(name) / CARD_FILE


def exists(name: str) -> bool:
    """True when ``name`` is a complete trained model in the cache (card of our kind + weights)."""
    try:
        d = root() / _norm(name)
        if not (d / WEIGHTS_FILE).is_file():
            return False
        return json.loads((d / CARD_FILE).read_text()).get("kind") == KIND
    except (OSError, ValueError):
        return False


def names() -> list[str]:
    """Names of the trained models in the cache, sorted."""
    try:
        return sorted(p.name for p in root().iterdir() if not p.name.startswith(".") and exists(p.name))
    except OSError:
        return []


def load_card(name: str) -> dict[str, Any]:
    """The card of trained model ``name`` (with ``installed``/``path`` as `pretrained.card` adds them)."""
    if not exists(name):
        raise ModelCacheError(f"no trained model {name!r} in {root()}; see: embedkit models list")
    card = json.loads(card_path(name).read_text())
    card["installed"] = True
    card["path"] = str(root() / _norm(name))
    return card


def save(name: str, model: Any, card: dict[str, Any], *, force: bool = False, extra_files: list[Path] = ()) -> Path:
    """Write ``model``'s weights and ``card`` as trained model ``name``; atomic (temp folder + rename).

    Raises `ModelCacheError` if the name is taken (unless ``force``) or the cache is not writable;
    on any failure nothing is left in the cache.
    """
    from . import sidecar

    key = check_new_name(name)
    dest = root() / key
    if dest.exists() and not force:
        raise ModelCacheError(f"{dest}: a model called {key!r} already exists; pass --force to replace it")
    tmp: Path | None = None
    try:
        root().mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{key}.", suffix=".tmp", dir=root()))
        model.save_weights(str(tmp / WEIGHTS_FILE))
        full = {**card, "name": key, "kind": KIND, "format_version": FORMAT_VERSION,
                "weights_sha256": sidecar.sha256_file(tmp / WEIGHTS_FILE)}
        full.pop("installed", None)
        full.pop("path", None)
        for f in extra_files:  # e.g. the learning curve
            shutil.copyfile(f, tmp / Path(f).name)
        (tmp / CARD_FILE).write_text(sidecar.dumps(full))
        if dest.exists():
            old = dest.with_name(f".{key}.old-{os.getpid()}")
            os.replace(dest, old)
            os.replace(tmp, dest)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, dest)
        tmp = None
        sidecar.fsync_dir(root())
    except OSError as exc:
        raise ModelCacheError(sidecar.os_error_text(root(), exc, action="cannot save the trained model")) from None
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
    return dest


def remove(name: str) -> None:
    """Delete trained model ``name`` (pretrained models are never touched)."""
    if not exists(name):
        raise ModelCacheError(f"no trained model {name!r} in {root()}")
    shutil.rmtree(root() / _norm(name))


def summary(card: dict[str, Any]) -> dict[str, Any]:
    """One ``embedkit models list`` row for a trained card."""
    tr = card.get("training", {})
    return {
        "name": card["name"], "installed": True, "architecture": card["architecture"],
        "trained_on": card.get("trained_on", ""), "parameters": card.get("parameters"),
        "dim": sum(int(b["size"]) for b in card["feature_blocks"]), "trained": True,
        "mode": tr.get("mode"), "teacher": tr.get("teacher"), "epochs": tr.get("epochs"),
        "metrics": tr.get("metrics", {}),
    }


def summaries() -> list[dict[str, Any]]:
    return [summary(load_card(n)) for n in names()]


def format_rows(rows: list[dict[str, Any]]) -> list[str]:
    """Text lines for `summaries` rows (the ``models list`` table's columns, metrics as measured)."""
    out = []
    for r in rows:
        m = r.get("metrics") or {}
        shown = ", ".join(f"{k} {v:.4f}" for k, v in m.items() if isinstance(v, (int, float)))[:60]
        out.append(f"{r['name']:<12} {'yes':<9} {r['architecture']:<8} {r['dim']:>4} {r['parameters']:>8} "
                   f"trained ({r['mode']}, {r['epochs']} epochs{', ' + shown if shown else ''})")
    return out
