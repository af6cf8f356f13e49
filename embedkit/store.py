"""A self-describing, append-only, crash-safe embedding store on disk.

Layout of a store directory::

    STORE/
      manifest.json       model, fingerprints, dim, layout (slice of each block), aggregation, ...
      items.sqlite        item table (SQLite, WAL journal): id, path, size, mtime, sha256, duration,
                          sample rate, status ("ok" | "failed" | "missing"), error, row of the vector
      shards/vec-00000.f32     track vectors, raw little-endian float32, ``(rows, dim)`` row-major
      shards/tag-00000.f32     optional tag probabilities, ``(rows, n_tags)``, same rows as vec
      shards/pvec-00000.f32    optional per-patch vectors, ``(patch_rows, patch_dim)``
      shards/pstart-00000.f64  start time (s) of each patch, ``(patch_rows,)`` float64
      lock                fcntl lock held by the one writer

A shard holds ``manifest["shard_rows"][kind]`` rows; row ``r`` lives in shard ``r // shard_rows`` at
local row ``r % shard_rows``. Each shard is a plain array that numpy can memory-map::

    np.memmap("STORE/shards/vec-00000.f32", dtype="<f4", mode="r").reshape(-1, dim)

Atomicity: a writer appends vector bytes past the committed row count, ``fsync``\\ s the shards, and only
then commits (one SQLite transaction) the item rows that reference them together with the new row
count. A crash at any instant leaves either the old committed state or the new one, plus at most some
unreferenced bytes at the end of a shard, which are ignored by readers and trimmed by the next writer.
"""
from __future__ import annotations

import contextlib
import datetime as _dt
import errno
import fcntl
import hashlib
import json
import os
import sqlite3
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np

from ._version import __version__
from .errors import EmbedkitError, ModelMismatchError

FORMAT_VERSION = 1
MANIFEST = "manifest.json"
DB = "items.sqlite"
LOCK = "lock"
SHARDS = "shards"
#: default rows per shard: 65,536 track vectors (160 MiB at dim 640) / 262,144 patch vectors.
DEFAULT_SHARD_ROWS = {"vec": 65_536, "patch": 262_144}

STATUSES = ("ok", "failed", "missing")


class StoreError(EmbedkitError):
    """The store is missing, corrupt, locked or used the wrong way (message names the store)."""


class StoreExistsError(StoreError):
    """`Store.create` found a store already there."""


class StoreLockedError(StoreError):
    """Another process is writing this store."""


class StoreMismatchError(StoreError, ModelMismatchError):
    """The store was made with another model, preprocessing or settings than the caller's."""


@dataclass(frozen=True)
class Item:
    """One file known to the store. ``row`` is None unless the file was embedded.

    ``mtime`` is seconds since the epoch (float), ``size`` bytes, ``duration_s`` seconds of audio.
    """

    id: int
    path: str
    size: int | None
    mtime: float | None
    sha256: str | None
    duration_s: float | None
    samplerate: int | None
    status: str
    error: str | None
    row: int | None
    patch_row: int | None = None
    n_patches: int | None = None
    padded: bool | None = None
    updated: float | None = None


_ITEM_COLUMNS = [f.name for f in fields(Item)]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS items (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    path TEXT NOT NULL UNIQUE,
    size INTEGER,
    mtime REAL,
    sha256 TEXT,
    duration_s REAL,
    samplerate INTEGER,
    status TEXT NOT NULL CHECK (status IN ('ok', 'failed', 'missing')),
    error TEXT,
    row INTEGER,
    patch_row INTEGER,
    n_patches INTEGER,
    padded INTEGER,
    updated REAL
);
CREATE INDEX IF NOT EXISTS items_sha256 ON items (sha256);
CREATE INDEX IF NOT EXISTS items_status ON items (status);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
INSERT OR IGNORE INTO meta (key, value) VALUES ('n_rows', 0), ('n_patch_rows', 0);
"""


def settings_fingerprint(
    model_fingerprint: str, *, layers: Sequence[str] | None, aggregation: str, excerpt_s: float | None
) -> str:
    """sha256 hex of everything that decides a stored vector: model fingerprint + layers + aggregation + excerpt."""
    doc = {
        "model": model_fingerprint,
        "layers": list(layers) if layers is not None else None,
        "aggregation": aggregation,
        "excerpt_s": None if excerpt_s is None else float(excerpt_s),
    }
    return hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()


def file_sha256(path: str | os.PathLike, *, chunk: int = 1 << 20) -> str:
    """Hex sha256 of a file's bytes, read in 1 MiB chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while True:
            b = f.read(chunk)
            if not b:
                break
            h.update(b)
    return h.hexdigest()


def _layout_entries(layout: Any, dim: int) -> list[dict]:
    """Normalise a layout (FeatureLayout, [(name, size)], [{"name","start","stop"}] or None) to dicts."""
    if layout is None:
        return [{"name": "all", "start": 0, "stop": int(dim)}]
    blocks = getattr(layout, "blocks", None)
    if blocks is not None:
        layout = [(b.name, b.size) for b in blocks]
    out: list[dict] = []
    start = 0
    for entry in layout:
        if isinstance(entry, dict):
            d = {**entry, "name": str(entry["name"]), "start": int(entry["start"]), "stop": int(entry["stop"])}
        else:
            name, size = entry
            d = {"name": str(name), "start": start, "stop": start + int(size)}
        out.append(d)
        b = d["stop"]
        start = b
    return out


def _default_layout(model: str, dim: int) -> list[dict]:
    if model == "msd_vgg" and dim == 640:
        return _layout_entries([(f"pool{i}", 128) for i in range(1, 6)], dim)
    return _layout_entries(None, dim)


def _atomic_write_text(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    _fsync_dir(path.parent)


def _fsync_dir(path: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


class _Shards:
    """Append-only row arrays split into fixed-size shard files: ``{prefix}-{k:05d}.{ext}``."""

    def __init__(self, root: Path, prefix: str, width: int, dtype: str, rows_per_shard: int) -> None:
        self.root, self.prefix, self.width = root, prefix, int(width)
        self.dtype = np.dtype(dtype)
        self.ext = "f32" if self.dtype == np.float32 else "f64"
        self.rows_per_shard = int(rows_per_shard)
        self.row_bytes = self.width * self.dtype.itemsize
        self._dirty: dict[int, Any] = {}  # shard index -> open file (writer only)

    def file(self, k: int) -> Path:
        return self.root / f"{self.prefix}-{k:05d}.{self.ext}"

    def _n_shards(self, n_rows: int) -> int:
        return (n_rows + self.rows_per_shard - 1) // self.rows_per_shard

    def check(self, n_rows: int, store: Path) -> None:
        """Raise if a shard holds fewer bytes than the committed rows need."""
        for k in range(self._n_shards(n_rows)):
            need = min(self.rows_per_shard, n_rows - k * self.rows_per_shard) * self.row_bytes
            f = self.file(k)
            have = f.stat().st_size if f.exists() else -1
            if have < need:
                raise StoreError(
                    f"{store}: shard {f.name} is {'missing' if have < 0 else f'{have} bytes'}, "
                    f"the item table needs {need} bytes (store damaged)"
                )

    def trim(self, n_rows: int) -> None:
        """Drop bytes past the committed ``n_rows`` (left by a crashed writer) and stray later shards."""
        last = self._n_shards(n_rows)
        for k in range(last):
            need = min(self.rows_per_shard, n_rows - k * self.rows_per_shard) * self.row_bytes
            f = self.file(k)
            if f.exists() and f.stat().st_size > need:
                os.truncate(f, need)
        k = last
        while self.file(k).exists():
            self.file(k).unlink()
            k += 1

    def write(self, first_row: int, data: np.ndarray) -> None:
        """Write rows ``first_row ..`` (not yet durable: call `sync`)."""
        data = np.ascontiguousarray(data, dtype=self.dtype.newbyteorder("<")).reshape(-1, self.width)
        r, i = first_row, 0
        while i < data.shape[0]:
            k, local = divmod(r, self.rows_per_shard)
            n = min(self.rows_per_shard - local, data.shape[0] - i)
            f = self._dirty.get(k)
            if f is None:
                path = self.file(k)
                f = open(path, "r+b" if path.exists() else "w+b")
                self._dirty[k] = f
            f.seek(local * self.row_bytes)
            f.write(data[i : i + n].tobytes())
            r += n
            i += n

    def sync(self) -> None:
        for f in self._dirty.values():
            f.flush()
            os.fsync(f.fileno())
            f.close()
        if self._dirty:
            _fsync_dir(self.root)
        self._dirty.clear()

    def discard(self) -> None:
        for f in self._dirty.values():
            with contextlib.suppress(OSError):
                f.close()
        self._dirty.clear()

    def read(self, rows: np.ndarray, n_rows: int) -> np.ndarray:
        """Rows ``rows`` (any order, repeats allowed) as a new ``(len(rows), width)`` array."""
        rows = np.asarray(rows, dtype=np.int64).ravel()
        out = np.empty((rows.size, self.width), dtype=self.dtype)
        if rows.size == 0:
            return out
        if rows.min() < 0 or rows.max() >= n_rows:
            raise StoreError(f"row out of range (0..{n_rows - 1}) in {self.root}")
        shard_of = rows // self.rows_per_shard
        for k in np.unique(shard_of):
            sel = shard_of == k
            n_in = min(self.rows_per_shard, n_rows - int(k) * self.rows_per_shard)
            mm = np.memmap(self.file(int(k)), dtype=self.dtype.newbyteorder("<"), mode="r", shape=(n_in, self.width))
            out[sel] = mm[rows[sel] - int(k) * self.rows_per_shard]
            del mm
        return out

    def disk_bytes(self) -> int:
        return sum(p.stat().st_size for p in self.root.glob(f"{self.prefix}-*.{self.ext}"))


class Store:
    """An embedding store directory. Create with `Store.create`, open with `Store.open`.

    Read API: ``len(st)``, `ids`, `vectors`, `items`, `get`, `tags`, `patch_vectors`, `iter_vectors`.
    Write API (mode "a"): `add_embedded`, `add_failed`, `mark_missing`, `transaction`.
    """

    def __init__(self, path: Path, manifest: dict, conn: sqlite3.Connection, mode: str, lock_fd: int | None) -> None:
        self.path = path
        self.manifest = manifest
        self.mode = mode
        self._conn = conn
        self._lock_fd = lock_fd
        self._in_tx = 0
        rows = manifest.get("shard_rows", DEFAULT_SHARD_ROWS)
        sdir = path / SHARDS
        self._vec = _Shards(sdir, "vec", manifest["dim"], "float32", rows["vec"])
        self._tag = _Shards(sdir, "tag", manifest["n_tags"], "float32", rows["vec"]) if manifest.get("n_tags") else None
        pdim = manifest.get("patch_dim")
        self._pvec = _Shards(sdir, "pvec", pdim, "float32", rows["patch"]) if pdim else None
        self._pstart = _Shards(sdir, "pstart", 1, "float64", rows["patch"]) if pdim else None
        self._n_rows, self._n_patch_rows = self._committed_counts()
        self._pending_rows, self._pending_patch_rows = self._n_rows, self._n_patch_rows

    # ---- creation / opening ------------------------------------------------------------------

    @classmethod
    def create(cls, path: str | os.PathLike, manifest: dict, *, wait: float = 0.0) -> Store:
        """Create a new store at ``path`` (must not exist or be an empty folder); returns it open in mode "a".

        ``manifest`` needs ``model``, ``fingerprint`` (model fingerprint) and ``dim``; optional keys:
        ``layout``, ``aggregation`` ("mean"), ``layers`` (None = all), ``excerpt_s``, ``patch_dim``
        (enables per-patch vectors), ``n_tags`` and ``tag_labels`` (enable tags), ``shard_rows``.
        """
        p = Path(path)
        if (p / MANIFEST).exists():
            raise StoreExistsError(f"{p}: a store already exists here")
        if p.exists() and (not p.is_dir() or any(x.name not in (DB, LOCK, SHARDS) for x in p.iterdir())):
            raise StoreError(f"{p}: exists and is not an empty folder, cannot create a store there")
        for key in ("model", "fingerprint", "dim"):
            if key not in manifest:
                raise StoreError(f"{p}: manifest lacks '{key}'")
        m = dict(manifest)
        m["dim"] = int(m["dim"])
        m.setdefault("aggregation", "mean")
        m.setdefault("layers", None)
        m.setdefault("excerpt_s", None)
        m["layout"] = (
            _layout_entries(m["layout"], m["dim"]) if m.get("layout") is not None else _default_layout(m["model"], m["dim"])
        )
        m.setdefault("patch_dim", None)
        m.setdefault("n_tags", 0)
        m.setdefault("tag_labels", None)
        m.setdefault("shard_rows", dict(DEFAULT_SHARD_ROWS))
        m.setdefault(
            "settings_fingerprint",
            settings_fingerprint(m["fingerprint"], layers=m["layers"], aggregation=m["aggregation"], excerpt_s=m["excerpt_s"]),
        )
        m.setdefault("embedkit_version", __version__)
        m.setdefault("created", _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"))
        m["format_version"] = FORMAT_VERSION
        p.mkdir(parents=True, exist_ok=True)
        (p / SHARDS).mkdir(exist_ok=True)
        lock_fd = _acquire_lock(p, wait)
        try:
            if (p / MANIFEST).exists():  # another process created it while we waited for the lock
                raise StoreExistsError(f"{p}: a store already exists here")
            conn = _connect(p / DB, readonly=False)
            conn.executescript(_SCHEMA)
            conn.commit()
            _atomic_write_text(p / MANIFEST, json.dumps(m, indent=2, sort_keys=True) + "\n")
        except BaseException:
            _release_lock(lock_fd)
            raise
        return cls(p, m, conn, "a", lock_fd)

    @classmethod
    def open(
        cls,
        path: str | os.PathLike,
        *,
        mode: str = "r",
        wait: float = 0.0,
        fingerprint: str | None = None,
        model_fingerprint: str | None = None,
    ) -> Store:
        """Open an existing store. ``mode``: "r" read-only (no lock) or "a" append (exclusive lock).

        ``wait``: seconds to wait for another writer's lock (0 = fail at once). ``fingerprint`` /
        ``model_fingerprint``: refuse (`StoreMismatchError`) a store made with other settings/model.
        """
        if mode not in ("r", "a"):
            raise ValueError(f"mode must be 'r' or 'a', given mode={mode!r}")
        p = Path(path)
        mpath = p / MANIFEST
        if not mpath.exists():
            what = "no such folder" if not p.exists() else "not an embedkit store (no manifest.json)"
            raise StoreError(f"{p}: {what}")
        try:
            m = json.loads(mpath.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise StoreError(f"{p}: unreadable manifest.json ({exc})") from None
        if int(m.get("format_version", 0)) > FORMAT_VERSION:
            raise StoreError(
                f"{p}: store format {m.get('format_version')} is newer than this embedkit ({FORMAT_VERSION}); upgrade embedkit"
            )
        lock_fd = _acquire_lock(p, wait) if mode == "a" else None
        try:
            conn = _connect(p / DB, readonly=(mode == "r"))
            st = cls(p, m, conn, mode, lock_fd)
            if mode == "a":
                st._trim()
            st._check_shards()
            st.check_compatible(settings_fingerprint=fingerprint, model_fingerprint=model_fingerprint)
        except BaseException:
            if lock_fd is not None:
                _release_lock(lock_fd)
            raise
        return st

    def check_compatible(self, *, settings_fingerprint: str | None = None, model_fingerprint: str | None = None) -> None:
        """Raise `StoreMismatchError` naming both fingerprints when they differ from this store's."""
        if model_fingerprint is not None and model_fingerprint != self.model_fingerprint:
            raise StoreMismatchError(
                f"{self.path}: store was made with model {self.manifest.get('model')} fingerprint "
                f"{self.model_fingerprint[:16]}…, this run uses fingerprint {model_fingerprint[:16]}… (another model or preprocessing)"
            )
        if settings_fingerprint is not None and settings_fingerprint != self.fingerprint:
            raise StoreMismatchError(
                f"{self.path}: store settings fingerprint {self.fingerprint[:16]}… "
                f"({self.describe_settings()}) differs from this run's {settings_fingerprint[:16]}…"
            )

    def describe_settings(self) -> str:
        """``model=msd_vgg layers=all aggregation=mean excerpt=none`` for messages."""
        m = self.manifest
        layers = ",".join(m["layers"]) if m.get("layers") else "all"
        ex = "none" if m.get("excerpt_s") is None else f"{m['excerpt_s']:g}s"
        return f"model={m.get('model')} layers={layers} aggregation={m.get('aggregation')} excerpt={ex}"

    # ---- properties --------------------------------------------------------------------------

    @property
    def fingerprint(self) -> str:
        return self.manifest["settings_fingerprint"]

    @property
    def model_fingerprint(self) -> str:
        return self.manifest["fingerprint"]

    @property
    def dim(self) -> int:
        return int(self.manifest["dim"])

    @property
    def has_patches(self) -> bool:
        return self._pvec is not None

    @property
    def has_tags(self) -> bool:
        return self._tag is not None

    @property
    def tag_labels(self) -> list[str] | None:
        return self.manifest.get("tag_labels")

    @property
    def layout(self) -> list[dict]:
        """``[{"name", "start", "stop"}]``: the column slice of each feature block in a vector."""
        return self.manifest["layout"]

    def __len__(self) -> int:
        return int(self._conn.execute("SELECT COUNT(*) FROM items WHERE status = 'ok'").fetchone()[0])

    def __repr__(self) -> str:
        return f"Store({str(self.path)!r}, n={len(self)}, dim={self.dim}, model={self.manifest.get('model')!r})"

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the database and release the writer lock (idempotent)."""
        if self._conn is not None:
            with contextlib.suppress(Exception):
                if self._in_tx:
                    self._rollback()
            self._conn.close()
            self._conn = None  # type: ignore[assignment]
        if self._lock_fd is not None:
            _release_lock(self._lock_fd)
            self._lock_fd = None

    def __del__(self) -> None:  # pragma: no cover - best effort
        with contextlib.suppress(Exception):
            self.close()

    # ---- read API ----------------------------------------------------------------------------

    def _committed_counts(self) -> tuple[int, int]:
        rows = dict(self._conn.execute("SELECT key, value FROM meta").fetchall())
        return int(rows.get("n_rows", 0)), int(rows.get("n_patch_rows", 0))

    def refresh(self) -> None:
        """Re-read the committed row counts (a reader sees rows another process committed since)."""
        if not self._in_tx:
            self._n_rows, self._n_patch_rows = self._committed_counts()
            self._pending_rows, self._pending_patch_rows = self._n_rows, self._n_patch_rows

    def _row_limit(self) -> int:
        return self._pending_rows if self._in_tx else self._n_rows

    def ids(self) -> np.ndarray:
        """Ids of the embedded (status "ok") items, ascending, ``(n,) int64``."""
        r = self._conn.execute("SELECT id FROM items WHERE status = 'ok' ORDER BY id").fetchall()
        return np.fromiter((x[0] for x in r), dtype=np.int64, count=len(r))

    def _rows_for(self, ids: Sequence[int] | np.ndarray | None, column: str = "row") -> tuple[np.ndarray, np.ndarray]:
        """(ids, rows) for embedded items; ``ids`` None = all in ascending id order."""
        r = self._conn.execute(f"SELECT id, {column} FROM items WHERE status = 'ok' ORDER BY id").fetchall()
        # Row counts only grow, so reading them *after* the items keeps every referenced row in range.
        self.refresh()
        all_ids = np.fromiter((x[0] for x in r), dtype=np.int64, count=len(r))
        all_rows = np.fromiter((x[1] if x[1] is not None else -1 for x in r), dtype=np.int64, count=len(r))
        if ids is None:
            return all_ids, all_rows
        want = np.asarray(ids, dtype=np.int64).ravel()
        pos = np.minimum(np.searchsorted(all_ids, want), max(all_ids.size - 1, 0))
        bad = np.ones(want.size, bool) if all_ids.size == 0 else all_ids[pos] != want
        if np.any(bad):
            raise StoreError(f"{self.path}: no embedded item with id {int(want[np.argmax(bad)])}")
        return want, all_rows[pos]

    def rows(self, ids: Sequence[int] | np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """``(ids (n,) int64, vector rows (n,) int64)`` of embedded items (a row changes when an item is re-embedded)."""
        return self._rows_for(ids)

    def vectors(self, ids: Sequence[int] | np.ndarray | None = None) -> np.ndarray:
        """Track vectors ``(n, dim) float32``, rows in the order of ``ids`` (default: `ids`)."""
        _, rows = self._rows_for(ids)
        return self._vec.read(rows, self._row_limit())

    def iter_vectors(self, *, batch_size: int = 4096) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """Yield ``(ids (b,) int64, vectors (b, dim) float32)`` batches over all embedded items."""
        all_ids, rows = self._rows_for(None)
        for i in range(0, all_ids.size, batch_size):
            yield all_ids[i : i + batch_size], self._vec.read(rows[i : i + batch_size], self._row_limit())

    def tags(self, ids: Sequence[int] | np.ndarray | None = None) -> np.ndarray:
        """Clip-mean tag probabilities ``(n, n_tags) float32`` (labels in `tag_labels`)."""
        if self._tag is None:
            raise StoreError(f"{self.path}: store has no tag probabilities (create it with --tags)")
        _, rows = self._rows_for(ids)
        return self._tag.read(rows, self._row_limit())

    def patch_vectors(
        self, ids: Sequence[int] | np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Per-patch vectors: ``(item_ids (m,) int64, start_s (m,) float64, vectors (m, patch_dim) float32)``."""
        if self._pvec is None or self._pstart is None:
            raise StoreError(f"{self.path}: store has no per-patch vectors (create it with --patches)")
        want, prow = self._rows_for(ids, "patch_row")
        _, npat = self._rows_for(want, "n_patches")
        npat = np.maximum(npat, 0)
        item_ids = np.repeat(want, npat)
        starts = np.repeat(prow, npat)
        offsets = np.arange(item_ids.size, dtype=np.int64) - np.repeat(np.cumsum(npat) - npat, npat)
        rows = starts + offsets
        limit = self._pending_patch_rows if self._in_tx else self._n_patch_rows
        return item_ids, self._pstart.read(rows, limit)[:, 0], self._pvec.read(rows, limit)

    def items(self, status: str | None = None) -> list[Item]:
        """All items (ascending id), or those with ``status`` ("ok", "failed", "missing")."""
        cols = ", ".join(_ITEM_COLUMNS)
        if status is None:
            r = self._conn.execute(f"SELECT {cols} FROM items ORDER BY id").fetchall()
        else:
            if status not in STATUSES:
                raise ValueError(f"status must be one of {STATUSES}, given status={status!r}")
            r = self._conn.execute(f"SELECT {cols} FROM items WHERE status = ? ORDER BY id", (status,)).fetchall()
        return [_item(x) for x in r]

    def get(self, key: int | str | os.PathLike) -> Item | None:
        """The item with id ``key`` (int) or path ``key`` (as stored, or its absolute form); None if unknown."""
        cols = ", ".join(_ITEM_COLUMNS)
        if isinstance(key, (int, np.integer)):
            r = self._conn.execute(f"SELECT {cols} FROM items WHERE id = ?", (int(key),)).fetchone()
            return _item(r) if r else None
        for candidate in dict.fromkeys([str(key), os.path.abspath(key), os.path.realpath(key)]):
            r = self._conn.execute(f"SELECT {cols} FROM items WHERE path = ?", (candidate,)).fetchone()
            if r:
                return _item(r)
        return None

    def find_by_hash(self, sha256: str) -> list[Item]:
        """Items with content hash ``sha256`` that have a vector (status "ok" or "missing")."""
        cols = ", ".join(_ITEM_COLUMNS)
        r = self._conn.execute(
            f"SELECT {cols} FROM items WHERE sha256 = ? AND row IS NOT NULL ORDER BY id", (sha256,)
        ).fetchall()
        return [_item(x) for x in r]

    def counts(self) -> dict[str, int]:
        """``{"ok": n, "failed": n, "missing": n}``."""
        out = dict.fromkeys(STATUSES, 0)
        for status, n in self._conn.execute("SELECT status, COUNT(*) FROM items GROUP BY status"):
            out[status] = int(n)
        return out

    def stat_index(self) -> dict[str, tuple[int | None, float | None, str, bool]]:
        """``path -> (size, mtime, status, has_vector)`` for every item: one query, for fast resume checks."""
        return {
            p: (s, m, st, row is not None)
            for p, s, m, st, row in self._conn.execute("SELECT path, size, mtime, status, row FROM items")
        }

    def total_duration_s(self) -> float:
        r = self._conn.execute("SELECT COALESCE(SUM(duration_s), 0) FROM items WHERE status = 'ok'").fetchone()
        return float(r[0])

    def disk_bytes(self) -> int:
        """Bytes on disk of the whole store folder."""
        return sum(f.stat().st_size for f in self.path.rglob("*") if f.is_file())

    # ---- write API ---------------------------------------------------------------------------

    def _require_writer(self) -> None:
        if self.mode != "a" or self._conn is None:
            raise StoreError(f"{self.path}: store is open read-only (open it with mode='a' to write)")

    @contextlib.contextmanager
    def transaction(self) -> Iterator[Store]:
        """Group several adds into one durable commit (shards fsynced, then one SQLite commit).

        On an exception nothing of the group is committed. Nested use joins the outer group.
        """
        self._require_writer()
        if self._in_tx:
            self._in_tx += 1
            try:
                yield self
            finally:
                self._in_tx -= 1
            return
        self.begin()
        try:
            yield self
        except BaseException:
            self._rollback()
            raise
        else:
            self._commit()

    def begin(self) -> None:
        """Start a group of adds (see `transaction`); end it with `commit` or `rollback`."""
        self._require_writer()
        if self._in_tx:
            raise StoreError(f"{self.path}: a transaction is already open")
        self._conn.execute("BEGIN IMMEDIATE")
        self._in_tx = 1

    def commit(self) -> None:
        """Make the open group durable: fsync the shards, then commit the rows that reference them."""
        if self._in_tx != 1:
            raise StoreError(f"{self.path}: no open transaction to commit")
        self._commit()

    def rollback(self) -> None:
        """Forget the open group (its shard bytes stay unreferenced and are overwritten later)."""
        if self._in_tx:
            self._rollback()

    @property
    def in_transaction(self) -> bool:
        return bool(self._in_tx)

    def _rollback(self) -> None:
        for s in self._shards():
            s.discard()
        self._conn.rollback()
        self._in_tx = 0
        self._pending_rows, self._pending_patch_rows = self._n_rows, self._n_patch_rows

    def _commit(self) -> None:
        try:
            for s in self._shards():
                s.sync()  # vector bytes durable *before* the rows that reference them are committed
            self._conn.execute("UPDATE meta SET value = ? WHERE key = 'n_rows'", (self._pending_rows,))
            self._conn.execute("UPDATE meta SET value = ? WHERE key = 'n_patch_rows'", (self._pending_patch_rows,))
            self._conn.commit()
        except BaseException:
            self._rollback()
            raise
        self._in_tx = 0
        self._n_rows, self._n_patch_rows = self._pending_rows, self._pending_patch_rows

    def _shards(self) -> list[_Shards]:
        return [s for s in (self._vec, self._tag, self._pvec, self._pstart) if s is not None]

    def _upsert(self, values: dict) -> int:
        values = {**values, "updated": time.time()}
        cols = list(values)
        sets = ", ".join(f"{c} = excluded.{c}" for c in cols if c != "path")
        r = self._conn.execute(
            f"INSERT INTO items ({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))}) "
            f"ON CONFLICT(path) DO UPDATE SET {sets} RETURNING id",
            [values[c] for c in cols],
        ).fetchone()
        return int(r[0])

    def add_embedded(
        self,
        path: str | os.PathLike,
        vector: np.ndarray,
        *,
        size: int | None,
        mtime: float | None,
        sha256: str | None,
        duration_s: float | None,
        samplerate: int | None,
        patch_vectors: np.ndarray | None = None,
        patch_start_s: np.ndarray | None = None,
        tags: np.ndarray | None = None,
        padded: bool | None = None,
    ) -> int:
        """Store one embedded file (replacing any earlier entry for ``path``); returns its id.

        ``vector``: ``(dim,) float32``; ``patch_vectors``: ``(n_patches, patch_dim)`` with
        ``patch_start_s`` ``(n_patches,)`` seconds (required iff the store keeps patches);
        ``tags``: ``(n_tags,)`` (required iff the store keeps tags).
        """
        self._require_writer()
        v = np.asarray(vector, dtype=np.float32).ravel()
        if v.shape[0] != self.dim:
            raise StoreError(f"{path}: vector has dim {v.shape[0]}, store {self.path} holds dim {self.dim}")
        if not np.all(np.isfinite(v)):
            raise StoreError(f"{path}: vector has NaN or infinite values, not stored")
        if self._tag is not None:
            if tags is None:
                raise StoreError(f"{path}: store {self.path} keeps tag probabilities, none given")
            tags = np.asarray(tags, dtype=np.float32).ravel()
            if tags.shape[0] != self._tag.width:
                raise StoreError(f"{path}: {tags.shape[0]} tag values, store {self.path} holds {self._tag.width}")
        if self._pvec is not None:
            if patch_vectors is None or patch_start_s is None:
                raise StoreError(f"{path}: store {self.path} keeps per-patch vectors, none given")
            patch_vectors = np.asarray(patch_vectors, dtype=np.float32).reshape(-1, self._pvec.width)
            patch_start_s = np.asarray(patch_start_s, dtype=np.float64).ravel()
            if patch_start_s.shape[0] != patch_vectors.shape[0]:
                raise StoreError(f"{path}: {patch_vectors.shape[0]} patch vectors but {patch_start_s.shape[0]} start times")
        with self.transaction():
            row = self._pending_rows
            self._vec.write(row, v[None, :])
            if self._tag is not None:
                self._tag.write(row, tags[None, :])  # type: ignore[index]
            self._pending_rows += 1
            prow = npat = None
            if self._pvec is not None and self._pstart is not None:
                prow, npat = self._pending_patch_rows, int(patch_vectors.shape[0])  # type: ignore[union-attr]
                self._pvec.write(prow, patch_vectors)  # type: ignore[arg-type]
                self._pstart.write(prow, patch_start_s[:, None])  # type: ignore[index]
                self._pending_patch_rows += npat
            return self._upsert(
                {
                    "path": str(path),
                    "size": None if size is None else int(size),
                    "mtime": None if mtime is None else float(mtime),
                    "sha256": sha256,
                    "duration_s": None if duration_s is None else float(duration_s),
                    "samplerate": None if samplerate is None else int(samplerate),
                    "status": "ok",
                    "error": None,
                    "row": row,
                    "patch_row": prow,
                    "n_patches": npat,
                    "padded": None if padded is None else int(bool(padded)),
                }
            )

    def add_alias(self, path: str | os.PathLike, source: Item, *, size: int | None, mtime: float | None) -> int:
        """Record ``path`` as a copy of ``source`` (same content hash): shares its vector row; returns its id."""
        self._require_writer()
        if source.row is None:
            raise StoreError(f"{path}: source item {source.id} has no vector")
        with self.transaction():
            return self._upsert(
                {
                    "path": str(path),
                    "size": size,
                    "mtime": mtime,
                    "sha256": source.sha256,
                    "duration_s": source.duration_s,
                    "samplerate": source.samplerate,
                    "status": "ok",
                    "error": None,
                    "row": source.row,
                    "patch_row": source.patch_row,
                    "n_patches": source.n_patches,
                    "padded": None if source.padded is None else int(source.padded),
                }
            )

    def move(self, item_id: int, new_path: str | os.PathLike, *, size: int | None, mtime: float | None) -> None:
        """Point item ``item_id`` at ``new_path`` (a moved or renamed file); status becomes "ok"."""
        self._require_writer()
        with self.transaction():
            self._conn.execute("DELETE FROM items WHERE path = ? AND id != ?", (str(new_path), int(item_id)))
            self._conn.execute(
                "UPDATE items SET path = ?, size = ?, mtime = ?, status = 'ok', error = NULL, updated = ? WHERE id = ?",
                (str(new_path), size, mtime, time.time(), int(item_id)),
            )

    def add_failed(self, path: str | os.PathLike, error: str, *, size: int | None = None, mtime: float | None = None) -> int:
        """Record that ``path`` could not be embedded, with a one-line ``error``; returns its id.

        A file that has a vector already keeps it only if it is unchanged; here it is replaced by the failure.
        """
        self._require_writer()
        error = " ".join(str(error).split())[:1000]
        with self.transaction():
            return self._upsert(
                {
                    "path": str(path),
                    "size": size,
                    "mtime": mtime,
                    "sha256": None,
                    "duration_s": None,
                    "samplerate": None,
                    "status": "failed",
                    "error": error,
                    "row": None,
                    "patch_row": None,
                    "n_patches": None,
                    "padded": None,
                }
            )

    def mark_missing(self, paths: Sequence[str]) -> int:
        """Set status "missing" on these paths (files that vanished); vectors are kept. Returns how many."""
        self._require_writer()
        n = 0
        with self.transaction():
            for p in paths:
                n += self._conn.execute(
                    "UPDATE items SET status = 'missing', updated = ? WHERE path = ? AND status != 'missing'",
                    (time.time(), str(p)),
                ).rowcount
        return n

    def delete(self, paths: Sequence[str]) -> int:
        """Remove items from the table (their vector bytes stay, unreferenced). Returns how many."""
        self._require_writer()
        n = 0
        with self.transaction():
            for p in paths:
                n += self._conn.execute("DELETE FROM items WHERE path = ?", (str(p),)).rowcount
        return n

    # ---- maintenance -------------------------------------------------------------------------

    def _trim(self) -> None:
        for s in self._shards():
            s.trim(self._n_patch_rows if s.prefix in ("pvec", "pstart") else self._n_rows)

    def _check_shards(self) -> None:
        for s in self._shards():
            s.check(self._n_patch_rows if s.prefix in ("pvec", "pstart") else self._n_rows, self.path)

    def info(self) -> dict:
        """Summary for ``embedkit store info``: counts, dims, model, settings, disk size, hours of audio."""
        m = self.manifest
        c = self.counts()
        return {
            "path": str(self.path),
            "model": m.get("model"),
            "fingerprint": self.model_fingerprint,
            "settings_fingerprint": self.fingerprint,
            "dim": self.dim,
            "layout": m.get("layout"),
            "layers": m.get("layers"),
            "model_blocks": m.get("model_blocks"),
            "aggregation": m.get("aggregation"),
            "excerpt_s": m.get("excerpt_s"),
            "patches": self.has_patches,
            "patch_dim": m.get("patch_dim"),
            "tags": self.has_tags,
            "embedded": c["ok"],
            "failed": c["failed"],
            "missing": c["missing"],
            "vector_rows": self._n_rows,
            "patch_rows": self._n_patch_rows,
            "audio_hours": self.total_duration_s() / 3600.0,
            "disk_bytes": self.disk_bytes(),
            "embedkit_version": m.get("embedkit_version"),
            "created": m.get("created"),
            "format_version": m.get("format_version"),
        }


def _item(r: Sequence[Any]) -> Item:
    d = dict(zip(_ITEM_COLUMNS, r))
    if d["padded"] is not None:
        d["padded"] = bool(d["padded"])
    return Item(**d)


def _connect(db: Path, *, readonly: bool) -> sqlite3.Connection:
    try:
        if readonly:
            conn = sqlite3.connect(f"{db.absolute().as_uri()}?mode=ro", uri=True, isolation_level=None, check_same_thread=False, timeout=30)
        else:
            conn = sqlite3.connect(str(db), isolation_level=None, check_same_thread=False, timeout=30)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=FULL")
    except sqlite3.Error as exc:
        raise StoreError(f"{db}: cannot open item table ({exc})") from None
    # isolation_level=None: we issue BEGIN ourselves; make conn.commit()/rollback() explicit statements.
    return _Conn(conn)  # type: ignore[return-value]


class _Conn:
    """sqlite3 connection in autocommit mode with commit/rollback that work after an explicit BEGIN."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._c = conn

    def execute(self, sql: str, params: Sequence[Any] = ()) -> sqlite3.Cursor:
        return self._c.execute(sql, params)

    def executescript(self, sql: str) -> None:
        self._c.executescript(sql)

    def commit(self) -> None:
        if self._c.in_transaction:
            self._c.execute("COMMIT")

    def rollback(self) -> None:
        if self._c.in_transaction:
            self._c.execute("ROLLBACK")

    def close(self) -> None:
        self._c.close()


def _acquire_lock(store: Path, wait: float) -> int:
    """Exclusive ``flock`` on STORE/lock; waits up to ``wait`` seconds, else raises `StoreLockedError`."""
    lock = store / LOCK
    fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
    deadline = time.monotonic() + max(wait, 0.0)
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            break
        except OSError as exc:
            if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                os.close(fd)
                raise StoreError(f"{lock}: cannot lock store ({exc})") from None
            if time.monotonic() >= deadline:
                holder = ""
                with contextlib.suppress(OSError, ValueError):
                    holder = os.pread(fd, 64, 0).decode().strip()
                os.close(fd)
                who = f" (pid {holder})" if holder else ""
                hint = "use --wait SECONDS to wait for it" if wait <= 0 else f"waited {wait:g} s"
                raise StoreLockedError(f"{store}: store is being written by another process{who}; {hint}") from None
            time.sleep(min(0.2, max(deadline - time.monotonic(), 0.01)))
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    return fd


def _release_lock(fd: int) -> None:
    with contextlib.suppress(OSError):
        os.ftruncate(fd, 0)
        fcntl.flock(fd, fcntl.LOCK_UN)
    with contextlib.suppress(OSError):
        os.close(fd)


def write_arrays(
    path: str | os.PathLike,
    paths: Sequence[str],
    vectors: np.ndarray,
    *,
    model: str = "msd_vgg",
    layout: Any = None,
    fingerprint: str = "test",
    patch: Any = None,
    tags: np.ndarray | None = None,
    tag_labels: Sequence[str] | None = None,
    aggregation: str = "mean",
    durations_s: Sequence[float] | None = None,
) -> Store:
    """Write a small store from arrays in one go (tests, tiny random stores); returns it open read-only.

    ``vectors``: ``(n, dim) float32``, one row per entry of ``paths``. ``patch``: per-path list of
    ``(n_patches_i, patch_dim)`` arrays (patch ``j`` starts at ``3·j`` s), or a tuple
    ``(item_index (m,), start_s (m,), vectors (m, patch_dim))``. ``tags``: ``(n, n_tags)``.
    """
    vectors = np.asarray(vectors, dtype=np.float32)
    if vectors.ndim != 2 or vectors.shape[0] != len(paths):
        raise ValueError(f"vectors must be (len(paths), dim), given shape {vectors.shape} for {len(paths)} paths")
    per_item: list[tuple[np.ndarray, np.ndarray]] | None = None
    if patch is not None:
        if isinstance(patch, tuple):
            idx, starts, pv = (np.asarray(a) for a in patch)
            per_item = [(pv[idx == i], starts[idx == i]) for i in range(len(paths))]
        else:
            per_item = [(np.asarray(p), 3.0 * np.arange(len(p), dtype=np.float64)) for p in patch]
    manifest = {
        "model": model,
        "fingerprint": fingerprint,
        "dim": vectors.shape[1],
        "layout": layout,
        "aggregation": aggregation,
        "patch_dim": None if per_item is None else int(per_item[0][0].reshape(len(per_item[0][0]), -1).shape[1]),
        "n_tags": 0 if tags is None else int(np.asarray(tags).shape[1]),
        "tag_labels": list(tag_labels) if tag_labels is not None else None,
    }
    with Store.create(path, manifest) as st, st.transaction():
        for i, p in enumerate(paths):
            pv, ps = per_item[i] if per_item is not None else (None, None)
            st.add_embedded(
                p,
                vectors[i],
                size=None,
                mtime=None,
                sha256=None,
                duration_s=None if durations_s is None else float(durations_s[i]),
                samplerate=None,
                patch_vectors=pv,
                patch_start_s=ps,
                tags=None if tags is None else np.asarray(tags)[i],
            )
    return Store.open(path, mode="r")


def export_store(st: Store, output: str | os.PathLike, *, fmt: str = "npz", patches: bool = False) -> int:
    """Write the embedded items of ``st`` to ``output`` as ``fmt`` ("npz" | "csv" | "parquet"); returns item count.

    ``output`` "-" writes csv to stdout. Vectors are written in ascending id order.
    """
    import sys

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
        tmp = Path(os.fspath(output) + ".tmp.npz")
        np.savez(tmp, **arrays)
        os.replace(tmp, output)
    elif fmt == "csv":
        import csv

        cols = []
        for b in st.layout:
            cols += [f"{b['name']}_{j}" for j in range(b["stop"] - b["start"])]
        tag_cols = [f"tag_{t}" for t in (st.tag_labels or [])] if st.has_tags else []
        tags = st.tags(ids) if st.has_tags else None
        f = sys.stdout if str(output) == "-" else open(output, "w", newline="", encoding="utf-8")
        try:
            w = csv.writer(f)
            w.writerow(["id", "path", "duration_s", "samplerate", *cols, *tag_cols])
            for k, i in enumerate(ids):
                row = [int(i), paths[k], "" if np.isnan(dur[k]) else repr(float(dur[k])), "" if sr[k] < 0 else int(sr[k])]
                row += [repr(float(x)) for x in vecs[k]]
                if tags is not None:
                    row += [repr(float(x)) for x in tags[k]]
                w.writerow(row)
        finally:
            if f is not sys.stdout:
                f.close()
    elif fmt == "parquet":
        try:
            import pyarrow as pa
            import pyarrow.parquet as pq
        except ImportError:
            raise StoreError("parquet export needs pyarrow: pip install 'embedkit[export]'") from None
        cols = {
            "id": pa.array(ids),
            "path": pa.array(paths.tolist(), pa.string()),
            "duration_s": pa.array(dur),
            "samplerate": pa.array(sr),
            "vector": pa.FixedSizeListArray.from_arrays(pa.array(vecs.ravel(), pa.float32()), st.dim),
        }
        if st.has_tags:
            t = st.tags(ids)
            cols["tags"] = pa.FixedSizeListArray.from_arrays(pa.array(t.ravel(), pa.float32()), t.shape[1])
        table = pa.table(cols).replace_schema_metadata({"embedkit_manifest": manifest_json})
        pq.write_table(table, output)
    else:
        raise ValueError(f"format must be npz, csv or parquet, given fmt={fmt!r}")
    return int(ids.size)
