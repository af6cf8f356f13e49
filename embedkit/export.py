"""Write embeddings to one file: a handful of track embeddings (`write_embeddings`, ``embed -o``) or a
whole store (`export_store`, ``store export``).

``write_embeddings`` formats: .npz (default), .npy, .csv or .jsonl. .npz keys: ``vectors`` (n, D) float32,
``paths`` (n,) str, ``tags`` (n, n_labels), ``labels``, ``layout`` (JSON string of the vector layout),
``model``, ``fingerprint``; with patches also ``patch_vectors`` (m, D_sel), ``patch_track`` (m,) int,
``patch_start_s`` (m,).

Every file is written to a temporary name in the same folder, fsynced and renamed (`embedkit.sidecar`):
a full disk or a read-only folder gives a one-line error and leaves neither a temporary nor a partial file.
"""
from __future__ import annotations

import csv
import io
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .errors import EmbedkitError
from .sidecar import atomic_write

FORMATS = (".npz", ".npy", ".csv", ".jsonl")
STORE_FORMATS = ("npz", "csv", "parquet")


class ExportError(EmbedkitError):
    """The output cannot be written (unknown format, missing library, folder problems)."""


def check_output(out: str | os.PathLike) -> Path:
    """Validate ``-o OUT`` before any work starts: known extension, folder exists (or can be made), not a folder."""
    p = Path(out)
    if p.suffix.lower() not in FORMATS:
        raise ExportError(f"{p}: unknown output format {p.suffix or '(no extension)'!r}; use one of {', '.join(FORMATS)}")
    if p.is_dir():
        raise ExportError(f"{p}: is a folder; give a file name ending in one of {', '.join(FORMATS)}")
    parent = p.parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if parent.exists() and not parent.is_dir():
        raise ExportError(f"{p}: {parent} is a file, not a folder; choose another path")
    if parent.exists() and not os.access(parent, os.W_OK | os.X_OK):
        raise ExportError(f"{p}: folder {parent} is not writable; choose another path")
    return p


def write_embeddings(out: str | os.PathLike, results: Sequence, *, labels: Sequence[str], layout: list[dict],
                     model: str, fingerprint: str) -> Path:
    """Write successful `TrackEmbedding`s to ``out`` (format from the extension); returns the path."""
    out = check_output(out)
    ext = out.suffix.lower()
    vectors = np.stack([r.vector for r in results]) if results else np.zeros((0, 0), np.float32)
    paths = [str(r.path) for r in results]
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ExportError(f"{out.parent}: cannot create the folder ({exc.strerror}); choose another path") from None
    if ext == ".npz":
        arrays = dict(vectors=vectors, paths=np.array(paths, dtype=str),
                      tags=np.stack([r.tags for r in results]) if results else np.zeros((0, len(labels)), np.float32),
                      labels=np.array(labels, dtype=str), layout=np.array(json.dumps(layout)), model=np.array(model),
                      fingerprint=np.array(fingerprint), n_patches=np.array([r.n_patches for r in results], np.int64),
                      padded=np.array([r.padded for r in results], bool))
        if results and results[0].patch_vectors is not None:
            arrays["patch_vectors"] = np.concatenate([r.patch_vectors for r in results])
            arrays["patch_tags"] = np.concatenate([r.patch_tags for r in results])
            arrays["patch_track"] = np.concatenate([np.full(r.n_patches, i, np.int64) for i, r in enumerate(results)])
            arrays["patch_start_s"] = np.concatenate([r.patch_start_s for r in results])
        atomic_write(out, lambda f: np.savez(f, **arrays))
    elif ext == ".npy":
        atomic_write(out, lambda f: np.save(f, vectors.astype(np.float32)))
    elif ext == ".csv":
        def write_csv(f: Any) -> None:
            t = io.TextIOWrapper(f, encoding="utf-8", errors="surrogateescape", newline="")  # non-UTF-8 names: raw
            w = csv.writer(t)
            w.writerow(["path", *[f"{c['name']}_{k}" for c in layout for k in range(c["stop"] - c["start"])]])
            for p, v in zip(paths, vectors):
                w.writerow([p, *[repr(float(x)) for x in v]])
            t.flush()
            t.detach()

        atomic_write(out, write_csv)
    else:
        def write_jsonl(f: Any) -> None:
            for r in results:
                line = json.dumps({"path": str(r.path), "vector": r.vector.tolist(), "n_patches": r.n_patches,
                                   "padded": r.padded, "tags": dict(zip(labels, map(float, r.tags)))})
                f.write((line + "\n").encode("utf-8"))

        atomic_write(out, write_jsonl)
    return out


def export_store(st: Any, output: str | os.PathLike, *, fmt: str = "npz", patches: bool = False) -> int:
    """Write the embedded items of store ``st`` to ``output`` as ``fmt`` ("npz" | "csv" | "parquet"); returns
    the item count. ``output`` "-" writes csv to stdout. Vectors are written in ascending id order."""
    if fmt not in STORE_FORMATS:
        raise ValueError(f"format must be npz, csv or parquet, given fmt={fmt!r}")
    if fmt == "parquet":
        try:
            import pyarrow as pa
            import pyarrow.parquet as pq
        except ImportError:
            raise ExportError("parquet export needs pyarrow: pip install 'embedkit[export]'") from None
    ids = st.ids()
    items = {it.id: it for it in st.items("ok")}
    paths = np.array([items[i].path for i in ids], dtype=str)
    dur = np.array([np.nan if items[i].duration_s is None else items[i].duration_s for i in ids], dtype=np.float64)
    sr = np.array([-1 if items[i].samplerate is None else items[i].samplerate for i in ids], dtype=np.int64)
    vecs = st.vectors(ids)
    manifest_json = json.dumps(st.manifest, sort_keys=True)
    if fmt == "npz":
        arrays: dict[str, Any] = {
            "ids": ids, "paths": paths, "vectors": vecs, "duration_s": dur, "samplerate": sr,
            "manifest_json": np.array(manifest_json),
        }
        if st.has_tags:
            arrays["tags"] = st.tags(ids)
            arrays["tag_labels"] = np.array(st.tag_labels or [], dtype=str)
        if patches:
            item_ids, start_s, pv = st.patch_vectors(ids)
            arrays.update(patch_item_ids=item_ids, patch_start_s=start_s, patch_vectors=pv)
        atomic_write(output, lambda f: np.savez(f, **arrays))
    elif fmt == "csv":
        cols = []
        for b in st.layout:
            cols += [f"{b['name']}_{j}" for j in range(b["stop"] - b["start"])]
        tag_cols = [f"tag_{t}" for t in (st.tag_labels or [])] if st.has_tags else []
        tags = st.tags(ids) if st.has_tags else None

        def write_csv(f: Any) -> None:
            w = csv.writer(f)
            w.writerow(["id", "path", "duration_s", "samplerate", *cols, *tag_cols])
            for k, i in enumerate(ids):
                row = [int(i), paths[k], "" if np.isnan(dur[k]) else repr(float(dur[k])), "" if sr[k] < 0 else int(sr[k])]
                row += [repr(float(x)) for x in vecs[k]]
                if tags is not None:
                    row += [repr(float(x)) for x in tags[k]]
                w.writerow(row)

        if str(output) == "-":
            sys.stdout.flush()
            out = getattr(sys.stdout, "buffer", None)
            t = sys.stdout if out is None else io.TextIOWrapper(out, encoding="utf-8", errors="surrogateescape",
                                                                 newline="")
            write_csv(t)
            t.flush()
            if out is not None:
                t.detach()
        else:
            def write_bytes(f: Any) -> None:  # file names that are not UTF-8 are written as their raw bytes
                t = io.TextIOWrapper(f, encoding="utf-8", errors="surrogateescape", newline="")
                write_csv(t)
                t.flush()
                t.detach()

            atomic_write(output, write_bytes)
    else:
        cols_pa = {
            "id": pa.array(ids),
            "path": pa.array(paths.tolist(), pa.string()),
            "duration_s": pa.array(dur),
            "samplerate": pa.array(sr),
            "vector": pa.FixedSizeListArray.from_arrays(pa.array(vecs.ravel(), pa.float32()), st.dim),
        }
        if st.has_tags:
            t = st.tags(ids)
            cols_pa["tags"] = pa.FixedSizeListArray.from_arrays(pa.array(t.ravel(), pa.float32()), t.shape[1])
        table = pa.table(cols_pa).replace_schema_metadata({"embedkit_manifest": manifest_json})
        atomic_write(output, lambda f: pq.write_table(table, f))
    return int(ids.size)
