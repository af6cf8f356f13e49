"""Readers for the real dataset layouts users have on disk; each returns `DatasetLabels` rows
(``path`` + label/labels/targets, optional ``group`` and ``split``) that ``write`` as a labels file.

``embedkit datasets labels NAME ROOT -o labels.csv`` runs `read`.
"""
from __future__ import annotations

import importlib
import os
from typing import Any

from ._common import DatasetError, DatasetLabels

#: name → (module, function, one-line layout)
DATASETS: dict[str, tuple[str, str, str]] = {
    "gtzan": ("gtzan", "gtzan_genre", "GTZAN genre: genres/<genre>/<genre>.000NN.au|wav (10 genres)"),
    "gtzan-music-speech": ("gtzan", "gtzan_music_speech", "GTZAN music/speech: music_speech/{music_wav,speech_wav}/*.wav"),
    "ballroom": ("ballroom", "ballroom", "Ballroom: BallroomData/<Style>/*.wav (8 styles, Rumba-* merged)"),
    "extended-ballroom": ("ballroom", "extended_ballroom", "Extended Ballroom: extendedballroom_v1.1/<Style>/*.mp3 (13 styles)"),
    "emomusic": ("emotion", "emomusic", "EmoMusic: static_annotations.csv + songs_info.csv + clips_45seconds/<id>.mp3 → arousal, valence"),
    "pmemo": ("emotion", "pmemo", "PMEmo: annotations/static_annotations.csv + metadata.csv + chorus/<id>.mp3 → arousal, valence"),
    "jamendo": ("jamendo", "jamendo", "Jamendo vocal: audio + <song>.lab segments → vocal/nonvocal clips (needs --clips-dir)"),
    "magnatagatune": ("magnatagatune", "magnatagatune", "MagnaTagATune: annotations_final.csv + 0…f/*.mp3 → top-50 tags, 12:1:3 split"),
    "fma": ("fma", "fma", "FMA: fma_metadata/tracks.csv + fma_<subset>/NNN/NNNNNN.mp3 → genre_top"),
    "folders": ("folders", "folders", "any ROOT/<label>/**/<audio> tree → label = folder name"),
}
ALIASES = {"mtt": "magnatagatune", "gtzan-genre": "gtzan", "music-speech": "gtzan-music-speech", "emomusic-1000": "emomusic"}

__all__ = ["DATASETS", "DatasetError", "DatasetLabels", "read"]


def read(name: str, root: str | os.PathLike, **options: Any) -> DatasetLabels:
    """Labels of dataset ``name`` under ``root``. Options: ``clips_dir``/``clip_s`` (jamendo),
    ``top`` (magnatagatune), ``subset`` (fma); options a reader does not take are refused."""
    key = ALIASES.get(name.lower(), name.lower())
    if key not in DATASETS:
        raise DatasetError(f"unknown dataset {name!r}; known: {', '.join(DATASETS)}")
    module, func, _ = DATASETS[key]
    fn = getattr(importlib.import_module(f"{__name__}.{module}"), func)
    import inspect

    accepted = set(inspect.signature(fn).parameters) - {"root"}
    extra = {k for k, v in options.items() if v is not None} - accepted
    if extra:
        raise DatasetError(f"dataset {key!r} takes no option {', '.join(sorted(extra))}")
    return fn(root, **{k: v for k, v in options.items() if k in accepted and v is not None})
