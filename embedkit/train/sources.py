"""Training inputs: audio files from folders, files or embedding stores; labels bound to those files.

A STORE argument (a folder with an embedkit ``manifest.json``) contributes the files its items point to.
Labels (`embedkit.labels` format) are matched to files by path (relative paths are taken relative to the
labels file's folder, then to the current folder); a labelled file that does not exist is an error that
names the labels file, the line and the path.
"""
from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import EmbedkitError


class FitInputError(EmbedkitError):
    """Training inputs are missing or unusable (message names the file and the way out)."""


@dataclass
class Track:
    """One training file: ``group`` keeps related files on one side of the split (default: the file)."""

    path: str
    group: str
    target: np.ndarray | None = None  # labels mode: one-hot / multi-hot / values, float32


def _store_paths(folder: Path) -> list[str]:
    from ..store import Store

    st = Store.open(folder, mode="r")
    try:
        return [it.path for it in st.items()]
    finally:
        close = getattr(st, "close", None)
        if close:
            close()


def collect(inputs: list[str]) -> list[str]:
    """Absolute audio paths from files, folders and stores, each once, in a stable order."""
    from ..discovery import discover

    paths: list[str] = []
    plain: list[str] = []
    for raw in inputs:
        p = Path(raw)
        if p.is_dir() and (p / "manifest.json").exists():
            paths += _store_paths(p)
        else:
            plain.append(raw)
    if plain:
        found = discover(plain)
        if found.errors:
            path, reason = found.errors[0]
            raise FitInputError(f"{path}: {reason}; check the path")
        paths += [f.path for f in found.files]
    seen: set[str] = set()
    out = [p for p in (os.path.abspath(x) for x in paths) if not (p in seen or seen.add(p))]
    if not out:
        raise FitInputError(f"no audio files found in {', '.join(inputs) or '(no inputs)'}; give audio files, folders or a store")
    return out


def _resolve(key: str, base: Path) -> Path | None:
    p = Path(key)
    for cand in ([p] if p.is_absolute() else [base / p, Path.cwd() / p]):
        if cand.is_file():
            return cand.resolve()
    return None


def labelled_tracks(labels_csv: str, paths: list[str] | None, *, task: str = "auto",
                    group: str | None = None) -> tuple[list[Track], str, list[str]]:
    """Bind a labels file to audio files → (tracks with targets, task, target names).

    ``paths`` (from the AUDIO/STORE arguments) restricts the files; when empty, the labels file's paths are
    used alone. Raises `FitInputError` for a labelled file that is missing, a single class, or no match.
    """
    from ..labels import LabelError, read_labels

    try:
        table = read_labels(labels_csv, task=task, group=group)
    except LabelError as exc:
        raise FitInputError(str(exc)) from None
    base = Path(labels_csv).resolve().parent
    allowed = {os.path.realpath(p) for p in paths} if paths else None
    by_name = {Path(p).name: p for p in paths} if paths else {}
    tracks: list[Track] = []
    names = list(table.names)
    if table.task == "classification":
        classes = sorted(set(table.y.tolist()))
        if len(classes) < 2:
            raise FitInputError(f"{labels_csv}: only one class ({classes[0] if classes else 'none'}); "
                                "a classifier needs at least two")
        names = classes
    for i, key in enumerate(table.keys):
        found = _resolve(key, base)
        if found is None and key in by_name:
            found = Path(by_name[key])
        if found is None:
            raise FitInputError(f"{table.where(i)}: labelled file {key!r} does not exist; fix the path or drop the row")
        if allowed is not None and os.path.realpath(found) not in allowed:
            continue
        if table.task == "classification":
            tgt = np.zeros(len(names), np.float32)
            tgt[names.index(table.y[i])] = 1.0
        else:
            tgt = np.asarray(table.y[i], np.float32).ravel()
        grp = str(table.groups[i]) if table.groups is not None else str(found)
        tracks.append(Track(str(found), grp, tgt))
    if len(tracks) < 2:
        raise FitInputError(f"{labels_csv}: only {len(tracks)} labelled file(s) among the inputs; need at least two")
    return tracks, table.task, names


def fingerprint(tracks: list[Track], extra: str = "") -> str:
    """sha256 over (path, size, mtime, target) of every track + ``extra`` (labels file hash, excerpt, ...)."""
    h = hashlib.sha256(extra.encode())
    for t in sorted(tracks, key=lambda t: t.path):
        st = os.stat(t.path)
        h.update(f"{t.path}\0{st.st_size}\0{int(st.st_mtime)}\0{t.group}\0".encode())
        if t.target is not None:
            h.update(np.asarray(t.target, np.float32).tobytes())
    return h.hexdigest()


def split(tracks: list[Track], valid_fraction: float, seed: int) -> tuple[list[Track], list[Track]]:
    """Validation split grouped by ``Track.group`` (every group wholly on one side); both sides non-empty."""
    groups = sorted({t.group for t in tracks})
    if len(groups) < 2:
        raise FitInputError(f"only {len(groups)} track group(s); a validation split needs at least two")
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(groups))
    n_val = min(len(groups) - 1, max(1, int(round(valid_fraction * len(groups)))))
    val_groups = {groups[i] for i in order[:n_val]}
    train = [t for t in tracks if t.group not in val_groups]
    valid = [t for t in tracks if t.group in val_groups]
    return train, valid
