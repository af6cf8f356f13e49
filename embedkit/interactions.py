"""Interaction logs (listening histories): read a CSV of (user, item[, plays | rating]) rows, resolve
items against a store (`Store.resolve`: ids, stored paths, or files with the same content), merge
duplicate pairs, and report the rows whose items are unknown.
"""
from __future__ import annotations

import csv
import io
import math
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import numpy as np

from .errors import EmbedkitError

_USER_COLS = ("user", "user_id", "userid", "listener", "uid")
_ITEM_COLS = ("item", "item_id", "itemid", "id", "track", "track_id", "song", "path", "file")
_PLAY_COLS = ("plays", "play_count", "playcount", "count", "n", "listens", "weight")
_RATING_COLS = ("rating", "ratings", "score", "stars")


class RecommendError(EmbedkitError):
    """Bad history / interaction log, unknown user, or nothing to recommend from."""



# ---- interactions --------------------------------------------------------------------------------


@dataclass
class Interactions:
    """An interaction log resolved against a store: one row per (user, item) pair, duplicates merged.

    ``user`` ``(n,)`` str; ``item`` ``(n,) int64`` store ids; ``value`` ``(n,) float64`` play counts
    (``kind`` "plays"), ratings ("ratings") or 1 ("binary"). ``unknown``: rows whose item is not an
    embedded store item: ``{"line", "user", "item", "reason"}``.
    """

    user: np.ndarray
    item: np.ndarray
    value: np.ndarray
    kind: str = "binary"
    unknown: list[dict] = field(default_factory=list)
    source: str | None = None

    def __len__(self) -> int:
        return int(self.item.size)

    def users(self) -> list[str]:
        return sorted(set(self.user.tolist()))

    def items(self) -> np.ndarray:
        """Ids of the items with at least one interaction (warm items), ascending."""
        return np.unique(self.item)

    def of(self, user: str) -> tuple[np.ndarray, np.ndarray]:
        """``(items, values)`` of one user."""
        m = self.user == user
        return self.item[m], self.value[m]

    def strength(self) -> np.ndarray:
        """Non-negative preference strength per row: log1p(plays), rating above the user's mean, or 1."""
        cached = self.__dict__.get("_strength")
        if cached is None or cached.size != self.value.size:
            cached = self.__dict__["_strength"] = self._strength()
        return cached

    def _strength(self) -> np.ndarray:
        if self.kind == "plays":
            return np.log1p(np.maximum(self.value, 0.0))
        if self.kind == "ratings":
            out = np.zeros_like(self.value)
            for u in np.unique(self.user):
                m = self.user == u
                v = self.value[m]
                out[m] = np.maximum(v - v.mean(), 0.0) if np.ptp(v) > 0 else 1.0
            return out
        return np.ones_like(self.value)

    def subset(self, mask: np.ndarray) -> Interactions:
        """The rows where ``mask`` is True (strengths are recomputed on them: no leak of other rows' ratings)."""
        return Interactions(self.user[mask], self.item[mask], self.value[mask], self.kind, [], self.source)

    @classmethod
    def from_arrays(cls, users: Sequence[Any], items: Sequence[int], values: Sequence[float] | None = None, *,
                    kind: str | None = None) -> Interactions:
        """Build from parallel arrays (duplicate (user, item) pairs: plays summed, ratings averaged)."""
        u = np.asarray([str(x) for x in users], dtype=object)
        i = np.asarray(items, dtype=np.int64)
        v = np.ones(i.size) if values is None else np.asarray(values, dtype=np.float64)
        kind = kind or ("binary" if values is None else "plays")
        return _merge(u, i, v, kind)


def _merge(u: np.ndarray, i: np.ndarray, v: np.ndarray, kind: str, unknown: list | None = None,
           source: str | None = None) -> Interactions:
    if u.size == 0:
        return Interactions(u, i, v, kind, unknown or [], source)
    keys = {}
    for n, key in enumerate(zip(u.tolist(), i.tolist())):
        keys.setdefault(key, []).append(n)
    uu = np.array([k[0] for k in keys], dtype=object)
    ii = np.array([k[1] for k in keys], dtype=np.int64)
    if kind == "ratings":
        vv = np.array([v[idx].mean() for idx in keys.values()])
    elif kind == "binary":
        vv = np.ones(len(keys))
    else:
        vv = np.array([v[idx].sum() for idx in keys.values()])
    return Interactions(uu, ii, vv, kind, unknown or [], source)


def load_interactions(
    source: str | os.PathLike | IO[str],
    store: Any = None,
    *,
    resolve: Callable[[str], tuple[int | None, str | None]] | None = None,
    default_user: str = "user",
) -> Interactions:
    """Read a history / interaction log (CSV or TSV) and resolve its items to store ids.

    Columns, by header name: user (``user``, ``user_id``…, optional), item (``item``, ``id``, ``track``,
    ``path``…: a store id or a stored path), and optionally play counts (``plays``, ``count``…) or
    ratings (``rating``, ``stars``…). Without a header: ``item`` | ``user,item`` | ``user,item,plays``.
    Rows whose item is not an embedded store item are kept in ``unknown`` with the reason.
    """
    name = getattr(source, "name", None) if not isinstance(source, (str, os.PathLike)) else os.fspath(source)
    if isinstance(source, (str, os.PathLike)):
        try:
            text = Path(source).read_text(encoding="utf-8-sig")
        except OSError as exc:
            raise RecommendError(f"{source}: cannot read history ({exc.strerror or exc})") from None
    else:
        text = source.read()
    base = Path(name).parent if name and name != "<stdin>" else Path.cwd()
    resolve = resolve or _store_resolver(store, base)
    rows = [r for r in csv.reader(io.StringIO(text), dialect=_sniff(text)) if r and any(c.strip() for c in r)]
    rows = [r for r in rows if not r[0].lstrip().startswith("#")]
    if not rows:
        raise RecommendError(f"{name}: history is empty")
    header = [c.strip().lower() for c in rows[0]]
    cols = _columns(header)
    if cols is not None:
        body, first_line = rows[1:], 2
    else:
        body, first_line = rows, 1
        width = len(rows[0])
        cols = {1: (None, 0, None, None), 2: (0, 1, None, None)}.get(width, (0, 1, 2, None))
    ucol, icol, pcol, rcol = cols
    kind = "ratings" if rcol is not None else "plays" if pcol is not None else "binary"
    vcol = rcol if rcol is not None else pcol
    users, items, values, unknown = [], [], [], []
    cache: dict[str, tuple[int | None, str | None]] = {}
    for n, r in enumerate(body, start=first_line):
        user = r[ucol].strip() if ucol is not None and ucol < len(r) else default_user
        raw = r[icol].strip() if icol < len(r) else ""
        if vcol is not None:
            try:
                value = float(r[vcol]) if vcol < len(r) and r[vcol].strip() else 1.0
            except ValueError:
                raise RecommendError(f"{name}: line {n}: {kind[:-1]} value {r[vcol]!r} is not a number") from None
            if not math.isfinite(value):
                raise RecommendError(f"{name}: line {n}: {kind[:-1]} value {r[vcol]!r} is not finite")
        else:
            value = 1.0
        if raw not in cache:
            cache[raw] = resolve(raw) if raw else (None, "empty item")
        item_id, reason = cache[raw]
        if item_id is None:
            unknown.append({"line": n, "user": user, "item": raw, "reason": reason})
            continue
        users.append(user)
        items.append(item_id)
        values.append(value)
    out = _merge(np.asarray(users, dtype=object), np.asarray(items, dtype=np.int64), np.asarray(values, dtype=np.float64),
                 kind, unknown, name)
    return out


def _sniff(text: str) -> type[csv.Dialect] | str:
    first = text.split("\n", 1)[0]
    return "excel-tab" if "\t" in first else "excel"


def _columns(header: list[str]) -> tuple[int | None, int, int | None, int | None] | None:
    def find(names: Sequence[str]) -> int | None:
        for i, h in enumerate(header):
            if h in names:
                return i
        return None

    icol = find(_ITEM_COLS)
    if icol is None:
        return None
    return find(_USER_COLS), icol, find(_PLAY_COLS), find(_RATING_COLS)


def _store_resolver(store: Any, base: Path) -> Callable[[str], tuple[int | None, str | None]]:
    def resolve(raw: str) -> tuple[int | None, str | None]:
        if store is None:
            try:
                return int(raw), None
            except ValueError:
                return None, "not an item id (no store to look paths up in)"
        find = getattr(store, "resolve", None) or store.get  # the store's one rule for "which item is this key"
        item = find(raw)
        if item is None and not os.path.isabs(raw):
            item = find(str(base / raw))
        if item is None and raw.lstrip("-").isdigit():
            item = find(int(raw))
        if item is None:
            return None, f"not in the store {store.path}"
        if item.status != "ok":
            return None, f"in the store but not embedded (status {item.status})"
        return int(item.id), None

    return resolve
