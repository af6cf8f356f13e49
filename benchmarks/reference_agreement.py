"""How closely the Keras port reproduces the original musicnn MSD_vgg graph (../shared/reference).

Prints the largest absolute deviations (tags, logits, pooled block means, clip embeddings) and the log-mel
bit-identity, and writes them to docs/benchmarks.md. The tests assert the tolerances; this records the figures.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _report import markdown_table, write_section  # noqa: E402

REF = Path(__file__).resolve().parent.parent.parent / "shared" / "reference"


def main() -> None:
    import soundfile as sf

    from embedkit import Embedder
    from embedkit import frontend as fe

    ref = json.loads((REF / "msd_vgg_reference.json").read_text())
    logmel = np.load(REF / "msd_vgg_reference_logmel.npz")
    emb = Embedder.from_pretrained("msd_vgg")
    rows = []
    for clip in ref["clips"]:
        key = Path(clip["file"]).stem
        y, sr = sf.read(REF / clip["file"], dtype="float32")
        bins = "—"
        if sr == 16000 and y.ndim == 1:
            bins = f"{int(np.count_nonzero(fe.logmel(y) != logmel[key]))} of {logmel[key].size}"
        fed = emb.forward(fe.make_patches(logmel[key]).data)
        pooled = np.concatenate([np.asarray(clip["pooled_per_patch"][f"pool{k}"]) for k in range(1, 6)], axis=1)
        e2e = emb.embed_file(REF / clip["file"])
        e = np.asarray(clip["embedding640_clip_mean"])
        cos = float(e @ e2e.vector / np.linalg.norm(e) / np.linalg.norm(e2e.vector))
        rows.append([key, f"{sr / 1000:g} kHz" + (" stereo" if y.ndim > 1 else ""), bins,
                     f"{np.abs(fed.tags - clip['tags_per_patch']).max():.1e}",
                     f"{np.abs(fed.logits - clip['logits_per_patch']).max():.1e}",
                     f"{np.abs(fed.features - pooled).max():.1e}",
                     f"{np.abs(e2e.tags - clip['tags_clip_mean']).max():.1e}",
                     f"{np.abs(e2e.vector - e).max():.1e}", f"{cos:.5f}"])
    table = markdown_table(["clip", "input", "log-mel bins differing", "tags (fed log-mel)", "logits (fed)",
                            "pooled means (fed)", "clip tags (from audio)", "640-d clip vector (from audio)",
                            "cosine (from audio)"], rows)
    body = ("Largest absolute deviation from the original musicnn 0.1.0 MSD_vgg graph's outputs. Test tolerances: "
            "tags 1e-5, pooled 1e-4; the 44.1 kHz clip (resampled here with soxr, there with resampy) tags 5e-3 and "
            "cosine > 0.999.\n\n" + table + "\n")
    print(body)
    if "--no-write" not in sys.argv:
        write_section("Reference agreement", body, script="benchmarks/reference_agreement.py")


if __name__ == "__main__":
    main()
