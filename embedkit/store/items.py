"""The item table ``STORE/items.sqlite``: one row per known file, the committed row counts and the
checksums of committed shard segments. SQLite, WAL journal, ``synchronous=FULL``.

Row integrity: every item row carries ``crc``, a blake2b-64 digest of its own fields (`row_crc`), and the
``meta`` table keeps ``n_items``, the number of rows. Readers check the digest of every row they read and
compare full scans (which never use an index: ``NOT INDEXED``) with ``n_items``, so a flipped byte in a row,
or damage that drops rows, is an error naming this file instead of a different answer. Stores of embedkit
0.1 have neither (`sealed` is False): they read as before, and the first writer (or ``store verify
--repair``) seals them.

Paths are stored as TEXT when they are valid UTF-8, else as a BLOB of their raw bytes (Linux file names
need not be UTF-8; `db_path` / `item_from_row` convert losslessly both ways).

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
#: declared SQLite type of each item column (values are normalised to what SQLite returns for it)
_REAL = {"mtime", "duration_s", "updated"}
_TEXT = {"sha256", "status", "error"}
CRC = "crc"
#: meta keys a store may hold (``n_items`` only once its rows are sealed with ``crc``)
META_KEYS = ("n_rows", "n_patch_rows", "n_items")

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
    updated REAL,
    crc TEXT
);
CREATE INDEX IF NOT EXISTS items_sha256 ON items (sha256);
CREATE INDEX IF NOT EXISTS items_status ON items (status);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
INSERT OR IGNORE INTO meta (key, value) VALUES ('n_rows', 0), ('n_patch_rows', 0), ('n_items', 0);
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
    return text, rows.get("manifest_sha256") == hashlib.sha256(text.encode("utf-8", "surrogateescape")).hexdigest()


def stat_matches(item: Item, size: int | None, mtime: float | None) -> bool:
    """The cheap half of the freshness rule: the item recorded this size and mtime (both known)."""
    return item.size is not None and item.mtime is not None and item.size == size and item.mtime == mtime


def db_path(path: str | os.PathLike) -> str | bytes:
    """The value stored for a path: its text when it is valid UTF-8, else its raw bytes (a BLOB).

    A file name that is not UTF-8 arrives from the OS as a str with surrogate escapes (``os.fsdecode``);
    SQLite cannot hold those as TEXT, and its raw bytes are the file's true name."""
    text = os.fspath(path)
    if isinstance(text, bytes):
        text = os.fsdecode(text)
    return text if is_utf8(text) else os.fsencode(text)


def is_utf8(text: str) -> bool:
    """Whether ``text`` is valid UTF-8 text (False for a file name decoded with surrogate escapes)."""
    try:
        text.encode("utf-8")
        return True
    except UnicodeEncodeError:
        return False


def normalise_row(values: dict[str, Any]) -> dict[str, Any]:
    """Item column values as SQLite will return them (int / float / str, NaN as NULL, path per `db_path`),
    so that the digest written equals the digest of the row read back. Missing columns are NULL."""
    out: dict[str, Any] = {}
    for c in ITEM_COLUMNS:
        v = values.get(c)
        if v is None:
            out[c] = None
        elif c == "path":
            out[c] = db_path(v)
        elif c in _REAL:
            f = float(v)
            out[c] = None if f != f else f
        elif c in _TEXT:
            out[c] = str(v)
        else:
            out[c] = int(v)
    return out


def row_crc(values: Sequence[Any]) -> str:
    """16 hex digits: blake2b-64 of an item row's fields in `ITEM_COLUMNS` order (as SQLite returns them).

    Types count: a REAL read back as an INTEGER, or TEXT as a BLOB, has another digest."""
    return hashlib.blake2b(repr(tuple(values)).encode("utf-8", "surrogatepass"), digest_size=8).hexdigest()


def item_from_row(r: Sequence[Any]) -> Item:
    """An `Item` from the first ``len(ITEM_COLUMNS)`` values of a row (a BLOB path is decoded as the OS does)."""
    d = dict(zip(ITEM_COLUMNS, r))
    if d["padded"] is not None:
        d["padded"] = bool(d["padded"])
    if isinstance(d["path"], bytes):
        d["path"] = os.fsdecode(d["path"])
    return Item(**d)


def damaged_row_message(db: Path, item_id: Any, why: str) -> str:
    return (f"{db}: item row {item_id!r:.20} {why} (damaged item table); "
            f"run: embedkit store verify {db.parent} --repair")


def check_values(db: Path, r: Sequence[Any], *, sealed: bool) -> Sequence[Any]:
    """The ``ITEM_COLUMNS`` values of a row read as ``ITEM_COLUMNS + [crc]``; `StoreCorruptError` when its digest
    fails (or is missing in a sealed store). Unsealed stores (embedkit 0.1) have no digests: rows pass unchecked."""
    n = len(ITEM_COLUMNS)
    values = r[:n]
    crc = r[n] if len(r) > n else None
    if crc is None:
        if sealed:
            raise StoreCorruptError(damaged_row_message(db, values[0], "has no checksum"))
    elif crc != row_crc(values):
        raise StoreCorruptError(damaged_row_message(db, values[0], "fails its checksum"))
    return values


def check_row(db: Path, r: Sequence[Any], *, sealed: bool) -> Item:
    """The `Item` of a row read as ``ITEM_COLUMNS + [crc]``, checked by `check_values`."""
    return item_from_row(check_values(db, r, sealed=sealed))


def has_crc_column(conn: Conn) -> bool:
    return any(r[1] == CRC for r in conn.fetchall("PRAGMA table_info(items)"))


def read_meta(conn: Conn) -> dict[str, Any]:
    """The ``meta`` table (read without its index); unknown keys are damage (`StoreCorruptError`)."""
    rows = conn.fetchall("SELECT key, value FROM meta NOT INDEXED")
    meta = dict(rows)
    bad = [k for k in meta if k not in META_KEYS]
    if bad or len(meta) != len(rows):
        raise StoreCorruptError(f"{conn.db}: the meta table holds {bad[0] if bad else 'a repeated key'!r:.30} "
                                f"(damaged item table); run: embedkit store verify {conn.db.parent} --repair")
    return meta


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

    @property
    def version(self) -> tuple[int, int]:
        """Changes whenever the database may have changed: another connection's commit (``data_version``) or
        a change made through this one (``total_changes``)."""
        return int(self.fetchone("PRAGMA data_version")[0]), self._c.total_changes

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


def _text(b: bytes) -> str:
    """TEXT from SQLite: bytes that damage made invalid UTF-8 come back surrogate-escaped (never an exception
    mid-query), so that the row's checksum, not the decoder, reports the damage."""
    return b.decode("utf-8", "surrogateescape")


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
        conn.text_factory = _text
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
    conn.text_factory = _text
    c = Conn(conn, db)
    c.executescript(SCHEMA + SEGMENTS_SCHEMA)
    return c
