"""Append-only row arrays split into fixed-size shard files ``STORE/shards/{prefix}-{k:05d}.{ext}``,
with a sha256 per committed segment (the rows one commit appended), hashed while writing (no re-read)
and checked lazily the first time a reader touches a segment.

Shard kinds: ``vec`` (track vectors, float32), ``tag`` (tag probabilities, float32, same rows as vec),
``pvec`` (per-patch vectors, float32), ``pstart`` (patch start times, float64, same rows as pvec).
"""
from __future__ import annotations

import contextlib
import hashlib
import os
from pathlib import Path
from typing import Any

import numpy as np

from ..sidecar import fsync_dir, os_error_text
from .errors import StoreCorruptError, StoreError, verify_hint


class Shards:
    """One kind of row array. Rows ``r`` live in shard ``r // rows_per_shard`` at row ``r % rows_per_shard``."""

    def __init__(self, root: Path, prefix: str, width: int, dtype: str, rows_per_shard: int) -> None:
        self.root, self.prefix, self.width = root, prefix, int(width)
        self.dtype = np.dtype(dtype)
        self.ext = "f32" if self.dtype == np.float32 else "f64"
        self.rows_per_shard = int(rows_per_shard)
        self.row_bytes = self.width * self.dtype.itemsize
        self._dirty: dict[int, Any] = {}  # shard index -> open file (writer only)
        self._created: list[Path] = []  # shard files created by the open transaction
        # segment checksums: starts, stops (sorted), sha256 hex, verified flags
        self._seg_start = np.zeros(0, np.int64)
        self._seg_stop = np.zeros(0, np.int64)
        self._seg_sha: list[str] = []
        self._seg_ok = np.zeros(0, bool)
        # the segment being written
        self._hash: Any = None
        self._hash_start = 0
        self._hash_next = 0

    @property
    def store(self) -> Path:
        return self.root.parent

    def file(self, k: int) -> Path:
        return self.root / f"{self.prefix}-{k:05d}.{self.ext}"

    def n_shards(self, n_rows: int) -> int:
        return (n_rows + self.rows_per_shard - 1) // self.rows_per_shard

    def need_bytes(self, k: int, n_rows: int) -> int:
        return min(self.rows_per_shard, n_rows - k * self.rows_per_shard) * self.row_bytes

    # ---- consistency -------------------------------------------------------------------------

    def check(self, n_rows: int) -> None:
        """Raise `StoreCorruptError` if a shard holds fewer bytes than the committed rows need."""
        for k in range(self.n_shards(n_rows)):
            need = self.need_bytes(k, n_rows)
            f = self.file(k)
            try:
                have = f.stat().st_size if f.exists() else -1
            except OSError as exc:
                raise StoreError(os_error_text(f, exc, action="cannot read")) from None
            if have < need:
                raise StoreCorruptError(
                    f"{self.store}: shard {f.name} is {'missing' if have < 0 else f'{have} bytes'}, "
                    f"the item table needs {need} bytes (store damaged); {verify_hint(self.store)}"
                )

    def trim(self, n_rows: int) -> None:
        """Drop bytes past the committed ``n_rows`` (left by a crashed writer) and stray later shards.

        Only call after the whole store was validated (`Store._validate`)."""
        last = self.n_shards(n_rows)
        try:
            for k in range(last):
                need = self.need_bytes(k, n_rows)
                f = self.file(k)
                if f.exists() and f.stat().st_size > need:
                    os.truncate(f, need)
            k = last
            while self.file(k).exists():
                self.file(k).unlink()
                k += 1
        except OSError as exc:
            raise StoreError(os_error_text(self.file(k), exc)) from None

    # ---- segment checksums -------------------------------------------------------------------

    def set_segments(self, segs: list[tuple[int, int, str]]) -> None:
        """Known committed segments ``[(start, stop, sha256)]`` (keeps what was verified already)."""
        segs = sorted(segs)
        old = {(int(a), int(b)): ok for a, b, ok in zip(self._seg_start, self._seg_stop, self._seg_ok)}
        self._seg_start = np.array([s[0] for s in segs], np.int64)
        self._seg_stop = np.array([s[1] for s in segs], np.int64)
        self._seg_sha = [s[2] for s in segs]
        self._seg_ok = np.array([old.get((s[0], s[1]), False) for s in segs], bool)

    @property
    def segments(self) -> list[tuple[int, int, str]]:
        return [(int(a), int(b), h) for a, b, h in zip(self._seg_start, self._seg_stop, self._seg_sha)]

    def read_bytes(self, start: int, stop: int) -> bytes:
        """Raw bytes of rows ``[start, stop)`` across shard files."""
        out = bytearray()
        r = start
        while r < stop:
            k, local = divmod(r, self.rows_per_shard)
            n = min(self.rows_per_shard - local, stop - r)
            with open(self.file(k), "rb") as f:
                f.seek(local * self.row_bytes)
                out += f.read(n * self.row_bytes)
            r += n
        return bytes(out)

    def segment_ok(self, i: int) -> bool:
        """Hash segment ``i`` and compare with its stored checksum (remembered when good)."""
        if self._seg_ok[i]:
            return True
        a, b = int(self._seg_start[i]), int(self._seg_stop[i])
        try:
            data = self.read_bytes(a, b)
        except OSError:
            return False
        ok = len(data) == (b - a) * self.row_bytes and hashlib.sha256(data).hexdigest() == self._seg_sha[i]
        self._seg_ok[i] = ok
        return ok

    def files_of(self, start: int, stop: int) -> list[str]:
        return [self.file(k).name for k in range(start // self.rows_per_shard, (stop - 1) // self.rows_per_shard + 1)]

    def check_rows(self, rows: np.ndarray) -> None:
        """Verify (once) the checksum of every segment that holds one of ``rows``; raise naming the file."""
        if self._seg_start.size == 0 or rows.size == 0:
            return
        idx = np.searchsorted(self._seg_stop, rows, side="right")
        inside = idx < self._seg_start.size
        inside[inside] &= self._seg_start[idx[inside]] <= rows[inside]
        for i in np.unique(idx[inside]):
            if not self._seg_ok[i] and not self.segment_ok(int(i)):
                a, b = int(self._seg_start[i]), int(self._seg_stop[i])
                raise StoreCorruptError(
                    f"{self.root / self.files_of(a, b)[0]}: rows {a}..{b - 1} fail their checksum (damaged shard); "
                    f"{verify_hint(self.store)}"
                )

    def unchecked_rows(self, n_rows: int) -> int:
        """How many of the committed rows no segment covers (rows written by embedkit 0.1)."""
        covered = int(np.sum(np.minimum(self._seg_stop, n_rows) - np.minimum(self._seg_start, n_rows)))
        return n_rows - covered

    # ---- writing -----------------------------------------------------------------------------

    def begin(self, first_row: int) -> None:
        """Start a new segment at ``first_row`` (the committed row count)."""
        self._hash = hashlib.sha256()
        self._hash_start = self._hash_next = int(first_row)

    def write(self, first_row: int, data: np.ndarray) -> None:
        """Write rows ``first_row ..`` (not yet durable: call `sync`)."""
        data = np.ascontiguousarray(data, dtype=self.dtype.newbyteorder("<")).reshape(-1, self.width)
        if self._hash is not None:
            if first_row != self._hash_next:
                self._hash = None  # not an append: the segment is hashed from the file at commit
            else:
                self._hash.update(data.tobytes())
                self._hash_next += data.shape[0]
        r, i = first_row, 0
        while i < data.shape[0]:
            k, local = divmod(r, self.rows_per_shard)
            n = min(self.rows_per_shard - local, data.shape[0] - i)
            path = self.file(k)
            try:
                f = self._dirty.get(k)
                if f is None:
                    new = not path.exists()
                    f = open(path, "w+b" if new else "r+b")
                    if new:
                        self._created.append(path)
                    self._dirty[k] = f
                f.seek(local * self.row_bytes)
                f.write(data[i : i + n].tobytes())
            except OSError as exc:
                raise StoreError(os_error_text(path, exc)) from None
            r += n
            i += n

    def segment(self, stop: int) -> tuple[int, int, str] | None:
        """The checksum record of the rows written since `begin` (call before `sync` closes the files)."""
        start = self._hash_start
        if stop <= start:
            return None
        if self._hash is None or self._hash_next != stop:
            for f in self._dirty.values():
                f.flush()
            digest = hashlib.sha256(self.read_bytes(start, stop)).hexdigest()
        else:
            digest = self._hash.hexdigest()
        return (start, stop, digest)

    def sync(self) -> None:
        """fsync and close the files written since the last sync."""
        try:
            for f in self._dirty.values():
                f.flush()
                os.fsync(f.fileno())
            if self._dirty:
                fsync_dir(self.root)
        except OSError as exc:
            raise StoreError(os_error_text(self.root / f"{self.prefix}-*", exc)) from None
        finally:
            for f in self._dirty.values():
                with contextlib.suppress(OSError):
                    f.close()
            self._dirty.clear()
        self._created.clear()

    def committed(self, seg: tuple[int, int, str] | None) -> None:
        """Record a segment committed by this writer as known good."""
        self._hash = None
        if seg is not None:
            self._seg_start = np.append(self._seg_start, seg[0])
            self._seg_stop = np.append(self._seg_stop, seg[1])
            self._seg_sha.append(seg[2])
            self._seg_ok = np.append(self._seg_ok, True)

    def discard(self) -> None:
        """Forget the open transaction: close files, remove shard files it created."""
        for f in self._dirty.values():
            with contextlib.suppress(OSError):
                f.close()
        self._dirty.clear()
        for p in self._created:
            with contextlib.suppress(OSError):
                p.unlink()
        self._created.clear()
        self._hash = None

    # ---- reading -----------------------------------------------------------------------------

    def read(self, rows: np.ndarray, n_rows: int, *, verify: bool = True) -> np.ndarray:
        """Rows ``rows`` (any order, repeats allowed) as a new ``(len(rows), width)`` array; segments
        touched are checksum-verified first (once per process) unless ``verify`` is False."""
        rows = np.asarray(rows, dtype=np.int64).ravel()
        out = np.empty((rows.size, self.width), dtype=self.dtype)
        if rows.size == 0:
            return out
        bad = rows[(rows < 0) | (rows >= n_rows)]
        if bad.size:
            raise StoreCorruptError(f"{self.store}: an item refers to row {int(bad[0])} outside the {n_rows} committed "
                                    f"rows of the {self.prefix} shards; {verify_hint(self.store)}")
        if verify:
            self.check_rows(rows)
        shard_of = rows // self.rows_per_shard
        for k in np.unique(shard_of):
            sel = shard_of == k
            n_in = min(self.rows_per_shard, n_rows - int(k) * self.rows_per_shard)
            try:
                mm = np.memmap(self.file(int(k)), dtype=self.dtype.newbyteorder("<"), mode="r", shape=(n_in, self.width))
            except (OSError, ValueError) as exc:
                raise StoreCorruptError(f"{self.file(int(k))}: unreadable shard ({exc}); {verify_hint(self.store)}") from None
            out[sel] = mm[rows[sel] - int(k) * self.rows_per_shard]
            del mm
        return out

    def disk_bytes(self) -> int:
        return sum(p.stat().st_size for p in self.root.glob(f"{self.prefix}-*.{self.ext}"))
