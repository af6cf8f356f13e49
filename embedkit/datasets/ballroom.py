"""Ballroom (ISMIR 2004 tempo contest; Gouyon et al.) and Extended Ballroom (Marchand & Peeters 2016).

Layouts read::

    BallroomData/<Style>/*.wav                 ChaChaCha, Jive, Quickstep, Rumba-American,
                                               Rumba-International, Rumba-Misc, Samba, Tango,
                                               Viennese waltz, Waltz → 8 classes (Rumba-* merged)
    extendedballroom_v1.1/<Style>/*.mp3        Chacha, Foxtrot, Jive, Pasodoble, Quickstep, Rumba,
                                               Salsa, Samba, Slowwaltz, Tango, Viennesewaltz, Waltz, Wcswing
"""
from __future__ import annotations

import os

from ._common import DatasetError, DatasetLabels, check_root, class_folders, find_dir

BALLROOM_STYLES = ("ChaChaCha", "Jive", "Quickstep", "Rumba", "Samba", "Tango", "VienneseWaltz", "Waltz")
EXTENDED_STYLES = ("Chacha", "Foxtrot", "Jive", "Pasodoble", "Quickstep", "Rumba", "Salsa", "Samba",
                   "Slowwaltz", "Tango", "Viennesewaltz", "Waltz", "Wcswing")


def _ballroom_style(folder: str) -> str | None:
    key = folder.replace(" ", "").replace("_", "").lower()
    if key.startswith("rumba"):
        return "Rumba"
    for s in BALLROOM_STYLES:
        if key == s.lower():
            return s
    return None


def ballroom(root: str | os.PathLike) -> DatasetLabels:
    """``path,label`` over the 8 Ballroom styles (the three Rumba folders merged, as usual)."""
    r = check_root(root)
    base = find_dir(r, ["BallroomData"]) or r
    rows, other = [], []
    for folder, files in class_folders(base, (".wav",)).items():
        style = _ballroom_style(folder)
        if style is None:
            other.append(folder)
            continue
        rows += [{"path": str(f), "label": style} for f in files]
    if not rows:
        raise DatasetError(f"{r}: no Ballroom layout (expected BallroomData/<Style>/*.wav with styles {', '.join(BALLROOM_STYLES)})")
    notes = [f"folders ignored (not a Ballroom style): {', '.join(other)}"] if other else []
    return DatasetLabels("ballroom", "classification", ["path", "label"], rows, notes)


def extended_ballroom(root: str | os.PathLike) -> DatasetLabels:
    """``path,label`` over the 13 Extended Ballroom styles."""
    r = check_root(root)
    base = find_dir(r, ["extendedballroom_v1.1", "extendedballroom_v1", "extendedballroom", "extended_ballroom"]) or r
    known = {s.lower(): s for s in EXTENDED_STYLES}
    rows, other = [], []
    for folder, files in class_folders(base, (".mp3", ".wav")).items():
        style = known.get(folder.lower())
        if style is None:
            other.append(folder)
            continue
        rows += [{"path": str(f), "label": style} for f in files]
    if not rows:
        raise DatasetError(f"{r}: no Extended Ballroom layout (expected extendedballroom_v1.1/<Style>/*.mp3 with styles {', '.join(EXTENDED_STYLES)})")
    notes = [f"folders ignored (not an Extended Ballroom style): {', '.join(other)}"] if other else []
    notes.append("Extended Ballroom lists some songs twice; see the dataset's duplicate list before trusting random folds")
    return DatasetLabels("extended-ballroom", "classification", ["path", "label"], rows, notes)
