"""Jamendo singing-voice corpus (Ramona, Richard & David 2008): 93 songs with ``.lab`` segments.

Layouts read (audio ``.ogg``/``.mp3``, labels ``<song>.lab`` with lines ``start end sing|nosing``)::

    train/ valid/ test/ *.ogg|mp3  +  jamendo_lab/*.lab        Ramona's archives
    audio/*.ogg|mp3 + labels/*.lab + filelists/{train,valid,test}   (Schlüter's layout)

Labels are per time segment, while a store holds whole files, so the reader cuts each song into
fixed ``clip_s`` clips (16 kHz mono WAV in ``clips_dir``) that lie entirely inside one segment,
labelled ``vocal`` / ``nonvocal``; ``group`` is the song (all clips of a song stay on one side of a
split) and ``split`` the official train/valid/test (61/16/16 songs). Existing clips are reused.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ._common import DatasetError, DatasetLabels, audio_files, check_root, find_dir

SPLITS = ("train", "valid", "test")
LABELS = {"sing": "vocal", "nosing": "nonvocal"}


def read_lab(path: Path) -> list[tuple[float, float, str]]:
    """``[(start_s, end_s, "sing"|"nosing")]`` from a ``.lab`` file; errors name the line."""
    segs = []
    for n, line in enumerate(path.read_text(encoding="utf-8", errors="replace").splitlines(), start=1):
        parts = line.split()
        if not parts:
            continue
        if len(parts) != 3 or parts[2] not in LABELS:
            raise DatasetError(f"{path} line {n}: expected 'start end sing|nosing', got {line.strip()!r}")
        try:
            a, b = float(parts[0]), float(parts[1])
        except ValueError:
            raise DatasetError(f"{path} line {n}: start/end are not numbers: {line.strip()!r}") from None
        if b < a:
            raise DatasetError(f"{path} line {n}: segment ends before it starts ({a} > {b})")
        segs.append((a, b, parts[2]))
    return segs


def _splits_of(root: Path, songs: dict[str, Path]) -> dict[str, str]:
    out: dict[str, str] = {}
    lists = find_dir(root, ["filelists"])
    if lists is not None:
        for s in SPLITS:
            f = lists / s
            if f.exists():
                for line in f.read_text(encoding="utf-8", errors="replace").splitlines():
                    if line.strip():
                        out[Path(line.strip()).stem] = s
    for stem, p in songs.items():
        if stem not in out and p.parent.name.lower() in SPLITS:
            out[stem] = p.parent.name.lower()
    return out


def jamendo(root: str | os.PathLike, *, clips_dir: str | os.PathLike | None = None, clip_s: float = 3.0) -> DatasetLabels:
    from .. import audio

    r = check_root(root)
    labs = {p.stem: p for p in sorted(r.rglob("*.lab"))}
    songs = {p.stem: p for p in audio_files(r, (".ogg", ".mp3", ".wav", ".flac"), recursive=True)
             if clips_dir is None or Path(clips_dir).resolve() not in p.resolve().parents}
    if not labs:
        raise DatasetError(f"{r}: no Jamendo layout (expected <song>.lab files next to train/valid/test or audio/ folders)")
    if clips_dir is None:
        raise DatasetError("jamendo labels are per time segment: give --clips-dir DIR to cut labelled clips into")
    if clip_s <= 0:
        raise DatasetError(f"clip length must be positive, given {clip_s}")
    out_dir = Path(clips_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    split = _splits_of(r, songs)
    rows, notes, no_audio = [], [], []
    sr = 16000
    n = int(round(clip_s * sr))
    for stem, lab in labs.items():
        src = songs.get(stem)
        if src is None:
            no_audio.append(stem)
            continue
        segs = read_lab(lab)
        y = None
        for a, b, tag in segs:
            t = a
            k = 0
            while t + clip_s <= b + 1e-6:
                clip = out_dir / f"{_safe(stem)}__{int(round(t * 1000)):08d}.wav"
                if not clip.exists():
                    if y is None:
                        y = audio.load(src, sr=sr)
                    s0 = int(round(t * sr))
                    piece = y[s0 : s0 + n]
                    if piece.size < n:
                        break
                    _write_wav(clip, piece, sr)
                rows.append({"path": str(clip.resolve()), "label": LABELS[tag], "group": stem, "split": split.get(stem, "train"),
                             "start_s": round(t, 3), "source": str(src)})
                t += clip_s
                k += 1
    if not rows:
        raise DatasetError(f"{r}: no clip of {clip_s:g} s fits inside any labelled segment")
    if no_audio:
        notes.append(f"{len(no_audio)} .lab files have no audio (e.g. {no_audio[0]!r})")
    if not split:
        notes.append("no train/valid/test folders or filelists found: every clip is in split 'train'")
    cols = ["path", "label", "group", "split", "start_s", "source"]
    return DatasetLabels("jamendo", "classification", cols, rows, notes)


def _safe(stem: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in stem)


def _write_wav(path: Path, y: np.ndarray, sr: int) -> None:
    import soundfile as sf

    tmp = path.with_name(path.name + ".part")
    sf.write(tmp, y, sr, subtype="PCM_16", format="WAV")
    os.replace(tmp, path)
