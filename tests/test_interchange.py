"""Issue 14's interchange format: Parquet shards + _manifest.json from a store (``store export``)."""
from __future__ import annotations

import json

import numpy as np
import pytest

from embedkit.interchange import MANIFEST, InterchangeError, write_parquet_shards
from embedkit.sidecar import sha256_file
from embedkit.store import Store, write_arrays
from tests.clirun import run

pq = pytest.importorskip("pyarrow.parquet")
ds = pytest.importorskip("pyarrow.dataset")


def make_store(path, n=2500, d=24):
    x = np.random.default_rng(0).standard_normal((n, d)).astype(np.float32)
    return write_arrays(path, [f"/music/a{i // 7}/t{i}.ogg" for i in range(n)], x, model="rand"), x


def test_shards_and_manifest_round_trip_the_store_bit_for_bit(tmp_path):
    st, _ = make_store(tmp_path / "s")
    out = tmp_path / "emb"
    man = write_parquet_shards(st, out, shard_rows=1000)
    assert [s["rows"] for s in man["shards"]] == [1000, 1000, 500] and man["n_items"] == 2500
    for s in man["shards"]:
        assert sha256_file(out / s["file"]) == s["sha256"]
    # the folder reads as one table (as Spark / embedding-reader read it), ids ascending, vectors bit-identical
    table = ds.dataset(str(out), format="parquet").to_table()  # _manifest.json is ignored (not *.parquet)
    ids = table.column("id").to_numpy()
    vecs = np.stack(table.column("vector").to_numpy(zero_copy_only=False)).astype(np.float32)
    assert np.array_equal(ids, st.ids()) and np.array_equal(vecs, st.vectors(ids))
    assert table.column("path").to_pylist()[5] == st.get(int(ids[5])).path
    assert man["store"]["fingerprint"] == st.fingerprint and man["columns"]["embedding"] == "vector"
    # a re-export with bigger shards replaces the old one and removes its now-stale third shard
    man2 = write_parquet_shards(st, out, shard_rows=2000)
    assert sorted(p.name for p in out.iterdir()) == ["_manifest.json", "part-00000.parquet", "part-00001.parquet"]
    assert [s["rows"] for s in man2["shards"]] == [2000, 500]
    st.close()


def test_refuses_a_foreign_folder_without_touching_it(tmp_path):
    st, _ = make_store(tmp_path / "s", n=10)
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep me")
    with pytest.raises(InterchangeError, match="not empty and holds no _manifest.json"):
        write_parquet_shards(st, tmp_path / "mine")
    assert (tmp_path / "mine" / "notes.txt").read_text() == "keep me"
    st.close()


def test_cli_store_export_parquet_folder(tmp_path, capsys):
    make_store(tmp_path / "s", n=300)[0].close()
    code, out, err = run(capsys, "store", "export", str(tmp_path / "s"), "--format", "parquet", "-o",
                         str(tmp_path / "out"), "--shard-rows", "128", "--json")
    assert code == 0, err
    doc = json.loads(out)
    assert doc["items"] == 300 and doc["shards"] == 3
    man = json.loads((tmp_path / "out" / MANIFEST).read_text())
    assert man["kind"] == "embedkit.parquet_shards" and sum(s["rows"] for s in man["shards"]) == 300
    # the single-file spelling keeps working
    code, _, err = run(capsys, "store", "export", str(tmp_path / "s"), "--format", "parquet", "-o", str(tmp_path / "one.parquet"))
    assert code == 0, err
    assert pq.read_table(tmp_path / "one.parquet").num_rows == 300
    with Store.open(tmp_path / "s") as st:
        assert pq.read_table(tmp_path / "one.parquet").column("id").to_pylist() == st.ids().tolist()
