"""A 2-D map of a store's track vectors: computed once, cached beside the store, updated incrementally.

>>> from embedkit.layout2d import layout_for_store                       # doctest: +SKIP
>>> with Store.open("music.ekstore") as st:                               # doctest: +SKIP
...     lay = layout_for_store(st)          # Layout2D: ids (n,) int64, xy (n, 2) float32 in [0, 1]

How the map is made (``method="auto"``, chosen by size):

- vectors are L2-normalised (similarity in embedkit is cosine) and projected on their first
  `PCA_DIM` principal components (numpy SVD of at most `PCA_SAMPLE` vectors);
- fewer than `TSNE_MIN` items: the first two principal components (t-SNE needs a neighbourhood);
- otherwise t-SNE (openTSNE, FFT-accelerated, cosine on the PCA projection) on all items up to
  `TSNE_FIT_MAX`, or on a random sample of that many; every other item is *placed*: put at the
  similarity-weighted mean position of its `PLACE_K` nearest fitted items (exact search through
  `embedkit.index.VectorIndex`), so 100k tracks cost one 10k-point t-SNE plus a k-NN pass;
- without openTSNE installed (``pip install 'embedkit[serve]'``) ``auto`` falls back to PCA.

The cache (``STORE/layout/NAME.npz`` + ``NAME.json``; or under ``$EMBEDKIT_HOME/layouts/`` when the
store folder is not writable) keeps ids, store rows, positions and the PCA basis. Reopening a store
that gained items places only the new ones with the same k-NN rule; items that were re-embedded are
re-placed; removed items are dropped. The layout is recomputed from scratch when the store's settings
fingerprint changes or when more than `REFIT_FRACTION` of the items are new.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ._version import __version__
from .errors import EmbedkitError

log = logging.getLogger("embedkit.layout2d")

METHODS = ("auto", "tsne", "pca")
PCA_DIM = 50
PCA_SAMPLE = 20_000
TSNE_MIN = 30
TSNE_FIT_MAX = 5_000
PLACE_K = 10
REFIT_FRACTION = 0.5
LAYOUT_DIR = "layout"
CARD_FORMAT = 1


class LayoutError(EmbedkitError):
    """A layout could not be computed or its cache is unusable (message names the file)."""


@dataclass
class Layout2D:
    """Map positions of store items.

    ``ids`` ``(n,) int64`` store ids (ascending); ``rows`` ``(n,) int64`` their vector rows when laid out
    (a changed row means the item was re-embedded); ``xy`` ``(n, 2) float32`` positions scaled into
    [0, 1] (aspect kept); ``mean`` ``(d,)`` / ``components`` ``(d, p)`` the PCA basis used;
    ``fitted`` ``(n,) bool`` items the embedding was fitted on (the others were placed by k-NN).
    """

    ids: np.ndarray
    rows: np.ndarray
    xy: np.ndarray
    method: str
    mean: np.ndarray
    components: np.ndarray
    fitted: np.ndarray
    info: dict = field(default_factory=dict)

    def __len__(self) -> int:
        return int(self.ids.size)

    def position_of(self, ids: np.ndarray) -> np.ndarray:
        """Positions ``(len(ids), 2)`` of these store ids (NaN for ids not on the map)."""
        ids = np.asarray(ids, np.int64).ravel()
        pos = np.minimum(np.searchsorted(self.ids, ids), max(self.ids.size - 1, 0))
        out = np.full((ids.size, 2), np.nan, np.float32)
        ok = self.ids.size > 0
        hit = (self.ids[pos] == ids) if ok else np.zeros(ids.size, bool)
        out[hit] = self.xy[pos[hit]]
        return out

    def project(self, X: np.ndarray) -> np.ndarray:
        """Vectors ``(m, d)`` → the PCA space ``(m, p) float32`` the layout was made in."""
        return (_l2n(np.asarray(X, np.float32)) - self.mean) @ self.components

    def place(self, X: np.ndarray, *, k: int = PLACE_K) -> np.ndarray:
        """Positions ``(m, 2) float32`` for new vectors ``(m, d)`` from their k nearest fitted items."""
        return _place(self.project(X), self._anchor_z, self.xy[self.fitted], k)

    # anchors: the PCA projections of the fitted items, kept in the cache
    _anchor_z: np.ndarray = field(default=None, repr=False)  # type: ignore[assignment]


def _l2n(x: np.ndarray) -> np.ndarray:
    n = np.linalg.norm(x, axis=1, keepdims=True)
    return x / np.maximum(n, 1e-12)


def fit_pca(X: np.ndarray, dim: int = PCA_DIM, *, sample: int = PCA_SAMPLE, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``(mean (d,), components (d, p))`` of the L2-normalised vectors ``X (n, d)``; ``p = min(dim, n, d)``."""
    Xn = _l2n(np.asarray(X, np.float32))
    if Xn.shape[0] > sample:
        Xn = Xn[np.random.default_rng(seed).choice(Xn.shape[0], sample, replace=False)]
    mean = Xn.mean(axis=0)
    p = max(1, min(dim, Xn.shape[0], Xn.shape[1]))
    if Xn.shape[0] < 2:
        comp = np.eye(Xn.shape[1], p, dtype=np.float32)
    else:
        _, _, vt = np.linalg.svd((Xn - mean).astype(np.float64), full_matrices=False)
        comp = vt[:p].T.astype(np.float32)
        # a deterministic sign per component (largest loading positive)
        sign = np.sign(comp[np.abs(comp).argmax(axis=0), np.arange(comp.shape[1])])
        comp *= np.where(sign == 0, 1.0, sign)[None, :].astype(np.float32)
    return mean.astype(np.float32), comp


def _place(z_new: np.ndarray, z_anchor: np.ndarray, xy_anchor: np.ndarray, k: int) -> np.ndarray:
    """Similarity-weighted mean position of each new point's ``k`` nearest anchors (cosine in PCA space)."""
    from .index import VectorIndex

    m = z_new.shape[0]
    if m == 0:
        return np.zeros((0, 2), np.float32)
    if z_anchor.shape[0] == 0:
        return np.full((m, 2), 0.5, np.float32)
    k = min(k, z_anchor.shape[0])
    vi = VectorIndex.build(np.ascontiguousarray(z_anchor, np.float32), np.arange(z_anchor.shape[0], dtype=np.int64),
                           kind="flat", tune=False)
    out = np.empty((m, 2), np.float32)
    for a in range(0, m, 8192):
        s, j = vi.search(np.ascontiguousarray(z_new[a : a + 8192], np.float32), k)
        j = np.where(j < 0, 0, j)
        w = np.exp((s - s[:, :1]) * 20.0)  # sharp: the nearest anchors dominate
        w = np.where(np.isfinite(w), w, 0.0)
        w /= np.maximum(w.sum(axis=1, keepdims=True), 1e-12)
        out[a : a + 8192] = np.einsum("mk,mkc->mc", w, xy_anchor[j]).astype(np.float32)
    return out


def _normalise_xy(xy: np.ndarray) -> tuple[np.ndarray, dict]:
    """Scale positions into [0, 1] keeping the aspect ratio; returns the transform for later points."""
    lo = np.nanmin(xy, axis=0) if xy.size else np.zeros(2)
    hi = np.nanmax(xy, axis=0) if xy.size else np.ones(2)
    span = float(max(np.max(hi - lo), 1e-9))
    off = lo - (span - (hi - lo)) / 2.0
    return ((xy - off) / span).astype(np.float32), {"offset": off.tolist(), "span": span}


def _tsne(z: np.ndarray, *, seed: int, n_jobs: int) -> np.ndarray:
    from openTSNE import TSNE

    n = z.shape[0]
    perplexity = float(max(2.0, min(30.0, (n - 1) / 3.0)))
    emb = TSNE(n_components=2, perplexity=perplexity, metric="cosine", initialization="pca", n_jobs=n_jobs,
               random_state=seed, negative_gradient_method="fft" if n > 2000 else "bh", verbose=False)
    return np.asarray(emb.fit(z), dtype=np.float32)


def have_tsne() -> bool:
    try:
        import openTSNE  # noqa: F401
    except ImportError:
        return False
    return True


def choose_method(n: int, method: str = "auto") -> tuple[str, str]:
    """``(method, reason)`` for ``n`` items: "pca" or "tsne"."""
    if method not in METHODS:
        raise ValueError(f"method must be one of {', '.join(METHODS)}, given method={method!r}")
    if method == "tsne" and not have_tsne():
        raise LayoutError("t-SNE layout needs openTSNE: pip install 'embedkit[serve]' (or use --method pca)")
    if method != "auto":
        return method, "requested"
    if n < TSNE_MIN:
        return "pca", f"{n} items (< {TSNE_MIN}): the first two principal components"
    if not have_tsne():
        return "pca", "openTSNE is not installed (pip install 'embedkit[serve]'): principal components"
    if n > TSNE_FIT_MAX:
        return "tsne", f"{n} items: t-SNE on a {TSNE_FIT_MAX}-item sample, the rest placed by {PLACE_K}-NN"
    return "tsne", f"{n} items: t-SNE on all"


def compute_layout(X: np.ndarray, ids: np.ndarray, rows: np.ndarray | None = None, *, method: str = "auto",
                   seed: int = 0, n_jobs: int | None = None) -> Layout2D:
    """Lay out vectors ``X (n, d)`` of store ``ids (n,)`` in 2-D (see the module doc for the rule)."""
    t0, c0 = time.perf_counter(), time.process_time()
    X = np.asarray(X, np.float32)
    ids = np.asarray(ids, np.int64)
    n = X.shape[0]
    rows = np.asarray(rows if rows is not None else np.arange(n), np.int64)
    name, reason = choose_method(n, method)
    mean, comp = fit_pca(X, seed=seed)
    z = (_l2n(X) - mean) @ comp
    fitted = np.ones(n, bool)
    if name == "pca" or n < 3:
        xy = np.zeros((n, 2), np.float32)
        xy[:, : min(2, z.shape[1])] = z[:, :2]
    else:
        if n > TSNE_FIT_MAX:
            fitted[:] = False
            fitted[np.random.default_rng(seed).choice(n, TSNE_FIT_MAX, replace=False)] = True
        xy = np.zeros((n, 2), np.float32)
        xy[fitted] = _tsne(z[fitted], seed=seed, n_jobs=n_jobs or min(os.cpu_count() or 1, 4))
        if not fitted.all():
            xy[~fitted] = _place(z[~fitted], z[fitted], xy[fitted], PLACE_K)
    xy, norm = _normalise_xy(xy)
    info = {"method": name, "reason": reason, "n": n, "n_fitted": int(fitted.sum()), "n_placed": int((~fitted).sum()),
            "pca_dim": int(comp.shape[1]), "seed": seed, "wall_s": round(time.perf_counter() - t0, 3),
            "cpu_s": round(time.process_time() - c0, 3), "norm": norm}
    lay = Layout2D(ids, rows, xy, name, mean, comp, fitted, info)
    lay._anchor_z = z[fitted].astype(np.float32)
    return lay


# ---- store binding -------------------------------------------------------------------------------


def cache_dir(store: Any) -> Path:
    """Where a store's layouts live: ``STORE/layout`` when writable, else ``$EMBEDKIT_HOME/layouts/<hash>``."""
    d = Path(store.path) / LAYOUT_DIR
    if _writable(d if d.exists() else Path(store.path)):
        return d
    home = Path(os.environ.get("EMBEDKIT_HOME", Path.home() / ".cache" / "embedkit"))
    key = hashlib.sha256(str(Path(store.path).resolve()).encode()).hexdigest()[:16]
    return home / "layouts" / key


def _writable(path: Path) -> bool:
    return os.access(path, os.W_OK)


def _check_name(name: str) -> None:
    if not name or not all(c.isalnum() or c in "-_." for c in name) or name.startswith("."):
        raise LayoutError(f"layout name {name!r}: use letters, digits, '-', '_' or '.'")


def save(lay: Layout2D, directory: str | os.PathLike, name: str, *, extra: dict | None = None) -> Path:
    """Write ``NAME.npz`` (arrays) then ``NAME.json`` (card) atomically into ``directory``; returns the card path."""
    _check_name(name)
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    npz = d / f"{name}.npz"
    tmp = d / f".{name}.tmp.npz"
    np.savez(tmp, ids=lay.ids, rows=lay.rows, xy=lay.xy, mean=lay.mean, components=lay.components,
             fitted=lay.fitted, anchor_z=lay._anchor_z)
    os.replace(tmp, npz)
    card = {"kind": "embedkit-layout", "format": CARD_FORMAT, "method": lay.method, "n": len(lay),
            "embedkit_version": __version__, "info": lay.info, "arrays_sha256": _sha(npz), **(extra or {})}
    cpath = d / f"{name}.json"
    ctmp = d / f".{name}.tmp.json"
    ctmp.write_text(json.dumps(card, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    os.replace(ctmp, cpath)
    return cpath


def load(directory: str | os.PathLike, name: str) -> tuple[Layout2D, dict]:
    """Read a saved layout and its card; raises `LayoutError` (one line, naming the file) when unusable."""
    _check_name(name)
    d = Path(directory)
    cpath, npz = d / f"{name}.json", d / f"{name}.npz"
    try:
        card = json.loads(cpath.read_text(encoding="utf-8"))
        if card.get("kind") != "embedkit-layout" or int(card.get("format", 0)) > CARD_FORMAT:
            raise ValueError("not a layout card of this embedkit")
        if card.get("arrays_sha256") != _sha(npz):
            raise ValueError(f"{npz.name} does not match its card (partly written?)")
        with np.load(npz, allow_pickle=False) as a:
            lay = Layout2D(a["ids"], a["rows"], a["xy"], card["method"], a["mean"], a["components"], a["fitted"],
                           card.get("info", {}))
            lay._anchor_z = a["anchor_z"]
    except FileNotFoundError as exc:
        raise LayoutError(f"{exc.filename}: no saved layout") from None
    except (OSError, ValueError, KeyError) as exc:
        raise LayoutError(f"{cpath}: unusable layout cache ({exc}); it will be recomputed") from None
    return lay, card


def _sha(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for b in iter(lambda: f.read(1 << 20), b""):
            h.update(b)
    return h.hexdigest()


def layout_for_store(store: Any, *, name: str = "default", method: str = "auto", seed: int = 0,
                     recompute: bool = False, save_cache: bool = True, progress: Any = None) -> Layout2D:
    """The cached layout of an open store, brought up to date (new items placed) or computed once.

    Never writes the store's own files: the cache lives in ``STORE/layout/`` (see `cache_dir`).
    ``progress``: optional callable(str) told what happens (for the CLI's stderr).
    """
    say = progress or (lambda msg: log.info(msg))
    ids, rows = store.rows()
    d = cache_dir(store)
    lay = None
    if not recompute:
        try:
            lay, card = load(d, name)
            if card.get("store_fingerprint") != store.fingerprint:
                say(f"{d / name}.json: store settings changed since the layout was made; recomputing")
                lay = None
            elif method != "auto" and lay.method != method:
                lay = None
        except LayoutError as exc:
            if (d / f"{name}.json").exists():
                say(str(exc))
            lay = None
    if lay is not None:
        pos = np.minimum(np.searchsorted(lay.ids, ids), max(lay.ids.size - 1, 0))
        keep = (lay.ids[pos] == ids) & (lay.rows[pos] == rows) if lay.ids.size else np.zeros(ids.size, bool)
        n_new = int((~keep).sum())
        if n_new == 0 and lay.ids.size == ids.size:
            return lay
        if n_new > REFIT_FRACTION * max(ids.size, 1):
            say(f"{n_new} of {ids.size} items are new since the layout was made; recomputing it")
        else:
            say(f"placing {n_new} new item(s) on the cached map")
            X_new = store.vectors(ids[~keep]) if n_new else np.zeros((0, store.dim), np.float32)
            out = _updated(lay, X_new, ids, rows, keep)
            if save_cache:
                _try_save(out, d, name, store)
            return out
    if ids.size == 0:
        raise LayoutError(f"{store.path}: no embedded items to put on a map")
    m, why = choose_method(int(ids.size), method)
    say(f"computing the map of {ids.size} items ({m}: {why})")
    out = compute_layout(store.vectors(ids), ids, rows, method=method, seed=seed)
    if save_cache:
        _try_save(out, d, name, store)
    return out


def _updated(lay: Layout2D, X_new: np.ndarray, ids: np.ndarray, rows: np.ndarray, keep: np.ndarray) -> Layout2D:
    """Kept items keep their position; the others are placed by k-NN on the layout's fitted anchors."""
    anchor_xy = lay.xy[lay.fitted] if lay._anchor_z.shape[0] == int(lay.fitted.sum()) else None
    if anchor_xy is None:  # pragma: no cover - a cache always stores matching anchors
        raise LayoutError("layout cache anchors do not match its fitted items")
    xy = np.empty((ids.size, 2), np.float32)
    pos = np.searchsorted(lay.ids, ids[keep])
    xy[keep] = lay.xy[pos]
    if (~keep).any():
        xy[~keep] = _place(lay.project(X_new), lay._anchor_z, anchor_xy, PLACE_K)
    # fitted anchors that left the store stay anchors: keep their z and xy aside
    fitted = np.zeros(ids.size, bool)
    fitted[np.flatnonzero(keep)] = lay.fitted[pos]
    gone = np.ones(lay.ids.size, bool)
    gone[pos] = False
    gone_fitted = gone & lay.fitted
    info = {**lay.info, "n": int(ids.size), "n_placed": int(ids.size - fitted.sum()),
            "last_update_placed": int((~keep).sum()), "anchors_gone": int(gone_fitted.sum())}
    out = Layout2D(ids, rows, xy, lay.method, lay.mean, lay.components, fitted, info)
    # anchors in the order of fitted items still present (z rows follow lay.fitted order)
    z_of_fitted = lay._anchor_z
    still = ~gone[lay.fitted]
    out._anchor_z = z_of_fitted[still]
    return out


def _try_save(lay: Layout2D, d: Path, name: str, store: Any) -> None:
    try:
        save(lay, d, name, extra={"store": str(store.path), "store_fingerprint": store.fingerprint})
    except OSError as exc:
        log.warning("%s: cannot cache the layout (%s); it will be recomputed next time", d, exc.strerror or exc)


# ---- picture -------------------------------------------------------------------------------------


def plot_map(xy: np.ndarray, output: str | os.PathLike, *, kind: str = "category", codes: np.ndarray | None = None,
             categories: list[str] | None = None, values: np.ndarray | None = None, title: str = "",
             size: float = 8.0, max_legend: int = 20) -> Path:
    """Draw positions ``xy (n, 2)`` coloured by category ``codes (n,)`` (-1 = none) or ``values (n,)``; writes
    ``output`` (.png/.svg/.pdf, atomically) and returns its path. Needs matplotlib (``embedkit[plots]``)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise LayoutError("the map picture needs matplotlib: pip install 'embedkit[plots]'") from None
    out = Path(output)
    if out.suffix.lower() not in (".png", ".svg", ".pdf"):
        raise LayoutError(f"{out}: the picture must be .png, .svg or .pdf")
    n = xy.shape[0]
    s = float(np.clip(4000.0 / max(n, 1), 0.5, 40.0))
    fig, ax = plt.subplots(figsize=(size, size), dpi=150)
    try:
        if kind == "category" and codes is not None:
            cmap = plt.get_cmap("tab20")
            cats = categories or []
            none = codes < 0
            if none.any():
                ax.scatter(xy[none, 0], xy[none, 1], s=s, c="#cccccc", linewidths=0, label="(none)")
            for k, c in enumerate(cats):
                m = codes == k
                if m.any():
                    ax.scatter(xy[m, 0], xy[m, 1], s=s, color="#999999" if c == "other" else cmap(k % 20), linewidths=0,
                               label=c if k < max_legend else None)
            if cats:
                ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=7, markerscale=max(1.0, 20 / s) ** 0.5,
                          frameon=False)
        else:
            v = np.asarray(values if values is not None else np.zeros(n), np.float64)
            ok = np.isfinite(v)
            ax.scatter(xy[~ok, 0], xy[~ok, 1], s=s, c="#cccccc", linewidths=0)
            sc = ax.scatter(xy[ok, 0], xy[ok, 1], s=s, c=v[ok], cmap="viridis", linewidths=0)
            fig.colorbar(sc, ax=ax, fraction=0.04)
        ax.set_aspect("equal")
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_title(title, fontsize=9)
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = out.with_name(f".{out.stem}.tmp{out.suffix}")
        fig.savefig(tmp, bbox_inches="tight")
        os.replace(tmp, out)
    finally:
        plt.close(fig)
    return out
