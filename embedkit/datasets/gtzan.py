"""GTZAN genre (Tzanetakis & Cook 2002) and GTZAN music/speech.

Layouts read::

    genres/<genre>/<genre>.000NN.au            the original tarball (genres.tar.gz)
    Data/genres_original/<genre>/*.wav         the Kaggle copy
    music_speech/music_wav/*.wav, music_speech/speech_wav/*.wav

GTZAN has no artist annotations, and Sturm (2013) lists repeated excerpts, mislabellings and
artists spread over folds: its random-fold accuracies are optimistic (see docs/heads.md).
"""
from __future__ import annotations

import os

from ._common import DatasetError, DatasetLabels, audio_files, check_root, class_folders, find_dir

GENRES = ("blues", "classical", "country", "disco", "hiphop", "jazz", "metal", "pop", "reggae", "rock")


def gtzan_genre(root: str | os.PathLike) -> DatasetLabels:
    """One row per excerpt: ``path,label`` with the genre folder as label."""
    r = check_root(root)
    gdir = find_dir(r, ["genres", "genres_original"]) or r
    folders = {k: v for k, v in class_folders(gdir, (".au", ".wav")).items() if k.lower() in GENRES}
    if not folders:
        raise DatasetError(f"{r}: no GTZAN genre layout (expected genres/<genre>/<genre>.000NN.au or .wav, genres {', '.join(GENRES)})")
    rows = [{"path": str(f), "label": g.lower()} for g, files in folders.items() for f in files]
    notes = []
    missing = [g for g in GENRES if g not in {k.lower() for k in folders}]
    if missing:
        notes.append(f"genres without files: {', '.join(missing)}")
    odd = {g: len(v) for g, v in folders.items() if len(v) != 100}
    if odd:
        notes.append(f"genres with other than 100 excerpts: {odd}")
    notes.append("GTZAN has repeated excerpts and no artist filter (Sturm 2013): random-fold scores are optimistic")
    return DatasetLabels("gtzan", "classification", ["path", "label"], rows, notes)


def gtzan_music_speech(root: str | os.PathLike) -> DatasetLabels:
    """``path,label`` with label ``music`` or ``speech``."""
    r = check_root(root)
    base = find_dir(r, ["music_speech"]) or r
    music = find_dir(base, ["music_wav"], depth=1)
    speech = find_dir(base, ["speech_wav"], depth=1)
    if music is None or speech is None:
        raise DatasetError(f"{r}: no GTZAN music/speech layout (expected music_speech/music_wav/*.wav and music_speech/speech_wav/*.wav)")
    rows = [{"path": str(f), "label": "music"} for f in audio_files(music)]
    rows += [{"path": str(f), "label": "speech"} for f in audio_files(speech)]
    if not rows:
        raise DatasetError(f"{base}: music_wav/ and speech_wav/ hold no audio files")
    return DatasetLabels("gtzan-music-speech", "classification", ["path", "label"], rows, [])
