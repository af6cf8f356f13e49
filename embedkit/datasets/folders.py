"""Any folder-per-class collection: ``ROOT/<label>/**/<audio>`` → ``path,label``."""
from __future__ import annotations

import os

from ._common import DatasetError, DatasetLabels, audio_files, check_root


def folders(root: str | os.PathLike) -> DatasetLabels:
    r = check_root(root)
    rows = []
    for d in sorted(c for c in r.iterdir() if c.is_dir() and not c.name.startswith(".")):
        rows += [{"path": str(f), "label": d.name} for f in audio_files(d, recursive=True)]
    if not rows:
        raise DatasetError(f"{r}: no <label>/<audio file> sub-folders")
    return DatasetLabels("folders", "classification", ["path", "label"], rows, [])
