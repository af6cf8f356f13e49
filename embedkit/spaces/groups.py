"""Read and validate a groups file: which stored items belong together (album, artist, playlist, ...).

CSV or TSV with a header naming an item column (``item``, ``id``, ``path``, ``file``, ``track``) and a
group column (``group``, ``album``, ``artist``, ``playlist``, ``label``, ``set``, ``class``), or
without a header two columns ``item,group``. Items are store ids or stored paths (relative paths are
read against the groups file's folder). Every problem is one line naming the file and the lines.
"""
from __future__ import annotations

import csv
import io
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .space import SpaceError

ITEM_COLS = ("item", "item_id", "id", "path", "file", "track", "track_id", "song")
GROUP_COLS = ("group", "album", "artist", "playlist", "label", "set", "class", "cluster", "tag")


class GroupsError(SpaceError):
    """A groups file is unreadable or cannot train a space (unknown items, one group only, ...)."""


@dataclass
class Groups:
    """Resolved groups: ``ids`` ``(n,) int64`` store ids (ascending), ``labels`` ``(n,)`` group names;
    ``skipped``: rows left out with ``--skip-unknown`` (``{"line", "item", "reason"}``)."""

    ids: np.ndarray
    labels: np.ndarray
    source: str
    column: str = "group"
    skipped: list[dict] = field(default_factory=list)

    @property
    def n_groups(self) -> int:
        return int(np.unique(self.labels).size)

    def sizes(self) -> dict[str, int]:
        g, c = np.unique(self.labels, return_counts=True)
        return {str(a): int(b) for a, b in zip(g, c)}


def _lines(lines: list[int], limit: int = 5) -> str:
    """``"line 3"`` / ``"lines 3, 4, 9 (+2 more)"``."""
    head = ", ".join(str(n) for n in lines[:limit])
    return ("line " if len(lines) == 1 else "lines ") + head + (f" (+{len(lines) - limit} more)" if len(lines) > limit else "")


def read_groups(path: str | os.PathLike, store: Any = None, *, skip_unknown: bool = False,
                resolve: Callable[[str], tuple[int | None, str | None]] | None = None,
                min_groups: int = 2, column: str | None = None, allow_empty: bool = False) -> Groups:
    """Read ``path`` and resolve its items against ``store`` (see the module doc).

    Raises `GroupsError` (one line naming the file and lines) for: an unreadable or empty file, a
    header without item/group columns, empty group names, an item listed in two groups, items not
    embedded in the store (unless ``skip_unknown``), fewer than ``min_groups`` groups.
    """
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise GroupsError(f"{p}: cannot read groups file ({getattr(exc, 'strerror', None) or exc})") from None
    dialect = "excel-tab" if "\t" in text.split("\n", 1)[0] else "excel"
    rows = [(n, r) for n, r in enumerate(csv.reader(io.StringIO(text), dialect=dialect), start=1)
            if r and any(c.strip() for c in r) and not r[0].lstrip().startswith("#")]
    if not rows:
        raise GroupsError(f"{p}: groups file is empty; expected lines 'item,group'")
    header = [c.strip().lower() for c in rows[0][1]]
    icol = next((i for i, h in enumerate(header) if h in ITEM_COLS), None)
    gcol = next((i for i, h in enumerate(header) if h in GROUP_COLS), None)
    if column is not None:  # a named group column (one per condition of a conditioned space)
        if icol is None or column.strip().lower() not in header:
            raise GroupsError(f"{p}: line 1: header {','.join(header)} has no item column or no column {column!r}")
        gcol = header.index(column.strip().lower())
    if icol is not None or gcol is not None:
        if icol is None or gcol is None:
            missing = "item (item/id/path)" if icol is None else "group (group/album/artist/playlist/label)"
            raise GroupsError(f"{p}: line 1: header {','.join(header)} has no {missing} column")
        column = header[gcol]
        body = rows[1:]
    else:
        if len(rows[0][1]) < 2:
            raise GroupsError(f"{p}: line {rows[0][0]}: expected two columns 'item,group' (or a header naming them)")
        icol, gcol, column, body = 0, 1, "group", rows
    resolve = resolve or _resolver(store, p.parent)
    where: dict[int, tuple[str, int]] = {}
    ids, labels, unknown, empty, twice = [], [], [], [], []
    for n, r in body:
        raw = r[icol].strip() if icol < len(r) else ""
        label = r[gcol].strip() if gcol < len(r) else ""
        if not label:
            if not allow_empty:
                empty.append(n)
            continue
        item_id, reason = resolve(raw) if raw else (None, "empty item")
        if item_id is None:
            unknown.append({"line": n, "item": raw, "reason": reason})
            continue
        if item_id in where:
            first_label, first_line = where[item_id]
            if first_label != label:
                twice.append((n, raw, first_label, first_line, label))
            continue
        where[item_id] = (label, n)
        ids.append(item_id)
        labels.append(label)
    if empty:
        raise GroupsError(f"{p}: {_lines(empty)}: empty group name; give every item a group")
    if twice:
        n, raw, g1, l1, g2 = twice[0]
        raise GroupsError(f"{p}: line {n}: item {raw!r} is in group {g2!r} and (line {l1}) in {g1!r}; an item may "
                          f"belong to one group ({len(twice)} such lines)")
    if unknown and not skip_unknown:
        u = unknown[0]
        raise GroupsError(f"{p}: {_lines([x['line'] for x in unknown])}: {len(unknown)} item(s) not embedded in "
                          f"the store (e.g. {u['item']!r}: {u['reason']}); fix them or pass --skip-unknown")
    if not ids:
        raise GroupsError(f"{p}: no item of the file is embedded in the store")
    order = np.argsort(np.asarray(ids, np.int64), kind="stable")
    g = Groups(np.asarray(ids, np.int64)[order], np.asarray(labels, dtype=object)[order].astype(str), str(p), column, unknown)
    if g.n_groups < min_groups:
        raise GroupsError(f"{p}: only {g.n_groups} group ({', '.join(g.sizes())}); similarity needs at least "
                          f"{min_groups} groups (items of other groups are the negatives)")
    return g


def _resolver(store: Any, base: Path) -> Callable[[str], tuple[int | None, str | None]]:
    def resolve(raw: str) -> tuple[int | None, str | None]:
        if store is None:
            try:
                return int(raw), None
            except ValueError:
                return None, "not an item id (no store to look paths up in)"
        item = store.get(raw)
        if item is None and not os.path.isabs(raw):
            item = store.get(str(base / raw))
        if item is None and raw.lstrip("-").isdigit():
            item = store.get(int(raw))
        if item is None:
            return None, "not in the store"
        if item.status != "ok":
            return None, f"in the store but not embedded (status {item.status})"
        return int(item.id), None

    return resolve
