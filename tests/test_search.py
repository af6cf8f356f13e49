"""embedkit.search and ``embedkit similar`` / ``embedkit index``: query forms, filters, near-duplicates on
real audio through the real model, segment search, stale indexes refused, the CLI contract."""
from __future__ import annotations

import json
import os

import numpy as np
import pytest

from embedkit.errors import ModelMismatchError
from embedkit.index import IndexStaleError, build_for_store
from embedkit.search import Searcher, similar
from embedkit.store import Store, write_arrays

from _fake_embedder import FakeEmbedder
from synth import tone
from clirun import run




def clustered(n: int, d: int = 32, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    c = rng.standard_normal((8, d))
    return (c[rng.integers(0, 8, n)] + 0.5 * rng.standard_normal((n, d))).astype(np.float32)


@pytest.fixture
def store(tmp_path):
    """60 random items in 6 folders (albums) of 10, durations 10..69 s."""
    x = clustered(60)
    paths = [f"/music/album{i // 10}/track{i % 10}.ogg" for i in range(60)]
    st = write_arrays(tmp_path / "s", paths, x, model="rand", durations_s=[10.0 + i for i in range(60)])
    yield st
    st.close()


# ---- query forms, filters, edge cases (random store) -------------------------------------------------


def test_query_by_id_path_vector_file_and_array(store, tmp_path):
    x = store.vectors()
    np.save(tmp_path / "one.npy", x[4])
    np.save(tmp_path / "two.npy", x[[5, 6]])
    qs = [3, "8", "/music/album0/track2.ogg", str(tmp_path / "one.npy"), str(tmp_path / "two.npy"), x[9]]
    res = Searcher(store).similar(qs, k=5)
    assert [r.kind for r in res] == ["id", "id", "path", "vector", "vector", "vector", "vector"]
    assert all(r.ok and len(r.neighbors) == 5 for r in res)
    # stored queries exclude themselves; vector queries have no "self" and find their twin first
    assert res[0].query_id == 3 and 3 not in [n.id for n in res[0].neighbors]
    assert res[2].query_id == 2 + 1 and res[2].query_path == "/music/album0/track2.ogg"
    ids = store.ids()
    assert res[3].neighbors[0].id == ids[4] and res[3].neighbors[0].score == pytest.approx(1.0, abs=1e-5)
    assert [res[4].neighbors[0].id, res[5].neighbors[0].id] == [ids[5], ids[6]]
    assert res[5].query.endswith("two.npy[1]")
    n = res[0].neighbors
    assert [a.rank for a in n] == [1, 2, 3, 4, 5] and all(a.score >= b.score for a, b in zip(n, n[1:]))
    assert n[0].path == store.get(n[0].id).path


def test_self_is_first_when_not_excluded(store):
    res = Searcher(store).similar(list(store.ids()), k=3, exclude_self=False)
    assert all(r.neighbors[0].id == r.query_id and r.neighbors[0].score == pytest.approx(1, abs=1e-5) for r in res)


def test_bad_queries_are_reported_and_the_rest_go_on(store, tmp_path):
    np.save(tmp_path / "bad.npy", np.ones(7, np.float32))
    res = Searcher(store).similar([999, "nothing.ogg", str(tmp_path / "bad.npy"), str(tmp_path), 1], k=2)
    assert [r.ok for r in res] == [False, False, False, False, True]
    assert "999" in res[0].error and "nothing.ogg" in res[1].error and "(7,)" in res[2].error
    assert "folder" in res[3].error and all("\n" not in r.error for r in res[:4])


def test_filters_same_folder_and_duration(store):
    s = Searcher(store)
    base = s.similar([1], k=59)[0].neighbors
    assert len(base) == 59
    q_folder = os.path.dirname(store.get(1).path)
    nf = s.similar([1], k=20, exclude_same_folder=True)[0].neighbors
    assert len(nf) == 20 and all(os.path.dirname(n.path) != q_folder for n in nf)
    # the same order as the unfiltered list with the folder's items removed
    assert [n.id for n in nf] == [n.id for n in base if os.path.dirname(n.path) != q_folder][:20]
    d = s.similar([1], k=50, min_duration_s=30, max_duration_s=40)[0].neighbors
    assert {n.id for n in d} == {it.id for it in store.items() if 30 <= it.duration_s <= 40}


def test_k_larger_than_store_and_empty_store(store, tmp_path):
    res = Searcher(store).similar([1, 2], k=500)
    assert [len(r.neighbors) for r in res] == [59, 59]
    empty = write_arrays(tmp_path / "e", [], np.zeros((0, 32), np.float32), model="rand")
    r = Searcher(empty).similar([np.ones(32, np.float32)], k=5)
    assert r[0].ok and r[0].neighbors == []


def test_saved_ann_index_is_used_and_stale_index_refused(tmp_path):
    x = clustered(3000, seed=2)
    st = write_arrays(tmp_path / "s", [f"/m/{i}.ogg" for i in range(3000)], x, model="rand")
    build_for_store(st, kind="ivfpq", target_recall=0.95)
    ann = Searcher(st).similar(list(range(1, 101)), k=10)
    exact = Searcher(st, exact=True).similar(list(range(1, 101)), k=10)
    hits = np.mean([len({n.id for n in a.neighbors} & {n.id for n in b.neighbors}) / 10 for a, b in zip(ann, exact)])
    assert hits >= 0.9
    st.close()
    with Store.open(tmp_path / "s", mode="a") as w, w.transaction():
        w.add_embedded("/m/new.ogg", x[0], size=None, mtime=None, sha256=None, duration_s=None, samplerate=None)
    with Store.open(tmp_path / "s") as st2:
        with pytest.raises(IndexStaleError, match="not in the index"):
            Searcher(st2).similar([1], k=3)


# ---- audio queries embedded on the fly (fake model: no TensorFlow) ------------------------------------


def test_audio_query_is_embedded_with_the_store_model(tmp_path, write_wav):
    fake = FakeEmbedder()
    files = [write_wav(f"t{i}.wav", tone(220 * (i + 1), 6.0, 16000, noise=0.02 * i)) for i in range(5)]
    vecs = np.stack([fake.embed_file(f).vector for f in files])
    st = write_arrays(tmp_path / "s", [str(f) for f in files], vecs, model="fake", fingerprint=fake.fingerprint)
    y = tone(440, 6.0, 16000, noise=0.02)  # same signal as t1, written elsewhere and quieter
    q = write_wav("query.wav", 0.99 * y)
    res = Searcher(st, embedder=fake).similar([str(q)], k=2)
    assert res[0].kind == "audio" and res[0].neighbors[0].path == str(files[1])
    # same bytes as a stored file: treated as that item (excluded as itself)
    res = Searcher(st, embedder=fake).similar([str(files[2])], k=2)
    assert res[0].query_id == st.get(str(files[2])).id and all(n.path != str(files[2]) for n in res[0].neighbors)
    other = FakeEmbedder(salt="v2")
    with pytest.raises(ModelMismatchError, match="fingerprint"):
        Searcher(st, embedder=other).similar([str(q)], k=2)


# ---- real audio through the real model --------------------------------------------------------------




@pytest.fixture(scope="module")
def real(real_fixture_store):
    path = real_fixture_store
    with Searcher.open(path) as s:
        yield s


def test_real_tracks_nearest_neighbour_is_itself(real):
    res = real.similar(list(real.store.ids()), k=1, exclude_self=False)
    assert len(res) == 25
    assert all(r.neighbors[0].id == r.query_id for r in res)


def test_near_duplicates_rank_first(real, fixtures_dir, tmp_path):
    import soundfile as sf

    names = ["deb_nexuiz-music__brainsukker.ogg", "deb_wesnoth-1.16-music__silvan_sanctuary.ogg",
             "librosa_Kevin_MacLeod_-_Vibe_Ace.ogg"]
    queries, expect = [], []
    for name in names:
        y, sr = sf.read(fixtures_dir / name, dtype="float32")
        stem = name[:12]
        sf.write(tmp_path / f"{stem}.mp3", y, sr)  # re-encoded (lossy)
        sf.write(tmp_path / f"{stem}_quiet.wav", 0.5 * y, sr)  # gain -6 dB
        queries += [str(tmp_path / f"{stem}.mp3"), str(tmp_path / f"{stem}_quiet.wav")]
        expect += [str(fixtures_dir / name)] * 2
    res = real.similar(queries, k=3)
    assert all(r.kind == "audio" for r in res)
    assert [r.neighbors[0].path for r in res] == expect
    # mp3 re-encoding barely moves the vector; -6 dB moves it more (log-mel is not gain invariant)
    assert all(r.neighbors[0].score > 0.99 for r in res[::2])
    assert all(r.neighbors[0].score > 0.93 for r in res[1::2])


def test_segment_search_finds_song_and_offset(real, fixtures_dir, tmp_path):
    import soundfile as sf

    name = "deb_hyperrogue-music__hr3-jungle.ogg"
    y, sr = sf.read(fixtures_dir / name, dtype="float32")
    start = 12.0
    sf.write(tmp_path / "clip.wav", y[int(start * sr): int((start + 5) * sr)], sr)
    (res,) = real.segments([str(tmp_path / "clip.wav")], k=3)
    top = res.neighbors[0]
    assert top.path == str(fixtures_dir / name)
    assert abs(top.offset_s - start) <= 3.0
    assert len({n.id for n in res.neighbors}) == 3


# ---- CLI ----------------------------------------------------------------------------------------------


def test_cli_index_build_info_and_similar_json(store, capsys):
    path = str(store.path)
    code, out, err = run(capsys, "index", "build", path, "--json")
    assert code == 0
    card = json.loads(out)
    assert card["action"] == "built" and card["kind"] == "flat" and card["n_vectors"] == 60
    assert card["store"]["fingerprint"] == store.fingerprint and card["recall"]["measured"] == 1.0
    code, out, _ = run(capsys, "index", "info", path)
    assert code == 0 and "up to date" in out and "flat" in out
    code, out, _ = run(capsys, "similar", path, "1", "/music/album2/track3.ogg", "-k", "4", "--json")
    assert code == 0
    doc = json.loads(out)
    assert [q["query_id"] for q in doc["queries"]] == [1, 24]
    r = doc["queries"][0]["results"]
    assert [x["rank"] for x in r] == [1, 2, 3, 4] and set(r[0]) == {"id", "path", "score", "rank"}
    code, out, _ = run(capsys, "similar", path, "1", "-k", "2")
    assert code == 0 and len([l for l in out.splitlines() if not l.startswith("#")]) == 2


def test_cli_similar_partial_failure_and_errors(store, capsys):
    path = str(store.path)
    code, out, err = run(capsys, "similar", path, "1", "424242", "--json")
    assert code == 3
    assert json.loads(out)["queries"][1]["error"] and "424242" in err
    code, out, err = run(capsys, "similar", path, "424242")
    assert code == 1 and out == "" and err.count("\n") == 1 and "424242" in err
    code, _, err = run(capsys, "similar", path)
    assert code == 2


def test_cli_stale_index_is_refused_with_one_line(tmp_path, capsys):
    x = clustered(30)
    st = write_arrays(tmp_path / "s", [f"/m/{i}.ogg" for i in range(30)], x, model="rand")
    st.close()
    assert run(capsys, "index", "build", str(tmp_path / "s"))[0] == 0
    with Store.open(tmp_path / "s", mode="a") as w, w.transaction():
        w.add_embedded("/m/late.ogg", x[1], size=None, mtime=None, sha256=None, duration_s=None, samplerate=None)
    code, out, err = run(capsys, "similar", str(tmp_path / "s"), "1")
    assert code == 1 and "index build" in err and err.count("\n") == 1
    code, out, _ = run(capsys, "index", "build", str(tmp_path / "s"), "--json")
    assert code == 0 and json.loads(out)["action"] == "updated" and json.loads(out)["added"] == 1
    assert run(capsys, "similar", str(tmp_path / "s"), "1")[0] == 0


def test_similar_function_on_a_path(store):
    res = similar(store.path, [1], k=2, exact=True)
    assert len(res[0].neighbors) == 2
