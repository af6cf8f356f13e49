"""An index bound to its store: `StoreIndex` (build / open / update / check / search).

An index lives beside its store as ``STORE/index/NAME.faiss`` + ``NAME.npz`` + ``NAME.json`` (see
`embedkit.index.vector_index`). The card records the store's vector spec, its identity (store uuid when
it has one, and a digest of the indexed items' ids, rows and file checksums) and the indexed rows. An
index whose spec differs from the store's, that was copied from another store, or whose items were
re-embedded or removed, is refused with one line; one that merely lacks new store items can be brought
up to date incrementally (`StoreIndex.update`). Builds of one index name take a lock
(``STORE/index/.NAME.lock``): a second build waits for the first, then finds the index up to date.

A *vector map* (issue 12's metric spaces) can be plugged in: an object with ``__call__(x (n, dim)) ->
(n, dim') float32`` and ``card() -> dict`` whose ``"loader"`` entry names an importable
``"module:function"`` taking ``(store, card)`` and returning the same map. Vectors are mapped before the
index's own normalisation/PCA; queries and re-ranked vectors are mapped the same way on search.
"""
from __future__ import annotations

import contextlib
import fcntl
import hashlib
import importlib
import logging
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from ..sidecar import os_error_text
from .base import INDEX_DIR, IndexMismatchError, IndexMissingError, IndexStaleError, IndexStateError
from .plan import MIN_UPDATE_TUNING, default_memory_budget
from .vector_index import NonFiniteVectorsError, RecallReport, VectorIndex, _check_name, _digest

log = logging.getLogger("embedkit.index")

SOURCES = ("tracks", "patches")


class VectorMap(Protocol):
    """Maps store vectors into another space before indexing (see the module doc)."""

    def __call__(self, x: np.ndarray) -> np.ndarray: ...

    def card(self) -> dict: ...


def index_dir(store: Any) -> Path:
    """``STORE/index`` for a `Store` or a store path."""
    return Path(getattr(store, "path", store)) / INDEX_DIR


# ---- the store's side ----------------------------------------------------------------------------


def store_spec(store: Any) -> Any:
    """The store's `VectorSpec` (None when its manifest predates specs and cannot be read as one)."""
    spec = getattr(store, "spec", None)
    if spec is not None and not callable(spec):
        return spec
    from ..spec import SpecError, VectorSpec

    try:
        return VectorSpec.from_json(store.manifest)
    except SpecError:
        return None


def store_uuid(store: Any) -> str | None:
    """The store's identity, when it has one (``Store.uuid`` or the manifest's ``uuid``)."""
    u = getattr(store, "uuid", None)
    if u is None:
        u = (getattr(store, "manifest", None) or {}).get("uuid")
    return None if u is None else str(u)


def _store_state(store: Any, source: str) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """(item ids, store rows, patch start_s or None): one entry per indexable vector, in store order.

    ``tracks``: one entry per embedded item; its vector row changes when the item is re-embedded.
    ``patches``: one entry per stored patch (items in id order), with the patch's row and start (s).
    """
    if source == "tracks":
        ids, rows = store.rows()
        return np.asarray(ids, np.int64), np.asarray(rows, np.int64), None
    if source == "patches":
        if not store.has_patches:
            raise IndexStateError(f"{store.path}: store has no per-patch vectors (embed with --patches for segment search)")
        item_ids, starts, _ = store.patch_vectors()
        first = {it.id: (-1 if it.patch_row is None else it.patch_row) for it in store.items("ok")}
        item_ids = np.asarray(item_ids, np.int64)
        if item_ids.size == 0:
            return item_ids, item_ids.copy(), np.zeros(0)
        change = np.r_[True, item_ids[1:] != item_ids[:-1]]
        group_start = np.maximum.accumulate(np.where(change, np.arange(item_ids.size), 0))
        offset = np.arange(item_ids.size) - group_start
        rows = np.array([first[i] for i in item_ids], dtype=np.int64) + offset
        return item_ids, rows, np.asarray(starts, np.float64)
    raise ValueError(f"unknown index source {source!r}; expected one of {SOURCES}")


def _store_vectors(store: Any, source: str, ids: np.ndarray | None = None) -> np.ndarray:
    """Track vectors of ``ids`` (default all), or all patch vectors (``ids`` then selects positions)."""
    if source == "tracks":
        return store.vectors(ids)
    pv = store.patch_vectors()[2]
    return pv if ids is None else pv[ids]


def content_digest(store: Any, item_ids: np.ndarray) -> str:
    """sha256 over the (id, row, file sha256) of the store items ``item_ids``: what the index was built from.

    Two stores with the same settings but other files (an index folder copied between them) differ here.
    """
    want = set(np.unique(np.asarray(item_ids, np.int64)).tolist())
    rows = sorted((int(it.id), -1 if it.row is None else int(it.row), it.sha256 or "")
                  for it in store.items("ok") if int(it.id) in want)
    h = hashlib.sha256()
    for i, r, s in rows:
        h.update(f"{i}:{r}:{s}\n".encode())
    h.update(f"n={len(rows)}/{len(want)}".encode())
    return h.hexdigest()


#: Indexed track vectors hashed into the card (evenly spaced): enough to tell two stores apart, cheap to reread.
SAMPLE_ROWS = 64


def vector_sample_digest(store: Any, item_ids: np.ndarray) -> str:
    """sha256 of the stored vectors of up to `SAMPLE_ROWS` evenly spaced ids of ``item_ids`` (sorted)."""
    ids = np.unique(np.asarray(item_ids, np.int64))
    if ids.size > SAMPLE_ROWS:
        ids = ids[np.linspace(0, ids.size - 1, SAMPLE_ROWS).round().astype(np.int64)]
    h = hashlib.sha256(np.ascontiguousarray(ids, "<i8").tobytes())
    if ids.size:
        h.update(np.ascontiguousarray(store.vectors(ids), "<f4").tobytes())
    return h.hexdigest()


def _store_card(store: Any, source: str, ids: np.ndarray, rows: np.ndarray) -> dict:
    m = store.manifest
    spec = store_spec(store)
    return {
        "source": source,
        "store": {
            "path": str(Path(store.path).resolve()),
            "uuid": store_uuid(store),
            "fingerprint": store.fingerprint,
            "model": m.get("model"),
            "model_fingerprint": store.model_fingerprint,
            "settings": store.describe_settings() if hasattr(store, "describe_settings") else None,
            "vector_spec": None if spec is None else spec.to_json(),
        },
        "items_sha256": _digest(np.concatenate([ids, rows])),
        "content_sha256": content_digest(store, ids),
        "vectors_sample_sha256": vector_sample_digest(store, ids) if source == "tracks" else None,
    }


def check_target(store: Any, name: str) -> None:
    """Refuse to write index ``name`` over files that are not an embedkit index (a rebuild replaces only an index)."""
    d = index_dir(store)
    if d.exists() and not d.is_dir():
        raise IndexStateError(f"{d}: is a file, not the store's index folder; move it away")
    for ext in ("json", "faiss", "npz"):
        f = d / f"{name}.{ext}"
        if f.is_symlink() or (f.exists() and not f.is_file()):
            raise IndexStateError(f"{f}: is not a file written by embedkit (a folder or link); move it away or use another --name")
    card = d / f"{name}.json"
    if card.exists():
        import json

        try:
            doc = json.loads(card.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            doc = None
        if not isinstance(doc, dict) or "factory" not in doc or "kind" not in doc:
            # an unreadable card of ours (torn, damaged) may be rebuilt; a foreign JSON file may not
            if isinstance(doc, dict) or doc is None and not _looks_like_index_card(card):
                raise IndexStateError(f"{card}: is not an embedkit index card; the build would replace it: move it away "
                                      "or use another --name")


def _looks_like_index_card(path: Path) -> bool:
    try:
        head = path.read_bytes()[:4096]
    except OSError:
        return False
    return b'"factory"' in head or b'"ids_sha256"' in head


@contextlib.contextmanager
def build_lock(store: Any, name: str) -> Iterator[None]:
    """Hold ``STORE/index/.NAME.lock`` (waits while another process builds the same index)."""
    d = index_dir(store)
    path = d / f".{name}.lock"
    try:
        d.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    except OSError as exc:
        raise IndexStateError(os_error_text(path, exc, action="cannot create the index lock")) from None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            log.warning("index %s of %s is being built by another process; waiting for it", name, store.path)
            fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def _load_map(store: Any, card: dict) -> VectorMap | None:
    m = card.get("space")
    if not m:
        return None
    loader = m.get("loader") if isinstance(m, dict) else None
    if not isinstance(loader, str) or ":" not in loader:
        raise IndexStateError(f"{index_dir(store)}: the index card names a vector space without a loader; "
                              "rebuild with 'embedkit index build --rebuild'")
    mod, _, fn = loader.partition(":")
    if not mod.startswith("embedkit."):
        raise IndexStateError(f"{index_dir(store)}: refusing vector-space loader {loader!r} (not part of embedkit)")
    return getattr(importlib.import_module(mod), fn)(store, m)


# ---- the bound index -----------------------------------------------------------------------------


class StoreIndex:
    """A `VectorIndex` bound to one store: its name, source (tracks | patches), per-label item ids and
    patch starts (patches), and the optional vector map. ``search`` maps queries like the stored vectors.
    Attributes of the inner index (``kind``, ``card``, ``ids_``, ``recall_``, ...) are readable here too.
    """

    def __init__(self, store: Any, name: str, index: VectorIndex, *, source: str = "tracks",
                 item_ids: np.ndarray | None = None, starts: np.ndarray | None = None,
                 vector_map: VectorMap | None = None) -> None:
        self.store = store
        self.name = name
        self.index = index
        self.source = source
        self.item_ids = item_ids
        self.starts = starts
        self.vector_map = vector_map

    # compatibility with code that read these off the VectorIndex
    @property
    def item_ids_(self) -> np.ndarray | None:
        return self.item_ids

    @property
    def starts_(self) -> np.ndarray | None:
        return self.starts

    def __getattr__(self, attr: str) -> Any:
        if attr in ("index", "store"):
            raise AttributeError(attr)
        return getattr(self.index, attr)

    def __len__(self) -> int:
        return len(self.index)

    @property
    def path(self) -> Path:
        return index_dir(self.store) / f"{self.name}.faiss"

    def _map(self, x: np.ndarray) -> np.ndarray:
        return x if self.vector_map is None else np.asarray(self.vector_map(x), np.float32)

    def search(self, queries: np.ndarray, k: int = 10, *, rerank: Callable[[np.ndarray], np.ndarray] | None = None,
               search_params: dict | None = None) -> tuple[np.ndarray, np.ndarray]:
        """`VectorIndex.search` on mapped queries; ``rerank`` defaults to the store's exact vectors."""
        if rerank is None and self.source == "tracks":
            rerank = self.store.vectors
        rr = None if rerank is None else (lambda ids: self._map(rerank(ids)))
        return self.index.search(self._map(np.asarray(queries)), k, rerank=rr, search_params=search_params)

    # -- build / open / update

    @classmethod
    def build(
        cls,
        store: Any,
        *,
        name: str = "default",
        kind: str = "auto",
        memory_budget_bytes: int | None = None,
        metric: str = "cosine",
        pca_dim: int | None = None,
        whiten: bool = False,
        target_recall: float = 0.95,
        k: int = 10,
        source: str = "tracks",
        rebuild: bool = False,
        use_gpu: bool | None = None,
        seed: int = 0,
        vector_map: VectorMap | None = None,
    ) -> tuple[StoreIndex, dict]:
        """Build index ``name`` over the store's ``source`` vectors and save it under ``STORE/index``.

        When a compatible index of that name exists and ``rebuild`` is False, only the store's new items
        are added (incremental update). Returns ``(index, summary)``; summary ``action`` is "built",
        "updated" or "unchanged", ``added`` the number of vectors added, ``card`` the saved card.
        """
        _check_name(name)
        with build_lock(store, name):
            return cls._build_locked(store, name=name, kind=kind, memory_budget_bytes=memory_budget_bytes,
                                     metric=metric, pca_dim=pca_dim, whiten=whiten, target_recall=target_recall, k=k,
                                     source=source, rebuild=rebuild, use_gpu=use_gpu, seed=seed, vector_map=vector_map)

    @classmethod
    def _build_locked(cls, store: Any, *, name: str, kind: str, memory_budget_bytes: int | None, metric: str,
                      pca_dim: int | None, whiten: bool, target_recall: float, k: int, source: str, rebuild: bool,
                      use_gpu: bool | None, seed: int, vector_map: VectorMap | None) -> tuple[StoreIndex, dict]:
        d = index_dir(store)
        check_target(store, name)
        space = None if vector_map is None else vector_map.card()
        if not rebuild and (d / f"{name}.json").exists():
            try:
                old = read_card(store, name)
                if _same_options(old, kind=kind, metric=metric, pca_dim=pca_dim, whiten=whiten, source=source, space=space):
                    si, added = cls._update_locked(store, name=name, use_gpu=use_gpu, target_recall=target_recall, seed=seed)
                    return si, {"action": "updated" if added else "unchanged", "added": added, "card": si.card}
                log.info("index %s was built with other options; rebuilding it", name)
            except (IndexStaleError, IndexMismatchError) as exc:
                log.warning("%s; rebuilding it", str(exc).split(";")[0])
        ids, rows, starts = _store_state(store, source)
        budget = default_memory_budget() if memory_budget_bytes is None else int(memory_budget_bytes)
        if source == "tracks" and ids.size >= 2:
            from .ondisk import build_store_ondisk  # noqa: PLC0415  (indexes past RAM: never load all vectors)

            built = build_store_ondisk(store, d, name, ids=ids, rows=rows, kind=kind, budget=budget, metric=metric,
                                       pca_dim=pca_dim, whiten=whiten, target_recall=target_recall, k=k, seed=seed,
                                       vector_map=vector_map)
            if built is not None:
                built.card.update(_store_card(store, source, ids, rows))
                built.card.update({"budget_bytes": budget, "requested_kind": kind})
                if space is not None:
                    built.card["space"] = space
                built.save(d, name)
                return (cls(store, name, built, source=source, vector_map=vector_map),
                        {"action": "built", "added": int(ids.size), "card": built.card})
        x = _store_vectors(store, source)
        if x.shape[0] == 0 and kind not in ("auto", "flat"):
            raise IndexStateError(f"{store.path}: store has no embedded {source}; a {kind} index needs vectors to train on")
        labels = ids if source == "tracks" else np.arange(ids.size, dtype=np.int64)
        try:
            from .vector_index import check_finite

            check_finite(x, ids)
        except NonFiniteVectorsError as exc:
            raise NonFiniteVectorsError(f"{store.path}: {exc}", exc.ids) from None
        if vector_map is not None:
            x = np.asarray(vector_map(x), np.float32)
        vi = VectorIndex.build(
            x, labels, kind=kind, memory_budget_bytes=budget, metric=metric, pca_dim=pca_dim, whiten=whiten,
            target_recall=target_recall, k=k, use_gpu=use_gpu, rows=rows, seed=seed,
        )
        vi.card.update(_store_card(store, source, ids, rows))
        vi.card.update({"budget_bytes": budget, "requested_kind": kind})
        if space is not None:
            vi.card["space"] = space
        vi.save(d, name)
        si = cls(store, name, vi, source=source, item_ids=None if starts is None else ids,
                 starts=starts, vector_map=vector_map)
        return si, {"action": "built", "added": int(labels.size), "card": vi.card}

    @classmethod
    def open(cls, store: Any, *, name: str = "default", allow_new: bool = False, use_gpu: bool | None = None) -> StoreIndex:
        """Load index ``name`` of ``store`` and check that it fits; refuses stale/mismatched/foreign
        indexes (one line). ``allow_new``: accept an index that lacks items added to the store since
        (those are not searched)."""
        vi = VectorIndex.load(index_dir(store), name, use_gpu=use_gpu)
        si = cls(store, name, vi, source=vi.card.get("source", "tracks"), vector_map=_load_map(store, vi.card))
        state = si.check()
        if state["new"].size and not allow_new:
            raise IndexStaleError(
                f"{si.path}: {state['new'].size} store items are not in the index yet; "
                f"run 'embedkit index build {store.path} --name {name}' to add them"
            )
        ids, _, starts = state["state"]
        if starts is not None:
            si.item_ids, si.starts = ids[: len(vi)], starts[: len(vi)]
        return si

    def update(self, *, target_recall: float | None = None, seed: int = 0) -> int:
        """Add the store's new items (no retraining), re-tune search parameters, save; returns the count added."""
        with build_lock(self.store, self.name):
            return self._add_new(target_recall=target_recall, seed=seed)

    @classmethod
    def _update_locked(cls, store: Any, *, name: str, use_gpu: bool | None, target_recall: float | None,
                       seed: int) -> tuple[StoreIndex, int]:
        vi = VectorIndex.load(index_dir(store), name, use_gpu=use_gpu)
        si = cls(store, name, vi, source=vi.card.get("source", "tracks"), vector_map=_load_map(store, vi.card))
        return si, si._add_new(target_recall=target_recall, seed=seed)

    def _add_new(self, *, target_recall: float | None, seed: int) -> int:
        store, vi, source = self.store, self.index, self.source
        state = self.check()
        new = state["new"]
        ids, rows, starts = state["state"]
        if new.size and vi.kind == "ivfpq_disk":  # its inverted lists are never changed in place
            raise IndexStaleError(f"{self.path}: {new.size} store items are not in this on-disk index; run "
                                  f"'embedkit index build {store.path} --name {self.name} --rebuild'")
        if new.size:
            if source == "tracks":
                new_rows = rows[np.searchsorted(ids, new)]
                xnew = store.vectors(new)
            else:
                new_rows = rows[new]
                xnew = _store_vectors(store, source, new)
            try:
                from .vector_index import check_finite

                check_finite(xnew, new if source == "tracks" else ids[new])
            except NonFiniteVectorsError as exc:
                raise NonFiniteVectorsError(f"{store.path}: {exc}", exc.ids) from None
            xnew = self._map(xnew)
            prev = getattr(vi, "recall_", None)
            target = target_recall or (prev.target if prev else 0.95)
            kk = prev.k if prev and prev.k else 10
            if vi.kind != "flat" and len(vi) > kk and xnew.shape[0] >= MIN_UPDATE_TUNING:
                # the new vectors are not in the index yet: held-out queries for re-tuning, then added
                xold = store.vectors(vi.ids_) if source == "tracks" else _store_vectors(store, source, np.arange(len(vi)))
                pick = np.sort(np.random.default_rng(seed).choice(xnew.shape[0], min(500, xnew.shape[0]), replace=False))
                vi.tune(self._map(xold), queries=xnew[pick], target_recall=target, k=kk, seed=seed)
                del xold
            elif vi.kind == "flat":
                vi.recall_ = RecallReport(kk, target, 1.0, 0, True, {}, len(vi) + int(new.size))
            vi.add(xnew, new, rows=new_rows)
            vi.card.update(_store_card(store, source, ids, rows))
            vi.card["added_incrementally"] = int(vi.card.get("added_incrementally", 0)) + int(new.size)
            vi.save(index_dir(store), self.name)
        if starts is not None:
            self.item_ids, self.starts = ids[: len(vi)], starts[: len(vi)]
        return int(new.size)

    # -- checks

    def check(self) -> dict:
        """Compare the index with its store; raises `IndexMismatchError` (other spec/dim, another store) or
        `IndexStaleError` (indexed items removed or re-embedded). Items only added to the store since are
        not an error: returns ``{"new": positions/ids of those, "state": (ids, rows, starts)}``.
        """
        return check_store(self.index, self.store, name=self.name, vector_map=self.vector_map)


def check_store(vi: Any, store: Any, *, name: str = "default", vector_map: VectorMap | None = None) -> dict:
    """`StoreIndex.check` for a loaded `VectorIndex` (or `StoreIndex`) ``vi`` of ``store``."""
    if isinstance(vi, StoreIndex):
        vector_map = vector_map or vi.vector_map
        vi = vi.index
    card = vi.card
    where = f"{index_dir(store) / name}.faiss"
    rebuild = f"rebuild with 'embedkit index build {store.path} --name {name} --rebuild'"
    s = card.get("store", {}) if isinstance(card.get("store"), dict) else {}
    spec_doc = s.get("vector_spec")
    mine = store_spec(store)
    if isinstance(spec_doc, dict) and mine is not None:
        from ..spec import SpecError, SpecMismatchError, VectorSpec

        try:
            VectorSpec.from_json(spec_doc).check_compatible(mine, what=f"index {where}", other_what=f"store {store.path}",
                                                             hint=rebuild)
        except (SpecMismatchError, SpecError) as exc:
            raise IndexMismatchError(str(exc)) from None
    if s.get("fingerprint") != store.fingerprint:
        raise IndexMismatchError(
            f"{where}: index was built over vectors with settings {str(s.get('fingerprint'))[:12]}… "
            f"({s.get('settings')}), the store has {store.fingerprint[:12]}…; {rebuild}"
        )
    uid = store_uuid(store)
    if s.get("uuid") and uid and s.get("uuid") != uid:
        raise IndexMismatchError(f"{where}: index was built for another store (uuid {str(s['uuid'])[:8]}…, this store "
                                 f"is {uid[:8]}…); {rebuild}")
    source = card.get("source", "tracks")
    dim = store.dim if source == "tracks" else int(store.manifest.get("patch_dim") or 0)
    if vector_map is None and vi.dim != dim:
        raise IndexMismatchError(f"{where}: index dim {vi.dim} != store {source} dim {dim}; {rebuild}")
    ids, rows, starts = _store_state(store, source)
    if source == "tracks":
        order = np.argsort(ids)
        sids, srows = ids[order], rows[order]
        if sids.size:
            pos = np.clip(np.searchsorted(sids, vi.ids_), 0, sids.size - 1)
            present = sids[pos] == vi.ids_
        else:
            pos, present = np.zeros(vi.ids_.size, np.int64), np.zeros(vi.ids_.size, bool)
        if not np.all(present):
            gone = vi.ids_[~present]
            raise IndexStaleError(
                f"{where}: {gone.size} indexed items are no longer embedded in the store (e.g. id {int(gone[0])}); {rebuild}"
            )
        if vi.rows_ is not None and vi.ids_.size and np.any(srows[pos] != vi.rows_):
            changed = vi.ids_[srows[pos] != vi.rows_]
            raise IndexStaleError(
                f"{where}: {changed.size} items were re-embedded since the index was built (e.g. id {int(changed[0])}); {rebuild}"
            )
        new = np.setdiff1d(ids, vi.ids_)
        indexed_items = vi.ids_
    else:
        n_old = len(vi)
        if ids.size < n_old or (vi.rows_ is not None and np.any(rows[:n_old] != vi.rows_)):
            raise IndexStaleError(f"{where}: the store's patches changed since the index was built; {rebuild}")
        new = np.arange(n_old, ids.size, dtype=np.int64)
        indexed_items = ids[:n_old]
    want = card.get("content_sha256")
    sample = card.get("vectors_sample_sha256")
    if (want is not None and want != content_digest(store, indexed_items)) or (
            sample is not None and source == "tracks" and sample != vector_sample_digest(store, indexed_items)):
        raise IndexMismatchError(f"{where}: index was built over other files than this store holds (copied from "
                                 f"another store?); {rebuild}")
    return {"new": new, "state": (ids, rows, starts)}


def _same_options(card: dict, *, kind: str, metric: str, pca_dim: int | None, whiten: bool, source: str,
                  space: dict | None = None) -> bool:
    """Whether an existing index (its card) was built with these options (then it can be updated)."""
    t = card.get("transform", {})
    same_pca = (pca_dim or None) == (t.get("pca_dim") or None) or (whiten and not pca_dim and t.get("whiten"))
    return (
        (kind == "auto" or kind == card.get("kind"))
        and metric == t.get("metric")
        and bool(same_pca)
        and bool(whiten) == bool(t.get("whiten"))
        and card.get("source", "tracks") == source
        and (card.get("space") or None) == (space or None)
    )


# ---- function API (the 0.1 names) -----------------------------------------------------------------


def build_for_store(store: Any, **kwargs: Any) -> tuple[StoreIndex, dict]:
    """`StoreIndex.build` (same arguments)."""
    return StoreIndex.build(store, **kwargs)


def open_for_store(store: Any, *, name: str = "default", allow_new: bool = False, use_gpu: bool | None = None) -> StoreIndex:
    """`StoreIndex.open`."""
    return StoreIndex.open(store, name=name, allow_new=allow_new, use_gpu=use_gpu)


def update_for_store(store: Any, *, name: str = "default", use_gpu: bool | None = None,
                     target_recall: float | None = None, seed: int = 0) -> tuple[StoreIndex, int]:
    """Add the store's new items to index ``name`` (no retraining), re-tune, save: ``(index, number added)``."""
    _check_name(name)
    with build_lock(store, name):
        return StoreIndex._update_locked(store, name=name, use_gpu=use_gpu, target_recall=target_recall, seed=seed)


def list_indexes(store: Any) -> list[str]:
    """Names of the indexes saved beside ``store``."""
    d = index_dir(store)
    return sorted(p.stem for p in d.glob("*.json")) if d.exists() else []


def read_card(store: Any, name: str = "default") -> dict:
    """The card JSON of index ``name`` (no FAISS import)."""
    import json

    p = index_dir(store) / f"{name}.json"
    if not p.exists():
        raise IndexMissingError(f"{p}: no index named {name!r} (build one with 'embedkit index build')")
    try:
        card = json.loads(p.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise IndexStateError(f"{p}: unreadable index card ({' '.join(str(exc).split())[:100]}); "
                              "rebuild with 'embedkit index build --rebuild'") from None
    if not isinstance(card, dict):
        raise IndexStateError(f"{p}: not an index card; rebuild with 'embedkit index build --rebuild'")
    from ..sidecar import seal_problem

    if (problem := seal_problem(card)) is not None:
        raise IndexStateError(f"{p}: damaged index card ({problem}); rebuild with 'embedkit index build --rebuild'")
    return card
