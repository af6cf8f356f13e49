"""What the server knows about one store: items, map, colour fields, and the library calls behind the API.

Everything here is read-only on the store: it is opened with ``mode="r"``; the only thing written is the
map layout cache (`embedkit.layout2d`, beside the store in ``STORE/layout/``, or in the user cache when
the store folder is read-only). Library calls are serialised by one lock (the store's SQLite connection
and FAISS index are shared); audio files are streamed without it.
"""
from __future__ import annotations

import io
import logging
import os
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import EmbedkitError
from .files import FileGuard, FileRefused, collection_roots

log = logging.getLogger("embedkit.serve")

#: top tags / head classes shown for an item
TOP_K = 5
MAX_NEIGHBORS = 100
#: bytes accepted for an uploaded query file / history
MAX_UPLOAD_BYTES = 200 * 2**20
#: heads saved here (``STORE/heads/NAME.head``) are shown without --head
HEADS_DIR = "heads"
MAX_HISTORY_BYTES = 20 * 2**20


class RequestError(EmbedkitError):
    """A request the server cannot answer (bad parameter, unknown item, bad upload); ``status`` is HTTP."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


@dataclass
class Field:
    """A colour field of the map: ``kind`` "category" (``codes`` into ``categories``, -1 = none) or
    "value" (``values``, NaN = none); arrays aligned with the map's item order."""

    name: str
    label: str
    kind: str
    source: str
    categories: list[str] | None = None
    codes: np.ndarray | None = None
    values: np.ndarray | None = None

    def describe(self) -> dict:
        return {"name": self.name, "label": self.label, "kind": self.kind, "source": self.source}

    def to_json(self) -> dict:
        d = self.describe()
        if self.kind == "category":
            d["categories"] = self.categories
            d["codes"] = self.codes.astype(int).tolist()  # type: ignore[union-attr]
        else:
            v = self.values.astype(np.float64)  # type: ignore[union-attr]
            ok = np.isfinite(v)
            d["min"] = float(v[ok].min()) if ok.any() else None
            d["max"] = float(v[ok].max()) if ok.any() else None
            d["values"] = [round(float(x), 5) if np.isfinite(x) else None for x in v]
        return d


def _categorical(name: str, label: str, source: str, values: Sequence[str | None], *, max_categories: int = 40) -> Field:
    """Codes for string values; the rarest beyond ``max_categories`` become "other"."""
    from collections import Counter

    counts = Counter(v for v in values if v is not None)
    top = [c for c, _ in counts.most_common(max_categories)]
    cats = sorted(top)
    if len(counts) > max_categories:
        cats.append("other")
    index = {c: i for i, c in enumerate(cats)}
    other = index.get("other", -1)
    codes = np.array([-1 if v is None else index.get(v, other) for v in values], dtype=np.int32)
    return Field(name, label, "category", source, categories=cats, codes=codes)


class Collection:
    """A store opened for the web page (see the module doc).

    ``index``: the saved index to search with (`embedkit.search.Searcher`; exact search when absent);
    ``heads``: saved head folders whose predictions are shown and can colour the map (default: those in
    ``STORE/heads/``, skipping ones made for other vectors); ``labels``:
    label CSV files (`embedkit.labels`) whose label and group columns can colour the map;
    ``layout_method``: "auto" | "tsne" | "pca"; ``embedder``: reuse an `Embedder` for dropped files;
    ``load_index``: load the search index now (False: on the first query; ``store map`` needs none).
    """

    def __init__(self, store_path: str | os.PathLike, *, index: str | None = "default", heads: Sequence[str] = (),
                 labels: Sequence[str] = (), layout_method: str = "auto", embedder: Any = None,
                 progress: Callable[[str], None] | None = None, load_index: bool = True) -> None:
        from ..layout2d import layout_for_store
        from ..search import Searcher
        from ..store import Store

        self.say = progress or (lambda m: log.info(m))
        self.lock = threading.RLock()
        self.store = Store.open(store_path, mode="r")
        try:
            self.searcher = Searcher(self.store, index=index or "default", embedder=embedder)
            self.index_name = index
            if load_index:
                self.say("loading the search index")
                _ = self.searcher.index  # fail now, in one line, on a missing named index or a stale one
            items = {it.id: it for it in self.store.items("ok")}
            self.layout = layout_for_store(self.store, method=layout_method, progress=self.say)
            self.ids = self.layout.ids
            self.paths = [items[int(i)].path for i in self.ids]
            self.durations = np.array([np.nan if items[int(i)].duration_s is None else items[int(i)].duration_s
                                       for i in self.ids], np.float64)
            self._pos = {int(i): k for k, i in enumerate(self.ids)}
            self.roots = collection_roots(self.paths)
            self.guard = FileGuard(self.roots)
            self.heads = [self._load_head(h) for h in heads]
            if not heads:
                self.heads = self._saved_heads()
            self.fields: dict[str, Field] = {}
            self._field_makers: dict[str, Callable[[], Field]] = {}
            self._register_fields(labels)
            self._highlighter: Any = None
        except BaseException:
            self.store.close()
            raise

    def close(self) -> None:
        self.store.close()

    # ---- items -----------------------------------------------------------------------------------

    def position(self, item_id: int) -> int:
        k = self._pos.get(int(item_id))
        if k is None:
            raise RequestError(f"no embedded item with id {item_id} in {self.store.path}", 404)
        return k

    def item_id(self, key: str) -> int:
        """A store id from a URL key: the id itself, or a path exactly as stored."""
        key = key.strip()
        if key.lstrip("-").isdigit():
            self.position(int(key))
            return int(key)
        with self.lock:
            it = self.store.get(key) if os.path.isabs(key) else None
        if it is None or int(it.id) not in self._pos:
            raise RequestError(f"{key}: not an embedded item of this collection", 404)
        return int(it.id)

    def brief(self, item_id: int, **extra: Any) -> dict:
        k = self.position(item_id)
        p = self.paths[k]
        d = {"id": int(item_id), "path": p, "name": Path(p).name, "folder": Path(p).parent.name,
             "x": round(float(self.layout.xy[k, 0]), 5), "y": round(float(self.layout.xy[k, 1]), 5),
             "audio": f"/api/audio/{int(item_id)}"}
        dur = self.durations[k]
        d["duration_s"] = None if not np.isfinite(dur) else round(float(dur), 2)
        d.update(extra)
        return d

    def find(self, text: str, limit: int = 20) -> list[dict]:
        """Items whose path contains every word of ``text`` (case-insensitive); file-name hits first."""
        words = [w for w in text.lower().split() if w]
        if not words:
            return []
        hits: list[tuple[int, int]] = []
        for k, p in enumerate(self.paths):
            low = p.lower()
            if all(w in low for w in words):
                name = low.rsplit("/", 1)[-1]
                hits.append((0 if all(w in name for w in words) else 1, k))
                if len(hits) >= 50 * limit:
                    break
        hits.sort()
        return [self.brief(int(self.ids[k])) for _, k in hits[:limit]]

    def audio_file(self, item_id: int) -> Path:
        """The real path of an item's file, if it may be sent (`FileGuard`)."""
        k = self.position(item_id)
        try:
            return self.guard.resolve(self.paths[k])
        except FileRefused as exc:
            raise RequestError(str(exc), 403 if "outside" in str(exc) else 404) from None

    def details(self, item_id: int) -> dict:
        """An item with its top tags, head predictions and highlight (when available)."""
        d = self.brief(item_id)
        with self.lock:
            d["tags"] = self._tags(item_id)
            d["predictions"] = self._predictions(item_id)
            d["highlight"] = self._highlight(item_id)
        return d

    def _tags(self, item_id: int) -> list[dict] | None:
        """Top tags: the store's, or (store made without --tags) the model's for the item's file, once."""
        if not self.store.has_tags:
            return self._computed_tags(item_id)
        p = self.store.tags([item_id])[0]
        labels = self.store.tag_labels or [f"tag{i}" for i in range(p.size)]
        top = np.argsort(-p, kind="stable")[:TOP_K]
        return [{"tag": labels[j], "p": round(float(p[j]), 4)} for j in top]

    def _computed_tags(self, item_id: int) -> list[dict] | None:
        cache = self.__dict__.setdefault("_tag_cache", {})
        if item_id not in cache:
            try:
                path = self.audio_file(item_id)
                emb = self.searcher.embedder
                if getattr(emb, "fingerprint", None) != self.store.model_fingerprint:
                    return None  # another model's tags would not describe this store
                cache[item_id] = [{"tag": t, "p": round(float(p), 4), "computed": True}
                                  for t, p in emb.tag(path, top_k=TOP_K)]
            except (EmbedkitError, RequestError, OSError, AttributeError) as exc:
                log.info("tags of item %s: %s", item_id, exc)
                cache[item_id] = None
        return cache[item_id]

    def _predictions(self, item_id: int) -> list[dict]:
        out = []
        for name, head in self.heads:
            X = head.align(self.store.vectors([item_id]), self.store.layout)
            entry: dict = {"head": name, "task": head.task}
            try:
                if head.task == "regression":
                    v = np.asarray(head.predict(X), np.float64).reshape(1, -1)[0]
                    entry["values"] = {n: round(float(x), 4) for n, x in zip(_output_names(head), v)}
                elif head.has_proba:
                    pr = head.predict_proba(X)[0]
                    names = _output_names(head)
                    top = np.argsort(-pr, kind="stable")[:TOP_K]
                    entry["top"] = [{"label": str(names[j]), "p": round(float(pr[j]), 4)} for j in top]
                    entry["prediction"] = entry["top"][0]["label"] if head.task == "classification" else None
                else:
                    entry["prediction"] = str(np.asarray(head.predict(X)).ravel()[0])
            except EmbedkitError as exc:
                entry["error"] = str(exc)
            out.append(entry)
        return out

    def _highlight(self, item_id: int) -> dict | None:
        """The 30-s highlight (`embedkit.highlight`, repetition method on stored per-patch vectors)."""
        if not self.store.has_patches:
            return None
        try:
            from ..highlight import Highlighter
        except ImportError:
            return None
        try:
            if self._highlighter is None:
                self._highlighter = Highlighter(method="repetition", length_s=30.0)
            it = self.store.get(int(item_id))
            h = self._highlighter.highlight_store_item(self.store, it)
            return {"start_s": round(float(h.start_s), 2), "end_s": round(float(h.end_s), 2), "method": h.method,
                    "whole_file": bool(getattr(h, "whole_file", False))}
        except Exception as exc:  # a highlight is a nicety: never fail the item for it
            log.debug("highlight of %s failed: %s", item_id, exc)
            return None

    # ---- search ----------------------------------------------------------------------------------

    def neighbors(self, item_id: int, k: int = 10) -> list[dict]:
        """The ``k`` nearest stored items (`embedkit.search.Searcher.similar`), best first."""
        self.position(item_id)
        k = _clamp_k(k)
        with self.lock:
            res = self.searcher.similar([int(item_id)], k=k)[0]
        if res.error:
            raise RequestError(res.error)
        return [self.brief(n.id, score=n.score, rank=n.rank) for n in res.neighbors if n.id in self._pos]

    def query_file(self, path: Path, display_name: str, k: int = 10) -> dict:
        """Neighbours of an uploaded audio file (embedded with the store's model and settings)."""
        k = _clamp_k(k)
        with self.lock:
            try:
                res = self.searcher.similar([str(path)], k=k, exclude_self=False)[0]
            except EmbedkitError as exc:
                raise RequestError(str(exc).replace(str(path), display_name), 422) from None
        if res.error:
            raise RequestError(res.error.replace(str(path), display_name), 422)
        hits = [self.brief(n.id, score=n.score, rank=n.rank) for n in res.neighbors if n.id in self._pos]
        return {"query": display_name, "kind": res.kind, "same_as": res.query_id, "results": hits}

    def recommend(self, text: str, *, user: str | None = None, k: int = 20, diversity: float = 0.0,
                  cold_only: bool = False, scorer: str = "auto") -> dict:
        """Recommendations for a pasted/uploaded listening history (`embedkit.recommend`)."""
        from ..recommend import load_interactions, recommend

        k = _clamp_k(k)
        if not 0.0 <= diversity <= 1.0:
            raise RequestError(f"diversity must be in [0, 1], given {diversity}")
        src = io.StringIO(text)
        src.name = "uploaded history"  # type: ignore[misc]
        with self.lock:
            inter = load_interactions(src, self.store)
            out = recommend(self.store, inter, user=user or None, k=k, scorer=scorer, cold_only=cold_only,
                            diversity=diversity)
        out["recommendations"] = [self.brief(r["id"], score=r["score"], rank=r["rank"], cold=r["cold"])
                                  for r in out["recommendations"] if r["id"] in self._pos]
        return out

    # ---- colour fields ---------------------------------------------------------------------------

    def _register_fields(self, labels: Sequence[str]) -> None:
        mk = self._field_makers
        mk["folder"] = lambda: _categorical("folder", "folder", "store", [Path(p).parent.name for p in self.paths])
        mk["duration"] = lambda: Field("duration", "duration (s)", "value", "store", values=self.durations)
        if self.store.has_tags:
            mk["tag:top"] = self._top_tag_field
            for j, t in enumerate(self.store.tag_labels or []):
                mk[f"tag:{t}"] = (lambda j=j, t=t: Field(f"tag:{t}", f"tag: {t}", "value", "tags",
                                                         values=self._all_tags()[:, j]))
        for name, head in self.heads:
            mk[f"head:{name}"] = lambda name=name, head=head: self._head_field(name, head)
        for path in labels:
            self._label_fields(path)

    def field_list(self) -> list[dict]:
        out = []
        for name in self._field_makers:
            label = {"folder": "folder", "duration": "duration (s)", "tag:top": "top tag"}.get(name, name.replace(":", ": ", 1))
            kind = "value" if name == "duration" or (name.startswith("tag:") and name != "tag:top") else "category"
            if name in self.fields:
                kind = self.fields[name].kind
            out.append({"name": name, "label": label, "kind": kind})
        return out

    def field(self, name: str) -> Field:
        f = self.fields.get(name)
        if f is None:
            maker = self._field_makers.get(name)
            if maker is None:
                raise RequestError(f"unknown colour field {name!r}; /api/fields lists them", 404)
            with self.lock:
                f = self.fields[name] = maker()
        return f

    def _all_tags(self) -> np.ndarray:
        if getattr(self, "_tags_cache", None) is None:
            self._tags_cache = self.store.tags(self.ids)
        return self._tags_cache

    def _top_tag_field(self) -> Field:
        labels = self.store.tag_labels or []
        top = self._all_tags().argmax(axis=1)
        return _categorical("tag:top", "top tag", "tags", [labels[j] if j < len(labels) else str(j) for j in top])

    def _head_field(self, name: str, head: Any) -> Field:
        X = head.align(self.store.vectors(self.ids), self.store.layout)
        if head.task == "regression":
            v = np.asarray(head.predict(X), np.float64).reshape(len(self.ids), -1)[:, 0]
            return Field(f"head:{name}", f"head: {name}", "value", "head", values=v)
        if head.task == "multilabel":
            names = _output_names(head)
            pr = head.predict_proba(X)
            return _categorical(f"head:{name}", f"head: {name} (top label)", "head", [str(names[j]) for j in pr.argmax(1)])
        return _categorical(f"head:{name}", f"head: {name}", "head", [str(v) for v in np.asarray(head.predict(X)).ravel()])

    def _label_fields(self, path: str) -> None:
        from ..labels import bind, read_labels

        table = read_labels(path)
        bound = bind(table, self.store)
        stem = Path(path).stem
        ids = np.asarray(bound.ids, np.int64)
        tab = bound.table

        def column(values: Sequence[Any]) -> list[str | None]:
            col: list[str | None] = [None] * len(self.ids)
            for i, v in zip(ids, values):
                k = self._pos.get(int(i))
                if k is not None:
                    col[k] = str(v)
            return col

        if tab.task == "classification":
            self._field_makers[f"label:{stem}"] = lambda: _categorical(f"label:{stem}", f"labels: {stem}", "labels",
                                                                      column(tab.y.tolist()))
        elif tab.task == "regression":
            def reg() -> Field:
                v = np.full(len(self.ids), np.nan)
                for i, x in zip(ids, np.asarray(tab.y, np.float64).reshape(len(ids), -1)[:, 0]):
                    k = self._pos.get(int(i))
                    if k is not None:
                        v[k] = x
                return Field(f"label:{stem}", f"labels: {stem} ({tab.names[0]})", "value", "labels", values=v)
            self._field_makers[f"label:{stem}"] = reg
        if tab.groups is not None:
            self._field_makers[f"group:{stem}"] = lambda: _categorical(f"group:{stem}", f"groups: {stem}", "labels",
                                                                      column(tab.groups.tolist()))

    def _saved_heads(self) -> list[tuple[str, Any]]:
        """Heads saved inside the store folder (``STORE/heads/NAME.head``), those made for its vectors."""
        out = []
        for d in sorted((Path(self.store.path) / HEADS_DIR).glob("*.head")):
            try:
                out.append(self._load_head(str(d)))
            except EmbedkitError as exc:
                self.say(f"{d}: not shown ({exc})")
        return out

    def _load_head(self, path: str) -> tuple[str, Any]:
        from ..heads import Head, check_compatible

        head = Head.load(path)
        check_compatible(head.card_, model_fingerprint=self.store.model_fingerprint,
                         aggregation=self.store.manifest.get("aggregation"), source=f"vectors in {self.store.path}")
        return Path(path).name.removesuffix(".head") or Path(path).name, head

    # ---- summary ---------------------------------------------------------------------------------

    def info(self) -> dict:
        m = self.store.manifest
        return {
            "store": str(self.store.path), "items": len(self.ids), "model": m.get("model"), "dim": self.store.dim,
            "aggregation": m.get("aggregation"), "tags": self.store.has_tags, "patches": self.store.has_patches,
            "heads": [n for n, _ in self.heads], "index": self.searcher.index_info or {"name": self.index_name},
            "layout": {k: v for k, v in self.layout.info.items() if k != "norm"}, "roots": self.roots,
            "fields": self.field_list(), "max_upload_bytes": MAX_UPLOAD_BYTES,
        }


def _output_names(head: Any) -> list[str]:
    """A head's class / target / tag names (a property in newer heads, a method in older ones)."""
    names = head.output_names
    return list(names() if callable(names) else names)


def _clamp_k(k: int) -> int:
    if k < 1:
        raise RequestError(f"k must be >= 1, given k={k}")
    return min(int(k), MAX_NEIGHBORS)
