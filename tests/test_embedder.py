"""Embedder behaviour: batching, layers, aggregation, odd and bad input in a batch."""
from __future__ import annotations

import numpy as np
import pytest

from embedkit import Embedder
from embedkit.errors import AudioError
from synth import tone


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    """Three synthesized clips of different lengths and rates, plus bad files."""
    import soundfile as sf

    d = tmp_path_factory.mktemp("clips")
    rng = np.random.default_rng(0)
    sf.write(d / "long.wav", (0.2 * rng.standard_normal(16000 * 20)).astype(np.float32), 16000)
    sf.write(d / "stereo48k.flac", np.stack([tone(220, 7, 48000), tone(330, 7, 48000)], 1), 48000)
    sf.write(d / "short.ogg", tone(880, 0.5, 44100), 44100, format="OGG", subtype="VORBIS")
    sf.write(d / "silence.wav", np.zeros(16000 * 4, np.float32), 16000)
    sf.write(d / "low8k.wav", tone(200, 4, 8000, noise=0.05), 8000)
    (d / "text.mp3").write_text("not audio at all\n" * 50)
    (d / "empty.wav").write_bytes(b"")
    return d


def test_vector_layout_and_aggregation(embedder, clips):
    res = embedder.embed_file(clips / "long.wav", return_patches=True)
    assert res.vector.shape == (640,) and res.vector.dtype == np.float32
    assert res.n_patches == (1 + 16000 * 20 // 256) // 187 == res.patch_vectors.shape[0]
    np.testing.assert_allclose(res.vector, res.patch_vectors.mean(axis=0), atol=1e-6)
    np.testing.assert_allclose(res.patch_start_s, np.arange(res.n_patches) * 187 * 256 / 16000)
    ms = embedder.embed_file(clips / "long.wav", aggregate="mean+std")
    assert ms.vector.shape == (1280,)
    np.testing.assert_allclose(ms.vector[:640], res.vector, atol=1e-6)
    np.testing.assert_allclose(ms.vector[640:], res.patch_vectors.std(axis=0), atol=1e-5)
    sub = embedder.embed_file(clips / "long.wav", layers="1,pool5")
    np.testing.assert_allclose(sub.vector, np.concatenate([res.vector[:128], res.vector[512:]]), atol=1e-6)
    with pytest.raises(ValueError, match="out of range"):
        embedder.embed_file(clips / "long.wav", layers="7")


def test_result_does_not_depend_on_batch_size(embedder, clips):
    files = [clips / "long.wav", clips / "stereo48k.flac"]
    small = Embedder.from_pretrained("msd_vgg", batch_size=3)
    a = list(embedder.embed_files(files))
    b = list(small.embed_files(files, workers=1))
    for x, y in zip(a, b):
        np.testing.assert_allclose(x.vector, y.vector, atol=1e-5, rtol=0)
        np.testing.assert_allclose(x.tags, y.tags, atol=1e-5, rtol=0)


def test_same_settings_give_bit_identical_vectors_whatever_the_worker_count(embedder, clips):
    files = [clips / n for n in ("long.wav", "stereo48k.flac", "low8k.wav", "long.wav")]
    one = [r.vector for r in embedder.embed_files(files, workers=1)]
    three = [r.vector for r in embedder.embed_files(files, workers=3)]
    for x, y in zip(one, three):
        assert np.array_equal(x, y)
    assert np.array_equal(one[0], one[3])


def test_embed_audio_equals_embed_file(embedder, clips):
    import soundfile as sf

    y, sr = sf.read(clips / "stereo48k.flac", dtype="float32")
    a = embedder.embed_audio(y, sr)
    b = embedder.embed_file(clips / "stereo48k.flac")
    np.testing.assert_allclose(a.vector, b.vector, atol=1e-5)
    assert a.samplerate == b.samplerate == 48000


def test_odd_inputs_give_results(embedder, clips):
    short = embedder.embed_file(clips / "short.ogg")
    assert short.padded and short.n_patches == 1 and np.isfinite(short.vector).all()
    silent = embedder.embed_file(clips / "silence.wav")
    assert np.isfinite(silent.vector).all() and silent.n_patches == 1
    low = embedder.embed_file(clips / "low8k.wav")
    assert low.samplerate == 8000 and np.isfinite(low.vector).all()


def test_bad_files_fail_alone_and_in_order(embedder, clips):
    names = ["text.mp3", "long.wav", "empty.wav", "missing.wav", "short.ogg"]
    results = list(embedder.embed_files([clips / n for n in names], workers=2))
    assert [r.ok for r in results] == [False, True, False, False, True]
    for name, r in zip(names, results):
        assert r.path.endswith(name)
        if not r.ok:
            assert name in r.error and "\n" not in r.error
    with pytest.raises(AudioError, match="empty.wav"):
        embedder.embed_file(clips / "empty.wav")


def test_excerpt_embeds_the_centre(embedder, clips):
    ex = embedder.embed_file(clips / "long.wav", excerpt_s=6.0, return_patches=True)
    assert ex.n_patches == 2 and ex.offset_s == pytest.approx(7.0)
    assert ex.patch_start_s[0] == pytest.approx(7.0)


def test_tags_are_sorted_probabilities(embedder, clips):
    tags = embedder.tag(clips / "long.wav")
    assert len(tags) == 50 and all(0 <= p <= 1 for _, p in tags)
    assert [p for _, p in tags] == sorted((p for _, p in tags), reverse=True)
    assert len(embedder.tag(tone(440, 4.0), sr=16000, top_k=3)) == 3


def test_fingerprint_is_stable_and_model_specific(embedder):
    again = Embedder.from_pretrained("msd_vgg")
    assert again.fingerprint == embedder.fingerprint and len(embedder.fingerprint) == 64
    from embedkit import pretrained

    other = pretrained.card("mtt_vgg")
    assert other.get("tensor_sha256") != embedder.card.get("tensor_sha256")


def test_patch_outputs_do_not_depend_on_batch_company(embedder):
    """Features (pooled conv activations) are bit-identical whatever the batch; so are the tags on AVX-512.
    On AVX2-only CPUs oneDNN's small GEMM (the 256 → 50 logits layer) handles a batch's tail rows with
    another kernel, so a tag may move in its last bit (measured ≤ 3e-8) with the patch's batch position."""
    from embedkit.precision import cpu_flags

    x = np.random.default_rng(3).random((45, 187, 96), dtype=np.float32) * 3
    full = embedder.forward(x)  # batches of 32 + a padded partial batch
    exact_tags = "avx512f" in cpu_flags()
    for sl in (slice(0, 1), slice(7, 10), slice(30, 45)):
        part = embedder.forward(x[sl])
        assert np.array_equal(part.features, full.features[sl]), sl
        if exact_tags:
            assert np.array_equal(part.tags, full.tags[sl]), sl
        else:
            np.testing.assert_allclose(part.tags, full.tags[sl], rtol=0, atol=1e-6, err_msg=str(sl))
