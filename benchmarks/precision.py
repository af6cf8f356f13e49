"""Reduced precision (issue 15): fidelity of bf16 / int8 against fp32 on real music, and their speed here.

Usage:
  nice -n 5 python benchmarks/precision.py --part fidelity        # no timing: cosines, tags, downstream accuracy
  flock /tmp/embedkit-timing.lock nice -n 0 python benchmarks/precision.py --part speed   # ~3 min, timed

Fidelity (section "precision fidelity"): for each precision and model, the cosine between its track vectors
(mean+std, all blocks) and fp32's, the largest difference of a clip-level tag probability and how often the top
tag changes, over the 25 fixtures (the int8 calibration set), the 5 reference clips and the Debian tracks of
benchmarks/heads.py (middle 30 s; both held out); downstream: heads.py's package-of-origin accuracy (10-s
segments, same SVM head, same nested group folds) per precision, against fp32's mean ± std. Bars: bf16 cosine
≥ 0.999, int8 and int8dyn ≥ 0.995 (`embedkit.precision.FIDELITY_BARS`). Per-precision vectors are cached under
``--work`` so a rerun only embeds what is new.

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
from _report import machine_line, markdown_table, write_section  # noqa: E402

from embedkit.precision import PRECISIONS  # noqa: E402

REDUCED = tuple(p for p in PRECISIONS if p != "fp32")


def _cos(a, b) -> float:
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


def real_files() -> tuple[list[Path], list[Path]]:
    from embedkit import audio

    fx = sorted(p for p in heads_bench.FIXTURES.iterdir() if p.suffix.lower() in audio.AUDIO_EXTENSIONS)
    ref = sorted((heads_bench.FIXTURES.parent.parent.parent / "reference" / "audio").glob("*.wav"))
    return fx, ref


def debian_excerpts(cache: Path, tracks: int) -> dict[tuple[str, Path], np.ndarray]:
    """benchmarks/heads.py's package-of-origin set: ``{(package, track): middle 30 s at 16 kHz}`` (same tracks)."""
    roots = heads_bench.fetch_packages(cache, heads_bench.PACKAGES)
    picked = {pkg: heads_bench.package_tracks(root, tracks) for pkg, root in roots.items()}
    out = {}
    for pkg, ps in picked.items():
        if len(ps) < 3:
            continue
        for p in ps:
            try:
                out[(pkg, p)] = heads_bench.load_excerpt(p)
            except Exception as exc:  # a broken track is skipped, as heads.py does
                print(f"skip {p}: {exc}", file=sys.stderr)
    return out


def patch_vectors(model: str, prec: str, ex: dict, work: Path) -> dict[str, np.ndarray]:
    """``{track: (n_patches, D) float32}`` per-patch vectors of the excerpts at ``prec`` (cached under ``work``)."""
    from embedkit import Embedder

    path = work / f"patches_{model}_{prec}.npz"
    have: dict[str, np.ndarray] = {}
    if path.exists():
        with np.load(path) as z:
            have = {k: z[k] for k in z.files}
    todo = [(k, y) for k, y in ex.items() if str(k[1]) not in have]
    if todo:
        emb = Embedder.from_pretrained(model, precision=prec)
        for (_, p), y16 in todo:
            have[str(p)] = emb.embed_audio(y16, 16000, return_patches=True).patch_vectors
        work.mkdir(parents=True, exist_ok=True)
        np.savez(path, **have)
    return {str(k[1]): have[str(k[1])] for k in ex}


def downstream(model: str, precs: list[str], ex: dict, work: Path, jobs: int) -> tuple[str, dict]:
    """Package of origin, 10-s segments, exactly as benchmarks/heads.py: SVM head (Choi's grid), nested stratified
    group 4-fold by track; the same folds for every precision. Returns (table, {precision: (mean, std)})."""
    from embedkit.evaluation import nested_cv
    from embedkit.heads import Head

    rows, res = [], {}
    for prec in precs:
        try:
            feats = patch_vectors(model, prec, ex, work)
        except Exception as exc:
            rows.append([prec, f"could not run: {str(exc)[:80]}", "", ""])
            continue
        X, y, g = [], [], []
        for (pkg, p) in ex:
            P = feats[str(p)]
            for i in range(P.shape[0] // 3):
                X.append(P[3 * i:3 * i + 3].mean(axis=0))
                y.append(pkg)
                g.append(str(p))
        r = nested_cv(Head(layout=heads_bench.LAYOUT), np.asarray(X, np.float32), np.asarray(y), groups=np.asarray(g),
                      folds=4, n_jobs=jobs)
        acc = r.metrics["accuracy"]
        res[prec] = (float(acc["mean"]), float(acc["std"]))
        rows.append([prec, f"{acc['mean']:.3f} ± {acc['std']:.3f}", f"{r.metrics['macro_f1']['mean']:.3f}", len(y)])
        print(rows[-1], flush=True)
    if "fp32" in res:
        m0, s0 = res["fp32"]
        for row in rows:
            if row[0] in res and row[0] != "fp32":
                row.append("yes" if abs(res[row[0]][0] - m0) <= s0 else "**no**")
            else:
                row.append("(reference)" if row[0] == "fp32" else "")
    table = markdown_table(["precision", "package of origin, 10-s segments: accuracy (mean ± std over 4 outer folds)",
                            "macro-F1", "segments", "within one std of fp32"], rows)
    return table, res


def fidelity(models: list[str], cache: Path, tracks: int, jobs: int, work: Path, downstream_on: bool = True) -> str:
    """Track cosine and max tag difference per reduced precision against fp32 on three sets of real music, and the
    downstream accuracy per precision (first model)."""
    from embedkit import Embedder, precision

    fx, ref = real_files()
    ex = debian_excerpts(cache, tracks)
    rows = []

    def tracks_at(model: str, prec: str) -> tuple[dict, dict]:
        """Track vectors and tags (mean+std) of the files and of the excerpts at ``prec``, cached under ``work``."""
        path = work / f"tracks_{model}_{prec}.npz"
        if path.exists():
            with np.load(path) as z:
                d = {k: z[k] for k in z.files}
        else:
            emb = Embedder.from_pretrained(model, precision=prec)
            d = {}
            for r in emb.embed_files(fx + ref, aggregate="mean+std"):
                d[f"v|{r.path}"], d[f"t|{r.path}"] = r.vector, r.tags
            for (_, p), y in ex.items():
                r = emb.embed_audio(y, 16000, aggregate="mean+std")
                d[f"v|{p}"], d[f"t|{p}"] = r.vector, r.tags
            work.mkdir(parents=True, exist_ok=True)
            np.savez(path, **d)
        from types import SimpleNamespace

        out = {k[2:]: SimpleNamespace(vector=v, tags=d["t|" + k[2:]]) for k, v in d.items() if k.startswith("v|")}
        return out, out

    for model in models:
        want, want_ex = tracks_at(model, "fp32")
        for prec in REDUCED:
            try:
                got, got_ex = tracks_at(model, prec)
            except Exception as exc:
                rows.append([f"`{model}`", prec, f"could not run: {str(exc)[:80]}", "", "", "", "", ""])
                continue
            sets = (("fixtures (25 whole recordings; the int8 calibration set)", fx, got, want),
                    ("reference clips (5, held out)", ref, got, want),
                    (f"Debian tracks ({len(ex)}, middle 30 s, held out)", [str(p) for _, p in ex], got_ex, want_ex))
            for label, files, g, w in sets:
                cos = [_cos(g[str(f)].vector, w[str(f)].vector) for f in files]
                tag = max(float(np.abs(g[str(f)].tags - w[str(f)].tags).max()) for f in files)
                top = sum(int(np.argmax(g[str(f)].tags) != np.argmax(w[str(f)].tags)) for f in files)
                ok = "yes" if min(cos) >= precision.FIDELITY_BARS[prec] else "**no**"
                rows.append([f"`{model}`", prec, label, f"{min(cos):.5f}", f"{np.mean(cos):.5f}", f"{tag:.4f}",
                             f"{top}/{len(files)}", ok])
                print(rows[-1], flush=True)
    bars = ", ".join(f"{p} ≥ {precision.FIDELITY_BARS[p]}" for p in REDUCED)
    table = markdown_table(["model", "precision", "clips", "track cosine min", "mean", "max |Δ tag p|",
                            "top tag differs", f"meets bar ({bars})"], rows)
    if not downstream_on:
        return table
    dtable, _ = downstream(models[0], ["fp32", *REDUCED], ex, work, jobs)
    pk = ", ".join(sorted({pkg for pkg, _ in ex}))
    return (f"{table}\n\nTrack vectors: mean+std of all blocks; cosine to the fp32 vector of the same clip.\n\n"
            f"Downstream, `{models[0]}`: the package-of-origin task of benchmarks/heads.py ({len(ex)} tracks, middle "
            f"30 s, from {pk}), same SVM head and the same nested stratified group 4-fold by track for every "
            f"precision:\n\n{dtable}\n\nTarget: each reduced precision within one standard deviation of fp32's accuracy.")


def speed(models: list[str], seconds: float) -> str:
    from embedkit import Embedder, audio, frontend, precision
    from embedkit._tf import import_tensorflow

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from embed_speed import conv_flops_per_patch, matmul_peak

    tf = import_tensorflow()
    fx, _ = real_files()
    patches = np.concatenate([frontend.make_patches(frontend.logmel(audio.load(f))).data for f in fx[:12]])[:64]
    rows = []
    for model in models:
        gflop = None
        for prec in ("fp32", *REDUCED):
            try:
                emb = Embedder.from_pretrained(model, precision=prec)
            except Exception as exc:
                rows.append([f"`{model}`", prec, f"could not run: {str(exc)[:80]}", "", "", "", "", ""])
                continue
            if gflop is None:
                gflop = conv_flops_per_patch(emb._net._backbone) / 1e9
            emb.forward(patches[:32])
            best, cpu, t_end = float("inf"), float("inf"), time.perf_counter() + seconds
            while time.perf_counter() < t_end or best == float("inf"):
                t0, c0 = time.perf_counter(), time.process_time()
                emb.forward(patches)
                best = min(best, (time.perf_counter() - t0) / patches.shape[0])
                cpu = min(cpu, (time.process_time() - c0) / patches.shape[0])
            native = "yes" if precision.native(prec) else "no (emulated)"
            patch_s = frontend.PATCH_FRAMES * frontend.HOP / frontend.SR
            rows.append([f"`{model}`", prec, native, f"{best * 1000:.1f}", f"{cpu * 1000:.1f}", f"{gflop / best:.0f}",
                         f"{patch_s / best:.0f}×", f"{patch_s / (cpu / 2):.0f}×"])
            print(rows[-1], flush=True)
    peak = matmul_peak(tf)
    auto = precision.resolve("auto", models[0])
    flags = sorted(precision.cpu_flags() & {"avx2", "avx512f", "avx512_bf16", "avx512_vnni", "avx_vnni", "amx_bf16", "amx_int8"})
    return (markdown_table(["model", "precision", "hardware support", "wall ms / patch (best)", "CPU ms / patch",
                            "GFLOP/s (wall)", "× real time (network, wall)", "× real time (network, CPU time on 2 cores)"],
                           rows)
            + f"\n\n`--precision auto` picks **{auto}** here (CPU flags: {', '.join(flags) or 'none'}). "
            f"Network alone (`Embedder.forward`: the graph with its in-graph pooling) on {patches.shape[0]} real "
            f"patches, batch 32, best of {seconds:.0f} s of repeats. The last column is audio seconds ÷ (CPU seconds "
            "÷ 2): what two busy cores give, the basis of the train benchmark's zoo column; the wall figure drops "
            f"below it whenever other jobs take a core. float32 matmul peak measured in the same run: {peak:.0f} "
            "GFLOP/s (best of numpy/OpenBLAS and TensorFlow 2048² matmuls).")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--part", choices=("fidelity", "speed", "all"), default="all")
    ap.add_argument("--models", default="msd_vgg,msd_musicnn")
    ap.add_argument("--tracks", type=int, default=8)
    ap.add_argument("--jobs", type=int, default=1, help="parallel fits of the downstream head")
    ap.add_argument("--seconds", type=float, default=8.0, help="timing repeats per precision")
    ap.add_argument("--cache", type=Path, default=Path(tempfile.gettempdir()) / "embedkit-bench-heads",
                    help="Debian packages (benchmarks/heads.py's cache)")
    ap.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "embedkit-bench-precision",
                    help="cache of per-precision patch vectors")
    ap.add_argument("--no-downstream", action="store_true", help="skip the package-of-origin accuracy per precision")
    ap.add_argument("--no-write", action="store_true")
    args = ap.parse_args()
    models = [m.strip() for m in args.models.split(",") if m.strip()]
    load = os.getloadavg()
    note = (f"\n\nLoad average at start {load[0]:.1f} / {load[1]:.1f} / {load[2]:.1f} on {machine_line()}"
            + (" — loaded by other jobs: speed figures are lower bounds." if load[0] > 2.5 else "."))
    if args.part in ("fidelity", "all"):
        body = fidelity(models, args.cache, args.tracks, args.jobs, args.work, downstream_on=not args.no_downstream) + note
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
