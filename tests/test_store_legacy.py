"""Stores written by embedkit 0.1.0 (commit 837679f, tests/data/store-0.1) still open, keep their fingerprints,
match a rerun with the same settings, refuse other settings, and gain checksums for what is appended.

``fake``: 3 synthesized files embedded with tests/_fake_embedder.py (``--layers 2,5 --aggregate mean+std
--patches --tags``). ``real``: the reference clip muldjord_armygeddon_16k.wav with msd_vgg, default settings.
"""
from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from _fake_embedder import FakeEmbedder
from embedkit import pretrained
from embedkit.collection import embed_into_store
from embedkit.spec import VectorSpec
from embedkit.store import Store, StoreMismatchError, settings_fingerprint
from embedkit.store.verify import verify

DATA = Path(__file__).resolve().parent / "data"
LEGACY = DATA / "store-0.1"


def _copy(name: str, tmp_path: Path) -> Path:
    src = LEGACY / name
    if not (src / "manifest.json").exists():
        pytest.fail(f"{src} is part of the repository and missing: git checkout it")
    dst = tmp_path / name
    shutil.copytree(src, dst)
    return dst


def _synth(folder: Path) -> list[Path]:
    """The same 3 files the legacy store was made from (same seeds), at new paths."""
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for i in range(3):
        y = 0.1 * np.random.default_rng(i).standard_normal(int(16000 * (3.5 + i))).astype(np.float32)
        sf.write(folder / f"s{i}.wav", y, 16000)
        out.append(folder / f"s{i}.wav")
    return out


def test_legacy_store_opens_with_its_fingerprints(tmp_path):
    st_path = _copy("fake", tmp_path)
    emb = FakeEmbedder()
    with Store.open(st_path) as st:
        assert st.spec == VectorSpec.for_embedder(emb, layers="2,5", aggregation="mean+std")
        assert st.fingerprint == st.spec.fingerprint == settings_fingerprint(
            emb.fingerprint, layers=["pool2", "pool5"], aggregation="mean+std", excerpt_s=None)
        assert st.spec.precision == "fp32" and st.dim == 16 and st.info()["unchecked_rows"] == 3
        ids = st.ids()
        files = _synth(tmp_path / "audio")
        for i, f in zip(ids, files):
            ref = emb.embed_file(f, layers="2,5", aggregate="mean+std", return_patches=True)
            np.testing.assert_array_equal(st.vectors([i])[0], ref.vector)
            np.testing.assert_array_equal(st.tags([i])[0], ref.tags)
            np.testing.assert_array_equal(st.patch_vectors([i])[2], ref.patch_vectors)


def test_rerun_with_same_settings_resumes_and_checksums_new_rows(tmp_path):
    st_path = _copy("fake", tmp_path)
    files = _synth(tmp_path / "audio")
    s = embed_into_store([tmp_path / "audio"], st_path, embedder=FakeEmbedder(), progress=False)
    assert s["embedded"] == 0 and s["moved"] + s["copies"] == 3  # same content at new paths: known by hash
    s = embed_into_store(files, st_path, embedder=FakeEmbedder(), layers="pool2,pool5", aggregate="mean+std",
                         progress=False)
    assert s["embedded"] == 0 and s["failed"] == 0
    with pytest.raises(StoreMismatchError, match="aggregation mean\\+std ≠ mean"):
        embed_into_store(files, st_path, embedder=FakeEmbedder(), aggregate="mean", progress=False)
    sf.write(tmp_path / "audio" / "new.wav", np.full(16000 * 4, 0.05, np.float32), 16000)
    s = embed_into_store([tmp_path / "audio"], st_path, embedder=FakeEmbedder(), progress=False)
    assert s["embedded"] == 1
    rep = verify(st_path)
    assert rep.ok and rep.unchecked_rows == 3 and rep.checked_rows == 1


def test_legacy_real_store_matches_this_release(tmp_path):
    """The msd_vgg store of 0.1 has the fingerprint today's spec computes, and its vector is the baseline's."""
    if not pretrained.is_installed("msd_vgg"):
        pytest.skip("weights of msd_vgg are not installed (run: embedkit models fetch msd_vgg)")
    st_path = _copy("real", tmp_path)
    with Store.open(st_path) as st:
        spec = VectorSpec.for_model("msd_vgg")
        st.check_spec(spec)
        assert st.fingerprint == spec.fingerprint and st.model_fingerprint == pretrained.model_fingerprint("msd_vgg")
        with np.load(DATA / "baseline" / "release-0.1.0-slice.npz") as z:
            want = z["msd_vgg/muldjord_armygeddon_16k.wav/vector"][:640]  # the means half of mean+std
        np.testing.assert_allclose(st.vectors()[0], want, rtol=0, atol=1e-6)
