"""embedkit serve's JSON API (embedkit.serve) on a small real store: every endpoint, its errors, path
traversal and symlink escapes refused, uploads that fail cleanly, and the store left untouched.

The store is made by the real collection pipeline with the fast stand-in embedder (tests/_fake_embedder.py)
from synthesized audio files; the browser tests (test_serve_browser.py) use real music and the real model.
"""
from __future__ import annotations

import hashlib
import io
import os
import re
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("starlette", reason="embedkit serve needs the serve extra: pip install -e '.[serve]'")
pytest.importorskip("httpx", reason="Starlette's TestClient needs httpx: pip install -e '.[test]'")

from starlette.testclient import TestClient  # noqa: E402

from embedkit.collection import embed_into_store  # noqa: E402
from embedkit.recommend import load_interactions, recommend  # noqa: E402
from embedkit.search import Searcher  # noqa: E402
from embedkit.serve import collection as collection_mod  # noqa: E402
from embedkit.serve.app import create_app  # noqa: E402
from embedkit.serve.collection import Collection  # noqa: E402
from embedkit.store import Store  # noqa: E402

from _fake_embedder import FakeEmbedder  # noqa: E402

SR = 16000
SECRET = b"TOP-SECRET-NOT-MUSIC\n"


def track(seed: int, seconds: float = 9.0) -> np.ndarray:
    """Noise with a slow amplitude envelope: the stand-in embedder's features (patch RMS) differ per seed."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * SR)) / SR
    env = 0.05 + 0.3 * np.abs(np.sin(2 * np.pi * (0.2 + 0.15 * (seed % 7)) * t + seed))
    return (env * rng.standard_normal(t.size)).astype(np.float32)


def _tree_digest(store: Path) -> dict[str, str]:
    out = {}
    for p in sorted(store.rglob("*")):
        rel = p.relative_to(store).as_posix()
        if p.is_file() and not rel.startswith("layout/") and not rel.endswith(("-wal", "-shm")):
            out[rel] = hashlib.sha256(p.read_bytes()).hexdigest()
    return out


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """A collection (2 albums of wav/flac + one aiff), an outside secret, a symlink out, and its store."""
    import soundfile as sf

    base = tmp_path_factory.mktemp("serve")
    coll = base / "music"
    outside = base / "outside"
    for d in (coll / "albumA", coll / "albumB", outside):
        d.mkdir(parents=True)
    paths = []
    for i in range(6):
        p = coll / "albumA" / f"a{i}.wav"
        sf.write(p, track(i), SR, subtype="PCM_16")
        paths.append(p)
    for i in range(6, 11):
        p = coll / "albumB" / f"b{i}.flac"
        sf.write(p, track(i), SR)
        paths.append(p)
    aiff = coll / "albumB" / "odd format.aiff"
    sf.write(aiff, np.stack([track(11), track(12)], axis=1), 22050)
    (outside / "secret.txt").write_bytes(SECRET)
    sf.write(outside / "escape.wav", track(20), SR, subtype="PCM_16")
    (coll / "albumA" / "link-out.wav").symlink_to(outside / "escape.wav")
    store = base / "store"
    embed_into_store([coll], store, embedder=FakeEmbedder(), tags=True, patches=True, progress=False)
    return {"base": base, "coll": coll, "outside": outside, "store": store, "aiff": aiff}


@pytest.fixture(scope="module")
def client(world):
    col = Collection(world["store"], embedder=FakeEmbedder())
    app = create_app(col, close_collection=True)
    with TestClient(app) as c:
        c.col = col
        yield c


def _one_line_error(r, status: int) -> str:
    assert r.status_code == status, (r.status_code, r.text)
    msg = r.json()["error"]
    assert msg and "\n" not in msg and "Traceback" not in msg
    return msg


# ---- page and static assets ------------------------------------------------------------------------


def test_page_and_assets_ship_in_the_package_without_network(client):
    r = client.get("/")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    assets = re.findall(r'(?:src|href)="([^"]+)"', r.text)
    assert set(assets) == {"/static/app.css", "/static/app.js"}
    for a in assets:
        body = client.get(a)
        assert body.status_code == 200 and len(body.text) > 500
        # no CDN, no external fetches: every URL the page uses is on this server
        assert not re.search(r"https?://", body.text), a
    assert client.get("/static/nothing.js").status_code == 404


# ---- info, map, fields -------------------------------------------------------------------------------


def test_info_map_and_binary_map_agree_with_the_store(client, world):
    info = client.get("/api/info").json()
    with Store.open(world["store"]) as st:
        ids = st.ids()
    assert info["items"] == len(ids) == 13  # 11 tracks + the aiff + the symlinked one
    assert info["tags"] and info["patches"] and info["layout"]["method"] in ("pca", "tsne")
    # the folders that hold items: a file is served only when its real path lies inside one of them
    assert info["roots"] == [os.path.realpath(world["coll"] / a) for a in ("albumA", "albumB")]
    m = client.get("/api/map").json()
    assert m["ids"] == ids.tolist()
    xy = np.array([m["x"], m["y"]]).T
    assert np.all((xy >= 0) & (xy <= 1)) and np.unique(xy.round(4), axis=0).shape[0] == len(ids)
    raw = client.get("/api/map.bin").content
    n = len(raw) // 12
    assert n == len(ids)
    assert np.frombuffer(raw[: 4 * n], "<i4").tolist() == ids.tolist()
    np.testing.assert_allclose(np.frombuffer(raw[4 * n : 8 * n], "<f4"), m["x"], atol=1e-5)
    np.testing.assert_allclose(np.frombuffer(raw[8 * n :], "<f4"), m["y"], atol=1e-5)


def test_fields_colour_every_item(client):
    fields = {f["name"]: f for f in client.get("/api/fields").json()}
    assert {"folder", "duration", "tag:top", "tag:a"} <= set(fields)
    folder = client.get("/api/fields/folder").json()
    assert folder["kind"] == "category" and set(folder["categories"]) == {"albumA", "albumB"}
    ids = client.get("/api/map").json()["ids"]
    paths = [client.get(f"/api/items/{i}").json()["path"] for i in ids]
    assert [folder["categories"][c] for c in folder["codes"]] == [Path(p).parent.name for p in paths]
    tag = client.get("/api/fields/tag:a").json()
    assert tag["kind"] == "value" and len(tag["values"]) == len(ids) and tag["min"] < tag["max"]
    assert client.get("/api/fields/duration").json()["kind"] == "value"
    assert "unknown colour field" in _one_line_error(client.get("/api/fields/nope"), 404)


# ---- items, search, neighbours -----------------------------------------------------------------------


def test_item_by_id_and_by_stored_path(client, world):
    with Store.open(world["store"]) as st:
        it = st.get(str(world["coll"] / "albumA" / "a2.wav"))
        tags = st.tags([it.id])[0]
        labels = st.tag_labels
    d = client.get(f"/api/items/{it.id}").json()
    assert d["id"] == it.id and d["path"] == it.path and d["name"] == "a2.wav" and d["folder"] == "albumA"
    assert d["audio"] == f"/api/audio/{it.id}"
    assert [t["tag"] for t in d["tags"]] == [labels[j] for j in np.argsort(-tags, kind="stable")[:5]]
    assert d["predictions"] == []
    by_path = client.get(f"/api/items/{it.path}").json()
    assert by_path["id"] == it.id
    assert "not an embedded item" in _one_line_error(client.get("/api/items/albumA/a2.wav"), 404)
    assert "no embedded item with id 9999" in _one_line_error(client.get("/api/items/9999"), 404)


def test_search_by_name_and_path(client):
    r = client.get("/api/search", params={"q": "a3"}).json()
    assert [x["name"] for x in r["results"]] == ["a3.wav"]
    r = client.get("/api/search", params={"q": "albumb"}).json()
    assert len(r["results"]) == 6 and all(x["folder"] == "albumB" for x in r["results"])
    assert client.get("/api/search", params={"q": "  "}).json()["results"] == []
    assert client.get("/api/search", params={"q": "zzz-nothing"}).json()["results"] == []
    assert "limit must be an integer" in _one_line_error(client.get("/api/search?q=a&limit=x"), 400)


def test_neighbors_are_the_search_modules_answer(client, world):
    with Store.open(world["store"]) as st:
        qid = int(st.ids()[3])
        want = Searcher(st).similar([qid], k=5)[0].neighbors
    r = client.get(f"/api/items/{qid}/neighbors", params={"k": 5}).json()
    assert [x["id"] for x in r["results"]] == [n.id for n in want]
    assert [x["score"] for x in r["results"]] == [n.score for n in want]
    assert qid not in [x["id"] for x in r["results"]] and all(x["audio"] for x in r["results"])
    assert "k must be >= 1" in _one_line_error(client.get(f"/api/items/{qid}/neighbors?k=0"), 400)
    assert "k must be an integer" in _one_line_error(client.get(f"/api/items/{qid}/neighbors?k=ten"), 400)


# ---- audio -------------------------------------------------------------------------------------------


def test_audio_is_the_file_with_range_support(client, world):
    p = world["coll"] / "albumB" / "b7.flac"
    iid = client.get("/api/items/" + str(p)).json()["id"]
    full = client.get(f"/api/audio/{iid}")
    assert full.status_code == 200 and full.headers["content-type"] == "audio/flac"
    assert full.content == p.read_bytes() and full.headers["accept-ranges"] == "bytes"
    part = client.get(f"/api/audio/{iid}", headers={"Range": "bytes=100-1099"})
    assert part.status_code == 206 and part.content == p.read_bytes()[100:1100]
    assert part.headers["content-range"] == f"bytes 100-1099/{p.stat().st_size}"
    tail = client.get(f"/api/audio/{iid}", headers={"Range": "bytes=-10"})
    assert tail.status_code == 206 and tail.content == p.read_bytes()[-10:]
    bad = client.get(f"/api/audio/{iid}", headers={"Range": f"bytes={p.stat().st_size + 10}-"})
    assert bad.status_code == 416


def test_unplayable_format_is_transcoded_to_opus(client, world):
    import av

    iid = client.get("/api/items/" + str(world["aiff"])).json()["id"]
    r = client.get(f"/api/audio/{iid}")
    assert r.status_code == 200 and r.headers["content-type"] == "audio/ogg"
    with av.open(io.BytesIO(r.content)) as c:
        s = c.streams.audio[0]
        assert s.codec_context.name == "opus" and s.codec_context.channels == 2
        n = sum(f.samples for f in c.decode(s))
    assert n / 48000 == pytest.approx(9.0 * SR / 22050, abs=0.05)  # 9 s of samples written at 22.05 kHz
    part = client.get(f"/api/audio/{iid}", headers={"Range": "bytes=0-99"})
    assert part.status_code == 206 and part.content == r.content[:100]


TRAVERSALS = [
    "/api/audio/../../../../etc/passwd",
    "/api/audio/..%2F..%2F..%2Fetc%2Fpasswd",
    "/api/audio/%2e%2e/%2e%2e/etc/passwd",
    "/api/audio//etc/passwd",
    "/api/audio/%2Fetc%2Fpasswd",
    "/api/audio/1%2F..%2F..%2Fsecret.txt",
    "/api/audio/-1",
    "/api/items/..%2F..%2Foutside%2Fsecret.txt",
    "/api/items/%2e%2e/%2e%2e/etc/passwd",
    "/static/../../../../etc/passwd",
    "/static/..%2F..%2F..%2F..%2Fetc%2Fpasswd",
    "/static/%2e%2e/%2e%2e/%2e%2e/setup.cfg",
    "/static/%252e%252e/%252e%252e/etc/passwd",
    "/static//etc/passwd",
    "/static/..\\..\\app.py",
    "/api/query/../../etc/passwd",
]


@pytest.mark.parametrize("url", TRAVERSALS)
def test_path_traversal_is_refused(client, world, url):
    url = url.replace("secret.txt", "outside/secret.txt")
    r = client.get(url)
    assert r.status_code in (400, 403, 404, 405), (url, r.status_code)
    assert b"root:" not in r.content and SECRET not in r.content
    # absolute paths outside the collection, by id lookup, are never items
    r2 = client.get("/api/items/" + str(world["outside"] / "secret.txt"))
    assert r2.status_code == 404 and SECRET not in r2.content


def test_symlink_out_of_the_collection_is_refused(client, world):
    link = world["coll"] / "albumA" / "link-out.wav"
    iid = client.get("/api/items/" + str(link)).json()["id"]  # the store knows it (the walk followed the link) ...
    r = client.get(f"/api/audio/{iid}")
    msg = _one_line_error(r, 403)  # ... but its file lies outside the collection
    assert "outside the collection" in msg and (world["outside"] / "escape.wav").read_bytes()[:64] not in r.content


def test_a_file_swapped_for_a_symlink_after_embedding_is_refused(world):
    import shutil

    coll2 = world["base"] / "swap" / "music"
    shutil.copytree(world["coll"] / "albumA", coll2 / "albumA", symlinks=True)
    store = world["base"] / "swap" / "store"
    embed_into_store([coll2], store, embedder=FakeEmbedder(), progress=False)
    victim = coll2 / "albumA" / "a1.wav"
    victim.unlink()
    victim.symlink_to(world["outside"] / "secret.txt")
    (coll2 / "albumA" / "a2.wav").unlink()
    (coll2 / "albumA" / "a2.wav").symlink_to("../../../outside/secret.txt")
    col = Collection(store, embedder=FakeEmbedder())
    with TestClient(create_app(col, close_collection=True)) as c:
        for name in ("a1.wav", "a2.wav"):
            iid = c.get("/api/items/" + str(coll2 / "albumA" / name)).json()["id"]
            r = c.get(f"/api/audio/{iid}")
            assert r.status_code == 403 and SECRET not in r.content
        gone = coll2 / "albumA" / "a3.wav"
        gone.unlink()
        iid = c.get("/api/items/" + str(gone)).json()["id"]
        assert "no such file" in _one_line_error(c.get(f"/api/audio/{iid}"), 404)


# ---- query by audio file -----------------------------------------------------------------------------


def test_dropped_file_finds_its_original_first(client, world):
    import soundfile as sf

    orig = world["coll"] / "albumA" / "a4.wav"
    oid = client.get("/api/items/" + str(orig)).json()["id"]
    same = client.post("/api/query", params={"name": "a4.wav", "k": 3}, content=orig.read_bytes()).json()
    assert same["same_as"] == oid and same["results"][0]["id"] == oid and same["results"][0]["score"] == pytest.approx(1, abs=1e-5)
    # a re-encoded copy (other bytes): embedded anew, and the original is still the nearest
    buf = io.BytesIO()
    y, sr = sf.read(orig, dtype="float32")
    sf.write(buf, y, sr, format="FLAC")
    r = client.post("/api/query", params={"name": "copy of a4.flac", "k": 3}, content=buf.getvalue()).json()
    assert r["same_as"] is None and r["kind"] == "audio" and r["results"][0]["id"] == oid
    assert r["query"] == "copy of a4.flac"


def test_bad_uploads_get_a_clear_error_and_the_server_goes_on(client, monkeypatch):
    msg = _one_line_error(client.post("/api/query", params={"name": "notes.ogg"}, content=b"this is not audio" * 100), 422)
    assert "notes.ogg" in msg and "embedkit-upload" not in msg  # names the upload, not the temp file
    assert "empty" in _one_line_error(client.post("/api/query", params={"name": "x.wav"}, content=b""), 400)
    monkeypatch.setattr("embedkit.serve.app.MAX_UPLOAD_BYTES", 1000)
    assert "limit" in _one_line_error(client.post("/api/query", params={"name": "big.wav"}, content=b"0" * 5000), 413)
    assert client.get("/api/query").status_code == 405
    assert client.get("/api/info").status_code == 200  # still serving


# ---- recommendations ---------------------------------------------------------------------------------


def test_recommend_from_a_pasted_history(client, world):
    coll = world["coll"]
    text = f"item,plays\n{coll / 'albumA' / 'a0.wav'},5\n{coll / 'albumA' / 'a1.wav'},2\nnot/in/store.ogg,1\n"
    r = client.post("/api/recommend", params={"k": 4}, content=text.encode())
    assert r.status_code == 200, r.text
    out = r.json()
    with Store.open(world["store"]) as st:
        src = io.StringIO(text)
        want = recommend(st, load_interactions(src, st), k=4)
    assert [x["id"] for x in out["recommendations"]] == [x["id"] for x in want["recommendations"]]
    assert out["history"] == {"items": 2, "unknown": 1} and out["unknown"][0]["item"] == "not/in/store.ogg"
    hist = {st_id for st_id in (client.get("/api/items/" + str(coll / "albumA" / n)).json()["id"] for n in ("a0.wav", "a1.wav"))}
    assert not hist & {x["id"] for x in out["recommendations"]}
    assert all(x["audio"].startswith("/api/audio/") for x in out["recommendations"])
    div = client.post("/api/recommend", params={"k": 4, "diversity": "0.9"}, content=text.encode()).json()
    assert len(div["recommendations"]) == 4


def test_recommend_errors_are_one_line(client):
    assert "no history item is in the store" in _one_line_error(
        client.post("/api/recommend", content=b"item\nnowhere.ogg\n"), 422)
    assert "UTF-8" in _one_line_error(client.post("/api/recommend", content=b"\xff\xfe\x00bad"), 422)
    assert "diversity" in _one_line_error(client.post("/api/recommend?diversity=2", content=b"item\n1\n"), 400)
    assert "diversity must be a number" in _one_line_error(client.post("/api/recommend?diversity=x", content=b"1"), 400)


# ---- safety of the store -----------------------------------------------------------------------------


def test_serving_never_writes_the_store(world):
    before = _tree_digest(world["store"])
    col = Collection(world["store"], embedder=FakeEmbedder())
    with TestClient(create_app(col, close_collection=True)) as c:
        for url in ("/api/info", "/api/map", "/api/fields/tag:top", "/api/items/1", "/api/items/1/neighbors",
                    "/api/audio/1", "/api/search?q=a"):
            assert c.get(url).status_code == 200, url
        c.post("/api/query?name=x.wav", content=(world["coll"] / "albumA" / "a0.wav").read_bytes())
        c.post("/api/recommend", content=b"item\n1\n")
    assert _tree_digest(world["store"]) == before
    assert col.store.mode == "r"


def test_collection_limits_are_what_the_api_reports(client):
    assert client.get("/api/info").json()["max_upload_bytes"] == collection_mod.MAX_UPLOAD_BYTES


# ---- heads and labels --------------------------------------------------------------------------------


def test_heads_and_labels_colour_the_map_and_predict(world, tmp_path):
    from embedkit.errors import ModelMismatchError
    from embedkit.heads import Head

    with Store.open(world["store"]) as st:
        ids = st.ids()
        items = [st.get(int(i)) for i in ids]
        X = st.vectors(ids)
        album = np.array([Path(it.path).parent.name for it in items])
        info = {"model": st.manifest["model"], "model_fingerprint": st.model_fingerprint,
                "aggregation": st.manifest["aggregation"]}
        Head("classification", "logreg", layout=st.layout).fit(X, album).save(tmp_path / "album.head", info=info)
        Head("classification", "logreg", layout=st.layout).fit(X, album).save(
            tmp_path / "other.head", info={**info, "model_fingerprint": "f" * 64})
    csv = tmp_path / "albums.csv"
    csv.write_text("path,label,group\n" + "".join(f"{it.path},{a},g{k % 2}\n" for k, (it, a) in enumerate(zip(items, album))))
    col = Collection(world["store"], embedder=FakeEmbedder(), heads=[str(tmp_path / "album.head")], labels=[str(csv)])
    with TestClient(create_app(col, close_collection=True)) as c:
        names = [f["name"] for f in c.get("/api/fields").json()]
        assert {"head:album", "label:albums", "group:albums"} <= set(names)
        head_f = c.get("/api/fields/head:album").json()
        pred = [head_f["categories"][k] for k in head_f["codes"]]
        assert np.mean(np.array(pred) == album) >= 0.8  # a head fitted on these very labels mostly reproduces them
        lab_f = c.get("/api/fields/label:albums").json()
        assert [lab_f["categories"][k] for k in lab_f["codes"]] == album.tolist()
        grp = c.get("/api/fields/group:albums").json()
        assert sorted(grp["categories"]) == ["g0", "g1"]
        d = c.get(f"/api/items/{int(ids[0])}").json()
        (p,) = d["predictions"]
        assert p["head"] == "album" and p["task"] == "classification" and p["prediction"] == pred[0]
        assert sum(t["p"] for t in p["top"]) == pytest.approx(1.0, abs=1e-3)
        assert c.get("/api/info").json()["heads"] == ["album"]
    with pytest.raises(ModelMismatchError, match="fingerprint"):
        Collection(world["store"], heads=[str(tmp_path / "other.head")])
    # heads saved in STORE/heads/ are found without --head; one made for other vectors is skipped, saying why
    import shutil

    saved = world["base"] / "store-with-heads"
    shutil.copytree(world["store"], saved)
    for name in ("album", "other"):
        shutil.copytree(tmp_path / f"{name}.head", saved / "heads" / f"{name}.head")
    said: list[str] = []
    col = Collection(saved, embedder=FakeEmbedder(), progress=said.append)
    try:
        assert [n for n, _ in col.heads] == ["album"]
        assert any("other.head: not shown" in m and "fingerprint" in m for m in said)
    finally:
        col.close()


# ---- the command ---------------------------------------------------------------------------------------


def _spawn_serve(store: Path, *args: str):
    import subprocess
    import sys

    code = "from embedkit.cli.main import main; main()"
    return subprocess.Popen([sys.executable, "-c", code, "serve", str(store), *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def test_serve_command_listens_and_warns_off_localhost(world):
    import httpx

    proc = _spawn_serve(world["store"], "--host", "0.0.0.0", "--port", "0", "--layout", "pca")
    try:
        lines = []
        for line in proc.stderr:
            lines.append(line)
            if "serving" in line:
                break
        text = "".join(lines)
        assert "warning: listening on 0.0.0.0" in text and "127.0.0.1" in text
        url = re.search(r"at (http://\S+/)", text).group(1).replace("0.0.0.0", "127.0.0.1")
        r = httpx.get(url + "api/info", timeout=30)
        assert r.status_code == 200 and r.json()["items"] == 13
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_serve_command_refuses_a_busy_port_in_one_line(world):
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(1)
        port = s.getsockname()[1]
        proc = _spawn_serve(world["store"], "--port", str(port))
        out, err = proc.communicate(timeout=120)
    assert proc.returncode == 1 and f"cannot listen on 127.0.0.1:{port}" in err and "--port" in err
    assert len(err.strip().splitlines()) == 1 and "warning" not in err


def test_unknown_index_is_refused_at_start(world):
    from embedkit.errors import EmbedkitError

    with pytest.raises(EmbedkitError, match="nope"):
        Collection(world["store"], index="nope")
