"""embedkit.layout2d: the 2-D map of a store (PCA / t-SNE by size), its cache beside the store, new items placed
without recomputing, and ``embedkit store map`` drawing the same layout."""
from __future__ import annotations

import json

import numpy as np
import pytest

from embedkit import layout2d
from embedkit.layout2d import LayoutError, choose_method, compute_layout, layout_for_store
from embedkit.store import Store, write_arrays

from clirun import run


def clusters(n: int, d: int = 64, k: int = 4, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    c = 3 * rng.standard_normal((k, d))
    lab = np.arange(n) % k
    return (c[lab] + rng.standard_normal((n, d))).astype(np.float32), lab


def knn_agreement(xy: np.ndarray, lab: np.ndarray, k: int = 5) -> float:
    d = ((xy[:, None, :] - xy[None, :, :]) ** 2).sum(-1)
    np.fill_diagonal(d, np.inf)
    nn = np.argsort(d, axis=1)[:, :k]
    return float((lab[nn] == lab[:, None]).mean())


def test_method_is_chosen_by_size():
    assert choose_method(10)[0] == "pca"
    if layout2d.have_tsne():
        assert choose_method(500)[0] == "tsne" and "sample" in choose_method(10 * layout2d.TSNE_FIT_MAX)[1]
    with pytest.raises(ValueError, match="method must be one of"):
        choose_method(10, "umap")


def test_pca_layout_keeps_clusters_apart():
    X, lab = clusters(24)
    lay = compute_layout(X, np.arange(100, 124))
    assert lay.method == "pca" and lay.xy.shape == (24, 2) and lay.xy.dtype == np.float32
    assert lay.xy.min() >= 0 and lay.xy.max() <= 1 and lay.fitted.all()
    assert knn_agreement(lay.xy, lab, 3) > 0.9
    np.testing.assert_allclose(lay.position_of(np.array([105, 999]))[0], lay.xy[5])
    assert np.isnan(lay.position_of(np.array([999]))).all()


def test_tsne_on_a_sample_places_the_rest_next_to_their_cluster(monkeypatch):
    pytest.importorskip("openTSNE", reason="t-SNE layouts need openTSNE: pip install -e '.[serve]'")
    monkeypatch.setattr(layout2d, "TSNE_FIT_MAX", 60)
    X, lab = clusters(150, k=3)
    lay = compute_layout(X, np.arange(150), method="auto", n_jobs=1)
    assert lay.method == "tsne" and lay.info["n_fitted"] == 60 and lay.info["n_placed"] == 90
    assert knn_agreement(lay.xy, lab) > 0.9  # placed items land among their own cluster
    # place() of a stored vector lands where that item is
    i = int(np.flatnonzero(lay.fitted)[0])
    assert np.abs(lay.place(X[i : i + 1])[0] - lay.xy[i]).max() < 0.05


def test_cache_reused_new_items_placed_removed_dropped(tmp_path):
    X, lab = clusters(40)
    paths = [f"/m/{i}.ogg" for i in range(40)]
    write_arrays(tmp_path / "s", paths[:20], X[:20], model="rand").close()
    with Store.open(tmp_path / "s") as st:
        first = layout_for_store(st, method="pca")
        d = layout2d.cache_dir(st)
    assert d == tmp_path / "s" / "layout" and (d / "default.json").exists()
    card = json.loads((d / "default.json").read_text())
    assert card["method"] == "pca" and card["n"] == 20 and card["store_fingerprint"]
    with Store.open(tmp_path / "s") as st:
        again = layout_for_store(st)
    np.testing.assert_array_equal(again.xy, first.xy)
    # 8 new items (<50%): the old ones keep their place, the new ones are placed near their cluster
    with Store.open(tmp_path / "s", mode="a") as st:
        for i in range(20, 28):
            st.add_embedded(paths[i], X[i], size=None, mtime=None, sha256=None, duration_s=None, samplerate=None)
        st.delete([paths[0]])
    msgs: list[str] = []
    with Store.open(tmp_path / "s") as st:
        upd = layout_for_store(st, progress=msgs.append)
        ids = st.ids()
    assert any("placing 8 new" in m for m in msgs)
    np.testing.assert_array_equal(upd.ids, ids)
    np.testing.assert_allclose(upd.position_of(ids[:19]), first.position_of(ids[:19]))
    new_xy = upd.position_of(ids[19:])
    old_xy, old_lab = first.xy[1:], lab[1:20]
    for j, p in enumerate(new_xy):
        nearest = np.argsort(((old_xy - p) ** 2).sum(1))[:3]
        assert (old_lab[nearest] == lab[20 + j]).mean() >= 2 / 3
    assert upd.info["last_update_placed"] == 8
    # the cache now holds the update: no placing on the next open
    msgs.clear()
    with Store.open(tmp_path / "s") as st:
        layout_for_store(st, progress=msgs.append)
    assert msgs == []


def test_damaged_cache_is_recomputed_with_a_message(tmp_path):
    X, _ = clusters(12)
    write_arrays(tmp_path / "s", [f"/m/{i}.ogg" for i in range(12)], X, model="rand").close()
    with Store.open(tmp_path / "s") as st:
        layout_for_store(st)
    npz = tmp_path / "s" / "layout" / "default.npz"
    npz.write_bytes(npz.read_bytes()[:100])
    msgs: list[str] = []
    with Store.open(tmp_path / "s") as st:
        lay = layout_for_store(st, progress=msgs.append)
    assert len(lay) == 12 and any("unusable layout cache" in m and "default.json" in m for m in msgs)
    with pytest.raises(LayoutError, match="layout name"):
        layout2d.load(tmp_path, "../x")


def test_read_only_store_caches_in_the_user_cache(tmp_path, monkeypatch):
    X, _ = clusters(10)
    write_arrays(tmp_path / "s", [f"/m/{i}.ogg" for i in range(10)], X, model="rand").close()
    monkeypatch.setenv("EMBEDKIT_HOME", str(tmp_path / "home"))
    monkeypatch.setattr(layout2d, "_writable", lambda p: False)  # as for a store on read-only media
    with Store.open(tmp_path / "s") as st:
        layout_for_store(st)
        d = layout2d.cache_dir(st)
    assert str(d).startswith(str(tmp_path / "home" / "layouts")) and (d / "default.json").exists()
    assert not (tmp_path / "s" / "layout").exists()


def test_store_map_cli_draws_the_cached_layout(tmp_path, capsys):
    pytest.importorskip("matplotlib")
    X, _ = clusters(30, k=3)
    paths = [f"/m/album{i % 3}/{i}.ogg" for i in range(30)]
    write_arrays(tmp_path / "s", paths, X, model="rand", tags=np.random.default_rng(0).random((30, 3)),
                 tag_labels=["x", "y", "z"]).close()
    code, out, err = run(capsys, "store", "map", str(tmp_path / "s"), "-o", str(tmp_path / "map.png"), "--layout", "pca")
    assert code == 0, err
    png = (tmp_path / "map.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 5000 and "coloured by tag:top" in out
    code, out, err = run(capsys, "store", "map", str(tmp_path / "s"), "-o", str(tmp_path / "f.svg"), "--color-by",
                         "folder", "--json")
    assert code == 0 and json.loads(out)["color_by"] == "folder" and (tmp_path / "f.svg").exists()
    code, out, err = run(capsys, "store", "map", str(tmp_path / "s"), "-o", str(tmp_path / "m.png"), "--color-by", "nope")
    assert code == 2 and "unknown --color-by 'nope'" in err
    code, out, err = run(capsys, "store", "map", str(tmp_path / "s"), "-o", str(tmp_path / "m.txt"))
    assert code == 1 and "must be .png, .svg or .pdf" in err and err.count("\n") == 1
