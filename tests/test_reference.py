"""The Keras port reproduces the original musicnn 0.1.0 MSD_vgg graph (shared/reference)."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from embedkit import frontend as fe

POOLS = [f"pool{k}" for k in range(1, 6)]


@pytest.fixture(scope="module")
def reference(reference_dir):
    ref = json.loads((reference_dir / "msd_vgg_reference.json").read_text())
    logmel = np.load(reference_dir / "msd_vgg_reference_logmel.npz")
    return ref, logmel


def _clip_key(clip: dict) -> str:
    return Path(clip["file"]).stem


def test_labels_match_reference(embedder, reference):
    ref, _ = reference
    assert embedder.labels == ref["labels"]


def test_fed_reference_logmel_tags_and_pooled_match(embedder, reference):
    ref, logmel = reference
    for clip in ref["clips"]:
        patches = fe.make_patches(logmel[_clip_key(clip)])
        assert patches.data.shape[0] == clip["n_patches"]
        assert patches.frames_dropped == clip["frames_dropped_at_end"]
        out = embedder.forward(patches.data)
        np.testing.assert_allclose(out.tags, clip["tags_per_patch"], atol=1e-5, rtol=0)
        np.testing.assert_allclose(out.logits, clip["logits_per_patch"], atol=1e-4, rtol=0)
        pooled = np.concatenate([np.asarray(clip["pooled_per_patch"][p]) for p in POOLS], axis=1)
        np.testing.assert_allclose(out.features, pooled, atol=1e-4, rtol=0)


def test_end_to_end_from_16k_wavs(embedder, reference, reference_dir):
    ref, _ = reference
    clips = [c for c in ref["clips"] if c["samplerate"] == 16000]
    assert len(clips) == 4
    results = list(embedder.embed_files([reference_dir / c["file"] for c in clips], return_patches=True))
    for clip, res in zip(clips, results):
        assert res.ok, res
        assert res.n_patches == clip["n_patches"] and not res.padded
        np.testing.assert_allclose(res.patch_tags, clip["tags_per_patch"], atol=1e-5, rtol=0)
        np.testing.assert_allclose(res.tags, clip["tags_clip_mean"], atol=1e-5, rtol=0)
        np.testing.assert_allclose(res.vector, clip["embedding640_clip_mean"], atol=1e-4, rtol=0)


def test_end_to_end_44k_stereo_clip(embedder, reference, reference_dir):
    ref, _ = reference
    (clip,) = [c for c in ref["clips"] if c["samplerate"] != 16000]
    res = embedder.embed_file(reference_dir / clip["file"])
    assert res.samplerate == 44100 and res.n_patches == clip["n_patches"]
    np.testing.assert_allclose(res.tags, clip["tags_clip_mean"], atol=5e-3, rtol=0)
    e = np.asarray(clip["embedding640_clip_mean"])
    cos = float(e @ res.vector / np.linalg.norm(e) / np.linalg.norm(res.vector))
    assert cos > 0.999
    top = [t for t, _ in embedder.tag(reference_dir / clip["file"], top_k=5)]
    assert top[:3] == [t for t, _ in clip["top5_clip"][:3]]
