"""MagnaTagATune (Law et al. 2009): ``annotations_final.csv`` (tab-separated, quoted: ``clip_id``, 188
tag columns of 0/1, ``mp3_path``) and the mp3 folders ``0`` … ``f``.

Labels are the 50 most frequent tags; the split is the usual 12:1:3 one by folder (``0``–``b``
train, ``c`` valid, ``d``–``f`` test, as Dieleman & Schrauwen 2014 and Choi et al. 2016/2017);
``group`` is the artist from the file name (``<artist>-<album>-<track>-<title>-<start>-<end>.mp3``).
"""
from __future__ import annotations

import csv
import os
from collections import Counter
from pathlib import Path

from ._common import DatasetError, DatasetLabels, check_root, find_file

FOLDERS = "0123456789abcdef"


def split_of(mp3_path: str) -> str:
    """``train`` for folders 0–b, ``valid`` for c, ``test`` for d–f."""
    first = mp3_path.replace("\\", "/").split("/")[0].lower()
    if first not in FOLDERS or len(first) != 1:
        raise DatasetError(f"mp3_path {mp3_path!r} is not in one of the folders 0…f")
    i = FOLDERS.index(first)
    return "train" if i < 12 else ("valid" if i == 12 else "test")


def magnatagatune(root: str | os.PathLike, *, top: int = 50) -> DatasetLabels:
    r = check_root(root)
    ann = find_file(r, ["annotations_final.csv"])
    if ann is None:
        raise DatasetError(f"{r}: no MagnaTagATune layout (expected annotations_final.csv and mp3 folders 0…f)")
    with open(ann, newline="", encoding="utf-8", errors="replace") as f:
        rows = list(csv.reader(f, delimiter="\t"))
    if not rows or "mp3_path" not in rows[0] or "clip_id" not in rows[0]:
        raise DatasetError(f"{ann}: expected a tab-separated header with clip_id, tag columns and mp3_path")
    header = rows[0]
    pi, ci = header.index("mp3_path"), header.index("clip_id")
    tag_cols = [i for i in range(len(header)) if i not in (pi, ci)]
    counts: Counter = Counter()
    parsed = []
    for n, row in enumerate(rows[1:], start=2):
        if not row:
            continue
        if len(row) != len(header):
            raise DatasetError(f"{ann} line {n}: {len(row)} fields, header has {len(header)}")
        tags = [header[i] for i in tag_cols if row[i].strip() == "1"]
        counts.update(tags)
        parsed.append((row[ci], row[pi], tags))
    top_tags = [t for t, _ in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:top]]
    keep = set(top_tags)
    audio_root = _audio_root(r, ann, [p for _, p, _ in parsed[:50]])
    out, missing, untagged = [], 0, 0
    for clip_id, mp3, tags in parsed:
        p = audio_root / mp3
        if not p.exists():
            missing += 1
            continue
        sel = [t for t in tags if t in keep]
        untagged += not sel
        artist = Path(mp3).name.split("-")[0]
        out.append({"path": str(p), "labels": sel, "group": artist or clip_id, "split": split_of(mp3), "clip_id": clip_id})
    if not out:
        raise DatasetError(f"{r}: none of the {len(parsed)} clips listed in {ann.name} was found under {audio_root}")
    notes = [f"top-{len(top_tags)} tags by count: {', '.join(top_tags[:10])}, …"]
    if missing:
        notes.append(f"{missing} listed clips have no mp3 under {audio_root}")
    if untagged:
        notes.append(f"{untagged} clips have none of the top-{len(top_tags)} tags (kept, all-negative)")
    return DatasetLabels("magnatagatune", "multilabel", ["path", "labels", "group", "split", "clip_id"], out, notes)


def _audio_root(root: Path, ann: Path, sample: list[str]) -> Path:
    """The folder that holds ``0``…``f``: next to the annotations, the root, or one level below."""
    cands = [ann.parent, root] + sorted(d for d in root.iterdir() if d.is_dir())
    for c in cands:
        if any((c / p).exists() for p in sample):
            return c
    return ann.parent
