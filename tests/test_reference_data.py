"""The vendored reference data (tests/data/reference) is complete, intact and licensed."""
from __future__ import annotations

import hashlib
import json

import numpy as np


def test_vendored_reference_clips_match_their_recorded_checksums(reference_dir):
    ref = json.loads((reference_dir / "msd_vgg_reference.json").read_text())
    logmel = np.load(reference_dir / "msd_vgg_reference_logmel.npz")
    assert len(ref["clips"]) == 5
    for clip in ref["clips"]:
        wav = reference_dir / clip["file"]
        assert hashlib.sha256(wav.read_bytes()).hexdigest() == clip["sha256"], wav
        key = wav.stem
        assert logmel[key].shape == (clip["n_mel_frames"], 96), key
        assert abs(float(logmel[key].astype(np.float64).sum()) - clip["logmel_checksum"]["sum"]) < 1e-3 * abs(
            clip["logmel_checksum"]["sum"]), key


def test_vendored_reference_audio_keeps_its_licences(reference_dir):
    lic = (reference_dir / "audio" / "LICENSES.md").read_text()
    assert (reference_dir / "audio" / "CC-BY-SA-3.0.txt").stat().st_size > 10_000
    for wav in (reference_dir / "audio").glob("*.wav"):
        assert wav.name in lic, f"{wav.name} not covered by LICENSES.md"
