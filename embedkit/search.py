"""Similar-song and segment search over a store: the Python API behind ``embedkit similar``.

>>> from embedkit.search import Searcher                             # doctest: +SKIP
>>> with Searcher.open("songs.store") as s:                           # doctest: +SKIP
...     res = s.similar([12, "music/a.ogg", "clip.mp3", "q.npy"], k=10, exclude_same_folder=True)
...     res[0].neighbors[0]                                          # Neighbor(id=…, path=…, score=…, rank=1)

A query is a stored item id (int or digit string), a stored path, an audio file that is not in the
store (embedded on the fly with the store's model, layers, aggregation and excerpt; a file whose bytes
match a stored item is that item), a ``.npy`` file of one ``(dim,)`` or several ``(n, dim)`` vectors,
or a numpy array. Searches use the store's saved index (``embedkit index build``) when there is one,
otherwise exact search over the stored vectors. Filters: the query itself (default), same folder
(album), minimum / maximum duration. `Searcher.segments` answers "which part of which song sounds like
this clip" from the store's per-patch vectors.
"""
from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .errors import EmbedkitError, ModelMismatchError
from .index import (
    FLAT_MAX_WORK,
    IndexMissingError,
    NonFiniteVectorsError,
    StoreIndex,
    VectorIndex,
    index_dir,
    open_for_store,
)

log = logging.getLogger("embedkit.search")

#: Patch hop of the stores (s): stored patches start every 3 s; segment offsets are grouped on this grid.
PATCH_HOP_S = 3.0


class QueryError(EmbedkitError):
    """A query could not be resolved (unknown id, unreadable file, wrong vector dim)."""


@dataclass
class Neighbor:
    """One result: store item ``id`` and ``path``, ``score`` (cosine similarity, higher is closer), ``rank`` (1-based).

    ``offset_s``: for segment search, where in the song the match starts (seconds).
    """

    id: int
    path: str
    score: float
    rank: int
    offset_s: float | None = None

    def to_dict(self) -> dict:
        d = asdict(self)
        if self.offset_s is None:
            d.pop("offset_s")
        return d


@dataclass
class QueryResult:
    """The answer to one query: ``kind`` is "id", "path", "audio" or "vector"; ``error`` one line or None."""

    query: str
    kind: str | None = None
    query_id: int | None = None
    query_path: str | None = None
    neighbors: list[Neighbor] = field(default_factory=list)
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None

    def to_dict(self) -> dict:
        return {
            "query": self.query,
            "kind": self.kind,
            "query_id": self.query_id,
            "query_path": self.query_path,
            "results": [n.to_dict() for n in self.neighbors],
            "error": self.error,
        }


@dataclass
class _Query:
    label: str
    kind: str | None = None
    item_id: int | None = None
    path: str | None = None
    vector: np.ndarray | None = None
    patches: tuple[np.ndarray, np.ndarray] | None = None  # (patch vectors (m, d), start_s (m,))
    error: str | None = None


class Searcher:
    """Nearest-neighbour search over a store's track vectors (and per-patch vectors for segments).

    ``index``: name of the saved index to use (default "default"; when it does not exist, exact search
    over the stored vectors); ``exact=True`` always searches exactly. A saved index that is stale
    (store changed) or mismatched is refused with a one-line `embedkit.index.IndexStateError`.
    ``embedder``: an `embedkit.Embedder` for audio queries (default: loaded on first need).
    """

    def __init__(self, store: Any, *, index: str | None = "default", exact: bool = False, embedder: Any = None,
                 allow_new: bool = False, space: str | None = None) -> None:
        self.store = store
        self.space = None if space in (None, "", "raw") else space  # similarity space (embedkit.spaces), by name
        self.index_name = None if exact else index
        self.allow_new = allow_new
        self._embedder = embedder
        self._index: StoreIndex | None = None
        self._patch_index: StoreIndex | None = None
        self._meta: dict[int, Any] = {}
        self._owns_store = False
        self.index_info: dict = {}

    @classmethod
    def open(cls, path: str | os.PathLike, **kwargs: Any) -> Searcher:
        """Open the store at ``path`` read-only and return a Searcher over it (close it, or use ``with``)."""
        from .store import Store

        s = cls(Store.open(path, mode="r"), **kwargs)
        s._owns_store = True
        return s

    def close(self) -> None:
        if self._owns_store:
            self.store.close()

    def __enter__(self) -> Searcher:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---- index -----------------------------------------------------------------------------------

    @property
    def index(self) -> StoreIndex:
        """The track index in use (loaded, or an exact in-memory one built from the store)."""
        if self._index is None:
            self._index = self._load_index("tracks")
        return self._index

    def _load_index(self, source: str) -> StoreIndex:
        name = "patches" if source == "patches" else self.index_name
        if self.index_name is not None:
            try:
                vi = open_for_store(self.store, name=name, allow_new=self.allow_new)
                if vi.card.get("source", "tracks") != source:
                    raise IndexMissingError(
                        f"{index_dir(self.store) / name}.faiss: index is over {vi.card.get('source')}, not {source}"
                    )
                info = {"name": name, "kind": vi.kind, "exact": vi.kind == "flat", "source": source,
                        "recall": (vi.card.get("recall") or {}).get("measured"),
                        "space": (vi.card.get("space") or {}).get("name")}
                if self.space is None or info["space"] == self.space:
                    self.index_info = info if source == "tracks" else {**self.index_info, "patches": info}
                    return vi
                log.info("index %s is not in space %s: exact search in that space", name, self.space)
            except IndexMissingError:
                if source == "tracks" and self.index_name != "default":
                    raise
        # exact search over the stored vectors (mapped into the requested space)
        from .spaces.hooks import space_map

        vmap = space_map(self.store, self.space, source=source)
        if source == "tracks":
            ids = self.store.ids()
            x = self.store.vectors(ids) if ids.size else np.zeros((0, self.store.dim), np.float32)
            if ids.size * self.store.dim > FLAT_MAX_WORK:
                log.warning("no index beside %s: exact search over %d vectors; 'embedkit index build' makes it faster",
                            self.store.path, ids.size)
            vi = StoreIndex(self.store, "exact", _exact(self.store, x if vmap is None else vmap(x), ids), vector_map=vmap)
            self.index_info = {"name": None, "kind": "flat", "exact": True, "source": "tracks", "space": self.space}
        else:
            if not self.store.has_patches:
                raise QueryError(f"{self.store.path}: store has no per-patch vectors; segment search needs a store "
                                 f"embedded with --patches")
            item_ids, starts, pv = self.store.patch_vectors()
            vi = StoreIndex(self.store, "exact-patches",
                            _exact(self.store, pv if vmap is None else vmap(pv), np.arange(item_ids.size), item_ids),
                            source="patches", item_ids=item_ids, starts=starts, vector_map=vmap)
            self.index_info = {**self.index_info, "patches": {"name": None, "kind": "flat", "exact": True}}
        return vi

    def _rerank(self, ids: np.ndarray) -> np.ndarray:
        return self.store.vectors(ids)

    # ---- queries ---------------------------------------------------------------------------------

    def _item(self, item_id: int) -> Any:
        it = self._meta.get(item_id)
        if it is None:
            it = self.store.get(int(item_id))
            self._meta[item_id] = it
        return it

    def _resolve(self, queries: Iterable[Any], *, patches: bool = False) -> list[_Query]:
        out: list[_Query] = []
        audio: list[_Query] = []
        for q in queries:
            for r in self._resolve_one(q, patches=patches):
                out.append(r)
                if r.kind == "audio" and r.error is None:
                    audio.append(r)
        if audio:
            self._embed(audio, patches=patches)
        return out

    def _resolve_one(self, q: Any, *, patches: bool) -> list[_Query]:
        st = self.store
        dim = int(st.manifest.get("patch_dim") or st.dim) if patches else st.dim
        if isinstance(q, np.ndarray):
            return self._from_array(q, "array", dim, patches=patches)
        if isinstance(q, (int, np.integer)) and not isinstance(q, bool):
            return [self._from_id(int(q), str(q), patches=patches)]
        text = os.fspath(q) if isinstance(q, os.PathLike) else str(q)
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            shown = text.encode("utf-8", "surrogateescape").decode("ascii", "backslashreplace")
            return [_Query(shown, error=f"{shown}: not valid UTF-8 text (binary bytes in a query?); give ids, paths or files")]
        resolve = getattr(st, "resolve", None)
        item = st.get(text) if resolve is None else resolve(text, by_content=False)  # the store's one rule
        if item is not None:
            return [self._from_item(item, text, "path", patches=patches)]
        p = Path(text)
        if not p.exists():
            if text.strip().lstrip("-").isdigit():
                return [self._from_id(int(text), text, patches=patches)]
            return [_Query(text, error=f"{text}: not a stored id or path of {st.path}, and no such file")]
        if p.is_dir():
            return [_Query(text, error=f"{text}: is a folder, not a query (give files, ids or stored paths)")]
        if p.suffix.lower() == ".npy":
            try:
                arr = np.load(p, allow_pickle=False)
            except Exception as exc:
                return [_Query(text, error=f"{text}: unreadable .npy vector file ({type(exc).__name__}: {exc})")]
            return self._from_array(arr, text, dim, patches=patches)
        # same bytes as a stored file: that item (its vector, and it is "self")
        try:
            from .store import file_sha256

            digest = file_sha256(p)
            same = [it for it in st.find_by_hash(digest) if it.status == "ok"]
        except (OSError, AttributeError):
            same = []
        if same and not patches:
            r = self._from_item(same[0], text, "audio", patches=patches)
            r.path = str(p)
            return [r]
        return [_Query(text, kind="audio", path=str(p))]

    def _from_id(self, item_id: int, label: str, *, patches: bool) -> _Query:
        item = self.store.get(item_id)
        if item is None:
            return _Query(label, error=f"{label}: no item with id {item_id} in {self.store.path}")
        return self._from_item(item, label, "id", patches=patches)

    def _from_item(self, item: Any, label: str, kind: str, *, patches: bool) -> _Query:
        if item.status != "ok":
            why = f" ({item.error})" if item.error else ""
            return _Query(label, error=f"{label}: stored item {item.id} ({item.path}) has no vector: status {item.status}{why}")
        self._meta[item.id] = item
        q = _Query(label, kind=kind, item_id=int(item.id), path=item.path)
        if patches:
            _, starts, pv = self.store.patch_vectors([item.id])
            q.patches = (pv, starts - starts.min() if starts.size else starts)
        else:
            q.vector = self.store.vectors([item.id])[0]
        vecs = q.patches[0] if patches else q.vector
        if not np.all(np.isfinite(vecs)):
            return _Query(label, error=f"{label}: the stored vector of item {item.id} ({item.path}) holds NaN or infinity; "
                                       f"the store {self.store.path} is damaged: run 'embedkit store verify --repair' "
                                       "(or re-embed that file)")
        return q

    def _from_array(self, arr: np.ndarray, label: str, dim: int, *, patches: bool) -> list[_Query]:
        arr = np.asarray(arr)
        if arr.dtype.kind not in "fiu" or arr.ndim not in (1, 2) or arr.shape[-1] != dim or arr.size == 0:
            return [_Query(label, error=f"{label}: expected float vectors of shape ({dim},) or (n, {dim}), "
                                        f"given shape={arr.shape} dtype={arr.dtype}")]
        arr = arr.astype(np.float32)
        if not np.all(np.isfinite(arr)):
            return [_Query(label, error=f"{label}: vectors contain NaN or infinity")]
        if patches:  # one clip: rows are consecutive patches
            x = arr.reshape(-1, dim)
            return [_Query(label, kind="vector", patches=(x, PATCH_HOP_S * np.arange(x.shape[0])))]
        if arr.ndim == 1:
            return [_Query(label, kind="vector", vector=arr)]
        return [_Query(f"{label}[{i}]", kind="vector", vector=row) for i, row in enumerate(arr)]

    @property
    def embedder(self) -> Any:
        """An embedder bound to the store's vector spec (`VectorSpec.embedder`; a given embedder is checked
        against the spec and bound to it): audio queries are embedded exactly as the stored vectors were."""
        from .index import store_spec
        from .spec import SpecEmbedder, SpecMismatchError

        if not isinstance(self._embedder, SpecEmbedder):
            spec = store_spec(self.store)
            if spec is None:
                raise ModelMismatchError(f"{self.store.path}: the store's manifest does not say how its vectors were made; "
                                         "audio queries cannot be embedded the same way (query with stored ids or paths)")
            if self._embedder is None:
                self._embedder = spec.embedder()
            else:
                emb = self._embedder
                if getattr(emb, "fingerprint", None) != spec.model_fingerprint:
                    spec.bind(emb)  # raises the one-line SpecMismatchError naming both models
                try:
                    self._embedder = spec.bind(emb)
                except SpecMismatchError:
                    # same weights, but the manifest cannot name the model's blocks (a model without a card,
                    # e.g. a test stand-in): embed with the manifest's own settings
                    m = self.store.manifest
                    self._embedder = SpecEmbedder(spec, _SettingsEmbedder(emb, m.get("layers") or None))
        return self._embedder

    def _embed(self, queries: list[_Query], *, patches: bool) -> None:
        """Embed audio queries on the fly with the store's model, layers, aggregation and excerpt (its spec)."""
        emb = self.embedder
        kw = {"excerpt_s": None} if patches else {}
        results = emb.embed_files([q.path for q in queries], return_patches=patches, **kw)
        for q, r in zip(queries, results):
            if not getattr(r, "ok", hasattr(r, "vector")):
                q.error = r.error
            elif patches:
                q.patches = (np.asarray(r.patch_vectors, np.float32), np.asarray(r.patch_start_s, np.float64))
            else:
                q.vector = np.asarray(r.vector, np.float32)

    # ---- similar ---------------------------------------------------------------------------------

    def similar(
        self,
        queries: Any,
        *,
        k: int = 10,
        exclude_self: bool = True,
        exclude_same_folder: bool = False,
        min_duration_s: float | None = None,
        max_duration_s: float | None = None,
    ) -> list[QueryResult]:
        """The ``k`` stored items nearest to each query, best first (see the module doc for query forms).

        One `QueryResult` per query (a ``.npy`` of n vectors gives n), in order; a query that cannot be
        resolved has ``error`` set and no neighbours, the others go on. Items of unknown duration are
        left out when a duration filter is given.
        """
        if k < 1:
            raise ValueError(f"k must be >= 1, given k={k}")
        qs = self._resolve(_as_list(queries))
        results = [QueryResult(q.label, q.kind, q.item_id, q.path, error=q.error) for q in qs]
        live = [i for i, q in enumerate(qs) if q.error is None]
        if not live:
            return results
        vi = self.index
        Q = np.stack([qs[i].vector for i in live])

        def keep(i: int, item_id: int) -> bool:
            q = qs[i]
            if exclude_self and q.item_id is not None and item_id == q.item_id:
                return False
            if exclude_same_folder or min_duration_s is not None or max_duration_s is not None:
                it = self._item(item_id)
                if it is None:
                    return False
                if exclude_same_folder and q.path and Path(it.path).parent == Path(q.path).parent:
                    return False
                if min_duration_s is not None and (it.duration_s is None or it.duration_s < min_duration_s):
                    return False
                if max_duration_s is not None and (it.duration_s is None or it.duration_s > max_duration_s):
                    return False
            return True

        found = self._filtered_search(vi, Q, [lambda j, i=i: keep(i, j) for i in live], k)
        for i, hits in zip(live, found):
            results[i].neighbors = [
                Neighbor(int(j), self._item(int(j)).path, round(float(s), 6), r + 1) for r, (s, j) in enumerate(hits)
            ]
        return results

    def _filtered_search(self, vi: VectorIndex, Q: np.ndarray, keeps: Sequence[Any], k: int) -> list[list[tuple[float, int]]]:
        """Search, drop what the filters reject, and fetch deeper until ``k`` survive or the index is exhausted."""
        n = len(vi)
        out: list[list[tuple[float, int]]] = [[] for _ in keeps]
        pending = list(range(len(keeps)))
        fetch = min(n, k + 1) if n else 0
        while pending and fetch > 0:
            scores, ids = vi.search(Q[pending], fetch, rerank=self._rerank if vi.kind == "ivfpq" else None)
            still = []
            for row, qi in enumerate(pending):
                hits = [(float(s), int(j)) for s, j in zip(scores[row], ids[row]) if j >= 0 and keeps[qi](int(j))]
                out[qi] = hits[:k]
                if len(hits) < k and fetch < n:
                    still.append(qi)
            pending = still
            fetch = min(n, max(4 * fetch, k + 16))
        return out

    # ---- segments --------------------------------------------------------------------------------

    def segments(
        self,
        clips: Any,
        *,
        k: int = 10,
        exclude_self: bool = False,
        exclude_same_folder: bool = False,
        min_duration_s: float | None = None,
        max_duration_s: float | None = None,
        candidates: int | None = None,
    ) -> list[QueryResult]:
        """Which part of which song sounds like each clip: up to ``k`` songs, each with ``offset_s``.

        The clip's 3-s patches are matched against the store's patches; a hit of clip patch ``j``
        (starting ``a_j`` s into the clip) on a stored patch starting at ``b`` votes for the song offset
        ``b - a_j``. A song's score is the mean similarity of the clip's patches at its best offset.
        """
        if k < 1:
            raise ValueError(f"k must be >= 1, given k={k}")
        qs = self._resolve(_as_list(clips), patches=True)
        results = [QueryResult(q.label, q.kind, q.item_id, q.path, error=q.error) for q in qs]
        live = [i for i, q in enumerate(qs) if q.error is None]
        if not live:
            return results
        if self._patch_index is None:
            self._patch_index = self._load_index("patches")
        pvi = self._patch_index
        item_of, start_of = pvi.item_ids_, pvi.starts_
        per_clip = [qs[i].patches for i in live]
        P = np.concatenate([p[0] for p in per_clip])
        depth = min(len(pvi), candidates or max(50, 10 * k))
        scores, labels = pvi.search(P, max(depth, 1))
        row = 0
        for i, (pv, pstart) in zip(live, per_clip):
            m = pv.shape[0]
            votes: dict[tuple[int, int], float] = {}
            for j in range(m):
                seen: set[tuple[int, int]] = set()
                for s, lab in zip(scores[row + j], labels[row + j]):
                    if lab < 0:
                        continue
                    item = int(item_of[lab])
                    slot = int(round((float(start_of[lab]) - float(pstart[j])) / PATCH_HOP_S))
                    if (item, slot) in seen:
                        continue
                    seen.add((item, slot))
                    votes[(item, slot)] = votes.get((item, slot), 0.0) + float(s)
            row += m
            best: dict[int, tuple[float, int]] = {}
            for (item, slot), v in votes.items():
                if item not in best or v > best[item][0]:
                    best[item] = (v, slot)
            q = qs[i]
            ranked = []
            for item, (v, slot) in sorted(best.items(), key=lambda t: -t[1][0]):
                it = self._item(item)
                if it is None or (exclude_self and q.item_id == item):
                    continue
                if exclude_same_folder and q.path and Path(it.path).parent == Path(q.path).parent:
                    continue
                if min_duration_s is not None and (it.duration_s is None or it.duration_s < min_duration_s):
                    continue
                if max_duration_s is not None and (it.duration_s is None or it.duration_s > max_duration_s):
                    continue
                ranked.append(Neighbor(item, it.path, round(v / m, 6), len(ranked) + 1, max(0.0, slot * PATCH_HOP_S)))
                if len(ranked) == k:
                    break
            results[i].neighbors = ranked
        return results


class _SettingsEmbedder:
    """Wraps an embedder so that the ``layers`` it is asked for are the store manifest's own list."""

    def __init__(self, emb: Any, layers: Any) -> None:
        self.emb, self.layers = emb, layers

    def embed_files(self, paths: Any, **kw: Any) -> Any:
        kw["layers"] = self.layers
        return self.emb.embed_files(paths, **kw)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.emb, name)


def _exact(store: Any, x: np.ndarray, labels: np.ndarray, item_ids: np.ndarray | None = None) -> VectorIndex:
    """An in-memory exact index over ``x``; damaged (non-finite) rows are refused naming the store and an item."""
    try:
        return VectorIndex.build(x, labels, kind="flat", tune=False)
    except NonFiniteVectorsError as exc:
        bad = int(exc.ids[0]) if item_ids is None else int(item_ids[int(exc.ids[0])])
        raise NonFiniteVectorsError(
            f"{store.path}: {exc.ids.size} stored vector(s) hold NaN or infinity (e.g. item {bad}); the store is damaged: "
            "run 'embedkit store verify --repair' (or re-embed those files)", exc.ids) from None


def _as_list(queries: Any) -> list[Any]:
    if isinstance(queries, (str, bytes, os.PathLike, int, np.integer)):
        return [queries]
    if isinstance(queries, np.ndarray):
        return [queries]
    return list(queries)


def similar(store: Any, queries: Any, *, k: int = 10, index: str | None = "default", exact: bool = False,
            embedder: Any = None, space: str | None = None, **filters: Any) -> list[QueryResult]:
    """One-call form: ``similar("songs.store", ["a.ogg", 12], k=5)`` (store path or open `Store`);
    ``space``: search in that similarity space of the store (`embedkit.spaces`)."""
    if isinstance(store, (str, os.PathLike)):
        with Searcher.open(store, index=index, exact=exact, embedder=embedder, space=space) as s:
            return s.similar(queries, k=k, **filters)
    return Searcher(store, index=index, exact=exact, embedder=embedder, space=space).similar(queries, k=k, **filters)
