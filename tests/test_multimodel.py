"""Multi-model vectors (issue 16) on real audio: concatenation bit for bit, named layouts, store refusal."""
from __future__ import annotations

import numpy as np
import pytest

from embedkit import composite, pretrained
from embedkit.errors import EmbedkitError

PAIR = "msd_vgg+msd_musicnn"


@pytest.fixture(scope="module")
def pair():
    from embedkit import Embedder

    for name in composite.split(PAIR):
        if not pretrained.is_installed(name):
            pytest.fail(f"{name} weights are not installed; run `embedkit models fetch --all`")
    return Embedder.from_pretrained(PAIR)


@pytest.fixture(scope="module")
def real_files(fixtures_dir):
    """Two short real recordings (different rates/codecs) from the fixtures."""
    from embedkit import audio

    files = sorted(p for p in fixtures_dir.iterdir() if p.suffix.lower() in audio.AUDIO_EXTENSIONS)
    short = sorted(files, key=lambda p: audio.probe(p).duration_s or 1e9)
    return [p for p in short if (audio.probe(p).duration_s or 0) >= 6][:2]


def test_split_names():
    assert composite.split("MSD_vgg+msd-musicnn") == ("msd_vgg", "msd_musicnn")
    with pytest.raises(EmbedkitError, match="listed twice"):
        composite.split("msd_vgg+msd_vgg")
    with pytest.raises(EmbedkitError, match="unknown model"):
        composite.split("msd_vgg+nope")
    with pytest.raises(EmbedkitError, match="invalid model name"):
        composite.split("msd_vgg+")


def _concatenation_check(both, first, second, *, exact: bool) -> None:
    """Patch vectors, patch tags and the mean+std track vector of ``both`` are the two models' outputs, joined."""
    same = np.array_equal if exact else (lambda a, b: np.allclose(a, b, rtol=0, atol=1e-5))
    for b, v, m in zip(both, first, second):
        assert b.ok and v.ok and m.ok
        assert same(b.patch_vectors, np.concatenate([v.patch_vectors, m.patch_vectors], axis=1))
        assert same(b.patch_tags, np.concatenate([v.patch_tags, m.patch_tags], axis=1))
        d1, d2 = v.patch_vectors.shape[1], m.patch_vectors.shape[1]
        # mean+std: all means (first, second), then all stds (first, second)
        assert same(b.vector, np.concatenate([v.vector[:d1], m.vector[:d2], v.vector[d1:], m.vector[d2:]]))
        # the first model's columns never depend on the second model: bit for bit in every case
        assert np.array_equal(b.patch_vectors[:, :d1], v.patch_vectors)


def test_two_model_vector_is_the_concatenation_bit_for_bit(embedder, real_files):
    """Two deterministic networks (msd_vgg + mtt_vgg): the joint vector is the concatenation, bit for bit."""
    from embedkit import Embedder

    if not pretrained.is_installed("mtt_vgg"):
        pytest.fail("mtt_vgg weights are not installed; run `embedkit models fetch --all`")
    joint = Embedder.from_pretrained("msd_vgg+mtt_vgg")
    other = Embedder.from_pretrained("mtt_vgg")
    kw = dict(aggregate="mean+std", return_patches=True)
    _concatenation_check(list(joint.embed_files(real_files, **kw)), list(embedder.embed_files(real_files, **kw)),
                         list(other.embed_files(real_files, **kw)), exact=True)
    assert joint.fingerprint not in (embedder.fingerprint, other.fingerprint)


def test_vgg_plus_musicnn_is_the_concatenation(pair, embedder, real_files):
    """msd_vgg + msd_musicnn: exact for the VGG columns; musicnn itself is not bit-reproducible from run to run
    under oneDNN (measured: up to 7e-7 between two runs of the same file), so its columns are compared at 1e-5."""
    from embedkit import Embedder

    musicnn = Embedder.from_pretrained("msd_musicnn")
    kw = dict(aggregate="mean+std", return_patches=True)
    _concatenation_check(list(pair.embed_files(real_files, **kw)), list(embedder.embed_files(real_files, **kw)),
                         list(musicnn.embed_files(real_files, **kw)), exact=False)
    assert pair.fingerprint not in (embedder.fingerprint, musicnn.fingerprint)


def test_layout_names_every_block_of_every_model(pair):
    spec = pair.spec(aggregation="mean+std")
    names = [e.name for e in spec.layout]
    want = [f"{m}:{b['name']}" for m in ("msd_vgg", "msd_musicnn") for b in pretrained.card(m)["feature_blocks"]]
    assert names == want + [n + "_std" for n in want]
    assert {e.model for e in spec.layout} == {"msd_vgg", "msd_musicnn"}
    assert spec.models == ("msd_vgg", "msd_musicnn") and spec.model == PAIR
    assert pair.layout.dim == 640 + 953 and spec.dim == 2 * (640 + 953)
    # unqualified names unique across models are accepted; shared ones are refused
    assert pair.layout.parse_layers("penultimate,msd_vgg:pool5") == ["msd_vgg:pool5", "msd_musicnn:penultimate"]
    with pytest.raises(ValueError, match="unknown layer"):
        pair.layout.parse_layers("pool9")


def test_tags_of_two_models_are_labelled_per_model(pair, real_files):
    res = pair.embed_file(real_files[0])
    top = pair.top_tags(res.tags, top_k=3)
    assert [t.split(":")[0] for t, _ in top] == ["msd_vgg"] * 3 + ["msd_musicnn"] * 3
    assert all(0.0 <= p <= 1.0 for _, p in top)


def test_store_made_with_one_model_refuses_a_two_model_run(tmp_path, embedder, pair, real_files):
    from embedkit.collection import embed_into_store

    lib = tmp_path / "lib"
    lib.mkdir()
    (lib / real_files[0].name).symlink_to(real_files[0])
    embed_into_store([lib], tmp_path / "st", embedder=embedder, progress=False)
    with pytest.raises(EmbedkitError) as err:
        embed_into_store([lib], tmp_path / "st", embedder=pair, progress=False)
    msg = str(err.value)
    assert "\n" not in msg and "msd_vgg" in msg
