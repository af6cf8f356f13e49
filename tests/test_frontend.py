"""Log-mel front end: bit-exact against the musicnn reference, streaming == one-shot, patching rules."""
from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf

from embedkit import frontend as fe


def _avx512() -> bool:
    from embedkit.precision import cpu_flags

    return "avx512f" in cpu_flags()


#: On CPUs without AVX-512 numpy's float32 kernels (OpenBLAS sgemm tails, SIMD log10) round differently from
#: the AVX-512 machine that made the reference: most bins within 2 float32 ULP (4.8e-7), a few (0.003 %) one
#: float16 step of the quantised mel apart (≤ 1/(2^10·ln 10) ≈ 4.3e-4 after the log) where a value sits on a
#: float16 rounding boundary. Measured on an AVX2-only AMD EPYC.
_ULP_TOL = 5e-4


def test_logmel_is_bit_identical_to_reference_for_16k_clips(reference_dir):
    ref = np.load(reference_dir / "msd_vgg_reference_logmel.npz")
    checked = 0
    for name in ref.files:
        y, sr = sf.read(reference_dir / "audio" / f"{name}.wav", dtype="float32")
        if sr != 16000 or y.ndim != 1:
            continue
        got = fe.logmel(y)
        assert got.shape == ref[name].shape
        if _avx512():
            assert np.array_equal(got, ref[name]), f"{name}: {np.count_nonzero(got != ref[name])} bins differ"
        else:
            np.testing.assert_allclose(got, ref[name], rtol=0, atol=_ULP_TOL, err_msg=name)
        checked += 1
    assert checked == 4


@pytest.mark.parametrize("n", [1, 100, 256, 257, 700, 4095, 4096, 4097, 50_000])
def test_streaming_equals_one_shot(n):
    rng = np.random.default_rng(n)
    y = (0.3 * rng.standard_normal(n)).astype(np.float32)
    whole = fe.logmel(y)
    assert whole.shape == (1 + n // fe.HOP, fe.N_MELS)
    for block in (1, 333, 5000):
        stream = fe.LogMelStream()
        parts = [stream.push(y[i : i + block]) for i in range(0, n, block)] + [stream.finish()]
        got = np.concatenate(parts)
        if _avx512():
            assert np.array_equal(got, whole), f"n={n} block={block}"
        else:  # sgemm row tails differ with the block's row count on AVX2
            np.testing.assert_allclose(got, whole, rtol=0, atol=_ULP_TOL, err_msg=f"n={n} block={block}")


def test_mel_filterbank_shape_and_normalisation():
    m = fe.mel_filterbank()
    assert m.shape == (257, 96) and m.dtype == np.float32
    assert (m >= 0).all()
    # Slaney normalisation: each triangle (height 2/bandwidth) has unit area in Hz
    hz_per_bin = 16000 / 512
    areas = m.sum(axis=0) * hz_per_bin
    assert np.allclose(areas, 1.0, atol=0.1) and abs(areas.mean() - 1) < 0.01  # sampled on 257 bins


def test_log_step_does_not_overflow_for_loud_input():
    y = np.full(16000, 0.99, np.float32) * np.sign(np.sin(np.arange(16000) * 0.3)).astype(np.float32)
    lm = fe.logmel(y * 50)  # absurdly loud: float16 would overflow without the clip
    assert np.isfinite(lm).all()


def test_patches_drop_partial_tail():
    frames = np.random.default_rng(0).random((187 * 3 + 50, 96)).astype(np.float32)
    p = fe.make_patches(frames)
    assert p.data.shape == (3, 187, 96) and not p.padded and p.frames_dropped == 50
    assert np.array_equal(p.data[1], frames[187:374])
    assert np.allclose(p.start_s, np.arange(3) * 187 * 256 / 16000)


def test_short_clip_is_repeat_padded():
    frames = np.arange(100 * 96, dtype=np.float32).reshape(100, 96)
    p = fe.make_patches(frames)
    assert p.padded and p.data.shape == (1, 187, 96)
    assert np.array_equal(p.data[0, :100], frames) and np.array_equal(p.data[0, 100:187], frames[:87])


def test_bad_shapes_are_rejected_with_the_shape_in_the_message():
    with pytest.raises(ValueError, match=r"shape=\(10, 40\)"):
        fe.make_patches(np.zeros((10, 40), np.float32))
    with pytest.raises(ValueError, match=r"y.shape=\(0,\)"):
        fe.logmel(np.zeros(0, np.float32))
