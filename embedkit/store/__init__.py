"""A self-describing, append-only, crash-safe, checksummed embedding store on disk.

Layout of a store directory::

    STORE/
      manifest.json       the vector spec (model, fingerprints, dim, layout, aggregation, ...) + shard settings
      items.sqlite        item table (SQLite, WAL journal): id, path, size, mtime, sha256, duration,
                          sample rate, status ("ok" | "failed" | "missing"), error, row of the vector,
                          crc (blake2b-64 of the row's own fields); committed row counts and the number
                          of item rows (meta); sha256 of every committed shard segment; manifest copy
      shards/vec-00000.f32     track vectors, raw little-endian float32, ``(rows, dim)`` row-major
      shards/tag-00000.f32     optional tag probabilities, ``(rows, n_tags)``, same rows as vec
      shards/pvec-00000.f32    optional per-patch vectors, ``(patch_rows, patch_dim)``
      shards/pstart-00000.f64  start time (s) of each patch, ``(patch_rows,)`` float64
      lock                fcntl lock held by the one writer

A shard holds ``manifest["shard_rows"][kind]`` rows; row ``r`` lives in shard ``r // shard_rows`` at
local row ``r % shard_rows``. Each shard is a plain array that numpy can memory-map::

    np.memmap("STORE/shards/vec-00000.f32", dtype="<f4", mode="r").reshape(-1, dim)

Modules: `core` (`Store`), `items` (the SQLite item table and the freshness rule), `shards` (row files
and their segment checksums), `manifest` (the manifest and its checks), `lock`, `verify` (``embedkit
store verify [--repair]``), `errors`. ``export_store`` lives in `embedkit.export`.
"""
from __future__ import annotations

from ..export import export_store
from .core import SHARDS, Store, file_sha256, write_arrays
from .errors import StoreCorruptError, StoreError, StoreExistsError, StoreLockedError, StoreMismatchError
from .items import DB, STATUSES, Item, stat_matches
from .lock import LOCK
from .manifest import DEFAULT_SHARD_ROWS, FORMAT_VERSION, MANIFEST, settings_fingerprint

__all__ = [
    "DB", "DEFAULT_SHARD_ROWS", "FORMAT_VERSION", "Item", "LOCK", "MANIFEST", "SHARDS", "STATUSES", "Store",
    "StoreCorruptError", "StoreError", "StoreExistsError", "StoreLockedError", "StoreMismatchError", "export_store",
    "file_sha256", "settings_fingerprint", "stat_matches", "write_arrays",
]
