"""FMA (Defferrard et al. 2017): ``fma_metadata/tracks.csv`` (three header rows: column group, column
name, ``track_id``) and ``fma_<subset>/<000>/<000002>.mp3``.

Label: ``track.genre_top`` (tracks without one are skipped); ``group``: ``artist.id``; ``split``:
``set.split`` (training/validation/test → train/valid/test). ``subset``: small ⊂ medium ⊂ large.
"""
from __future__ import annotations

import csv
import os

from ._common import DatasetError, DatasetLabels, check_root, find_dir, find_file

SUBSETS = ("small", "medium", "large")
SPLITS = {"training": "train", "validation": "valid", "test": "test"}


def fma(root: str | os.PathLike, *, subset: str = "small") -> DatasetLabels:
    r = check_root(root)
    if subset not in SUBSETS + ("full",):
        raise DatasetError(f"unknown FMA subset {subset!r}; expected small, medium, large or full")
    tracks = find_file(r, ["tracks.csv"])
    if tracks is None:
        raise DatasetError(f"{r}: no FMA layout (expected fma_metadata/tracks.csv and fma_{subset}/NNN/NNNNNN.mp3)")
    audio_dir = find_dir(r, [f"fma_{subset}"] + (["fma_large"] if subset == "full" else []))
    if audio_dir is None:
        raise DatasetError(f"{r}: no fma_{subset}/ audio folder")
    with open(tracks, newline="", encoding="utf-8", errors="replace") as f:
        reader = csv.reader(f)
        try:
            top, sub, idx = next(reader), next(reader), next(reader)
        except StopIteration:
            raise DatasetError(f"{tracks}: fewer than the three header rows of FMA's tracks.csv") from None
        if not idx or idx[0] != "track_id":
            raise DatasetError(f"{tracks}: third header row should start with 'track_id' (is this FMA's tracks.csv?)")
        names, cur = [], ""
        for a, b in zip(top, sub):
            cur = a or cur
            names.append(f"{cur}.{b}")
        col = {n: i for i, n in enumerate(names)}
        need = ["track.genre_top", "set.subset", "set.split", "artist.id"]
        miss = [n for n in need if n not in col]
        if miss:
            raise DatasetError(f"{tracks}: missing columns {', '.join(miss)}")
        want = SUBSETS.index(subset) if subset in SUBSETS else len(SUBSETS)
        rows, no_genre, no_file = [], 0, 0
        for n, row in enumerate(reader, start=4):
            if not row:
                continue
            if len(row) != len(names):
                raise DatasetError(f"{tracks} line {n}: {len(row)} fields, header has {len(names)}")
            s = row[col["set.subset"]]
            if s in SUBSETS and SUBSETS.index(s) > want:
                continue
            genre = row[col["track.genre_top"]]
            if not genre:
                no_genre += 1
                continue
            tid = int(row[0])
            p = audio_dir / f"{tid:06d}"[:3] / f"{tid:06d}.mp3"
            if not p.exists():
                no_file += 1
                continue
            rows.append({"path": str(p), "label": genre, "group": f"artist{row[col['artist.id']]}",
                         "split": SPLITS.get(row[col["set.split"]], row[col["set.split"]]), "track_id": tid})
    if not rows:
        raise DatasetError(f"{r}: no track of subset {subset!r} with a top genre has its mp3 under {audio_dir}")
    notes = []
    if no_genre:
        notes.append(f"{no_genre} tracks without a top genre skipped")
    if no_file:
        notes.append(f"{no_file} tracks of the subset have no mp3 under {audio_dir}")
    return DatasetLabels("fma", "classification", ["path", "label", "group", "split", "track_id"], rows, notes)
