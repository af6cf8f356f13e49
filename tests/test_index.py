"""embedkit.index: the pure planner, build/tune/search/save of each kind, and binding to a store
(incremental add, stale / mismatched indexes refused, empty stores)."""
from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from _index_truth import exact_neighbours, recall
from embedkit.index import (
    IndexMismatchError,
    IndexMissingError,
    IndexStaleError,
    IndexStateError,
    VectorIndex,
    build_for_store,
    open_for_store,
    read_card,
    update_for_store,
)
from embedkit.store import Store, write_arrays



def clustered(n: int, d: int = 48, centers: int = 40, noise: float = 0.6, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    c = rng.standard_normal((centers, d))
    return (c[rng.integers(0, centers, n)] + noise * rng.standard_normal((n, d))).astype(np.float32)


# ---- VectorIndex on arrays ------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["hnsw", "ivf", "ivfpq"])
def test_ann_kinds_reach_target_recall_against_exact(kind):
    x = clustered(12_000, d=48)
    vi = VectorIndex.build(x, kind=kind, target_recall=0.9, k=10, n_tune_queries=200)
    assert vi.kind == kind and len(vi) == x.shape[0]
    assert vi.recall_.target_met and vi.recall_.measured >= 0.9
    # independent check on fresh queries near the data (not the tuning sample)
    rng = np.random.default_rng(5)
    q = x[rng.choice(x.shape[0], 200, replace=False)] + 0.1 * rng.standard_normal((200, 48)).astype(np.float32)
    rerank = (lambda ids: x[ids]) if kind == "ivfpq" else None
    _, found = vi.search(q, 10, rerank=rerank)
    assert recall(found, exact_neighbours(x, q, 10)) >= 0.85


def test_flat_is_exact_and_self_is_nearest():
    x = clustered(500)
    ids = np.arange(1000, 1500)
    vi = VectorIndex.build(x, ids, kind="flat")
    scores, found = vi.search(x[:20], 5)
    assert np.array_equal(found[:, 0], ids[:20])
    assert np.allclose(scores[:, 0], 1.0, atol=1e-5)
    assert np.array_equal(found - 1000, exact_neighbours(x, x[:20], 5))
    assert np.all(np.diff(scores, axis=1) <= 1e-6)


def test_k_larger_than_index_and_empty_index():
    x = clustered(7)
    vi = VectorIndex.build(x, kind="auto")
    scores, found = vi.search(x[:2], 20)
    assert found.shape == (2, 20)
    assert sorted(found[0][found[0] >= 0].tolist()) == list(range(7))
    assert np.all(found[:, 7:] == -1) and np.all(np.isneginf(scores[:, 7:]))
    empty = VectorIndex.build(np.zeros((0, 48), np.float32))
    assert len(empty) == 0
    s, f = empty.search(x[:3], 4)
    assert np.all(f == -1) and np.all(np.isneginf(s))
    with pytest.raises(ValueError, match="trained"):
        VectorIndex.build(np.zeros((0, 48), np.float32), kind="ivf")


def test_wrong_query_dim_is_refused():
    vi = VectorIndex.build(clustered(50), kind="flat")
    with pytest.raises(IndexMismatchError, match="dim 12"):
        vi.search(np.ones((1, 12), np.float32), 3)


def test_save_load_roundtrip_and_torn_write_detected(tmp_path):
    x = clustered(3000)
    vi = VectorIndex.build(x, np.arange(3000) * 3, kind="hnsw", target_recall=0.9, n_tune_queries=100)
    vi.save(tmp_path, "h")
    back = VectorIndex.load(tmp_path, "h")
    assert back.kind == "hnsw" and back.search_params == vi.search_params
    s1, f1 = vi.search(x[:30], 8)
    s2, f2 = back.search(x[:30], 8)
    assert np.array_equal(f1, f2) and np.allclose(s1, s2)
    card = json.loads((tmp_path / "h.json").read_text())
    assert card["kind"] == "hnsw" and card["n_vectors"] == 3000 and card["recall"]["measured"] >= 0.9
    # an interrupted update: ids of another index beside this faiss file
    other = VectorIndex.build(x[:10], kind="flat")
    other.save(tmp_path, "o")
    shutil.copy(tmp_path / "o.npz", tmp_path / "h.npz")
    with pytest.raises(IndexStateError, match="h.npz: does not match its checksum"):
        VectorIndex.load(tmp_path, "h")
    # the same torn state in an index of embedkit 0.1 (no checksums in the card) is still caught
    card.pop("files", None)
    card.pop("card_sha256", None)  # 0.1 cards carry no self-digest either
    card["format"] = 1
    (tmp_path / "h.json").write_text(json.dumps(card))
    with pytest.raises(IndexStateError, match="disagree"):
        VectorIndex.load(tmp_path, "h")
    with pytest.raises(IndexMissingError, match="nope"):
        VectorIndex.load(tmp_path, "nope")


def test_pca_and_whitening_transform():
    x = clustered(3000, d=48)
    vi = VectorIndex.build(x, kind="hnsw", pca_dim=16, whiten=True, target_recall=0.9, n_tune_queries=100)
    assert vi.plan.index_dim == 16 and vi.transform.components_.shape == (16, 48)
    assert vi.recall_.measured >= 0.9
    t = vi.transform.transform(x)
    assert t.shape == (3000, 16) and np.allclose(np.linalg.norm(t, axis=1), 1, atol=1e-4)
    _, found = vi.search(x[:5], 1)
    assert np.array_equal(found[:, 0], np.arange(5))


def test_incremental_add_equals_rebuild_on_arrays():
    x = clustered(4000)
    a = VectorIndex.build(x[:3000], np.arange(3000), kind="flat")
    a.add(x[3000:], np.arange(3000, 4000))
    b = VectorIndex.build(x, np.arange(4000), kind="flat")
    q = clustered(50, seed=9)
    sa, fa = a.search(q, 10)
    sb, fb = b.search(q, 10)
    assert np.array_equal(fa, fb) and np.allclose(sa, sb)
    with pytest.raises(ValueError, match="new and unique"):
        a.add(x[:2], np.array([1, 2]))


# ---- bound to a store ------------------------------------------------------------------------------


def make_store(path, n, d=48, seed=0, fingerprint="test"):
    x = clustered(n, d=d, seed=seed)
    return write_arrays(path, [f"/music/a{i // 10}/t{i}.ogg" for i in range(n)], x, model="rand", fingerprint=fingerprint), x


def add_items(path, vectors, start):
    with Store.open(path, mode="a") as st, st.transaction():
        for j, v in enumerate(vectors):
            st.add_embedded(f"/music/new/t{start + j}.ogg", v, size=None, mtime=None, sha256=None, duration_s=None,
                            samplerate=None)


def test_store_incremental_update_equals_rebuild(tmp_path):
    st, x = make_store(tmp_path / "s", 600)
    vi, summary = build_for_store(st, kind="flat")
    assert summary["action"] == "built" and len(vi) == 600
    card = read_card(st)
    assert card["store"]["fingerprint"] == st.fingerprint and card["n_vectors"] == 600 and card["kind"] == "flat"
    st.close()
    extra = clustered(100, seed=3)
    add_items(tmp_path / "s", extra, 600)
    st = Store.open(tmp_path / "s")
    with pytest.raises(IndexStaleError, match="100 store items are not in the index"):
        open_for_store(st)
    vi2, summary = build_for_store(st, kind="flat")
    assert summary["action"] == "updated" and summary["added"] == 100 and len(vi2) == 700
    assert read_card(st)["added_incrementally"] == 100
    fresh = build_for_store(st, kind="flat", name="fresh", rebuild=True)[0]
    q = clustered(40, seed=11)
    s1, f1 = open_for_store(st).search(q, 10)
    s2, f2 = fresh.search(q, 10)
    assert np.array_equal(f1, f2) and np.allclose(s1, s2)
    assert build_for_store(st, kind="flat")[1]["action"] == "unchanged"


def test_store_incremental_update_ann_keeps_recall(tmp_path):
    st, x = make_store(tmp_path / "s", 2500)
    build_for_store(st, kind="ivf", target_recall=0.9)
    st.close()
    add_items(tmp_path / "s", clustered(800, seed=4), 2500)
    st = Store.open(tmp_path / "s")
    inc, summary = build_for_store(st, kind="ivf", target_recall=0.9)
    assert summary["action"] == "updated" and len(inc) == 3300
    reb, _ = build_for_store(st, kind="ivf", name="rebuilt", target_recall=0.9, rebuild=True)
    allx = st.vectors(inc.ids_)
    assert inc.measure_recall(allx, n_queries=300) >= 0.9
    assert reb.measure_recall(st.vectors(reb.ids_), n_queries=300) >= 0.9
    assert set(inc.ids_.tolist()) == set(reb.ids_.tolist()) == set(st.ids().tolist())


def test_reembedded_or_removed_items_make_index_stale(tmp_path):
    st, x = make_store(tmp_path / "s", 50)
    build_for_store(st)
    st.close()
    with Store.open(tmp_path / "s", mode="a") as w, w.transaction():
        w.add_embedded("/music/a0/t3.ogg", x[3] * 2 + 1, size=None, mtime=None, sha256=None, duration_s=None, samplerate=None)
    st = Store.open(tmp_path / "s")
    with pytest.raises(IndexStaleError, match="re-embedded"):
        open_for_store(st)
    vi, summary = build_for_store(st)  # rebuilds by itself
    assert summary["action"] == "built" and open_for_store(st) is not None
    st.close()
    with Store.open(tmp_path / "s", mode="a") as w:
        w.delete(["/music/a0/t4.ogg"])
    st = Store.open(tmp_path / "s")
    with pytest.raises(IndexStaleError, match="no longer embedded"):
        open_for_store(st)
    with pytest.raises(IndexStaleError):
        update_for_store(st)


def test_index_of_another_store_is_refused(tmp_path):
    a, _ = make_store(tmp_path / "a", 40, fingerprint="model-one")
    b, _ = make_store(tmp_path / "b", 40, fingerprint="model-two")
    build_for_store(a)
    shutil.copytree(tmp_path / "a" / "index", tmp_path / "b" / "index")
    with pytest.raises(IndexMismatchError, match="model fingerprint model-one") as exc:
        open_for_store(b)
    assert "\n" not in str(exc.value) and "--rebuild" in str(exc.value)
    c, _ = make_store(tmp_path / "c", 40, d=24, fingerprint="model-one")
    shutil.copytree(tmp_path / "a" / "index", tmp_path / "c" / "index")
    with pytest.raises(IndexMismatchError):
        open_for_store(c)


def test_empty_store_builds_an_empty_index(tmp_path):
    st = write_arrays(tmp_path / "e", [], np.zeros((0, 16), np.float32), model="rand")
    vi, summary = build_for_store(st)
    assert summary["action"] == "built" and len(vi) == 0 and vi.kind == "flat"
    s, f = open_for_store(st).search(np.ones((1, 16), np.float32), 5)
    assert np.all(f == -1)
    with pytest.raises(IndexStateError, match="no embedded"):
        build_for_store(st, kind="hnsw", rebuild=True)


# ---- real store (real fixture audio through the real model) -----------------------------------------




def test_ann_recall_against_exact_on_real_store(real_fixture_store):
    path = real_fixture_store
    with Store.open(path) as st:
        _, _, pv = st.patch_vectors()
        assert pv.shape[0] > 200
        for kind in ("hnsw", "ivf"):
            vi, _ = build_for_store(st, source="patches", kind=kind, name=f"p_{kind}", target_recall=0.95, rebuild=True)
            assert vi.recall_.n_queries > 0
            # independent recall on all real patches as queries, self excluded from both lists
            _, found = vi.search(pv, 11)
            truth = exact_neighbours(pv, pv, 11)
            r = recall([[p for p in row if p != i][:10] for i, row in enumerate(found)],
                       [[p for p in row if p != i][:10] for i, row in enumerate(truth)])
            assert r >= 0.9, (kind, r)
