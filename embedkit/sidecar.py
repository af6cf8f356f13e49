"""Sidecar files: the small JSON (and array) files beside embedkit's data (store manifest, head card,
index card). One place for: atomic durable writes, the kind + format-version check, the JSON default
for numpy values, and sha256 of files and arrays.

A sidecar is a JSON object. Its kind is read from ``"kind"`` or a string ``"format"``; its version from
``"format_version"`` or an integer ``"format"`` (both spellings exist in embedkit 0.1 files).

Writes go to a temporary file in the same folder (``.NAME.XXXX.tmp``), are flushed and fsynced, then
renamed over the target and the folder fsynced: a crash leaves the old file or the new one, and an
error (disk full, permission denied) removes the temporary file and raises `SidecarError` (one line
naming the file and the way out).
"""
from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import math
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from .errors import EmbedkitError


class SidecarError(EmbedkitError):
    """A sidecar file cannot be read or written, is of another kind, or is newer than this embedkit."""


# ---- writing ------------------------------------------------------------------------------------


def os_error_text(path: str | os.PathLike, exc: OSError, *, action: str = "cannot write") -> str:
    """One line for an OSError while writing ``path``, with the way out for the usual causes."""
    reason = exc.strerror or type(exc).__name__
    way = {
        errno.ENOSPC: "free some disk space and rerun",
        errno.EDQUOT: "free some disk space (quota) and rerun",
        errno.EACCES: "check the folder's permissions or choose another path",
        errno.EPERM: "check the folder's permissions or choose another path",
        errno.EROFS: "the file system is read-only; choose another path",
        errno.ENOENT: "check that the folder exists",
        errno.EISDIR: "a folder is in the way; remove it or choose another path",
        errno.ENOTDIR: "a file is in the way of the folder; choose another path",
    }.get(exc.errno or 0, "check the path and rerun")
    return f"{os.fspath(path)}: {action} ({reason[:1].lower() + reason[1:]}); {way}"


def fsync_dir(path: str | os.PathLike) -> None:
    """fsync a folder so that a rename inside it is durable (best effort: some file systems refuse)."""
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def atomic_write(path: str | os.PathLike, write: Callable[[Any], None], *, binary: bool = True,
                 mode: int | None = None) -> Path:
    """Write ``path`` atomically: ``write(f)`` fills a temporary file in the same folder, which is fsynced
    and renamed over ``path``. ``mode``: permission bits (default: what the umask gives a new file).
    On any error the temporary file is removed; OSErrors become `SidecarError` (one line)."""
    p = Path(path)
    tmp: str | None = None
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{p.name}.", suffix=".tmp", dir=p.parent)
        with os.fdopen(fd, "wb" if binary else "w", **({} if binary else {"encoding": "utf-8"})) as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, mode if mode is not None else _umask_mode())
        os.replace(tmp, p)
        tmp = None
        fsync_dir(p.parent)
    except OSError as exc:
        raise SidecarError(os_error_text(p, exc)) from None
    finally:
        if tmp is not None:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
    return p


def write_text(path: str | os.PathLike, text: str, **kw: Any) -> Path:
    """Atomically write ``text`` (UTF-8) to ``path``."""
    return atomic_write(path, lambda f: f.write(text.encode("utf-8")), **kw)


def dumps(doc: Any) -> str:
    """Standard JSON (indent 2, sorted keys, trailing newline); NaN/inf are refused, numpy values converted."""
    try:
        return json.dumps(doc, indent=2, sort_keys=True, default=json_default, allow_nan=False) + "\n"
    except ValueError as exc:
        raise SidecarError(f"refusing to write non-standard JSON ({exc}); a value is NaN or infinite") from None


def write_json(path: str | os.PathLike, doc: dict, *, kind: str | None = None, version: int | None = None,
               **kw: Any) -> Path:
    """Atomically write ``doc`` as JSON; ``kind``/``version`` (if given) are stored as ``kind``/``format_version``."""
    d = dict(doc)
    if kind is not None:
        d["kind"] = kind
    if version is not None:
        d["format_version"] = int(version)
    return write_text(path, dumps(d), **kw)


def json_default(o: Any) -> Any:
    """``json.dumps(default=...)`` for numpy arrays/scalars, paths, tuples and sets."""
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, (np.floating, np.integer, np.bool_)):
        return o.item()
    if isinstance(o, (tuple, set, frozenset)):
        return sorted(o) if isinstance(o, (set, frozenset)) else list(o)
    if isinstance(o, os.PathLike):
        return os.fspath(o)
    return str(o)


def _umask_mode() -> int:
    um = os.umask(0)
    os.umask(um)
    return 0o666 & ~um


# ---- reading ------------------------------------------------------------------------------------


def kind_of(doc: dict) -> str | None:
    """``doc["kind"]`` or a string ``doc["format"]``."""
    k = doc.get("kind")
    if isinstance(k, str):
        return k
    f = doc.get("format")
    return f if isinstance(f, str) else None


def version_of(doc: dict) -> int:
    """``doc["format_version"]`` or an integer ``doc["format"]`` (0 when neither)."""
    for key in ("format_version", "format"):
        v = doc.get(key)
        if isinstance(v, bool):
            continue
        if isinstance(v, int):
            return v
        if isinstance(v, float) and math.isfinite(v) and v == int(v):
            return int(v)
    return 0


def check_doc(doc: Any, path: str | os.PathLike, *, kind: str | tuple[str, ...] | None = None,
              max_version: int | None = None, what: str = "file", repair: str = "") -> dict:
    """Raise `SidecarError` unless ``doc`` is a JSON object of ``kind`` with version ≤ ``max_version``."""
    how = f"; {repair}" if repair else ""
    if not isinstance(doc, dict):
        raise SidecarError(f"{os.fspath(path)}: not a valid {what} (a JSON object expected, found {type(doc).__name__}){how}")
    if kind is not None:
        kinds = (kind,) if isinstance(kind, str) else tuple(kind)
        k = kind_of(doc)
        if k is not None and k not in kinds:
            raise SidecarError(f"{os.fspath(path)}: not a {what} (its kind is {k!r}){how}")
    v = version_of(doc)
    if max_version is not None and v > max_version:
        raise SidecarError(f"{os.fspath(path)}: {what} format {v} is newer than this embedkit reads ({max_version}); "
                           "upgrade embedkit")
    return doc


def read_json(path: str | os.PathLike, *, kind: str | tuple[str, ...] | None = None, max_version: int | None = None,
              what: str = "file", repair: str = "") -> dict:
    """Read and check a sidecar (see `check_doc`); unreadable or invalid JSON raises `SidecarError`
    naming the file, with ``repair`` appended as the way out."""
    how = f"; {repair}" if repair else ""
    try:
        text = Path(path).read_bytes().decode("utf-8")
        doc = json.loads(text, parse_constant=_refuse_constant)
    except FileNotFoundError:
        raise SidecarError(f"{os.fspath(path)}: {what} is missing{how}") from None
    except OSError as exc:
        raise SidecarError(os_error_text(path, exc, action=f"cannot read {what}")) from None
    except (UnicodeDecodeError, ValueError) as exc:
        raise SidecarError(f"{os.fspath(path)}: {what} is not valid JSON ({_short(exc)}){how}") from None
    return check_doc(doc, path, kind=kind, max_version=max_version, what=what, repair=repair)


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"non-standard JSON value {name}")


def _short(exc: Exception) -> str:
    return " ".join(str(exc).split())[:120]


# ---- hashing ------------------------------------------------------------------------------------


def sha256_file(path: str | os.PathLike, *, chunk: int = 1 << 20) -> str:
    """Hex sha256 of a file's bytes, read in 1 MiB chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def sha256_array(a: np.ndarray) -> str:
    """Hex sha256 of an array's dtype, shape and C-order bytes (the head card's ``arrays`` checksums)."""
    a = np.asarray(a)
    h = hashlib.sha256(str(a.dtype).encode() + str(a.shape).encode())
    h.update(np.ascontiguousarray(a).tobytes())
    return h.hexdigest()


def sha256_bytes(b: bytes | memoryview) -> str:
    return hashlib.sha256(b).hexdigest()


# ---- a card's digest of its own content -----------------------------------------------------------

#: the key under which a card (head card, index card) holds the sha256 of its own canonical content
SELF_DIGEST_KEY = "card_sha256"


def _canonical(doc: dict) -> bytes:
    """The content of ``doc`` without its self-digest: compact JSON, sorted keys, ASCII (stable bytes)."""
    body = {k: v for k, v in doc.items() if k != SELF_DIGEST_KEY}
    return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=True, default=json_default,
                      allow_nan=False).encode("ascii")


def seal(doc: dict) -> dict:
    """``doc`` as it reads back from JSON, plus ``SELF_DIGEST_KEY``: the sha256 of its canonical content.

    Write the returned dict (any indentation or key order): `seal_problem` checks it after reading.
    """
    plain = json.loads(json.dumps({k: v for k, v in doc.items() if k != SELF_DIGEST_KEY}, default=json_default,
                                  allow_nan=False))
    plain[SELF_DIGEST_KEY] = hashlib.sha256(_canonical(plain)).hexdigest()
    return plain


def seal_problem(doc: dict) -> str | None:
    """None when ``doc``'s self-digest matches its content, or when it has none (a card written before
    self-digests: accepted as legacy); else what is wrong, in a few words (the caller names the file)."""
    want = doc.get(SELF_DIGEST_KEY)
    if want is None:
        near = [k for k in doc if isinstance(k, str) and k != SELF_DIGEST_KEY and len(k) == len(SELF_DIGEST_KEY)
                and sum(a != b for a, b in zip(k, SELF_DIGEST_KEY)) <= 3]
        return f"its {SELF_DIGEST_KEY} key is damaged ({near[0]!r})" if near else None
    try:
        got = hashlib.sha256(_canonical(doc)).hexdigest()
    except (TypeError, ValueError):
        return "it holds values JSON cannot hold"
    if not isinstance(want, str) or want != got:
        return "its content does not match its own checksum (damaged or edited)"
    return None


__all__ = [
    "SidecarError", "atomic_write", "check_doc", "dumps", "fsync_dir", "json_default", "kind_of", "os_error_text",
    "SELF_DIGEST_KEY", "read_json", "seal", "seal_problem", "sha256_array", "sha256_bytes", "sha256_file", "version_of",
    "write_json", "write_text",
]
