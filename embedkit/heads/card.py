"""A saved head on disk: ``HEAD/card.json`` (what it is, where it came from) + ``HEAD/weights.npz``
(plain arrays, ``allow_pickle=False``: loading can never execute code), each array checksummed in
the card. `write_head` / `read_head` are the only functions that touch those files.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ModelMismatchError
from ..sidecar import SELF_DIGEST_KEY, fsync_dir, os_error_text, seal, seal_problem
from ..sidecar import json_default as _json_default
from .base import HeadError

HEAD_FORMAT = "embedkit-head"
HEAD_FORMAT_VERSION = 1
CARD_FILE = "card.json"
WEIGHTS_FILE = "weights.npz"


def check_output(path: str | os.PathLike, *, overwrite: bool) -> Path:
    """Check before any work that ``path`` may receive a head: new, or (``overwrite``) an existing head.

    Refuses (`HeadError`, one line) a symbolic link, a file, and any folder that is not exactly a saved
    head (``card.json`` of an embedkit head + ``weights.npz``): ``--force`` replaces a head, never a
    folder holding anything else.
    """
    out = Path(path)
    if out.is_symlink():
        raise HeadError(f"{out}: is a symbolic link; give the real folder path for the head")
    if not out.exists():
        return out
    if not overwrite:
        raise HeadError(f"{out}: already exists (use --force, or overwrite=True in Python, to replace it)")
    if not out.is_dir():
        raise HeadError(f"{out}: is a file, not a head folder; --force replaces only a head: choose another path")
    try:
        names = {e.name for e in os.scandir(out)}
    except OSError as exc:
        raise HeadError(os_error_text(out, exc, action="cannot read folder")) from None
    foreign = sorted(names - {CARD_FILE, WEIGHTS_FILE})
    if CARD_FILE not in names or foreign:
        what = f"holds {', '.join(foreign[:3])}{'…' if len(foreign) > 3 else ''}" if foreign else f"has no {CARD_FILE}"
        raise HeadError(f"{out}: is not an embedkit head ({what}); --force replaces only a head: choose another path "
                        "or move that folder away yourself")
    try:
        doc = json.loads((out / CARD_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        doc = None
    if not isinstance(doc, dict) or doc.get("format") != HEAD_FORMAT:
        raise HeadError(f"{out}: {CARD_FILE} there is not an embedkit head card; --force replaces only a head: "
                        "choose another path")
    return out


def write_head(path: str | os.PathLike, card: dict, arrays: dict[str, np.ndarray], *, overwrite: bool = False) -> Path:
    """Write ``path/card.json`` + ``path/weights.npz`` atomically; the card gains the arrays' checksums.

    ``overwrite`` replaces an existing *head* only (see `check_output`). The new folder is complete before
    it takes the old one's place; on any error (disk full, permission denied) nothing is left behind and
    the old head, if any, is unchanged. The folder's permissions follow the umask.
    """
    out = check_output(path, overwrite=overwrite)
    card["arrays"] = {k: {"shape": list(v.shape), "dtype": str(v.dtype), "sha256": array_sha(v)} for k, v in arrays.items()}
    sealed = seal(_finite(card))  # the card's own numbers checksummed too (card_sha256)
    card[SELF_DIGEST_KEY] = sealed[SELF_DIGEST_KEY]
    text = dumps(sealed)
    tmp: Path | None = None
    old: Path | None = None
    current = out
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent))
        current = out / WEIGHTS_FILE
        with open(tmp / WEIGHTS_FILE, "wb") as f:
            np.savez(f, **arrays)
            f.flush()
            os.fsync(f.fileno())
        current = out / CARD_FILE
        with open(tmp / CARD_FILE, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        current = out
        os.chmod(tmp, 0o777 & ~_umask())
        if out.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{out.name}.old.", dir=out.parent))
            os.replace(out, old / "head")
        os.replace(tmp, out)
        tmp = None
        fsync_dir(out.parent)
    except OSError as exc:
        if old is not None and not out.exists():
            with contextlib.suppress(OSError):
                os.replace(old / "head", out)
        raise HeadError(os_error_text(current, exc) + " (nothing was written)") from None
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    return out


def read_head(path: str | os.PathLike) -> tuple[dict, dict[str, np.ndarray]]:
    """``(card, arrays)`` of a saved head; checks format, and that every array has its checksum in the
    card and matches it (shape, dtype, sha256; no pickle). A head without checksums is refused."""
    p = Path(path)
    card = read_card(p)
    retrain = "retrain it with 'embedkit train'"
    try:
        with np.load(p / WEIGHTS_FILE, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
    except FileNotFoundError:
        raise HeadError(f"{p}: missing {WEIGHTS_FILE}; {retrain}") from None
    except ValueError as exc:
        raise HeadError(f"{p / WEIGHTS_FILE}: refused to load ({exc}); {retrain}") from None
    except Exception as exc:  # zipfile.BadZipFile, OSError, ...
        raise HeadError(f"{p / WEIGHTS_FILE}: unreadable ({type(exc).__name__}: {exc}); {retrain}") from None
    sums = card.get("arrays")
    if not isinstance(sums, dict) or not sums:
        raise HeadError(f"{p / CARD_FILE}: lists no array checksums, so the weights cannot be trusted; {retrain}")
    for k in arrays:
        if k not in sums:
            raise HeadError(f"{p}: array {k!r} of {WEIGHTS_FILE} has no checksum in {CARD_FILE} (corrupt or edited head); {retrain}")
    for k, spec in sums.items():
        a = arrays.get(k)
        if a is None:
            raise HeadError(f"{p}: array {k!r} missing from {WEIGHTS_FILE}; {retrain}")
        if (not isinstance(spec, dict) or list(a.shape) != spec.get("shape") or str(a.dtype) != spec.get("dtype", str(a.dtype))
                or array_sha(a) != spec.get("sha256")):
            raise HeadError(f"{p}: array {k!r} does not match its checksum in {CARD_FILE} (corrupt or edited head); {retrain}")
        if a.dtype.kind not in "biuf":
            raise HeadError(f"{p}: array {k!r} has dtype {a.dtype} (numbers expected; edited head); {retrain}")
        if a.dtype.kind == "f" and not np.isfinite(a).all():
            raise HeadError(f"{p}: array {k!r} holds NaN or infinity (damaged head); {retrain}")
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
        raise HeadError(f"{cpath}: unreadable card ({exc}); retrain it with 'embedkit train'") from None
    if not isinstance(card, dict) or card.get("format") != HEAD_FORMAT:
        raise HeadError(f"{cpath}: not an embedkit head card (format={card.get('format') if isinstance(card, dict) else None!r})")
    if (problem := seal_problem(card)) is not None:
        raise HeadError(f"{cpath}: damaged head card ({problem}); retrain it with 'embedkit train'")
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


def dumps(card: dict) -> str:
    """The card as JSON text (numpy values converted; NaN/inf written as null so the file stays standard JSON)."""
    return json.dumps(_finite(card), indent=2, default=_json_default, allow_nan=False) + "\n"


def _finite(o: Any) -> Any:
    if isinstance(o, dict):
        return {k: _finite(v) for k, v in o.items()}
    if isinstance(o, (list, tuple)):
        return [_finite(v) for v in o]
    if isinstance(o, (float, np.floating)) and not np.isfinite(o):
        return None
    if isinstance(o, np.ndarray):
        return _finite(o.tolist())
    return o


def _umask() -> int:
    um = os.umask(0)
    os.umask(um)
    return um
