"""Write a handful of track embeddings to one file: .npz (default), .npy, .csv or .jsonl.

.npz keys: ``vectors`` (n, D) float32, ``paths`` (n,) str, ``tags`` (n, n_labels), ``labels``, ``layout`` (JSON
string of the vector layout), ``model``, ``fingerprint``; with patches also ``patch_vectors`` (m, D_sel),
``patch_track`` (m,) int, ``patch_start_s`` (m,). Files are written to a temporary name and renamed.
"""
from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

FORMATS = (".npz", ".npy", ".csv", ".jsonl")


def write_embeddings(out: str | os.PathLike, results: Sequence, *, labels: Sequence[str], layout: list[dict],
                     model: str, fingerprint: str) -> Path:
    """Write successful `TrackEmbedding`s to ``out`` (format from the extension); returns the path."""
    out = Path(out)
    ext = out.suffix.lower()
    if ext not in FORMATS:
        raise ValueError(f"unknown output format {out.suffix!r} for {out}; use one of {', '.join(FORMATS)}")
    vectors = np.stack([r.vector for r in results]) if results else np.zeros((0, 0), np.float32)
    paths = [str(r.path) for r in results]
    tmp = out.with_name(f".{out.name}.tmp{ext}")
    out.parent.mkdir(parents=True, exist_ok=True)
    if ext == ".npz":
        arrays = dict(vectors=vectors, paths=np.array(paths, dtype=str), tags=np.stack([r.tags for r in results]) if results else np.zeros((0, len(labels)), np.float32),
                      labels=np.array(labels, dtype=str), layout=np.array(json.dumps(layout)), model=np.array(model),
                      fingerprint=np.array(fingerprint), n_patches=np.array([r.n_patches for r in results], np.int64),
                      padded=np.array([r.padded for r in results], bool))
        if results and results[0].patch_vectors is not None:
            arrays["patch_vectors"] = np.concatenate([r.patch_vectors for r in results])
            arrays["patch_tags"] = np.concatenate([r.patch_tags for r in results])
            arrays["patch_track"] = np.concatenate([np.full(r.n_patches, i, np.int64) for i, r in enumerate(results)])
            arrays["patch_start_s"] = np.concatenate([r.patch_start_s for r in results])
        with open(tmp, "wb") as f:
            np.savez(f, **arrays)
    elif ext == ".npy":
        with open(tmp, "wb") as f:
            np.save(f, vectors.astype(np.float32))
    elif ext == ".csv":
        import csv

        with open(tmp, "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["path", *[f"{c['name']}_{k}" for c in layout for k in range(c["stop"] - c["start"])]])
            for p, v in zip(paths, vectors):
                w.writerow([p, *[repr(float(x)) for x in v]])
    else:
        with open(tmp, "w") as f:
            for r in results:
                f.write(json.dumps({"path": str(r.path), "vector": r.vector.tolist(), "n_patches": r.n_patches,
                                    "padded": r.padded, "tags": dict(zip(labels, map(float, r.tags)))}) + "\n")
    os.replace(tmp, out)
    return out
