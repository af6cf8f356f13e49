"""Heads and indexes written by embedkit 0.1 (tests/data/release-0.1) still load and answer the same."""
from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from embedkit.heads import Head
from embedkit.index import open_for_store
from embedkit.spec import SpecMismatchError
from embedkit.store import Store, write_arrays

DATA = Path(__file__).parent / "data" / "release-0.1"


@pytest.fixture()
def old(tmp_path):
    dst = tmp_path / "release-0.1"
    shutil.copytree(DATA, dst)  # the current code may upgrade what it opens: never touch the vendored copy
    return dst


def test_old_heads_load_and_predict_the_same(old):
    ref = np.load(old / "predict_proba.npy")
    with Store.open(old / "old.store") as st:
        X, spec = st.vectors(), st.spec
    api, cli = Head.load(old / "api.head"), Head.load(old / "cli.head")
    assert api.spec_ is None  # 0.1's Python API saved no model: the head cannot check, as before
    assert cli.spec_ is not None and cli.spec_.model_fingerprint == "test"
    np.testing.assert_allclose(api.predict_proba(X), ref, rtol=0, atol=1e-12)
    np.testing.assert_allclose(cli.predict_proba(X, spec=spec), ref, rtol=0, atol=1e-12)
    other = write_arrays(old / "other.store", [f"/x/{i}.ogg" for i in range(4)], X[:4],
                         layout=[(f"pool{i}", 8) for i in range(1, 6)], fingerprint="another-model")
    with pytest.raises(SpecMismatchError, match="model fingerprint"):
        cli.predict(X[:4], spec=other.spec)
    other.close()


@pytest.mark.parametrize("name", ["default", "h"])
def test_old_indexes_open_and_search_like_exact(old, name):
    with Store.open(old / "old.store") as st:
        vi = open_for_store(st, name=name)
        assert vi.card["format"] == 1 and len(vi) == 60
        x = st.vectors()
        xn = x / np.linalg.norm(x, axis=1, keepdims=True)
        exact_rows = np.argsort(-(xn[:5] @ xn.T), axis=1)[:, :3]
        _, found = vi.search(x[:5], 3)
        assert (found == st.ids()[exact_rows]).mean() >= 0.9
