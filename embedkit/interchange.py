"""Interchange format for embeddings at scale: a folder of Parquet shards plus a manifest sidecar.

    write_parquet_shards(store, "OUT/", shard_rows=1_000_000) -> manifest dict

``OUT/part-00000.parquet``, ``part-00001.parquet``, … hold ``shard_rows`` items each, in ascending id order,
with columns ``id`` int64, ``path`` string, ``duration_s`` float64, ``samplerate`` int64, ``vector``
fixed-size list of float32 (the store's dim; + ``tags`` when the store keeps them): the schema of the
single-file ``store export --format parquet``. This is the layout embedding-reader / autofaiss read
(``--file_format parquet --embedding_column_name vector``) and Spark reads as one table
(``spark.read.parquet("OUT")``). ``OUT/_manifest.json`` (underscore: ignored by Spark and by readers
that list ``*.parquet``) is written last and holds the store's vector spec and fingerprint, the column
names, and per shard its file, row count, first/last id and sha256: a folder without it is incomplete.
Memory: one shard of vectors at a time.
"""
from __future__ import annotations

import contextlib
import json
from pathlib import Path
from typing import Any

import numpy as np

from .errors import EmbedkitError
from .sidecar import atomic_write, read_json, sha256_file, write_json

MANIFEST = "_manifest.json"
KIND = "embedkit.parquet_shards"
VERSION = 1
#: Default items per shard (≈ 2.6 GB of 640-d float32 vectors at 1M; embedding-reader reads shards in parallel).
SHARD_ROWS = 1_000_000


class InterchangeError(EmbedkitError):
    """The shard folder cannot be written (not an export folder, missing pyarrow, disk problems)."""


def _pyarrow() -> tuple[Any, Any]:
    try:
        import pyarrow as pa  # noqa: PLC0415
        import pyarrow.parquet as pq  # noqa: PLC0415
    except ImportError:
        raise InterchangeError("parquet export needs pyarrow: pip install 'embedkit[export]'") from None
    return pa, pq


def part_name(i: int) -> str:
    """File name of shard ``i``."""
    return f"part-{i:05d}.parquet"


def write_parquet_shards(st: Any, out: str | Path, *, shard_rows: int = SHARD_ROWS) -> dict:
    """Write store ``st``'s embedded items as Parquet shards + ``_manifest.json`` into folder ``out``.

    A folder that holds anything but a previous export of this kind is refused (nothing is deleted);
    re-exporting over a previous export replaces it (its manifest is removed first, so an interrupted
    run leaves a folder marked incomplete, never a stale manifest). Returns the manifest.
    """
    if shard_rows < 1:
        raise ValueError(f"shard_rows must be >= 1, given {shard_rows}")
    pa, pq = _pyarrow()
    d = Path(out)
    if d.exists() and not d.is_dir():
        raise InterchangeError(f"{d}: is a file; give a folder for the Parquet shards (or a name ending in .parquet)")
    old_parts: list[str] = []
    if d.is_dir() and any(d.iterdir()):
        if not (d / MANIFEST).exists():
            raise InterchangeError(f"{d}: folder is not empty and holds no {MANIFEST}; choose an empty or new folder")
        old = read_json(d / MANIFEST, kind=KIND, max_version=VERSION)
        old_parts = [s["file"] for s in old.get("shards", [])]
        (d / MANIFEST).unlink()
    d.mkdir(parents=True, exist_ok=True)
    items = {it.id: it for it in st.items("ok")}
    manifest_json = json.dumps(st.manifest, sort_keys=True)
    shards: list[dict] = []
    n = 0
    for ids, vecs in st.iter_vectors(batch_size=int(shard_rows)):
        its = [items[int(i)] for i in ids]
        cols = {
            "id": pa.array(np.asarray(ids, np.int64)),
            "path": pa.array([it.path for it in its], pa.string()),
            "duration_s": pa.array([np.nan if it.duration_s is None else it.duration_s for it in its], pa.float64()),
            "samplerate": pa.array([-1 if it.samplerate is None else it.samplerate for it in its], pa.int64()),
            "vector": pa.FixedSizeListArray.from_arrays(pa.array(np.ascontiguousarray(vecs, np.float32).ravel()), st.dim),
        }
        if st.has_tags:
            t = np.asarray(st.tags(ids), np.float32)
            cols["tags"] = pa.FixedSizeListArray.from_arrays(pa.array(t.ravel()), t.shape[1])
        table = pa.table(cols).replace_schema_metadata({"embedkit_manifest": manifest_json})
        name = part_name(len(shards))
        atomic_write(d / name, lambda f, table=table: pq.write_table(table, f))
        shards.append({"file": name, "rows": int(ids.size), "first_id": int(ids[0]), "last_id": int(ids[-1]),
                       "sha256": sha256_file(d / name)})
        n += int(ids.size)
    for stale in set(old_parts) - {s["file"] for s in shards}:
        with contextlib.suppress(FileNotFoundError):
            (d / stale).unlink()
    doc = {
        "n_items": n,
        "dim": int(st.dim),
        "columns": {"id": "id", "embedding": "vector", "path": "path", **({"tags": "tags"} if st.has_tags else {})},
        "order": "ascending id",
        "store": {"path": str(Path(st.path).resolve()), "fingerprint": st.fingerprint, "manifest": st.manifest},
        "tag_labels": list(st.tag_labels or []) if st.has_tags else None,
        "shards": shards,
        "readers": {
            "embedding-reader": "EmbeddingReader(OUT, file_format='parquet', embedding_column='vector', "
                                "meta_columns=['id', 'path'])",
            "autofaiss": "autofaiss build_index --embeddings OUT --file_format parquet --embedding_column_name vector",
            "spark": "spark.read.parquet(OUT)",
        },
    }
    write_json(d / MANIFEST, doc, kind=KIND, version=VERSION)
    return read_json(d / MANIFEST, kind=KIND, max_version=VERSION)
