"""Emotion regression: EmoMusic ("1000 songs", Soleymani et al. 2013) and PMEmo (Zhang et al. 2018).

Layouts read::

    EmoMusic: static_annotations.csv (song_id, mean_arousal, std_arousal, mean_valence, std_valence),
              songs_info.csv (song_id, ..., Artist, ..., Mediaeval 2013 set), clips_45seconds/<song_id>.mp3
    PMEmo:    annotations/static_annotations.csv (musicId, Arousal(mean), Valence(mean)),
              metadata.csv (musicId, fileName, title, artist, ...), chorus/<musicId>.mp3

Targets: ``arousal``, ``valence``; ``group`` is the artist (normalised) when known; EmoMusic's
``split`` is its MediaEval 2013 development/evaluation assignment.
"""
from __future__ import annotations

import csv
import os
from pathlib import Path

from ._common import DatasetError, DatasetLabels, check_root, find_dir, find_file


def _read_csv(path: Path) -> list[dict]:
    with open(path, newline="", encoding="utf-8-sig", errors="replace") as f:
        rows = list(csv.DictReader(f))
    return [{(k or "").strip(): (v or "").strip() for k, v in r.items()} for r in rows]


def _artist(name: str) -> str:
    return " ".join("".join(c for c in name.lower() if c.isalnum() or c.isspace()).split())


def _float(v: str, where: str) -> float:
    try:
        return float(v)
    except ValueError:
        raise DatasetError(f"{where}: {v!r} is not a number") from None


def emomusic(root: str | os.PathLike) -> DatasetLabels:
    r = check_root(root)
    ann = find_file(r, ["static_annotations.csv"])
    clips = find_dir(r, ["clips_45seconds", "clips_45sec", "clips"])
    if ann is None or clips is None:
        raise DatasetError(f"{r}: no EmoMusic layout (expected static_annotations.csv and clips_45seconds/<song_id>.mp3)")
    static = _read_csv(ann)
    if not static or "mean_arousal" not in static[0]:
        raise DatasetError(f"{ann}: not EmoMusic static annotations (need columns song_id, mean_arousal, mean_valence)")
    info_path = find_file(r, ["songs_info.csv"])
    info = {str(int(x["song_id"])): x for x in _read_csv(info_path)} if info_path else {}
    rows, missing = [], 0
    for i, a in enumerate(static, start=2):
        sid = str(int(a["song_id"]))
        audio = clips / f"{sid}.mp3"
        if not audio.exists():
            missing += 1
            continue
        row = {"path": str(audio), "arousal": _float(a["mean_arousal"], f"{ann} line {i}"),
               "valence": _float(a["mean_valence"], f"{ann} line {i}")}
        meta = info.get(sid)
        if meta:
            row["group"] = _artist(meta.get("Artist", "")) or f"song{sid}"
            s = meta.get("Mediaeval 2013 set", "").lower()
            row["split"] = {"development": "train", "evaluation": "test"}.get(s, s or "train")
        rows.append(row)
    if not rows:
        raise DatasetError(f"{clips}: none of the {len(static)} annotated songs has its mp3 here")
    cols = ["path", "arousal", "valence"] + (["group", "split"] if info else [])
    notes = [f"{missing} annotated songs have no clip"] if missing else []
    if not info:
        notes.append("songs_info.csv not found: no artist groups or MediaEval split")
    notes.append("static annotations are on a 1–9 scale")
    return DatasetLabels("emomusic", "regression", cols, rows, notes)


def pmemo(root: str | os.PathLike) -> DatasetLabels:
    r = check_root(root)
    ann = find_file(r, ["static_annotations.csv"])
    chorus = find_dir(r, ["chorus"])
    if ann is None or chorus is None:
        raise DatasetError(f"{r}: no PMEmo layout (expected annotations/static_annotations.csv and chorus/<musicId>.mp3)")
    static = _read_csv(ann)
    if not static or "Arousal(mean)" not in static[0]:
        raise DatasetError(f"{ann}: not PMEmo static annotations (need columns musicId, Arousal(mean), Valence(mean))")
    meta_path = find_file(r, ["metadata.csv"])
    meta = {str(int(x["musicId"])): x for x in _read_csv(meta_path)} if meta_path else {}
    rows, missing = [], 0
    for i, a in enumerate(static, start=2):
        mid = str(int(float(a["musicId"])))
        audio = chorus / f"{mid}.mp3"
        if not audio.exists():
            missing += 1
            continue
        row = {"path": str(audio), "arousal": _float(a["Arousal(mean)"], f"{ann} line {i}"),
               "valence": _float(a["Valence(mean)"], f"{ann} line {i}")}
        if meta:
            row["group"] = _artist(meta.get(mid, {}).get("artist", "")) or f"song{mid}"
        rows.append(row)
    if not rows:
        raise DatasetError(f"{chorus}: none of the {len(static)} annotated songs has its mp3 here")
    cols = ["path", "arousal", "valence"] + (["group"] if meta else [])
    notes = [f"{missing} annotated songs have no chorus clip"] if missing else []
    notes.append("static annotations are on a 0–1 scale")
    return DatasetLabels("pmemo", "regression", cols, rows, notes)
