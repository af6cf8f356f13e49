"""What every dataset reader returns, and small helpers to find things in a dataset folder."""
from __future__ import annotations

import os
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import EmbedkitError

AUDIO_SUFFIXES = (".wav", ".au", ".mp3", ".ogg", ".flac", ".m4a", ".aiff", ".aif")


class DatasetError(EmbedkitError):
    """A dataset folder does not have the expected layout (the message says what was expected)."""


@dataclass
class DatasetLabels:
    """Rows of a labels file for one dataset: ``path`` (absolute) plus ``label`` / ``labels`` /
    target columns, and optional ``group`` and ``split`` columns (see `embedkit.labels`)."""

    name: str
    task: str
    columns: list[str]
    rows: list[dict]
    notes: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.rows)

    def write(self, path: str | os.PathLike) -> Path:
        from ..labels import write_labels

        return write_labels(path, self.rows, self.columns)

    def summary(self) -> dict:
        out: dict = {"dataset": self.name, "task": self.task, "rows": len(self.rows), "columns": self.columns}
        if self.task == "classification":
            out["classes"] = dict(sorted(Counter(r["label"] for r in self.rows).items()))
        elif self.task == "multilabel":
            c = Counter(t for r in self.rows for t in r["labels"])
            out["labels"] = len(c)
            out["most_common"] = c.most_common(10)
        if "split" in self.columns:
            out["splits"] = dict(sorted(Counter(r["split"] for r in self.rows).items()))
        if "group" in self.columns:
            out["groups"] = len({r["group"] for r in self.rows})
        out["notes"] = self.notes
        return out


def check_root(root: str | os.PathLike) -> Path:
    p = Path(root).expanduser()
    if not p.exists():
        raise DatasetError(f"{p}: no such folder")
    if not p.is_dir():
        raise DatasetError(f"{p}: not a folder")
    return p.resolve()


def find_dir(root: Path, names: Sequence[str], *, depth: int = 3) -> Path | None:
    """The first folder (breadth-first, ``root`` included) whose name is one of ``names`` (case-insensitive)."""
    wanted = {n.lower() for n in names}
    level = [root]
    for _ in range(depth + 1):
        nxt = []
        for d in level:
            if d.name.lower() in wanted:
                return d
            try:
                nxt += sorted(c for c in d.iterdir() if c.is_dir() and not c.name.startswith("."))
            except OSError:
                continue
        level = nxt
    return None


def find_file(root: Path, names: Sequence[str], *, depth: int = 3) -> Path | None:
    """The first file (breadth-first) named one of ``names`` (case-insensitive)."""
    wanted = {n.lower() for n in names}
    level = [root]
    for _ in range(depth + 1):
        nxt = []
        for d in level:
            try:
                children = sorted(d.iterdir())
            except OSError:
                continue
            for c in children:
                if c.is_file() and c.name.lower() in wanted:
                    return c
            nxt += [c for c in children if c.is_dir() and not c.name.startswith(".")]
        level = nxt
    return None


def audio_files(folder: Path, suffixes: Iterable[str] = AUDIO_SUFFIXES, *, recursive: bool = False) -> list[Path]:
    suf = {s.lower() for s in suffixes}
    it = folder.rglob("*") if recursive else folder.iterdir()
    return sorted(p for p in it if p.is_file() and p.suffix.lower() in suf and not p.name.startswith("."))


def class_folders(root: Path, suffixes: Iterable[str] = AUDIO_SUFFIXES) -> dict[str, list[Path]]:
    """``{folder name: audio files}`` for the sub-folders of ``root`` that contain audio."""
    out = {}
    for d in sorted(c for c in root.iterdir() if c.is_dir() and not c.name.startswith(".")):
        files = audio_files(d, suffixes)
        if files:
            out[d.name] = files
    return out
