"""`Store`: open/create a store folder, read vectors, append embedded files, answer which item a key
names (`Store.resolve`) and whether a file's stored vector is current (`Store.is_current`).

Atomicity: a writer appends vector bytes past the committed row count, ``fsync``\\ s the shards, and only
then commits (one SQLite transaction) the item rows that reference them, the new row counts and the
checksums of the appended segments. A crash at any instant leaves either the old committed state or the
new one, plus at most some unreferenced bytes at the end of a shard, which readers ignore and the next
writer trims — after it has checked that the manifest, the item table and the shards agree.
"""
from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import os
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..sidecar import os_error_text, sha256_file, write_text
from ..spec import SpecMismatchError, VectorSpec
from .errors import StoreCorruptError, StoreError, StoreExistsError, StoreMismatchError, verify_hint
from .items import (
    DB, ITEM_COLUMNS, SEGMENTS_SCHEMA, STATUSES, Conn, Item, check_row, check_values, connect, create_db, db_path,
    has_crc_column, item_from_row, normalise_row, read_manifest_copy, read_meta, row_crc, stat_matches,
    write_manifest_copy,
)
from .lock import LOCK, acquire_lock, release_lock
from .manifest import DEFAULT_SHARD_ROWS, MANIFEST, manifest_text, new_manifest, read_manifest
from .shards import Shards

SHARDS = "shards"
#: shard kinds and which row counter they follow
_KINDS = {"vec": "n_rows", "tag": "n_rows", "pvec": "n_patch_rows", "pstart": "n_patch_rows"}


def file_sha256(path: str | os.PathLike, *, chunk: int = 1 << 20) -> str:
    """Hex sha256 of a file's bytes, read in 1 MiB chunks (the content hash stored per item)."""
    return sha256_file(path, chunk=chunk)


class Store:
    """An embedding store directory. Create with `Store.create`, open with `Store.open`.

    Read API: ``len(st)``, `spec`, `ids`, `vectors`, `rows`, `items`, `get`, `resolve`, `is_current`, `tags`,
    `patch_vectors`, `iter_vectors`. Write API (mode "a"): `add_embedded`, `add_failed`, `add_alias`, `move`,
    `mark_missing`, `delete`, `transaction`.
    """

    def __init__(self, path: Path, manifest: dict, spec: VectorSpec, conn: Conn, mode: str, lock_fd: int | None) -> None:
        self.path = path
        self.manifest = manifest
        self._spec = spec
        self.mode = mode
        self._conn = conn
        self._lock_fd = lock_fd
        self._in_tx = 0
        rows = manifest.get("shard_rows", DEFAULT_SHARD_ROWS)
        sdir = path / SHARDS
        self._vec = Shards(sdir, "vec", spec.dim, "float32", rows["vec"])
        self._tag = Shards(sdir, "tag", manifest["n_tags"], "float32", rows["vec"]) if manifest.get("n_tags") else None
        pdim = manifest.get("patch_dim")
        self._pvec = Shards(sdir, "pvec", pdim, "float32", rows["patch"]) if pdim else None
        self._pstart = Shards(sdir, "pstart", 1, "float64", rows["patch"]) if pdim else None
        self._has_crc = has_crc_column(conn)
        self._table_cache: tuple[tuple[int, int], dict[str, np.ndarray]] | None = None
        self._sealed = False  # set by _committed_counts: meta holds n_items (every row carries its crc)
        self._n_rows, self._n_patch_rows = self._committed_counts()
        self._pending_rows, self._pending_patch_rows = self._n_rows, self._n_patch_rows
        self._load_segments()

    # ---- creation / opening ------------------------------------------------------------------

    @classmethod
    def create(cls, path: str | os.PathLike, manifest: dict | VectorSpec, *, wait: float = 0.0, **extra: Any) -> Store:
        """Create a new store at ``path`` (must not exist or be an empty folder); returns it open in mode "a".

        ``manifest``: a `VectorSpec` (+ ``extra`` keys: ``patch_dim`` (True = the spec's), ``n_tags``,
        ``tag_labels``, ``shard_rows``, ``sample_rate``) or a dict with ``model``, ``fingerprint`` (model
        fingerprint), ``dim`` and optional ``layout``, ``aggregation``, ``layers``, ``excerpt_s``, ... as before.
        """
        p = Path(path)
        if (p / MANIFEST).exists():
            raise StoreExistsError(f"{p}: a store already exists here")
        if p.exists() and (not p.is_dir() or any(x.name not in (DB, LOCK, SHARDS) for x in p.iterdir())):
            raise StoreError(f"{p}: exists and is not an empty folder, cannot create a store there")
        m, spec = new_manifest(manifest, p, **extra)
        text = manifest_text(m)
        try:
            p.mkdir(parents=True, exist_ok=True)
            (p / SHARDS).mkdir(exist_ok=True)
        except OSError as exc:
            raise StoreError(os_error_text(p, exc, action="cannot create the store")) from None
        lock_fd = acquire_lock(p, wait)
        conn = None
        try:
            if (p / MANIFEST).exists():  # another process created it while we waited for the lock
                raise StoreExistsError(f"{p}: a store already exists here")
            if (p / DB).exists():
                _refuse_orphaned_items(p)  # a store whose manifest is gone is repaired, never overwritten
                for suffix in ("", "-wal", "-shm"):  # left empty by a create that died before the manifest
                    with contextlib.suppress(OSError):
                        (p / (DB + suffix)).unlink()
            conn = create_db(p / DB)
            write_manifest_copy(conn, text)
            write_text(p / MANIFEST, text)  # written last: its presence marks a complete store
        except BaseException:
            if conn is not None:
                conn.close()
            release_lock(lock_fd)
            raise
        return cls(p, m, spec, conn, "a", lock_fd)

    @classmethod
    def open(
        cls,
        path: str | os.PathLike,
        *,
        mode: str = "r",
        wait: float = 0.0,
        fingerprint: str | None = None,
        model_fingerprint: str | None = None,
        spec: VectorSpec | None = None,
    ) -> Store:
        """Open an existing store. ``mode``: "r" read-only (no lock) or "a" append (exclusive lock).

        ``wait``: seconds to wait for another writer's lock (0 = fail at once). ``fingerprint`` /
        ``model_fingerprint`` / ``spec``: refuse (`StoreMismatchError`) a store made with other settings/model.
        The manifest, the item table and the shards are checked against each other first (one-line
        `StoreError` naming the wrong file and the repair); only then does a writer trim crash leftovers.
        """
        if mode not in ("r", "a"):
            raise ValueError(f"mode must be 'r' or 'a', given mode={mode!r}")
        p = Path(path)
        m, sp = read_manifest(p)
        lock_fd = acquire_lock(p, wait) if mode == "a" else None
        conn = None
        try:
            conn = connect(p / DB, readonly=(mode == "r"))
            if mode == "a":
                conn.executescript(SEGMENTS_SCHEMA)
            st = cls(p, m, sp, conn, mode, lock_fd)
            st._check_manifest_copy()
            st._validate()
            if mode == "a":
                st._trim()
                st._keep_manifest_copy()
                if not st._sealed:
                    st._seal()
            st.check_compatible(settings_fingerprint=fingerprint, model_fingerprint=model_fingerprint)
            if spec is not None:
                st.check_spec(spec)
        except BaseException:
            if conn is not None:
                conn.close()
            if lock_fd is not None:
                release_lock(lock_fd)
            raise
        return st

    def check_spec(self, spec: VectorSpec, *, what: str = "this run") -> None:
        """Raise `StoreMismatchError` (one line, both sides) unless ``spec`` describes this store's vectors."""
        try:
            self.spec.check_compatible(spec, what=f"store {self.path}", other_what=what,
                                       hint="use the store's model and settings (leave those options out), or embed into a new store")
        except SpecMismatchError as exc:
            raise StoreMismatchError(str(exc)) from None

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
        return self.spec.describe()

    # ---- consistency -------------------------------------------------------------------------

    def _validate(self) -> None:
        """Check that the item table, its meta counts, the segment checksums and the shard sizes agree
        (cheap: a few SQL aggregates and stat calls). Raises `StoreCorruptError` naming the wrong file."""
        db = self.path / DB
        hint = verify_hint(self.path)
        self._conn.execute("BEGIN")  # one snapshot: a writer may commit between our statements
        try:
            self._n_rows, self._n_patch_rows = self._committed_counts()
            self._pending_rows, self._pending_patch_rows = self._n_rows, self._n_patch_rows
            self._load_segments()
            r = self._conn.fetchone(
                "SELECT MAX(row), MAX(patch_row + n_patches), MIN(row), MIN(patch_row) FROM items"
            )
        finally:
            self._conn.commit()
        n, np_ = self._n_rows, self._n_patch_rows
        max_row, max_prow, min_row, min_prow = r[0], r[1], r[2], r[3]
        if max_row is not None and (max_row >= n or min_row < 0):
            raise StoreCorruptError(f"{db}: items refer to vector row {max_row} but the table commits {n} rows "
                                    f"(edited or damaged item table); {hint}")
        if self._pvec is not None and max_prow is not None and (max_prow > np_ or min_prow < 0):
            raise StoreCorruptError(f"{db}: items refer to patch rows up to {max_prow} but the table commits "
                                    f"{np_} (edited or damaged item table); {hint}")
        for s in self._shards():
            limit = n if _KINDS[s.prefix] == "n_rows" else np_
            segs = s.segments
            if segs and max(b for _, b, _ in segs) > limit:
                raise StoreCorruptError(
                    f"{db}: the meta table commits {limit} {s.prefix} rows but checksums exist up to row "
                    f"{max(b for _, b, _ in segs)} (edited or damaged item table); {hint}")
            s.check(limit)
        if self.mode == "a":
            self._scan_rows()  # a writer starts from rows that all pass their checksums, none missing

    def _seal(self) -> None:
        """Give every row of an embedkit 0.1 store its checksum and record the row count (one transaction)."""
        self._conn.execute("BEGIN IMMEDIATE")
        try:
            if not self._has_crc:
                self._conn.execute("ALTER TABLE items ADD COLUMN crc TEXT")
            rows = self._conn.fetchall(f"SELECT {', '.join(ITEM_COLUMNS)} FROM items NOT INDEXED ORDER BY id")
            for r in rows:
                self._conn.execute("UPDATE items SET crc = ? WHERE id = ?", (row_crc(r), r[0]))
            self._conn.execute("INSERT OR REPLACE INTO meta (key, value) VALUES ('n_items', ?)", (len(rows),))
            self._conn.commit()
        except BaseException:
            self._conn.rollback()
            raise
        self._has_crc = self._sealed = True

    def _trim(self) -> None:
        for s in self._shards():
            s.trim(self._n_patch_rows if _KINDS[s.prefix] == "n_patch_rows" else self._n_rows)

    def _keep_manifest_copy(self) -> None:
        """Keep the (validated) manifest text in items.sqlite so that verify --repair can restore it."""
        try:
            text = (self.path / MANIFEST).read_text(encoding="utf-8")
        except OSError:
            return
        copy, intact = read_manifest_copy(self._conn)
        if copy != text or not intact:
            write_manifest_copy(self._conn, text)

    def _check_manifest_copy(self) -> None:
        """The manifest must equal the intact copy written at the last write (else it was edited or damaged)."""
        copy, intact = read_manifest_copy(self._conn)
        if copy is None or not intact:
            return  # no copy (a 0.1 store) or a damaged copy: the writer rewrites it, verify reports it
        try:
            same = json.loads(copy) == self.manifest
        except ValueError:
            same = False
        if not same:
            raise StoreCorruptError(f"{self.path / MANIFEST}: differs from the copy kept in {DB} at the last write "
                                    f"(edited or damaged); {verify_hint(self.path)}")

    def _load_segments(self) -> None:
        if not self._conn.has_table("segments"):
            return
        by_kind: dict[str, list[tuple[int, int, str]]] = {}
        for kind, a, b, h in self._conn.fetchall("SELECT kind, start, stop, sha256 FROM segments"):
            by_kind.setdefault(kind, []).append((int(a), int(b), str(h)))
        for s in self._shards():
            s.set_segments(by_kind.get(s.prefix, []))

    # ---- properties --------------------------------------------------------------------------

    @property
    def spec(self) -> VectorSpec:
        """The `VectorSpec` of this store's vectors (model(s), layers, aggregation, excerpt, precision, layout)."""
        return self._spec

    @property
    def fingerprint(self) -> str:
        """The settings fingerprint (= ``spec.fingerprint``)."""
        return self.manifest["settings_fingerprint"]

    @property
    def store_id(self) -> str:
        """This store's identity (random at creation; a copy of the folder is the same store). Stores of
        embedkit 0.1 have none: derived from their creation time and settings fingerprint."""
        sid = self.manifest.get("store_id")
        if isinstance(sid, str) and sid:
            return sid
        seed = f"{self.manifest.get('created')}|{self.fingerprint}"
        return hashlib.sha256(seed.encode()).hexdigest()[:32]

    @property
    def model_fingerprint(self) -> str:
        return self.manifest["fingerprint"]

    @property
    def dim(self) -> int:
        return self._spec.dim

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
        """``[{"name", "start", "stop", ...}]``: the column slice of each feature block in a vector."""
        return self.manifest["layout"]

    def __len__(self) -> int:
        return int(np.count_nonzero(self._table()["status"] == 0))

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
            release_lock(self._lock_fd)
            self._lock_fd = None

    def __del__(self) -> None:  # pragma: no cover - best effort
        with contextlib.suppress(Exception):
            self.close()

    # ---- read API ----------------------------------------------------------------------------

    def _committed_counts(self) -> tuple[int, int]:
        rows = read_meta(self._conn)
        self._sealed = "n_items" in rows
        if self._sealed and not self._has_crc:  # a writer sealed this 0.1 store since we opened it
            self._has_crc = has_crc_column(self._conn)
        if self._sealed != self._has_crc:
            what = "no 'n_items' row count" if self._has_crc else "a row count but items without checksums"
            raise StoreCorruptError(f"{self.path / DB}: the meta table holds {what} (edited or damaged item table); "
                                    f"{verify_hint(self.path)}")
        out = []
        for key in ("n_rows", "n_patch_rows", *(("n_items",) if self._sealed else ())):
            v = rows.get(key, 0)
            if isinstance(v, bool) or not isinstance(v, int) or v < 0:
                raise StoreCorruptError(f"{self.path / DB}: meta '{key}' is {v!r:.30}, not a row count "
                                        f"(edited or damaged item table); {verify_hint(self.path)}")
            out.append(int(v))
        return out[0], out[1]

    # ---- reading item rows (every row checked against its crc) --------------------------------

    def _columns(self) -> str:
        return ", ".join(ITEM_COLUMNS) + (", crc" if self._has_crc else "")

    def _select(self, where: str, params: Sequence[Any] = (), *, indexed: bool = False) -> list[Item]:
        """Items matching ``where``, ascending id, each checked against its checksum. ``indexed``: let SQLite
        use an index (point lookups by path or hash; callers check the key of what comes back)."""
        sql = (f"SELECT {self._columns()} FROM items{'' if indexed else ' NOT INDEXED'} WHERE {where} "
               "ORDER BY id")
        return [check_row(self.path / DB, r, sealed=self._sealed) for r in self._conn.fetchall(sql, params)]

    def _scan(self) -> list[Item]:
        """Every item, ascending id (see `_scan_rows`)."""
        return [item_from_row(r) for r in self._scan_rows()]

    def _table(self) -> dict[str, np.ndarray]:
        """Columns of every item, checked by `_scan_rows` and kept until the database changes: ``id``, ``row``,
        ``patch_row``, ``n_patches`` ``(n,) int64`` (-1 = NULL), ``status`` ``(n,) int8`` (index in `STATUSES`),
        ``duration_s`` ``(n,) float64`` (NaN = NULL)."""
        key = self._conn.version
        if self._table_cache is not None and self._table_cache[0] == key:
            return self._table_cache[1]
        rows = self._scan_rows()
        pos = {c: ITEM_COLUMNS.index(c) for c in ("id", "row", "patch_row", "n_patches", "status", "duration_s")}
        code = {s: i for i, s in enumerate(STATUSES)}

        def ints(c: str) -> np.ndarray:
            i = pos[c]
            return np.fromiter((-1 if r[i] is None else r[i] for r in rows), dtype=np.int64, count=len(rows))

        table = {c: ints(c) for c in ("id", "row", "patch_row", "n_patches")}
        table["status"] = np.fromiter((code.get(r[pos["status"]], -1) for r in rows), dtype=np.int8, count=len(rows))
        i = pos["duration_s"]
        table["duration_s"] = np.fromiter((np.nan if r[i] is None else r[i] for r in rows), dtype=np.float64,
                                          count=len(rows))
        self._table_cache = (key, table)
        return table

    def _scan_rows(self) -> list[Sequence[Any]]:
        """Every item row (`ITEM_COLUMNS` values), ascending id, read without any index, each row checked against
        its checksum and their number against the meta table's ``n_items`` (one snapshot): damage that hides
        rows is an error."""
        own = not self._conn.in_transaction
        if own:
            self._conn.execute("BEGIN")
        try:
            rows = self._conn.fetchall(f"SELECT {self._columns()} FROM items NOT INDEXED ORDER BY id")
            n = read_meta(self._conn).get("n_items") if self._sealed else None
        finally:
            if own:
                self._conn.commit()
        db, sealed, width = self.path / DB, self._sealed, len(ITEM_COLUMNS)
        if self._has_crc:
            for r in rows:
                if r[width] != row_crc(r[:width]):
                    check_values(db, r, sealed=sealed)  # raises, naming the row (or passes an unsealed NULL)
            items = [r[:width] for r in rows]
        else:
            items = rows
        if self._sealed and n != len(items):
            raise StoreCorruptError(f"{self.path / DB}: the item table holds {len(items)} rows but its meta table "
                                    f"counts {n!r:.20} (rows lost to damage, or a damaged count); "
                                    f"{verify_hint(self.path)}")
        return items

    def _by_path(self, path: str) -> Item | None:
        """The item stored under exactly ``path`` (index lookup; the row found must hold that path)."""
        r = self._select("path = ?", (db_path(path),), indexed=True)
        if r and r[0].path != os.fspath(path):
            raise StoreCorruptError(f"{self.path / DB}: the path index leads to item {r[0].id} for another path "
                                    f"(damaged index); {verify_hint(self.path)}")
        return r[0] if r else None

    def refresh(self) -> None:
        """Re-read the committed row counts (a reader sees rows another process committed since)."""
        if not self._in_tx:
            before = (self._n_rows, self._n_patch_rows)
            self._n_rows, self._n_patch_rows = self._committed_counts()
            self._pending_rows, self._pending_patch_rows = self._n_rows, self._n_patch_rows
            if (self._n_rows, self._n_patch_rows) != before:
                self._load_segments()

    def _row_limit(self) -> int:
        return self._pending_rows if self._in_tx else self._n_rows

    def ids(self) -> np.ndarray:
        """Ids of the embedded (status "ok") items, ascending, ``(n,) int64``."""
        t = self._table()
        return t["id"][t["status"] == 0].copy()

    def _rows_for(self, ids: Sequence[int] | np.ndarray | None, column: str = "row") -> tuple[np.ndarray, np.ndarray]:
        """(ids, rows) for embedded items; ``ids`` None = all in ascending id order."""
        if ids is not None and np.size(ids) <= 512:  # a few ids: look them up, not the whole table
            want = np.asarray(ids, dtype=np.int64).ravel()
            uniq = [int(i) for i in np.unique(want)]
            r = self._select(f"status = 'ok' AND id IN ({', '.join('?' * len(uniq))})", uniq) if uniq else []
            self.refresh()
            found = {it.id: (-1 if getattr(it, column) is None else int(getattr(it, column))) for it in r}
            for i in want:
                if int(i) not in found:
                    raise StoreError(f"{self.path}: no embedded item with id {int(i)}")
            return want, np.array([found[int(i)] for i in want], dtype=np.int64)
        t = self._table()
        ok = t["status"] == 0
        # Row counts only grow, so reading them *after* the items keeps every referenced row in range.
        self.refresh()
        all_ids, all_rows = t["id"][ok], t[column][ok]
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
        if status is not None and status not in STATUSES:
            raise ValueError(f"status must be one of {STATUSES}, given status={status!r}")
        return [it for it in self._scan() if status is None or it.status == status]

    def get(self, key: int | str | os.PathLike) -> Item | None:
        """The item with id ``key`` (int) or stored path ``key`` (as stored, or its absolute/real form); None
        if unknown. No freshness check: see `resolve` for "which item is this file now"."""
        if isinstance(key, (int, np.integer)) and not isinstance(key, bool):
            r = self._select("id = ?", (int(key),))
            return r[0] if r else None
        for candidate in _path_forms(key):
            it = self._by_path(candidate)
            if it is not None:
                return it
        return None

    def resolve(self, key: int | str | os.PathLike, *, by_content: bool = True) -> Item | None:
        """The item a key names now — the one rule for labels, search, recommend, predict and collection.

        - an int (or numpy integer): the item with that id;
        - a path of a stored item: that item, if the file is absent (its stored vector stands for it) or
          `is_current`; a file that changed since is not that item any more;
        - any existing file (``by_content``): an item with a vector whose content hash equals the file's
          (the same audio stored under another path);
        - else None (the caller embeds the file itself, or reports the key as unknown).

        The returned item may have status "failed" or "missing"; callers check ``item.status == "ok"``.
        """
        if isinstance(key, (int, np.integer)) and not isinstance(key, bool):
            return self.get(int(key))
        item = self.get(key)
        path = os.fspath(key)
        try:
            st = os.stat(path)
            exists = os.path.isfile(path)
        except (OSError, ValueError):
            st, exists = None, False
        if item is not None:
            if not exists or self.is_current(path, item=item, stat=st):
                return item
        if not exists or not by_content:
            return None
        try:
            digest = file_sha256(path)
        except OSError:
            return None
        same = self.find_by_hash(digest)
        same.sort(key=lambda it: (it.status != "ok", it.id))
        return same[0] if same else None

    def is_current(self, path: str | os.PathLike, *, item: Item | None = None, stat: os.stat_result | None = None) -> bool:
        """Whether the stored vector of ``path`` (or ``item``) is the vector of the file as it is now.

        The one freshness rule: path + size + mtime match the item (cheap), else the content hash must
        equal the stored sha256. An item recorded without size/mtime/hash (arrays written by
        `write_arrays`) is taken as current. False when the file cannot be read or has no stored vector.
        """
        item = item if item is not None else self.get(path)
        if item is None or item.row is None or item.status == "failed":
            return False
        if item.size is None and item.mtime is None and item.sha256 is None:
            return True
        try:
            st = stat if stat is not None else os.stat(path)
        except (OSError, ValueError):
            return False
        if stat_matches(item, st.st_size, st.st_mtime):
            return True
        if item.sha256 is None:
            return False
        try:
            return file_sha256(path) == item.sha256
        except OSError:
            return False

    def find_by_hash(self, sha256: str) -> list[Item]:
        """Items with content hash ``sha256`` that have a vector (status "ok" or "missing")."""
        r = self._select("sha256 = ? AND row IS NOT NULL", (sha256,), indexed=True)
        return [it for it in r if it.sha256 == sha256]

    def counts(self) -> dict[str, int]:
        """``{"ok": n, "failed": n, "missing": n}``."""
        counts = np.bincount(self._table()["status"].astype(np.int64) + 1, minlength=len(STATUSES) + 1)
        return {s: int(counts[i + 1]) for i, s in enumerate(STATUSES)}

    def total_duration_s(self) -> float:
        """Seconds of audio of the embedded items."""
        t = self._table()
        return float(np.nansum(t["duration_s"][t["status"] == 0]))

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
        for s in self._shards():
            s.begin(self._n_patch_rows if _KINDS[s.prefix] == "n_patch_rows" else self._n_rows)

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
        segs = []
        try:
            for s in self._shards():
                seg = s.segment(self._pending_patch_rows if _KINDS[s.prefix] == "n_patch_rows" else self._pending_rows)
                segs.append((s, seg))
                s.sync()  # vector bytes durable *before* the rows that reference them are committed
            for s, seg in segs:
                if seg is not None:
                    self._conn.execute("INSERT OR REPLACE INTO segments (kind, start, stop, sha256) VALUES (?, ?, ?, ?)",
                                       (s.prefix, *seg))
            self._conn.execute("UPDATE meta SET value = ? WHERE key = 'n_rows'", (self._pending_rows,))
            self._conn.execute("UPDATE meta SET value = ? WHERE key = 'n_patch_rows'", (self._pending_patch_rows,))
            self._conn.commit()
        except BaseException:
            self._rollback()
            raise
        for s, seg in segs:
            s.committed(seg)
        self._in_tx = 0
        self._n_rows, self._n_patch_rows = self._pending_rows, self._pending_patch_rows

    def _shard(self, kind: str) -> Shards:
        s = {"vec": self._vec, "tag": self._tag, "pvec": self._pvec, "pstart": self._pstart}[kind]
        if s is None:
            raise StoreError(f"{self.path}: store has no {kind} shards")
        return s

    def _shards(self) -> list[Shards]:
        return [s for s in (self._vec, self._tag, self._pvec, self._pstart) if s is not None]

    def _write_row(self, values: dict, old: Item | None) -> int:
        """Insert (``old`` None) or replace the row of ``old`` with ``values`` (every column but id; missing ones
        NULL), with its checksum; keeps the meta row count. Returns the item's id."""
        v = normalise_row(values)
        cols = [c for c in ITEM_COLUMNS if c != "id"]
        if old is None:
            cur = self._conn.execute(f"INSERT INTO items ({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))})",
                                     [v[c] for c in cols])
            v["id"] = int(cur.lastrowid)
            self._conn.execute("UPDATE items SET crc = ? WHERE id = ?", (row_crc([v[c] for c in ITEM_COLUMNS]), v["id"]))
            self._count_items(+1)
        else:
            v["id"] = old.id
            self._conn.execute(f"UPDATE items SET {', '.join(f'{c} = ?' for c in cols)}, crc = ? WHERE id = ?",
                               [*(v[c] for c in cols), row_crc([v[c] for c in ITEM_COLUMNS]), v["id"]])
        return v["id"]

    def _count_items(self, delta: int) -> None:
        if delta:
            self._conn.execute("UPDATE meta SET value = value + ? WHERE key = 'n_items'", (int(delta),))

    def _upsert(self, values: dict) -> int:
        values = {**values, "updated": time.time()}
        return self._write_row(values, self._by_path(values["path"]))

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
        ``tags``: ``(n_tags,)`` (required iff the store keeps tags). Non-finite values are refused.
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
            if not np.all(np.isfinite(tags)):
                raise StoreError(f"{path}: tag probabilities have NaN or infinite values, not stored")
        if self._pvec is not None:
            if patch_vectors is None or patch_start_s is None:
                raise StoreError(f"{path}: store {self.path} keeps per-patch vectors, none given")
            patch_vectors = np.asarray(patch_vectors, dtype=np.float32).reshape(-1, self._pvec.width)
            patch_start_s = np.asarray(patch_start_s, dtype=np.float64).ravel()
            if patch_start_s.shape[0] != patch_vectors.shape[0]:
                raise StoreError(f"{path}: {patch_vectors.shape[0]} patch vectors but {patch_start_s.shape[0]} start times")
            if not (np.all(np.isfinite(patch_vectors)) and np.all(np.isfinite(patch_start_s))):
                raise StoreError(f"{path}: patch vectors have NaN or infinite values, not stored")
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
                    "path": os.fsdecode(path),
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
                    "path": os.fsdecode(path),
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
            old = self.get(int(item_id))
            if old is None:
                return
            gone = self._conn.execute("DELETE FROM items WHERE path = ? AND id != ?",
                                      (db_path(new_path), int(item_id))).rowcount
            self._count_items(-gone)
            self._write_row({**dataclasses.asdict(old), "path": os.fspath(new_path), "size": size, "mtime": mtime,
                             "status": "ok", "error": None, "updated": time.time()}, old)

    def add_failed(self, path: str | os.PathLike, error: str, *, size: int | None = None, mtime: float | None = None) -> int:
        """Record that ``path`` could not be embedded, with a one-line ``error``; returns its id.

        A file that has a vector already keeps it only if it is unchanged; here it is replaced by the failure.
        """
        self._require_writer()
        error = " ".join(str(error).split())[:1000]
        with self.transaction():
            return self._upsert(
                {
                    "path": os.fsdecode(path),
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
                old = self._by_path(str(p))
                if old is not None and old.status != "missing":
                    self._write_row({**dataclasses.asdict(old), "status": "missing", "updated": time.time()}, old)
                    n += 1
        return n

    def delete(self, paths: Sequence[str]) -> int:
        """Remove items from the table (their vector bytes stay, unreferenced). Returns how many."""
        self._require_writer()
        n = 0
        with self.transaction():
            for p in paths:
                n += self._conn.execute("DELETE FROM items WHERE path = ?", (db_path(p),)).rowcount
            self._count_items(-n)
        return n

    # ---- maintenance -------------------------------------------------------------------------

    def info(self) -> dict:
        """Summary for ``embedkit store info``: counts, dims, model, settings, disk size, hours of audio."""
        m = self.manifest
        c = self.counts()
        sp = self.spec
        return {
            "path": str(self.path),
            "store_id": self.store_id,
            "model": m.get("model"),
            "fingerprint": self.model_fingerprint,
            "settings_fingerprint": self.fingerprint,
            "dim": self.dim,
            "layout": m.get("layout"),
            "layers": m.get("layers"),
            "model_blocks": m.get("model_blocks"),
            "aggregation": sp.aggregation,
            "excerpt_s": sp.excerpt_s,
            "precision": sp.precision,
            "models": list(sp.models),
            "patches": self.has_patches,
            "patch_dim": m.get("patch_dim"),
            "tags": self.has_tags,
            "embedded": c["ok"],
            "failed": c["failed"],
            "missing": c["missing"],
            "vector_rows": self._n_rows,
            "patch_rows": self._n_patch_rows,
            "unchecked_rows": self._vec.unchecked_rows(self._n_rows),
            "item_rows_sealed": self._sealed,
            "audio_hours": self.total_duration_s() / 3600.0,
            "disk_bytes": self.disk_bytes(),
            "embedkit_version": m.get("embedkit_version"),
            "created": m.get("created"),
            "format_version": m.get("format_version"),
            "vector_spec": sp.to_json(),
        }


def _refuse_orphaned_items(p: Path) -> None:
    """Raise when ``p/items.sqlite`` holds items or vectors (its manifest was lost): never overwrite it."""
    try:
        conn = connect(p / DB, readonly=True)
        try:
            n = int(conn.fetchone("SELECT COUNT(*) FROM items")[0])
            rows = int(conn.fetchone("SELECT MAX(value) FROM meta")[0] or 0)
        finally:
            conn.close()
    except StoreError:
        n, rows = 1, 1  # unreadable: treat as precious
    if n or rows or any((p / SHARDS).glob("*")):
        raise StoreCorruptError(f"{p / MANIFEST}: missing, but {p / DB} holds {n} items; "
                                f"{verify_hint(p)} (restores the manifest from its copy)")


def _path_forms(key: str | os.PathLike) -> list[str]:
    text = os.fspath(key)
    forms = [text]
    with contextlib.suppress(OSError, ValueError):
        forms.append(os.path.abspath(text))
        forms.append(os.path.realpath(text))
    return list(dict.fromkeys(forms))


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


__all__ = ["Store", "file_sha256", "write_arrays"]
