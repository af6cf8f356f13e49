"""``embedkit store verify STORE [--repair]``: check that the manifest, the item table and the shards
agree and that every checksummed segment is intact; repair what can be repaired.

Repairs: a damaged or missing manifest is restored from its copy in items.sqlite; a lowered row count
in the item table is restored from the checksummed segments; items whose vector (or tags, or patch
vectors) lie in a damaged segment are re-embedded from their audio file when it is there unchanged,
else marked failed (so no reader ever gets the damaged bytes). Item rows that fail their own checksum
are marked failed (their fields cannot be trusted; the next ``embed`` of their folder adds the file
again); damaged SQLite indexes are rebuilt from the table (``REINDEX``); a wrong or lost item count is
recounted once every row passes; rows of an embedkit 0.1 store are sealed with checksums. A damaged
items.sqlite table b-tree cannot be rebuilt (it is the only map from files to vectors): the report says so.
"""
from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..sidecar import write_text
from .core import Store
from .errors import StoreCorruptError, StoreError
from .items import (
    DB, ITEM_COLUMNS, META_KEYS, Conn, check_row, connect, has_crc_column, is_utf8, normalise_row, read_manifest_copy, row_crc,
    write_manifest_copy,
)
from .lock import acquire_lock, release_lock
from .manifest import MANIFEST, parse_manifest_text, read_manifest


@dataclass
class Problem:
    """One disagreement or damage: the file, what is wrong, and what repairs it."""

    file: str
    problem: str
    repair: str
    repaired: bool = False

    def line(self) -> str:
        state = " [repaired]" if self.repaired else ""
        return f"{self.file}: {self.problem}; {self.repair}{state}"


@dataclass
class VerifyReport:
    store: str
    problems: list[Problem] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    items: int = 0
    segments: int = 0  # checksummed segments of every shard kind
    checked_rows: int = 0  # vector rows covered by a checksum
    unchecked_rows: int = 0
    damaged_items: list[int] = field(default_factory=list)  # items whose stored vectors are damaged
    damaged_rows: list[int] = field(default_factory=list)  # items whose own row failed its checksum
    reembedded: int = 0
    marked_failed: int = 0

    @property
    def ok(self) -> bool:
        return all(p.repaired for p in self.problems)

    def to_json(self) -> dict:
        return {
            "store": self.store, "ok": self.ok, "items": self.items, "segments": self.segments,
            "checked_rows": self.checked_rows, "unchecked_rows": self.unchecked_rows,
            "damaged_items": self.damaged_items, "damaged_rows": self.damaged_rows, "reembedded": self.reembedded, "marked_failed": self.marked_failed,
            "problems": [{"file": p.file, "problem": p.problem, "repair": p.repair, "repaired": p.repaired}
                         for p in self.problems],
            "notes": self.notes,
        }


def verify(path: str | os.PathLike, *, repair: bool = False, embedder: Any = None, wait: float = 0.0,
           on_progress: Callable[[str], None] | None = None) -> VerifyReport:
    """Check (and with ``repair`` fix) the store at ``path``; returns a `VerifyReport` (never raises for damage
    it can describe). ``embedder``: used to re-embed damaged items (default: the store's ``spec.embedder()``)."""
    p = Path(path)
    rep = VerifyReport(str(p))
    say = on_progress or (lambda msg: None)
    if not p.is_dir():
        rep.problems.append(Problem(str(p), "no such folder", "check the path"))
        return rep
    if not _check_manifest(p, rep, repair):
        return rep
    lock_fd = None
    if repair:  # repairs of the item table happen under the writer's lock, like any write
        try:
            lock_fd = acquire_lock(p, wait)
        except StoreError as exc:
            rep.problems.append(Problem(_file_of(str(exc), p), _what_of(str(exc), p), "fix the cause and rerun"))
            return rep
    try:
        sound = _check_db(p, rep, repair) and _check_rows(p, rep, repair)
    finally:
        if lock_fd is not None:
            release_lock(lock_fd)
    if not sound:
        return rep
    try:
        st = Store.open(p, mode="a" if repair else "r", wait=wait)
    except StoreCorruptError as exc:
        if not (repair and _repair_counts(p, rep, str(exc))):
            rep.problems.append(Problem(_file_of(str(exc), p), _what_of(str(exc), p), "no automatic repair: restore "
                                        "the store from a backup, or re-embed into a new store"))
            return rep
        st = Store.open(p, mode="a", wait=wait)
    except StoreError as exc:
        rep.problems.append(Problem(str(p), str(exc), "fix the cause and rerun"))
        return rep
    with st:
        _note_paths(st, rep)
        say("checking shard checksums")
        damaged = _check_segments(st, rep)
        _check_values(st, rep)
        if damaged and repair:
            _repair_items(st, damaged, rep, embedder, say)
    return rep


# ---- steps -------------------------------------------------------------------------------------


def _check_manifest(p: Path, rep: VerifyReport, repair: bool) -> bool:
    """The manifest reads, validates and equals its intact copy in items.sqlite, or is restored from that
    copy (or the damaged copy is rewritten from a sound manifest); False when verification must stop."""
    mpath = p / MANIFEST
    copy, intact = _manifest_copy(p)
    msg = ""
    try:
        m, _ = read_manifest(p)
    except StoreError as exc:
        m, msg = None, str(exc)
        if not mpath.exists() and not (p / DB).exists():
            rep.problems.append(Problem(str(p), "not an embedkit store (no manifest.json, no items.sqlite)",
                                        "check the path"))
            return False
    if m is not None:
        if copy is None:
            return True
        if not intact:
            prob = Problem(str(p / DB), "the manifest copy fails its checksum (damaged)",
                           f"rewrite it from the sound manifest.json: embedkit store verify {p} --repair")
            rep.problems.append(prob)
            if repair:
                _write_copy(p, mpath.read_text(encoding="utf-8"))
                prob.repaired = True
            return True
        if json.loads(copy) == m:
            return True
        msg = f"{mpath}: differs from the copy kept in {DB} at the last write (edited or damaged)"
    good = None
    if copy is not None and intact:
        try:
            parse_manifest_text(copy, p / DB)
            good = copy
        except StoreError:
            good = None
    prob = Problem(str(mpath), _what_of(msg, p) if mpath.exists() else "missing",
                   f"restore it from the copy in {DB}: embedkit store verify {p} --repair" if good else
                   "no intact copy to restore it from: restore the store from a backup")
    rep.problems.append(prob)
    if good is None or not repair:
        return False
    write_text(mpath, good)
    prob.repaired = True
    return True


def _manifest_copy(p: Path) -> tuple[str | None, bool]:
    try:
        conn = connect(p / DB, readonly=True)
    except StoreError:
        return None, False
    try:
        return read_manifest_copy(conn)
    except StoreError:
        return None, False
    finally:
        conn.close()


def _write_copy(p: Path, text: str) -> None:
    conn = connect(p / DB, readonly=False)
    try:
        conn.execute("BEGIN IMMEDIATE")
        write_manifest_copy(conn, text)
        conn.commit()
    finally:
        conn.close()


def _integrity(conn: Conn) -> list[str]:
    """SQLite's full integrity check (b-trees, and every index against its table): ``["ok"]`` when sound."""
    try:
        out = [" ".join(str(r[0]).replace("*** in database main ***", "").split()) for r in
               conn.fetchall("PRAGMA integrity_check")]
        return [x for x in out if x] or ["ok"]
    except StoreError as exc:
        return [str(exc)]


def _check_db(p: Path, rep: VerifyReport, repair: bool) -> bool:
    """SQLite's integrity check; with ``repair``, damaged indexes are rebuilt from the table (REINDEX)."""
    db = p / DB
    try:
        conn = connect(db, readonly=True)
    except StoreError as exc:
        rep.problems.append(Problem(str(db), _what_of(str(exc), p), "it cannot be rebuilt from the shards: restore it "
                                    "from a backup, or re-embed into a new store"))
        return False
    try:
        res = _integrity(conn)
        prob = None
        if res != ["ok"]:
            prob = Problem(str(db), f"SQLite integrity check failed ({'; '.join(res[:3])})",
                           f"if only an index is damaged it is rebuilt from the table: embedkit store verify {p} "
                           "--repair; else restore it from a backup, or re-embed into a new store")
            rep.problems.append(prob)
            if repair:
                conn.close()
                conn = connect(db, readonly=False)
                try:
                    conn.execute("BEGIN IMMEDIATE")
                    conn.execute("REINDEX")
                    conn.commit()
                except StoreError:
                    conn.rollback()
                if _integrity(conn) == ["ok"]:
                    prob.problem = f"damaged index ({'; '.join(res[:2])})"
                    prob.repair = "indexes rebuilt from the table (REINDEX)"
                    prob.repaired = True
                else:
                    prob.repair = "the table itself is damaged: restore it from a backup, or re-embed into a new store"
        if prob is not None and not prob.repaired:
            return False
        try:
            rep.items = int(conn.fetchone("SELECT COUNT(*) FROM items NOT INDEXED")[0])
        except StoreError as exc:
            rep.problems.append(Problem(str(db), _what_of(str(exc), p), "restore it from a backup"))
            return False
    finally:
        conn.close()
    return True


def _check_rows(p: Path, rep: VerifyReport, repair: bool) -> bool:
    """Every item row against its checksum, their number against the meta table's ``n_items``. With
    ``repair``: damaged rows are marked failed, the count is set from the (sound) table, unknown meta keys
    are dropped; a store of embedkit 0.1 (no checksums) is sealed later by the writer. False = stop here."""
    db = p / DB
    conn = connect(db, readonly=True)
    try:
        has_crc = has_crc_column(conn)
        rows = conn.fetchall(f"SELECT {', '.join(ITEM_COLUMNS)}{', crc' if has_crc else ''} FROM items NOT INDEXED "
                             "ORDER BY id")
        meta = dict(conn.fetchall("SELECT key, value FROM meta NOT INDEXED"))
        unknown = [k for k in meta if k not in META_KEYS]
        if unknown:
            prob = Problem(str(db), f"the meta table holds an unknown key {unknown[0]!r:.30} (damaged)",
                           f"drop it and recount: embedkit store verify {p} --repair")
            rep.problems.append(prob)
            if repair:
                conn = _writable(conn)
                conn.execute("BEGIN IMMEDIATE")
                for k in unknown:
                    conn.execute("DELETE FROM meta WHERE key = ?", (k,))
                conn.commit()
                prob.repaired = True
        if not has_crc:
            rep.notes.append(f"{len(rows)} item rows were written by embedkit 0.1 and carry no checksum"
                             + (" (sealed now)" if repair else f" (embedkit store verify {p} --repair seals them)"))
            return True
        bad = []
        for r in rows:
            try:
                check_row(db, r, sealed=True)
            except StoreCorruptError as exc:
                bad.append((r, str(exc).split(": ", 1)[1].split(" (damaged", 1)[0]))
        if bad:
            prob = Problem(str(db), f"{len(bad)} item row(s) damaged: {bad[0][1]}"
                           + (f" (and {len(bad) - 1} more)" if len(bad) > 1 else ""),
                           f"mark them failed (their fields cannot be trusted; the next embed of their folder adds "
                           f"the files again): embedkit store verify {p} --repair")
            rep.problems.append(prob)
            rep.damaged_rows = sorted({int(r[0]) for r, _ in bad if isinstance(r[0], int)})
            if repair:
                conn = _writable(conn)
                conn.execute("BEGIN IMMEDIATE")
                for r, _ in bad:
                    _mark_row_failed(conn, r)
                conn.commit()
                prob.repaired = True
        n = meta.get("n_items")
        if n != len(rows):
            lost = isinstance(n, int) and not isinstance(n, bool) and n > len(rows)
            what = (f"the item table holds {len(rows)} rows but the meta table counts {n!r:.20}"
                    + (f": {n - len(rows)} row(s) lost to damage" if lost else " (damaged count)"))
            prob = Problem(str(db), what, ("recount (the lost files are added again by the next embed of their "
                                           f"folders): embedkit store verify {p} --repair") if lost else
                           f"recount: embedkit store verify {p} --repair")
            rep.problems.append(prob)
            if repair:
                conn = _writable(conn)
                conn.execute("BEGIN IMMEDIATE")
                conn.execute("INSERT OR REPLACE INTO meta (key, value) VALUES ('n_items', ?)", (len(rows),))
                conn.commit()
                prob.repaired = True
    except StoreError as exc:
        rep.problems.append(Problem(str(db), _what_of(str(exc), p), "restore it from a backup, or re-embed into a "
                                    "new store"))
        return False
    finally:
        conn.close()
    return all(pr.repaired for pr in rep.problems)


def _writable(conn: Conn) -> Conn:
    """A writing connection in place of a read-only one (repairs only: plain verify never needs write access)."""
    conn.close()
    return connect(conn.db, readonly=False)


def _mark_row_failed(conn: Conn, r: tuple) -> None:
    """Rewrite a damaged row as a failed item (no vector, no stat: retried by the next embed), resealed."""
    path = r[1] if isinstance(r[1], (str, bytes)) else f"damaged-item-{r[0]}"
    v = normalise_row({"id": r[0], "path": path, "status": "failed", "updated": time.time(),
                       "error": "the stored item row was damaged (failed its checksum); embed the file again"})
    cols = [c for c in ITEM_COLUMNS if c != "id"]
    conn.execute(f"UPDATE items SET {', '.join(f'{c} = ?' for c in cols)}, crc = ? WHERE rowid = ?",
                 [*(v[c] for c in cols), row_crc([v[c] for c in ITEM_COLUMNS]), r[0]])


def _note_paths(st: Store, rep: VerifyReport) -> None:
    """Paths that are not valid UTF-8 are legal file names (stored as their raw bytes): say so, with an example."""
    odd = [it for it in st.items() if isinstance(it.path, str) and not is_utf8(it.path)]
    if odd:
        shown = odd[0].path.encode("utf-8", "surrogateescape").decode("ascii", "backslashreplace")
        rep.notes.append(f"{len(odd)} item path(s) are not valid UTF-8 (e.g. id {odd[0].id}: {shown}): legal file "
                         "names, kept as their raw bytes (parquet export refuses them)")


def _repair_counts(p: Path, rep: VerifyReport, msg: str) -> bool:
    """Restore lowered meta row counts from the checksummed segments and the items (shards must hold them)."""
    if "commits" not in msg:
        return False
    conn = connect(p / DB, readonly=False)
    try:
        need = {"n_rows": 0, "n_patch_rows": 0}
        r = conn.fetchone("SELECT MAX(row) + 1, MAX(patch_row + n_patches) FROM items")
        need["n_rows"] = int(r[0] or 0)
        need["n_patch_rows"] = int(r[1] or 0)
        if conn.has_table("segments"):
            for kind, stop in conn.fetchall("SELECT kind, MAX(stop) FROM segments GROUP BY kind"):
                key = "n_rows" if kind in ("vec", "tag") else "n_patch_rows"
                need[key] = max(need[key], int(stop))
        have = dict(conn.fetchall("SELECT key, value FROM meta"))
        changed = {k: v for k, v in need.items() if not isinstance(have.get(k), int) or have[k] < v}
        if not changed:
            return False
        conn.execute("BEGIN IMMEDIATE")
        for k, v in changed.items():
            conn.execute("UPDATE meta SET value = ? WHERE key = ?", (v, k))
        conn.commit()
    finally:
        conn.close()
    try:
        Store.open(p).close()
    except StoreError:
        return False
    rep.problems.append(Problem(str(p / DB), _what_of(msg, p), "row counts restored from the items and checksums",
                                repaired=True))
    return True


def _check_segments(st: Store, rep: VerifyReport) -> dict[str, list[tuple[int, int]]]:
    """Hash every committed segment; returns ``{kind: [(start, stop) of damaged segments]}``."""
    damaged: dict[str, list[tuple[int, int]]] = {}
    for s in st._shards():
        limit = st._n_patch_rows if s.prefix in ("pvec", "pstart") else st._n_rows
        for i, (a, b, _) in enumerate(s.segments):
            rep.segments += 1
            rep.checked_rows += (b - a) if s.prefix == "vec" else 0
            if not s.segment_ok(i):
                damaged.setdefault(s.prefix, []).append((a, b))
        if s.prefix == "vec":
            rep.unchecked_rows = s.unchecked_rows(limit)
    if rep.unchecked_rows:
        rep.notes.append(f"{rep.unchecked_rows} vector rows were written by embedkit 0.1 and carry no checksum "
                         "(their values were checked for NaN/inf only)")
    used = _used_ranges(st)
    for kind, ranges in damaged.items():
        for a, b in ranges:
            users = [iid for iid, lo, hi in used[kind] if lo < b and hi > a]
            files = ", ".join(st._shard(kind).files_of(a, b))
            if users:
                rep.damaged_items += users
                rep.problems.append(Problem(
                    str(st.path / "shards" / files.split(", ")[0]),
                    f"rows {a}..{b - 1} fail their checksum; {len(users)} item(s) use them (e.g. id {users[0]})",
                    f"re-embed them from their audio: embedkit store verify {st.path} --repair"))
            else:
                rep.notes.append(f"{st.path / 'shards'}/{files}: rows {a}..{b - 1} are damaged but no item uses them "
                                 "(left by an earlier repair; harmless)")
    rep.damaged_items = sorted(set(rep.damaged_items))
    return damaged


def _used_ranges(st: Store) -> dict[str, list[tuple[int, int, int]]]:
    rows = [(it.id, it.row, it.patch_row, it.n_patches) for it in st.items() if it.row is not None]
    vec = [(int(i), int(r), int(r) + 1) for i, r, _, _ in rows]
    pat = [(int(i), int(pr), int(pr) + int(n or 0)) for i, _, pr, n in rows if pr is not None]
    return {"vec": vec, "tag": vec, "pvec": pat, "pstart": pat}


def _check_values(st: Store, rep: VerifyReport) -> None:
    """Referenced vectors must be finite (catches damage in rows without checksums)."""
    rows = np.array(sorted({r for _, r, _ in _used_ranges(st)["vec"]}), np.int64)
    bad: list[int] = []
    for i in range(0, rows.size, 8192):
        chunk = rows[i : i + 8192]
        data = st._vec.read(chunk, st._n_rows, verify=False)
        bad += chunk[~np.all(np.isfinite(data), axis=1)].tolist()
    if bad:
        users = [iid for iid, r, _ in _used_ranges(st)["vec"] if r in set(bad)]
        rep.damaged_items = sorted(set(rep.damaged_items) | set(users))
        rep.problems.append(Problem(str(st.path / "shards"), f"{len(bad)} stored vectors hold NaN or infinite values "
                                    f"(e.g. row {bad[0]})", f"re-embed them: embedkit store verify {st.path} --repair"))


def _repair_items(st: Store, damaged: dict[str, list[tuple[int, int]]], rep: VerifyReport, embedder: Any,
                  say: Callable[[str], None]) -> None:
    """Re-embed the damaged items whose files are there unchanged; mark the others failed."""
    items = [st.get(int(i)) for i in rep.damaged_items]
    items = [it for it in items if it is not None]
    by_row: dict[int, list[Any]] = {}
    for it in items:
        by_row.setdefault(int(it.row), []).append(it)
    todo, lost = [], []
    for group in by_row.values():
        src = next((it for it in group if os.path.exists(it.path) and st.is_current(it.path, item=it)), None)
        if src is None:
            lost += group
        else:
            todo.append((src, [it for it in group if it.id != src.id]))
    if todo:
        emb = embedder if embedder is not None else st.spec.embedder()
        say(f"re-embedding {len(todo)} damaged item(s)")
        spec = st.spec
        results = emb.embed_files([src.path for src, _ in todo], layers=spec.embed_layers(),
                                  aggregate=spec.aggregation, excerpt_s=spec.excerpt_s, return_patches=st.has_patches)
        with st.transaction():
            for (src, aliases), res in zip(todo, results):
                if getattr(res, "vector", None) is None or not np.all(np.isfinite(res.vector)):
                    lost += [src, *aliases]
                    continue
                st.add_embedded(src.path, res.vector, size=src.size, mtime=src.mtime, sha256=src.sha256,
                                duration_s=src.duration_s, samplerate=src.samplerate,
                                patch_vectors=res.patch_vectors if st.has_patches else None,
                                patch_start_s=res.patch_start_s if st.has_patches else None,
                                tags=res.tags if st.has_tags else None, padded=src.padded)
                new = st.get(src.id)
                for a in aliases:
                    st.add_alias(a.path, new, size=a.size, mtime=a.mtime)
                rep.reembedded += 1 + len(aliases)
    if lost:
        with st.transaction():
            for it in lost:
                st.add_failed(it.path, f"{it.path}: stored vector was damaged and the file is gone or changed; "
                              "embed it again", size=it.size, mtime=it.mtime)
        rep.marked_failed = len(lost)
    for prob in rep.problems:
        if "fail their checksum" in prob.problem or "NaN or infinite" in prob.problem:
            prob.repaired = True
            if lost:
                prob.repair += f" ({rep.reembedded} re-embedded, {len(lost)} marked failed: files gone or changed)"


def _file_of(msg: str, p: Path) -> str:
    head = msg.split(": ", 1)[0]
    return head if head.startswith(str(p)) else str(p)


def _what_of(msg: str, p: Path) -> str:
    head, _, rest = msg.partition(": ")
    text = rest if head.startswith(str(p)) and rest else msg
    return text.split("; run: embedkit store verify")[0]
