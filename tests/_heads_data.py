"""Tiny planted stores for the head tests: 3 classes that differ only in block pool3, plus a labels CSV."""
from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from embedkit.store import write_arrays

LAYOUT = [(f"pool{i}", 8) for i in range(1, 6)]


def planted_store(tmp_path: Path, name: str = "st", fingerprint: str = "test", n: int = 45, seed: int = 0, *,
                  labels_name: str | None = None) -> tuple[Path, Path, np.ndarray, np.ndarray]:
    """A store of ``n`` random 40-dim vectors ``(n, 40) float32`` with classes jazz/metal/pop planted in pool3,
    and its labels CSV (``labels_name``, default ``<name>-labels.csv``) → (store, labels, X, y)."""
    rng = np.random.default_rng(seed)
    y = np.array(["jazz", "metal", "pop"])[np.arange(n) % 3]
    centres = np.zeros((3, 40))
    centres[:, 16:24] = 2.0 * rng.normal(size=(3, 8))
    X = (rng.normal(size=(n, 40)) + centres[np.arange(n) % 3]).astype(np.float32)
    paths = [str(tmp_path / "music" / f"t{i:03d}.wav") for i in range(n)]
    write_arrays(tmp_path / name, paths, X, layout=LAYOUT, fingerprint=fingerprint).close()
    labels = tmp_path / (labels_name or f"{name}-labels.csv")
    with open(labels, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["path", "label"])
        w.writerows(zip(paths, y))
    return tmp_path / name, labels, X, y
