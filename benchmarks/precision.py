"""Reduced precision (issue 15): fidelity of bf16 / int8 against fp32 on real music, and their speed here.

Usage:
  nice -n 5 python benchmarks/precision.py --part fidelity        # no timing: cosines, tags, downstream accuracy
  flock /tmp/embedkit-timing.lock nice -n 0 python benchmarks/precision.py --part speed   # ~3 min, timed

Fidelity (section "precision fidelity"): for each precision and model, the cosine between its track vectors
(mean+std, all blocks) and fp32's, and the largest difference of a clip-level tag probability, over the 25
fixtures (the int8 calibration set) and the 5 reference clips (never seen by the calibration); downstream:
package-of-origin accuracy (10-s segments, same head and folds as benchmarks/models.py) per precision,
against fp32's mean ± std. Bars: bf16 cosine ≥ 0.999, int8 ≥ 0.995 (`embedkit.precision.FIDELITY_BARS`).

Speed (section "precision speed"): the network alone on the same real patches (batch 32): ms per patch,
GFLOP/s (multiply-adds × 2 of the fp32 graph) and × real time per precision, plus what ``auto`` picks here.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import heads as heads_bench  # noqa: E402
import models as models_bench  # noqa: E402
from _report import machine_line, markdown_table, write_section  # noqa: E402

REDUCED = ("bf16", "int8")


def _cos(a, b) -> float:
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


def real_files() -> tuple[list[Path], list[Path]]:
    from embedkit import audio

    fx = sorted(p for p in heads_bench.FIXTURES.iterdir() if p.suffix.lower() in audio.AUDIO_EXTENSIONS)
    ref = sorted((heads_bench.FIXTURES.parent.parent.parent / "reference" / "audio").glob("*.wav"))
    return fx, ref


def fidelity(models: list[str], cache: Path, tracks: int, head: str, downstream: bool = True) -> str:
    from embedkit import Embedder, precision

    fx, ref = real_files()
    rows = []
    for model in models:
        base = Embedder.from_pretrained(model)
        want = {r.path: r for r in base.embed_files(fx + ref, aggregate="mean+std")}
        for prec in REDUCED:
            try:
                emb = Embedder.from_pretrained(model, precision=prec)
            except Exception as exc:
                rows.append([f"`{model}`", prec, f"could not run: {str(exc)[:80]}", "", "", "", ""])
                continue
            got = {r.path: r for r in emb.embed_files(fx + ref, aggregate="mean+std")}
            for label, files in (("fixtures (25, int8 calibration set)", fx), ("reference clips (5, held out)", ref)):
                cos = [_cos(got[str(f)].vector, want[str(f)].vector) for f in files]
                tag = max(float(np.abs(got[str(f)].tags - want[str(f)].tags).max()) for f in files)
                ok = "yes" if min(cos) >= precision.FIDELITY_BARS[prec] else "**no**"
                rows.append([f"`{model}`", prec, label, f"{min(cos):.5f}", f"{np.mean(cos):.5f}", f"{tag:.4f}", ok])
                print(rows[-1], flush=True)
    table = markdown_table(["model", "precision", "clips", "track cosine min", "mean", "max |Δ tag p|",
                            "meets bar (bf16 ≥ 0.999, int8 ≥ 0.995)"], rows)
    if not downstream:
        return table
    # downstream: package of origin, 10-s segments, per precision (first model only)
    items = [it for it in models_bench.clips(cache, tracks) if it["task"] == "package"]
    drows = []
    for prec in ("fp32", *REDUCED):
        try:
            feats = models_bench.patch_features(models[0], items, cache, precision=prec)
        except Exception as exc:
            drows.append([prec, f"could not run: {str(exc)[:80]}"])
            continue
        X, y, g = models_bench.segments(items, feats, "package", 3)
        m, s = models_bench.evaluate(X, y, g, head, 4)
        drows.append([prec, f"{m:.3f} ± {s:.3f}"])
        print(drows[-1], flush=True)
    dtable = markdown_table(["precision", f"package of origin, 10 s ({head}, nested 4-fold, group folds)"], drows)
    return (f"{table}\n\nDownstream, `{models[0]}`, {len(items)} Debian tracks (middle 30 s):\n\n{dtable}\n\n"
            "Target: each reduced precision within one standard deviation of fp32's accuracy.")


def speed(models: list[str], seconds: float) -> str:
    from embedkit import Embedder, audio, frontend, precision
    from embedkit._tf import import_tensorflow

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from embed_speed import conv_flops_per_patch

    import_tensorflow()
    fx, _ = real_files()
    patches = np.concatenate([frontend.make_patches(frontend.logmel(audio.load(f))).data for f in fx[:12]])[:64]
    rows = []
    for model in models:
        gflop = None
        for prec in ("fp32", *REDUCED):
            try:
                emb = Embedder.from_pretrained(model, precision=prec)
            except Exception as exc:
                rows.append([f"`{model}`", prec, f"could not run: {str(exc)[:80]}", "", "", ""])
                continue
            if gflop is None:
                gflop = conv_flops_per_patch(emb._net._backbone) / 1e9
            emb.forward(patches[:32])
            best, t_end = float("inf"), time.perf_counter() + seconds
            while time.perf_counter() < t_end or best == float("inf"):
                t0 = time.perf_counter()
                emb.forward(patches)
                best = min(best, (time.perf_counter() - t0) / patches.shape[0])
            native = "yes" if precision.native(prec) else "no (emulated)"
            rows.append([f"`{model}`", prec, native, f"{best * 1000:.1f}", f"{gflop / best:.0f}",
                         f"{frontend.PATCH_FRAMES * frontend.HOP / frontend.SR / best:.0f}×"])
            print(rows[-1], flush=True)
    auto = precision.resolve("auto", models[0])
    flags = sorted(precision.cpu_flags() & {"avx2", "avx512f", "avx512_bf16", "avx512_vnni", "avx_vnni", "amx_bf16", "amx_int8"})
    return (markdown_table(["model", "precision", "hardware support", "ms / patch (best)", "GFLOP/s", "× real time (network)"], rows)
            + f"\n\n`--precision auto` picks **{auto}** here (CPU flags: {', '.join(flags) or 'none'}). "
            f"Network alone on {patches.shape[0]} real patches, batch 32, best of {seconds:.0f} s of repeats.")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--part", choices=("fidelity", "speed", "all"), default="all")
    ap.add_argument("--models", default="msd_vgg,msd_musicnn")
    ap.add_argument("--tracks", type=int, default=8)
    ap.add_argument("--head", default="logreg")
    ap.add_argument("--seconds", type=float, default=8.0, help="timing repeats per precision")
    ap.add_argument("--cache", type=Path, default=Path(tempfile.gettempdir()) / "embedkit-bench-models")
    ap.add_argument("--no-downstream", action="store_true", help="skip the package-of-origin accuracy per precision")
    ap.add_argument("--no-write", action="store_true")
    args = ap.parse_args()
    models = [m.strip() for m in args.models.split(",") if m.strip()]
    load = os.getloadavg()
    note = (f"\n\nLoad average at start {load[0]:.1f} / {load[1]:.1f} / {load[2]:.1f} on {machine_line()}"
            + (" — loaded by other jobs: speed figures are lower bounds." if load[0] > 2.5 else "."))
    if args.part in ("fidelity", "all"):
        body = fidelity(models, args.cache, args.tracks, args.head, downstream=not args.no_downstream) + note
        print(body)
        if not args.no_write:
            write_section("precision fidelity", body, script="benchmarks/precision.py --part fidelity")
    if args.part in ("speed", "all"):
        body = speed(models, args.seconds) + note
        print(body)
        if not args.no_write:
            write_section("precision speed", body, script="benchmarks/precision.py --part speed")


if __name__ == "__main__":
    main()
