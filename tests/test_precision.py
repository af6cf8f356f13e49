"""Reduced precision (issue 15) on real audio: fp32 unchanged, bf16/int8 meet their fidelity bars, stores keep
their precision."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from embedkit import precision
from embedkit.errors import EmbedkitError

BASELINE = Path(os.environ.get("EMBEDKIT_BASELINE", "/work/team/baseline/release-0.1.0-vectors.npz"))


def _cos(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a.astype(np.float64), b.astype(np.float64)
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


@pytest.fixture(scope="module")
def clips(reference_dir):
    """The 5 reference clips (real music; not the int8 calibration set, which is the fixtures)."""
    return sorted((reference_dir / "audio").glob("*.wav"))


@pytest.fixture(scope="module")
def fp32_vectors(embedder, clips):
    return {r.path: r for r in embedder.embed_files(clips, aggregate="mean+std")}


def test_names_and_bars():
    assert precision.check(None) == "fp32" and precision.check("BF16") == "bf16" and precision.check("auto") == "auto"
    assert precision.check("bfloat16") == "bf16"
    assert precision.check("int8-dynamic") == "int8dyn"
    with pytest.raises(EmbedkitError, match="unknown precision 'fp8'; choose one of fp32, bf16, int8, int8dyn, auto"):
        precision.check("fp8")
    assert precision.FIDELITY_BARS == {"fp32": 1.0, "bf16": 0.999, "int8": 0.995, "int8dyn": 0.995}
    assert precision.native("bf16", {"avx2"}) is False and precision.native("bf16", {"avx512_bf16"}) is True


def test_fp32_is_bit_identical_to_release_0_1(embedder, clips, fp32_vectors):
    if not BASELINE.exists():
        pytest.skip(f"release-0.1.0 baseline vectors not found at {BASELINE}")
    base = np.load(BASELINE)
    for path, r in fp32_vectors.items():
        key = f"msd_vgg/{Path(path).name}"
        assert np.array_equal(r.vector, base[f"{key}/vector"]), key
        assert np.array_equal(r.tags, base[f"{key}/tags"]), key
    assert embedder.precision == "fp32"


def _run(prec: str, clips, fp32_vectors) -> tuple[list[float], float, int]:
    """(track cosines to fp32, max |Δ tag p|, clips whose top tag differs) of ``prec`` on the reference clips."""
    from embedkit import Embedder

    try:
        emb = Embedder.from_pretrained("msd_vgg", precision=prec)
    except EmbedkitError as exc:
        if "calibrate" in str(exc):
            pytest.skip(f"int8 cannot calibrate here: {exc}")
        raise
    assert emb.precision == prec
    cosines, tag_diff, top_diff = [], 0.0, 0
    for r in emb.embed_files(clips, aggregate="mean+std"):
        ref = fp32_vectors[r.path]
        assert r.ok and r.vector.shape == ref.vector.shape and r.vector.dtype == np.float32
        cosines.append(_cos(r.vector, ref.vector))
        tag_diff = max(tag_diff, float(np.abs(r.tags - ref.tags).max()))
        top_diff += int(np.argmax(r.tags) != np.argmax(ref.tags))
    assert min(cosines) < 1.0 or tag_diff > 0, f"{prec} gave exactly the fp32 vectors: not running reduced"
    return cosines, tag_diff, top_diff


@pytest.fixture(scope="module")
def int8_result(clips, fp32_vectors):
    return _run("int8", clips, fp32_vectors)


def test_bf16_meets_its_bar_on_real_music(clips, fp32_vectors):
    """bf16 runs everywhere (emulated where the CPU lacks AVX-512 BF16/AMX, so only slower there)."""
    cosines, tag_diff, top_diff = _run("bf16", clips, fp32_vectors)
    assert min(cosines) >= precision.FIDELITY_BARS["bf16"], cosines
    assert tag_diff < 0.02 and top_diff == 0, (tag_diff, top_diff)


def test_int8_runs_on_real_music_close_to_fp32(int8_result):
    cosines, tag_diff, top_diff = int8_result
    assert min(cosines) >= 0.9, cosines  # a working quantized model, not noise
    assert top_diff <= 1, top_diff


@pytest.mark.xfail(strict=True, reason="TensorFlow Lite full-integer post-training int8 of msd_vgg stays below the "
                                       "0.995 bar: measured track cosine min 0.958 (mean 0.970) on 15 held-out clips, "
                                       "0.96-0.98 on the reference clips; with BN, pooling and logits kept in float "
                                       "(quantization debugger denylist) 0.964; auto never picks it")
def test_int8_meets_its_bar_on_real_music(int8_result):
    cosines, _, _ = int8_result
    assert min(cosines) >= precision.FIDELITY_BARS["int8"], cosines


@pytest.fixture(scope="module")
def int8dyn_embedder():
    from embedkit import Embedder

    if not precision.native("int8dyn"):
        pytest.skip("this CPU has neither AVX2 nor VNNI: TFLite's int8 kernels would be emulated")
    return Embedder.from_pretrained("msd_vgg", precision="int8dyn")


def test_int8dyn_meets_its_bar_on_real_music(int8dyn_embedder, clips, fp32_vectors):
    """Dynamic-range int8 (int8 weights, activations quantized per patch at run time) on the reference clips."""
    cosines, tag_diff, top_diff = _run("int8dyn", clips, fp32_vectors)
    assert min(cosines) >= precision.FIDELITY_BARS["int8dyn"], cosines
    assert tag_diff < 0.05 and top_diff == 0, (tag_diff, top_diff)


def test_int8dyn_patch_does_not_depend_on_its_batch(int8dyn_embedder, clips):
    """Run-time activation ranges are per patch: a patch's outputs are the same whatever shares its batch."""
    from embedkit import audio, frontend

    x = np.concatenate([frontend.make_patches(frontend.logmel(audio.load(c))).data for c in clips[:3]])
    assert x.shape[0] >= 4
    alone = int8dyn_embedder.forward(x[:1])
    crowd = int8dyn_embedder.forward(x[[0, *range(x.shape[0] - 1, 0, -1)]])
    assert np.array_equal(alone.features[0], crowd.features[0]) and np.array_equal(alone.tags[0], crowd.tags[0])
    assert not np.array_equal(crowd.features[0], crowd.features[1])  # different patches, different outputs


def test_auto_never_picks_a_precision_below_its_bar(tmp_path, monkeypatch):
    """The decision rule of auto, on measured-looking numbers: fastest among those that meet their bar."""
    monkeypatch.setenv("EMBEDKIT_HOME", str(tmp_path))
    monkeypatch.setattr(precision, "cpu_flags", lambda: {"avx2", "avx512_bf16"})
    monkeypatch.setattr(precision, "has_gpu", lambda: False)
    speed = {"fp32": 1.0, "bf16": 0.6, "int8": 0.3, "int8dyn": 0.7}
    monkeypatch.setattr(precision, "time_precision", lambda model, p, **kw: speed[p])
    monkeypatch.setattr(precision, "fidelity", lambda model, p, **kw: {"bf16": 0.9995, "int8": 0.97, "int8dyn": 0.997}[p])
    assert precision.resolve("auto", "msd_vgg") == "bf16"  # int8 is fastest but below 0.995; int8dyn is slower
    cached = (tmp_path / "precision.json").read_text()
    assert '"choice": "bf16"' in cached and "0.97" in cached
    monkeypatch.setattr(precision, "fidelity", lambda model, p, **kw: 0.5)
    assert precision.resolve("auto", "msd_vgg") == "bf16"  # cached per machine/model/TF version
    (tmp_path / "precision.json").unlink()
    assert precision.resolve("auto", "msd_vgg") == "fp32"  # nothing else meets its bar


def test_spec_records_precision(embedder):
    from embedkit.spec import VectorSpec

    spec32 = embedder.spec()
    assert spec32.precision == "fp32"
    spec16 = VectorSpec.for_embedder(embedder, precision="bf16")
    assert spec16.fingerprint != spec32.fingerprint


def test_store_refuses_vectors_of_another_precision(tmp_path, embedder, clips):
    from embedkit.collection import embed_into_store
    from embedkit.store import Store

    lib = tmp_path / "lib"
    lib.mkdir()
    (lib / clips[0].name).symlink_to(clips[0])
    embed_into_store([lib], tmp_path / "st", embedder=embedder, progress=False)
    with pytest.raises(EmbedkitError) as err:
        embed_into_store([lib], tmp_path / "st", precision="bf16", progress=False)
    msg = str(err.value)
    assert "\n" not in msg and "bf16" in msg and "fp32" in msg, msg
    with Store.open(tmp_path / "st") as st:  # nothing changed: still one fp32 vector
        assert st.spec.precision == "fp32" and len(st) == 1
