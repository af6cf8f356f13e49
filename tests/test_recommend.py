"""embedkit.recommend and ``embedkit recommend``: histories, taste profiles, MMR, CF + audio mapping,
item hold-out evaluation, unknown history items reported."""
from __future__ import annotations

import io
import json

import numpy as np
import pytest
import scipy.sparse as sp
from sklearn.metrics import roc_auc_score

from embedkit.recommend import (
    AudioFactorMapping,
    ImplicitALS,
    Interactions,
    RecommendError,
    SVDFactors,
    TasteProfile,
    _fold_of,
    auc,
    average_precision_at_k,
    choose_scorer,
    evaluate,
    intra_list_similarity,
    load_interactions,
    mmr,
    recall_at_k,
    recommend,
)
from embedkit.store import write_arrays
from clirun import run




def world(n_groups: int = 6, per: int = 15, d: int = 24, n_users: int = 80, seed: int = 0):
    """Items in acoustic groups; users like 1-2 groups and play items from them (Zipf popularity)."""
    rng = np.random.default_rng(seed)
    centers = 3 * rng.standard_normal((n_groups, d))
    group = np.repeat(np.arange(n_groups), per)
    X = (centers[group] + rng.standard_normal((group.size, d))).astype(np.float32)
    ids = np.arange(1, group.size + 1, dtype=np.int64)
    pop = rng.zipf(1.6, group.size).astype(float)
    users, items, plays = [], [], []
    for u in range(n_users):
        fav = rng.choice(n_groups, rng.integers(1, 3), replace=False)
        pool = np.flatnonzero(np.isin(group, fav))
        picked = rng.choice(pool, min(10, pool.size), replace=False, p=pop[pool] / pop[pool].sum())
        for i in picked:
            users.append(f"u{u}")
            items.append(ids[i])
            plays.append(int(rng.poisson(4)) + 1)
    return X, ids, group, Interactions.from_arrays(users, items, plays)


@pytest.fixture
def store(tmp_path):
    X, ids, group, inter = world()
    st = write_arrays(tmp_path / "s", [f"/m/g{g}/t{i}.ogg" for i, g in enumerate(group)], X, model="rand")
    yield st, X, group, inter
    st.close()


# ---- reading histories ------------------------------------------------------------------------------


def test_load_history_header_variants_and_unknown_items(store, tmp_path):
    st = store[0]
    text = "user,track,plays\nann,1,3\nann,/m/g0/t1.ogg,2\nann,1,4\nbob,999,1\nbob,/nope.ogg,1\nbob,5,1\n"
    inter = load_interactions(io.StringIO(text), st)
    assert inter.kind == "plays" and inter.users() == ["ann", "bob"]
    items, plays = inter.of("ann")
    assert dict(zip(items.tolist(), plays.tolist())) == {1: 7.0, 2: 2.0}  # duplicates summed
    assert [(u["line"], u["item"]) for u in inter.unknown] == [(5, "999"), (6, "/nope.ogg")]
    assert all("not in the store" in u["reason"] for u in inter.unknown)
    # no header, tab separated, ratings by header
    assert load_interactions(io.StringIO("3\n4\n"), st).of("user")[0].tolist() == [3, 4]
    tsv = load_interactions(io.StringIO("u1\t3\t2\nu2\t4\t1\n"), st)
    assert tsv.kind == "plays" and tsv.users() == ["u1", "u2"]
    r = load_interactions(io.StringIO("user,item,rating\na,1,5\na,2,1\na,3,3\n"), st)
    assert r.kind == "ratings" and r.strength().tolist() == [2.0, 0.0, 0.0]
    with pytest.raises(RecommendError, match="line 2"):
        load_interactions(io.StringIO("item,plays\n1,lots\n"), st)
    with pytest.raises(RecommendError, match="empty"):
        load_interactions(io.StringIO("\n"), st)


def test_failed_store_item_in_history_is_reported(tmp_path):
    st = write_arrays(tmp_path / "s", ["/a.ogg", "/b.ogg"], np.eye(2, 4, dtype=np.float32), model="rand")
    st.close()
    from embedkit.store import Store

    with Store.open(tmp_path / "s", mode="a") as w:
        w.add_failed("/broken.ogg", "/broken.ogg: not audio")
    with Store.open(tmp_path / "s") as st:
        inter = load_interactions(io.StringIO("item\n/a.ogg\n/broken.ogg\n"), st)
    assert inter.of("user")[0].tolist() == [1]
    assert "not embedded" in inter.unknown[0]["reason"]


# ---- scorers and diversity -------------------------------------------------------------------------


def test_multi_interest_profile_covers_both_tastes():
    rng = np.random.default_rng(1)
    a, b = np.zeros(16), np.zeros(16)
    a[0], b[1] = 1, 1
    liked = np.vstack([a + 0.05 * rng.standard_normal((6, 16)), b + 0.05 * rng.standard_normal((6, 16))])
    cands = np.vstack([a + 0.05 * rng.standard_normal((10, 16)), b + 0.05 * rng.standard_normal((10, 16)),
                       (a + b) / 2 + 0.05 * rng.standard_normal((10, 16))])
    multi = TasteProfile("multi", n_interests=2).fit(liked)
    assert multi.centroids_.shape == (2, 16)
    top = np.argsort(-multi.score(cands))[:20]
    assert set(top.tolist()) == set(range(20))  # both interests, none of the in-between items
    mean = TasteProfile("mean").fit(liked)
    assert mean.centroids_.shape == (1, 16)
    assert set(np.argsort(-mean.score(cands))[:10].tolist()) == set(range(20, 30))  # the average favours in-betweens


def test_mmr_trades_relevance_for_diversity():
    rng = np.random.default_rng(2)
    X = np.vstack([np.eye(8)[0] + 0.01 * rng.standard_normal((20, 8)), np.eye(8)[1:] + 0.01 * rng.standard_normal((7, 8))])
    rel = np.r_[np.linspace(1.0, 0.9, 20), np.linspace(0.8, 0.7, 7)]
    plain = mmr(rel, X, 8, diversity=0.0)
    assert np.array_equal(plain, np.argsort(-rel)[:8])
    div = mmr(rel, X, 8, diversity=0.7)
    assert div[0] == plain[0] and len(set(div.tolist())) == 8
    assert intra_list_similarity(X[div]) < intra_list_similarity(X[plain]) - 0.3
    with pytest.raises(ValueError, match="diversity"):
        mmr(rel, X, 3, diversity=1.5)


def test_implicit_als_and_svd_recover_block_structure():
    rng = np.random.default_rng(3)
    R = np.zeros((40, 30))
    R[:20, :15] = rng.random((20, 15)) < 0.6
    R[20:, 15:] = rng.random((20, 15)) < 0.6
    for cf in (ImplicitALS(8, iterations=10), SVDFactors(4)):
        cf.fit(sp.csr_matrix(R))
        S = cf.user_factors_ @ cf.item_factors_.T
        unseen = R == 0
        inside = np.zeros_like(R, bool)
        inside[:20, :15] = inside[20:, 15:] = True
        assert S[unseen & inside].mean() > S[unseen & ~inside].mean() + 0.2, type(cf).__name__


def test_audio_mapping_predicts_factors_of_unseen_items():
    X, ids, group, inter = world(n_users=120)
    warm = np.isin(group, [0, 1, 2, 3, 4, 5]) & (np.arange(ids.size) % 3 != 0)
    from embedkit.recommend import _interaction_matrix

    train = inter.subset(np.isin(inter.item, ids[warm]))
    users = train.users()
    m = AudioFactorMapping(factors=8).fit(_interaction_matrix(train, users, ids[warm]), X[warm])
    assert m.predict_factors(X[~warm]).shape == (int((~warm).sum()), 8)
    assert 0 < m.fit_r2_ <= 1
    # a user's predicted scores on cold items: their liked groups above the others
    u = users[0]
    liked_groups = set(group[np.searchsorted(ids, inter.of(u)[0])].tolist())
    s = m.score(0, X[~warm])
    in_taste = np.isin(group[~warm], list(liked_groups))
    assert s[in_taste].mean() > s[~in_taste].mean()


# ---- metrics and evaluation ------------------------------------------------------------------------


def test_ranking_metrics():
    ranked = np.array([True, False, True, False])
    assert average_precision_at_k(ranked, 2, 4) == pytest.approx((1 + 2 / 3) / 2)
    assert average_precision_at_k(ranked, 3, 2) == pytest.approx(1 / 2)
    assert recall_at_k(ranked, 4, 3) == 0.5
    assert np.isnan(average_precision_at_k(ranked, 0, 3))
    rng = np.random.default_rng(4)
    s, y = rng.random(50), rng.random(50) < 0.3
    s[:10] = 0.5  # ties
    assert auc(s, y) == pytest.approx(roc_auc_score(y, s))
    assert np.isnan(auc(s, np.ones(50, bool)))


def test_folds_keep_groups_together():
    items = np.arange(100)
    groups = items // 10
    f = _fold_of(items, 5, 0, groups)
    assert all(len(set(f[groups == g].tolist())) == 1 for g in range(10))
    assert sorted(np.bincount(f).tolist()) == [20] * 5


def test_evaluate_holds_out_items_and_beats_random():
    X, ids, group, inter = world()
    res = evaluate(X, ids, inter, k=10, folds=3, seed=0)
    s = res["summary"]
    assert set(s) == {"mean", "multi", "mapping", "popularity", "random"}
    for name in ("mean", "multi", "mapping"):
        assert s[name]["auc"] > s["random"]["auc"] + 0.15, name
        assert s[name]["map@10"] > s["random"]["map@10"]
    assert abs(s["random"]["auc"] - 0.5) < 0.08
    rows = res["per_user"]
    assert rows and all(r["n_relevant"] >= 1 for r in rows)
    # every candidate list is exactly the fold's held-out items (+ never-played ones)
    played = inter.items()
    fold = _fold_of(played, 3, 0, None)
    for r in rows[:20]:
        assert r["n_candidates"] == int((fold == r["fold"]).sum()) + ids.size - played.size
    assert res["protocol"]["held_out"].startswith("items")


# ---- recommend on a store ----------------------------------------------------------------------------


def test_recommend_excludes_history_and_cold_only(store):
    st, X, group, inter = store
    users = inter.users()
    u = users[0]
    res = recommend(st, inter, user=u, k=10, scorer="mean")
    hist = set(inter.of(u)[0].tolist())
    got = [r["id"] for r in res["recommendations"]]
    assert len(got) == 10 and not hist & set(got)
    assert res["scorer"] == "mean" and [r["rank"] for r in res["recommendations"]] == list(range(1, 11))
    cold = recommend(st, inter, user=u, k=10, scorer="multi", cold_only=True)
    warm = set(inter.items().tolist())
    assert all(r["cold"] and r["id"] not in warm for r in cold["recommendations"])
    auto = recommend(st, inter, user=u, k=5)
    assert auto["scorer"] == "mapping" and "van den Oord" in auto["scorer_reason"]
    assert auto["mapping"]["users"] == len(users)
    with pytest.raises(RecommendError, match="pick one with --user"):
        recommend(st, inter, k=5)
    with pytest.raises(RecommendError, match="no user 'zed'"):
        recommend(st, inter, user="zed", k=5)


def test_choose_scorer_small_log_falls_back_to_a_profile():
    small = Interactions.from_arrays(["a", "a"], [1, 2])
    assert choose_scorer(small, "a")[0] == "multi"
    with pytest.raises(ValueError):
        choose_scorer(small, "a", "magic")


def test_cli_recommend_json_unknown_items_and_evaluate(store, tmp_path, capsys):
    st, X, group, inter = store
    hist = tmp_path / "me.csv"
    hist.write_text("item,plays\n1,5\n2,1\n/m/not-there.ogg,2\n")
    code, out, err = run(capsys, "recommend", str(st.path), "--history", str(hist), "-k", "4", "--diversity", "0.3", "--json")
    assert code == 0
    doc = json.loads(out)
    assert doc["scorer"] == "multi" and len(doc["recommendations"]) == 4
    assert doc["unknown"][0]["item"] == "/m/not-there.ogg" and "not-there.ogg" in err
    log = tmp_path / "log.csv"
    log.write_text("user,item,plays\n" + "".join(f"{u},{i},{int(p)}\n" for u, i, p in zip(inter.user, inter.item, inter.value)))
    code, out, _ = run(capsys, "recommend", str(st.path), "--history", str(log), "--user", "u3", "-k", "5", "--cold-only")
    assert code == 0 and "scorer mapping" in out and len([l for l in out.splitlines() if not l.startswith("#")]) <= 5
    code, out, _ = run(capsys, "recommend", str(st.path), "--history", str(log), "--evaluate", "--folds", "3", "-k", "10", "--json")
    assert code == 0
    ev = json.loads(out)
    assert set(ev["summary"]) == {"mean", "multi", "mapping", "popularity", "random"} and "per_user" not in ev
    code, out, err = run(capsys, "recommend", str(st.path), "--history", str(log))
    assert code == 1 and "--user" in err
