"""A saved head on disk: ``HEAD/card.json`` (what it is, where it came from) + ``HEAD/weights.npz``
(plain arrays, ``allow_pickle=False``: loading can never execute code), each array checksummed in
the card. `write_head` / `read_head` are the only functions that touch those files.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ModelMismatchError
from .base import HeadError

HEAD_FORMAT = "embedkit-head"
HEAD_FORMAT_VERSION = 1
CARD_FILE = "card.json"
WEIGHTS_FILE = "weights.npz"


def write_head(path: str | os.PathLike, card: dict, arrays: dict[str, np.ndarray], *, overwrite: bool = False) -> Path:
    """Write ``path/card.json`` + ``path/weights.npz`` atomically; the card gains the arrays' checksums."""
    out = Path(path)
    if out.exists() and not overwrite:
        raise HeadError(f"{out}: already exists (use overwrite / --force to replace it)")
    card["arrays"] = {k: {"shape": list(v.shape), "dtype": str(v.dtype), "sha256": array_sha(v)} for k, v in arrays.items()}
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        np.savez(tmp / WEIGHTS_FILE, **arrays)
        (tmp / CARD_FILE).write_text(json.dumps(card, indent=2, default=_json_default) + "\n", encoding="utf-8")
        if out.exists():
            shutil.rmtree(out) if out.is_dir() else out.unlink()
        os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out


def read_head(path: str | os.PathLike) -> tuple[dict, dict[str, np.ndarray]]:
    """``(card, arrays)`` of a saved head; checks format, array shapes and checksums (no pickle)."""
    p = Path(path)
    card = read_card(p)
    try:
        with np.load(p / WEIGHTS_FILE, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
    except FileNotFoundError:
        raise HeadError(f"{p}: missing {WEIGHTS_FILE}") from None
    except ValueError as exc:
        raise HeadError(f"{p / WEIGHTS_FILE}: refused to load ({exc})") from None
    except Exception as exc:  # zipfile.BadZipFile, OSError, ...
        raise HeadError(f"{p / WEIGHTS_FILE}: unreadable ({type(exc).__name__}: {exc})") from None
    for k, spec in card.get("arrays", {}).items():
        a = arrays.get(k)
        if a is None:
            raise HeadError(f"{p}: array {k!r} missing from {WEIGHTS_FILE}")
        if list(a.shape) != spec["shape"] or array_sha(a) != spec["sha256"]:
            raise HeadError(f"{p}: array {k!r} does not match its checksum in {CARD_FILE} (corrupt or edited head)")
    return card, arrays


def read_card(path: str | os.PathLike) -> dict:
    """The card (JSON) of a saved head; checks that it is an embedkit head this version can read."""
    p = Path(path)
    cpath = p / CARD_FILE
    if not p.exists():
        raise HeadError(f"{p}: no such head")
    if not cpath.exists():
        raise HeadError(f"{p}: not an embedkit head (no {CARD_FILE})")
    try:
        card = json.loads(cpath.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise HeadError(f"{cpath}: unreadable card ({exc})") from None
    if card.get("format") != HEAD_FORMAT:
        raise HeadError(f"{cpath}: not an embedkit head card (format={card.get('format')!r})")
    if int(card.get("format_version", 0)) > HEAD_FORMAT_VERSION:
        raise HeadError(f"{p}: head format {card.get('format_version')} is newer than this embedkit reads ({HEAD_FORMAT_VERSION}); upgrade embedkit")
    return card


def check_compatible(card: dict, *, model_fingerprint: str | None, aggregation: str | None = None, source: str = "the vectors") -> None:
    """Refuse (`ModelMismatchError`) vectors made by another model/preprocessing or aggregation."""
    want = card.get("model_fingerprint")
    if want and model_fingerprint and want != model_fingerprint:
        raise ModelMismatchError(
            f"head was trained on model {card.get('model')} fingerprint {want[:16]}…, but {source} "
            f"come from fingerprint {model_fingerprint[:16]}… (another model or preprocessing)"
        )
    if want and not model_fingerprint:
        raise ModelMismatchError(f"{source} carry no model fingerprint; cannot check them against this head")
    agg = card.get("aggregation")
    if agg and aggregation and agg != aggregation:
        raise ModelMismatchError(f"head expects '{agg}' aggregated vectors, but {source} are '{aggregation}'")


def array_sha(a: np.ndarray) -> str:
    """sha256 of an array's dtype, shape and bytes."""
    h = hashlib.sha256(str(a.dtype).encode() + str(a.shape).encode())
    h.update(np.ascontiguousarray(a).tobytes())
    return h.hexdigest()


_array_sha = array_sha


def library_versions() -> dict:
    import sklearn

    return {"numpy": np.__version__, "scikit-learn": sklearn.__version__}


def _json_default(o: Any) -> Any:
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, (np.floating, np.integer, np.bool_)):
        return o.item()
    if isinstance(o, tuple):
        return list(o)
    return str(o)
