"""Label files: read a CSV/TSV of (path or id → label, labels or values), validate it, bind it to a store.

Format (header row required; ``#`` lines are comments; ``.tsv`` means tab-separated, otherwise the
delimiter is sniffed among ``,`` ``\\t`` ``;``)::

    path,label,group,split              single-label classification
    path,labels                         multi-label: tags separated by ";" or "|"
    path,arousal,valence                regression: every other column is a numeric target
    id,label                            keys are store ids instead of paths

The key column is the first of ``path``, ``file``, ``filename``, ``id`` found (else the first
column); ``group`` (artist, album, recording: kept on one side of every split) and ``split``
(train/valid/test) columns are optional and can be renamed with ``group=``/``split=``.

Every problem is reported with the file and line: a row with the wrong number of fields, an empty
key or label, a value that is not a number or is NaN, a key given twice with different labels
(identical repeats are dropped with a warning), tags that are not 0/1. Binding to a store reports
labelled items the store does not have (or failed to embed) as a warning, or an error when
``strict`` or when none match.
"""
from __future__ import annotations

import csv
import io
import math
import os
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from .errors import EmbedkitError

KEY_COLUMNS = ("path", "file", "filename", "filepath", "id")
ID_COLUMNS = ("id",)
LABEL_COLUMNS = ("label", "class", "genre")
MULTI_COLUMNS = ("labels", "tags")
TAG_SEPARATORS = (";", "|")
NAN_STRINGS = {"", "nan", "na", "n/a", "none", "null"}


class LabelError(EmbedkitError):
    """A labels file is missing, malformed or does not fit the data (message names file and line)."""


@dataclass
class LabelTable:
    """Parsed labels. ``y``: ``(n,)`` str (classification), ``(n, t)`` float64 (regression) or
    ``(n, T)`` int8 0/1 (multilabel); ``names``: classes (sorted), targets or tags, in column order."""

    source: str
    task: str
    key_column: str
    keys: list[str]
    lines: list[int]
    y: np.ndarray
    names: list[str]
    groups: np.ndarray | None = None
    split: np.ndarray | None = None
    warnings: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.keys)

    @property
    def keys_are_ids(self) -> bool:
        return self.key_column.lower() in ID_COLUMNS

    def subset(self, idx: Sequence[int] | np.ndarray) -> LabelTable:
        idx = np.asarray(idx, np.int64)
        return replace(
            self,
            keys=[self.keys[i] for i in idx],
            lines=[self.lines[i] for i in idx],
            y=self.y[idx],
            groups=None if self.groups is None else self.groups[idx],
            split=None if self.split is None else self.split[idx],
            warnings=list(self.warnings),
        )

    def where(self, i: int) -> str:
        return f"{self.source} line {self.lines[i]}"

    def class_counts(self) -> dict[str, int]:
        if self.task != "classification":
            raise LabelError(f"{self.source}: class counts only exist for classification labels")
        return dict(sorted(Counter(self.y.tolist()).items()))


# ---- reading --------------------------------------------------------------------------------------


def _sniff_delimiter(path: Path, sample: str) -> str:
    if path.suffix.lower() == ".tsv":
        return "\t"
    head = "\n".join(l for l in sample.splitlines() if not l.lstrip().startswith("#"))[:8192]
    try:
        return csv.Sniffer().sniff(head, delimiters=",\t;").delimiter
    except csv.Error:
        first = head.splitlines()[0] if head else ""
        return "\t" if "\t" in first else ","


def _read_rows(path: Path) -> tuple[list[str], list[tuple[int, list[str]]]]:
    """Header and ``(line number, fields)`` rows; checks that every row has the header's width."""
    if not path.exists():
        raise LabelError(f"{path}: no such labels file")
    if path.is_dir():
        raise LabelError(f"{path}: is a folder, not a labels file")
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as exc:
        raise LabelError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    if not text.strip():
        raise LabelError(f"{path}: empty labels file")
    delim = _sniff_delimiter(path, text[:16384])
    reader = csv.reader(io.StringIO(text), delimiter=delim)
    header: list[str] | None = None
    rows: list[tuple[int, list[str]]] = []
    try:
        for fields in reader:
            line = reader.line_num
            if not fields or all(not f.strip() for f in fields):
                continue
            if fields[0].lstrip().startswith("#"):
                continue
            if header is None:
                header = [h.strip() for h in fields]
                if len(set(h.lower() for h in header)) != len(header):
                    dup = [h for h, c in Counter(h.lower() for h in header).items() if c > 1][0]
                    raise LabelError(f"{path} line {line}: column {dup!r} appears twice in the header")
                continue
            if len(fields) != len(header):
                raise LabelError(f"{path} line {line}: {len(fields)} fields, but the header has {len(header)} ({delim!r}-separated)")
            rows.append((line, [f.strip() for f in fields]))
    except csv.Error as exc:
        raise LabelError(f"{path} line {reader.line_num}: unreadable CSV ({exc})") from None
    if header is None:
        raise LabelError(f"{path}: no header row")
    if not rows:
        raise LabelError(f"{path}: header only, no labelled rows")
    return header, rows


def _find(header: list[str], wanted: str | None, candidates: Sequence[str], *, what: str, path: Path) -> int | None:
    low = [h.lower() for h in header]
    if wanted is not None:
        if wanted.lower() not in low:
            raise LabelError(f"{path}: no {what} column {wanted!r} (columns: {', '.join(header)})")
        return low.index(wanted.lower())
    for c in candidates:
        if c in low:
            return low.index(c)
    return None


def _number(v: str, *, where: str, column: str) -> float:
    if v.strip().lower() in NAN_STRINGS:
        raise LabelError(f"{where}: target {column!r} is empty or NaN (remove the row or fill it in)")
    try:
        x = float(v)
    except ValueError:
        raise LabelError(f"{where}: target {column!r} = {v!r} is not a number") from None
    if not math.isfinite(x):
        raise LabelError(f"{where}: target {column!r} is {v} (must be finite)")
    return x


def read_labels(
    path: str | os.PathLike,
    *,
    task: str = "auto",
    targets: Sequence[str] | str | None = None,
    key: str | None = None,
    group: str | None = None,
    split: str | None = None,
) -> LabelTable:
    """Read and validate a labels file (see the module docstring for the format).

    ``task``: "auto", "classification", "regression" or "multilabel". ``targets``: the label/value
    columns to use (comma-separated or a list); default: ``label``, else ``labels``/``tags``, else
    every column that is not the key, group or split.
    """
    p = Path(path)
    header, rows = _read_rows(p)
    src = str(p)
    ki = _find(header, key, KEY_COLUMNS, what="key", path=p)
    ki = 0 if ki is None else ki
    gi = _find(header, group, ("group",), what="group", path=p)
    si = _find(header, split, ("split",), what="split", path=p)
    used = {ki, gi, si} - {None}
    if isinstance(targets, str):
        targets = [t.strip() for t in targets.split(",") if t.strip()]
    if targets:
        ti = [_find(header, t, (), what="target", path=p) for t in targets]
    else:
        li = _find(header, None, LABEL_COLUMNS, what="label", path=p)
        mi = _find(header, None, MULTI_COLUMNS, what="labels", path=p)
        if task in ("auto", "classification") and li is not None and li not in used:
            ti = [li]
        elif task in ("auto", "multilabel") and mi is not None and mi not in used:
            ti = [mi]
        else:
            ti = [i for i in range(len(header)) if i not in used]
    ti = [i for i in ti if i is not None]
    if not ti:
        raise LabelError(f"{p}: no label columns besides the key {header[ki]!r} (columns: {', '.join(header)})")
    if task == "auto":
        _refuse_mixed_numbers(p, header, rows, ti)
        task = _guess_task(header, rows, ti)
    if task not in ("classification", "regression", "multilabel"):
        raise LabelError(f"unknown task {task!r}; expected auto, classification, regression or multilabel")

    warn: list[str] = []
    keys, lines, vals = [], [], []
    for line, f in rows:
        k = f[ki]
        if not k:
            raise LabelError(f"{p} line {line}: empty {header[ki]!r}")
        keys.append(k)
        lines.append(line)
        vals.append([f[i] for i in ti])

    if task == "classification":
        if len(ti) != 1:
            raise LabelError(f"{p}: classification needs one label column, given {len(ti)} ({', '.join(header[i] for i in ti)})")
        for line, v in zip(lines, vals):
            if not v[0] or v[0].lower() in ("nan", "none", "null"):
                raise LabelError(f"{p} line {line}: empty label")
        y_rows: list[Any] = [v[0] for v in vals]
        names_cols = [header[ti[0]]]
    elif task == "regression":
        y_rows = [[_number(x, where=f"{p} line {line}", column=header[i]) for x, i in zip(v, ti)] for line, v in zip(lines, vals)]
        names_cols = [header[i] for i in ti]
    else:
        if len(ti) == 1 and header[ti[0]].lower() in MULTI_COLUMNS:
            tag_lists = [_split_tags(v[0]) for v in vals]
            tags = sorted({t for ts in tag_lists for t in ts})
            if not tags:
                raise LabelError(f"{p}: column {header[ti[0]]!r} holds no tags at all")
            y_rows = [[int(t in set(ts)) for t in tags] for ts in tag_lists]
            names_cols = tags
        else:
            y_rows = []
            for line, v in zip(lines, vals):
                row = []
                for x, i in zip(v, ti):
                    if x not in ("0", "1", "0.0", "1.0"):
                        raise LabelError(f"{p} line {line}: tag {header[i]!r} = {x!r}, expected 0 or 1")
                    row.append(int(float(x)))
                y_rows.append(row)
            names_cols = [header[i] for i in ti]

    # duplicates: identical rows dropped with a warning, conflicting rows are an error
    keep: list[int] = []
    seen: dict[str, int] = {}
    dups = []
    for i, k in enumerate(keys):
        nk = _norm_key(k)
        if nk in seen:
            j = seen[nk]
            if y_rows[j] != y_rows[i]:
                raise LabelError(
                    f"{p} line {lines[i]}: {k!r} is labelled again with a different value "
                    f"(line {lines[j]}: {_show(y_rows[j])}, line {lines[i]}: {_show(y_rows[i])})"
                )
            dups.append((lines[i], lines[j], k))
            continue
        seen[nk] = i
        keep.append(i)
    if dups:
        line, first, k = dups[0]
        warn.append(f"{p}: {len(dups)} duplicate row(s) ignored (e.g. line {line} repeats line {first}: {k!r})")

    if task == "classification":
        y = np.array([y_rows[i] for i in keep], dtype=str)
        names = sorted(set(y.tolist()))
    elif task == "regression":
        y = np.array([y_rows[i] for i in keep], dtype=np.float64)
        names = names_cols
    else:
        y = np.array([y_rows[i] for i in keep], dtype=np.int8)
        names = names_cols
        empty = [names[t] for t in range(y.shape[1]) if y[:, t].sum() == 0]
        if empty:
            warn.append(f"{p}: {len(empty)} tag(s) never positive (e.g. {empty[0]!r}); they cannot be learned")
    groups = np.array([rows[i][1][gi] for i in keep], dtype=str) if gi is not None else None
    if groups is not None:
        blank = [lines[i] for i in keep if not rows[i][1][gi]]
        if blank:
            raise LabelError(f"{p} line {blank[0]}: empty group (every row needs one when a group column is used)")
    splits = np.array([rows[i][1][si] for i in keep], dtype=str) if si is not None else None
    return LabelTable(
        source=src, task=task, key_column=header[ki], keys=[keys[i] for i in keep], lines=[lines[i] for i in keep],
        y=y, names=names, groups=groups, split=splits, warnings=warn,
    )


def _refuse_mixed_numbers(p: Any, header: list[str], rows: list[tuple[int, list[str]]], ti: list[int]) -> None:
    """A column that is mostly numbers (≥ 2/3 of its values) but holds a few words is a typo, not classes:
    an error naming the lines (pass --task classification to learn the values as classes anyway)."""
    for i in ti:
        present = [(line, f[i]) for line, f in rows if f[i].strip().lower() not in NAN_STRINGS]
        words = [(line, v) for line, v in present if not _is_number(v)]
        if present and words and len(present) - len(words) >= 2 * len(present) / 3:
            shown = ", ".join(f"line {line}: {v!r}" for line, v in words[:5])
            more = f" and {len(words) - 5} more" if len(words) > 5 else ""
            raise LabelError(
                f"{p}: column {header[i]!r} holds numbers except {shown}{more}; fix those lines, or pass "
                f"--task classification (or regression) to say what the column is"
            )


def _guess_task(header: list[str], rows: list[tuple[int, list[str]]], ti: list[int]) -> str:
    if len(ti) == 1 and header[ti[0]].lower() in LABEL_COLUMNS:
        return "classification"
    if len(ti) == 1 and header[ti[0]].lower() in MULTI_COLUMNS:
        return "multilabel"
    values = [f[i] for _, f in rows for i in ti]
    present = [v for v in values if v.strip().lower() not in NAN_STRINGS]
    # mostly numbers → numeric targets (a stray word is then reported as an error, not learned as a class)
    numeric = bool(present) and sum(_is_number(v) for v in present) >= 0.9 * len(present)
    if not numeric:
        return "classification" if len(ti) == 1 else "multilabel"
    if len(ti) >= 2 and set(values) <= {"0", "1"}:
        return "multilabel"
    return "regression"


def _is_number(v: str) -> bool:
    try:
        float(v)
        return True
    except ValueError:
        return False


def _split_tags(v: str) -> list[str]:
    for sep in TAG_SEPARATORS:
        if sep in v:
            return [t.strip() for t in v.split(sep) if t.strip()]
    return [v.strip()] if v.strip() else []


def _norm_key(k: str) -> str:
    return os.path.normpath(k) if not k.isdigit() else k


def _show(v: Any) -> str:
    return repr(v) if isinstance(v, str) else str(v)


# ---- validation for training / evaluation -----------------------------------------------------


def check_classes(table: LabelTable, *, min_count: int = 2, drop: bool = False) -> LabelTable:
    """Classes with fewer than ``min_count`` examples: error naming them (and a line), or, with
    ``drop``, remove their rows with a warning. Also refuses a single class."""
    if table.task != "classification":
        return table
    counts = Counter(table.y.tolist())
    rare = sorted(c for c, n in counts.items() if n < min_count)
    if rare:
        first = int(np.flatnonzero(table.y == rare[0])[0])
        what = f"{len(rare)} class(es) with fewer than {min_count} examples, e.g. {rare[0]!r} ({counts[rare[0]]} at {table.where(first)})"
        if not drop:
            raise LabelError(f"{table.source}: {what}: a class needs examples on both sides of a split (add examples, or use --drop-rare)")
        keep = np.flatnonzero(~np.isin(table.y, rare))
        table = table.subset(keep)
        table.warnings.append(f"{table.source}: dropped {what}")
    if len(set(table.y.tolist())) < 2:
        raise LabelError(f"{table.source}: need at least 2 classes, found {sorted(set(table.y.tolist()))}")
    return table


# ---- binding to a store ----------------------------------------------------------------------------


@dataclass
class Bound:
    """Labels matched to store items: ``ids`` ``(n,) int64`` aligned with ``table`` rows."""

    ids: np.ndarray
    table: LabelTable
    unknown: list[tuple[int, str]]
    not_embedded: list[tuple[int, str, str]]


def bind(table: LabelTable, store: Any, *, strict: bool = False) -> Bound:
    """Match each labelled key to an embedded store item (by id, path, path relative to the labels
    file's folder, or the longest unique run of trailing path components, so that a labels file
    written where the dataset lived elsewhere still binds). Unknown / failed items are skipped with a
    warning (an error with ``strict``, or when nothing matches)."""
    base = Path(table.source).resolve().parent
    by_tail: dict[str, list[Any]] | None = None
    ids: list[int] = []
    keep: list[int] = []
    unknown: list[tuple[int, str]] = []
    failed: list[tuple[int, str, str]] = []
    for i, k in enumerate(table.keys):
        item = None
        stale = False
        if table.keys_are_ids:
            if not k.lstrip("-").isdigit():
                raise LabelError(f"{table.where(i)}: id {k!r} is not an integer")
            item = store.resolve(int(k))
        else:
            # the store's one rule: a stored path whose file is absent or unchanged; a changed file is stale
            cands = [k] if os.path.isabs(k) else [k, str(base / k)]
            item = None
            for c in cands:
                item = store.resolve(c, by_content=False)
                if item is not None:
                    break
                stale = stale or store.get(c) is not None
            if item is None and not stale and not any(os.path.exists(c) for c in cands):
                if by_tail is None:
                    by_tail = _tail_index(store)
                item = _match_tail(k, by_tail)
        if item is None and stale:
            failed.append((i, k, "file changed since it was embedded; rerun 'embedkit embed ... --store'"))
        elif item is None:
            unknown.append((i, k))
        elif item.status != "ok" or item.row is None:
            failed.append((i, k, item.error or item.status))
        else:
            ids.append(int(item.id))
            keep.append(i)
    where = getattr(store, "path", "the store")
    if not keep:
        first = table.keys[0]
        raise LabelError(
            f"{table.source}: none of the {len(table)} labelled items is embedded in {where} "
            f"(first key {first!r}); are the paths relative to another folder, or is this the wrong store?"
        )
    out = table.subset(keep)
    if unknown:
        i, k = unknown[0]
        msg = f"{table.source}: {len(unknown)} of {len(table)} labelled items are not in {where} (first: line {table.lines[i]} {k!r})"
        if strict:
            raise LabelError(msg)
        out.warnings.append(msg + "; skipped")
    if failed:
        i, k, err = failed[0]
        msg = f"{table.source}: {len(failed)} labelled items have no vector in {where} (first: line {table.lines[i]} {k!r}: {err})"
        if strict:
            raise LabelError(msg)
        out.warnings.append(msg + "; skipped")
    return Bound(np.asarray(ids, np.int64), out, unknown, failed)


def _tail_index(store: Any) -> dict[str, list[Any]]:
    index: dict[str, list[Any]] = {}
    for item in store.items():
        index.setdefault(os.path.basename(item.path), []).append(item)
    return index


def _match_tail(key: str, index: dict[str, list[Any]]) -> Any:
    """The store item sharing the longest run of trailing path components with ``key`` (at least the
    file name and its folder, or the file name alone for a bare name); None when absent or ambiguous."""
    parts = Path(key).parts
    if not parts:
        return None
    best, best_n, tie = None, 0, False
    for it in index.get(parts[-1], []):
        other = Path(it.path).parts
        n = 0
        while n < min(len(parts), len(other)) and parts[-1 - n] == other[-1 - n]:
            n += 1
        if n > best_n:
            best, best_n, tie = it, n, False
        elif n == best_n:
            tie = True
    if best is None or tie or best_n < min(2, len(parts)):
        return None
    return best


def write_labels(path: str | os.PathLike, rows: Sequence[dict], columns: Sequence[str]) -> Path:
    """Write rows (dicts) as a CSV with ``columns`` (atomically: temp file, then rename)."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    tmp = p.with_name(p.name + ".tmp")
    with open(tmp, "w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=list(columns), extrasaction="ignore", lineterminator="\n")
        w.writeheader()
        for r in rows:
            w.writerow({c: _cell(r.get(c)) for c in columns})
    os.replace(tmp, p)
    return p


def _cell(v: Any) -> str:
    if v is None:
        return ""
    if isinstance(v, float):
        return repr(v) if math.isfinite(v) else ""
    if isinstance(v, (list, tuple)):
        return ";".join(str(x) for x in v)
    return str(v)
