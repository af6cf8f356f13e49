"""The item table ``STORE/items.sqlite``: one row per known file, the committed row counts and the
checksums of committed shard segments. SQLite, WAL journal, ``synchronous=FULL``.

Also the one freshness rule (`stat_matches`): a stored item is current for a file when path, size and
mtime match; when they do not, the content hash decides (`Store.is_current`).
"""
from __future__ import annotations

import hashlib
import os
import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from .errors import StoreCorruptError, StoreError

DB = "items.sqlite"
STATUSES = ("ok", "failed", "missing")


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


ITEM_COLUMNS = [f.name for f in fields(Item)]

SCHEMA = """
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

#: Checksums of committed shard rows: one row per shard kind and commit (rows [start, stop)).
#: Created by every writer; stores written by embedkit 0.1 have none for their older rows.
SEGMENTS_SCHEMA = """
CREATE TABLE IF NOT EXISTS segments (
    kind TEXT NOT NULL,
    start INTEGER NOT NULL,
    stop INTEGER NOT NULL,
    sha256 TEXT NOT NULL,
    PRIMARY KEY (kind, start)
);
CREATE TABLE IF NOT EXISTS sidecar (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""


def write_manifest_copy(conn: Conn, text: str) -> None:
    """Keep ``text`` (manifest.json) and its sha256 in the ``sidecar`` table."""
    conn.execute("INSERT OR REPLACE INTO sidecar (key, value) VALUES ('manifest', ?)", (text,))
    conn.execute("INSERT OR REPLACE INTO sidecar (key, value) VALUES ('manifest_sha256', ?)",
                 (hashlib.sha256(text.encode("utf-8")).hexdigest(),))


def read_manifest_copy(conn: Conn) -> tuple[str | None, bool]:
    """``(text, intact)`` of the manifest copy (None if the store has none; intact = its sha256 holds)."""
    if not conn.has_table("sidecar"):
        return None, False
    rows = dict(conn.fetchall("SELECT key, value FROM sidecar WHERE key IN ('manifest', 'manifest_sha256')"))
    text = rows.get("manifest")
    if not isinstance(text, str):
        return None, False
    return text, rows.get("manifest_sha256") == hashlib.sha256(text.encode("utf-8")).hexdigest()


def stat_matches(item: Item, size: int | None, mtime: float | None) -> bool:
    """The cheap half of the freshness rule: the item recorded this size and mtime (both known)."""
    return item.size is not None and item.mtime is not None and item.size == size and item.mtime == mtime


def item_from_row(r: Sequence[Any]) -> Item:
    d = dict(zip(ITEM_COLUMNS, r))
    if d["padded"] is not None:
        d["padded"] = bool(d["padded"])
    return Item(**d)


def damaged_db_message(db: Path, exc: BaseException) -> str:
    store = db.parent
    return (f"{db}: item table unreadable ({' '.join(str(exc).split())}); it maps files to vectors and cannot be "
            f"rebuilt from the shards: restore it from a backup, or re-embed into a new store "
            f"(embedkit embed DIR --store NEW) and remove {store}")


class Conn:
    """sqlite3 connection in autocommit mode with commit/rollback that work after an explicit BEGIN.

    Every SQLite error becomes a one-line `StoreError` naming the database (disk full, damaged file, ...).
    """

    def __init__(self, conn: sqlite3.Connection, db: Path) -> None:
        self._c = conn
        self.db = db

    def _err(self, exc: sqlite3.Error | UnicodeDecodeError) -> StoreError:
        if isinstance(exc, UnicodeDecodeError):  # SQLite's own message about a damaged page held invalid UTF-8
            return StoreCorruptError(damaged_db_message(self.db, Exception(f"text that is not UTF-8: {exc.reason}")))
        text = " ".join(str(exc).split())
        low = text.lower()
        if "full" in low:
            return StoreError(f"{self.db}: {text}; free some disk space and rerun (committed items are kept)")
        if "readonly" in low or "read-only" in low or "permission" in low:
            return StoreError(f"{self.db}: {text}; the store is read-only here (check permissions)")
        if "locked" in low or "busy" in low:
            return StoreError(f"{self.db}: {text}; another process holds the database, retry later")
        if isinstance(exc, (sqlite3.DatabaseError,)) and not isinstance(exc, (sqlite3.IntegrityError,
                                                                             sqlite3.ProgrammingError)):
            return StoreCorruptError(damaged_db_message(self.db, exc))
        return StoreError(f"{self.db}: {text}")

    def execute(self, sql: str, params: Sequence[Any] = ()) -> sqlite3.Cursor:
        try:
            return self._c.execute(sql, params)
        except (sqlite3.Error, UnicodeDecodeError) as exc:
            raise self._err(exc) from None

    def fetchall(self, sql: str, params: Sequence[Any] = ()) -> list:
        try:
            return self._c.execute(sql, params).fetchall()
        except (sqlite3.Error, UnicodeDecodeError) as exc:
            raise self._err(exc) from None

    def fetchone(self, sql: str, params: Sequence[Any] = ()) -> Any:
        try:
            return self._c.execute(sql, params).fetchone()
        except (sqlite3.Error, UnicodeDecodeError) as exc:
            raise self._err(exc) from None

    def executescript(self, sql: str) -> None:
        try:
            self._c.executescript(sql)
        except (sqlite3.Error, UnicodeDecodeError) as exc:
            raise self._err(exc) from None

    @property
    def in_transaction(self) -> bool:
        return self._c.in_transaction

    def commit(self) -> None:
        if self._c.in_transaction:
            self.execute("COMMIT")

    def rollback(self) -> None:
        if self._c.in_transaction:
            try:
                self._c.execute("ROLLBACK")
            except sqlite3.Error:
                pass

    def close(self) -> None:
        try:
            self._c.close()
        except sqlite3.Error:
            pass

    def has_table(self, name: str) -> bool:
        return self.fetchone("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (name,)) is not None


def connect(db: Path, *, readonly: bool) -> Conn:
    """Open the item table. A missing file is an error (never silently created inside an existing store)."""
    if not db.is_file():
        what = "is missing" if not db.exists() else "is not a file"
        raise StoreCorruptError(damaged_db_message(db, Exception(f"{DB} {what}")))
    if not os.access(db, os.R_OK if readonly else os.R_OK | os.W_OK):
        need = "read" if readonly else "write"
        raise StoreError(f"{db}: cannot {need} the item table (permission denied); check the store's permissions")
    try:
        if readonly:
            try:
                conn = sqlite3.connect(f"{db.absolute().as_uri()}?mode=ro", uri=True, isolation_level=None,
                                       check_same_thread=False, timeout=30)
                conn.execute("SELECT COUNT(*) FROM sqlite_master").fetchone()
            except sqlite3.OperationalError:
                # a read-only folder: WAL needs a -shm file it cannot create; no writer can exist there either
                conn = sqlite3.connect(f"{db.absolute().as_uri()}?mode=ro&immutable=1", uri=True,
                                       isolation_level=None, check_same_thread=False, timeout=30)
        else:
            conn = sqlite3.connect(str(db), isolation_level=None, check_same_thread=False, timeout=30)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=FULL")
        c = Conn(conn, db)
        names = {r[0] for r in c.fetchall("SELECT name FROM sqlite_master WHERE type = 'table'")}
    except (sqlite3.Error, UnicodeDecodeError) as exc:
        raise Conn(None, db)._err(exc) from None  # type: ignore[arg-type]
    if not {"items", "meta"} <= names:
        c.close()
        raise StoreCorruptError(damaged_db_message(db, Exception("tables 'items' and 'meta' missing")))
    return c


def create_db(db: Path) -> Conn:
    """Create a new, empty item table (only `Store.create` calls this)."""
    try:
        conn = sqlite3.connect(str(db), isolation_level=None, check_same_thread=False, timeout=30)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=FULL")
    except sqlite3.Error as exc:
        raise StoreError(f"{db}: cannot create item table ({exc})") from None
    c = Conn(conn, db)
    c.executescript(SCHEMA + SEGMENTS_SCHEMA)
    return c
