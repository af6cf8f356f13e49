"""Which network: every pretrained model and useful combinations, side by side on the same real-music tasks.

Usage:
  nice -n 10 python benchmarks/models.py [--tracks 8] [--head logreg] [--cache DIR] [--no-write]   # accuracy
  flock /tmp/embedkit-timing.lock python benchmarks/models.py --part cost    # timed, ~3 min: × real time

Tasks (the machinery of benchmarks/heads.py — packages, tracks, excerpts — imported, not copied):
  - package of origin: which Debian game-music package a 10-s segment comes from (middle 30 s of ``--tracks``
    tracks per package; folds grouped by track, so no track is on both sides of a split);
  - recording identity: which fixture recording a 3-s segment comes from (3-s segments grouped in 9-s blocks);
  - lead guitar stem vs band backing: the Frets on Fire songs of two Debian packages ship each song as
    ``guitar.ogg`` (the lead guitar alone) and ``song.ogg`` (the band without it); 10-s segments, folds
    grouped by song, so no song is on both sides of a split (an instrument/texture task on real audio);
  - tempo class: synthesized drum-and-bass loops (random kit, pattern, swing, key and level per clip) in four
    tempo bands (60–80, 90–110, 120–140, 150–170 BPM, drawn uniformly inside each band); 3-s segments, folds
    grouped by clip (a rhythm task whose labels are exact by construction).
Every feature set gets the same head (``--head``, default logistic regression, inner-CV grid C ∈ {0.1, 1}) and
the same nested, group-aware folds. Few-label curves: k labelled groups (tracks / songs / clips) per class, the
rest tested (standardised logistic regression, C = 1; 10 random draws). Per-block: each block of each model
alone, sliced with the models' feature layout (`embedkit.composite.combined_layout`, the layout a
multi-model vector's spec records). Cost (``--part cost``, under the timing lock): × real time of
``embed_files`` on real fixtures, the model(s) loaded and warm, and CPU-seconds per audio second.

Per-patch features of each single model are cached in ``--cache`` (an .npz per model); a combination's
features are the concatenation of its members' cached features. That equals the multi-model embedder's output:
tests/test_multimodel.py checks it bit for bit for two VGGs, and for msd_vgg+msd_musicnn exactly on the VGG
columns and within 1e-5 on musicnn's (musicnn alone differs by up to 7e-7 between two runs under oneDNN).
Writes the "models" section of docs/benchmarks.md.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

if "cost" not in sys.argv:  # untimed small fits: one BLAS thread each (threads only spin on 2 busy cores, ~25× CPU)
    for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(_var, "1")

import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
import heads as heads_bench  # noqa: E402  (task machinery: packages, tracks, excerpts)
from _report import machine_line, markdown_table, write_section  # noqa: E402

MODELS = ["msd_vgg", "msd_musicnn", "mtt_vgg", "mtt_musicnn"]
COMBOS = ["msd_vgg+msd_musicnn", "msd_musicnn+mtt_musicnn", "msd_vgg+msd_musicnn+mtt_vgg+mtt_musicnn"]
FEW_K = (1, 2, 5)
FEW_DRAWS = 10
SR = 16000
TEMPO_BANDS = {"60-80 BPM": (60, 80), "90-110 BPM": (90, 110), "120-140 BPM": (120, 140), "150-170 BPM": (150, 170)}
TEMPO_CLIPS = 12  # per band
TEMPO_S = 10.0
#: (title, task, patches per segment, few-label curve?)
TASKS = [("package of origin, 10 s", "package", 3, True), ("recording identity, 3 s", "recording", 1, False),
         ("lead guitar stem vs backing, 10 s", "stem", 3, True), ("tempo class (synthesized), 3 s", "tempo", 1, True)]
#: inner-CV grid per head kind (None = the head's own); logreg's C ∈ {0.1, 1} keeps the CPU cost modest
GRID: dict[str, list[dict] | None] = {"logreg": [{"C": 0.1}, {"C": 1.0}]}


def log(msg: str) -> None:
    print(f"[models] {msg}", file=sys.stderr, flush=True)


# ---- data ---------------------------------------------------------------------------------------


def tempo_clip(rng: np.random.Generator, bpm: float, dur_s: float = TEMPO_S) -> np.ndarray:
    """A drum-and-bass loop at ``bpm`` with a random kit, pattern, swing, key and level: ``(dur_s * 16000,)`` float32."""
    n = int(dur_s * SR)
    y = np.zeros(n + SR, np.float64)
    t = np.arange(int(0.5 * SR)) / SR

    def hit(f0: float, f1: float, tau: float, noise: float) -> np.ndarray:
        f = f1 + (f0 - f1) * np.exp(-t / 0.03)
        tone = np.sin(2 * np.pi * np.cumsum(f) / SR)
        nz = rng.normal(size=t.size)
        return ((1 - noise) * tone + noise * nz) * np.exp(-t / tau)

    kick = hit(rng.uniform(90, 160), rng.uniform(40, 60), rng.uniform(0.06, 0.2), 0.05)
    snare = hit(rng.uniform(180, 260), rng.uniform(150, 200), rng.uniform(0.05, 0.15), rng.uniform(0.5, 0.9))
    hat = np.diff(rng.normal(size=t.size + 1)) * np.exp(-t / rng.uniform(0.01, 0.05))
    step = 60.0 / bpm / 4  # a 16th note, s
    swing = rng.uniform(0.0, 0.3) * step
    hat_every = int(rng.choice([1, 2, 2, 4]))
    kick_steps = {0, 8} | {s for s in (3, 6, 10, 11, 14) if rng.random() < 0.25}
    snare_steps = {4, 12} | {s for s in (7, 13, 15) if rng.random() < 0.2}
    root = 110.0 * 2 ** (rng.integers(-5, 7) / 12)
    bass_line = root * 2 ** (rng.choice([0, 0, 3, 5, 7, 10, 12], size=4) / 12)
    k, tt = 0, rng.uniform(0, step)
    while tt < dur_s:
        s = k % 16
        at = int((tt + (swing if k % 2 else 0.0)) * SR)
        vel = rng.uniform(0.7, 1.0)
        if s in kick_steps:
            y[at:at + t.size] += vel * kick
        if s in snare_steps:
            y[at:at + t.size] += 0.7 * vel * snare
        if s % hat_every == 0:
            y[at:at + t.size] += 0.25 * vel * hat
        if s % 4 == 0:  # a bass note per beat
            f = bass_line[(k // 4) % 4]
            m = int(step * 3.5 * SR)
            y[at:at + m] += 0.3 * np.sin(2 * np.pi * f * np.arange(m) / SR) * np.exp(-np.arange(m) / (0.4 * SR))
        k += 1
        tt += step
    y = y[:n]
    return (rng.uniform(0.2, 0.6) * y / (np.abs(y).max() + 1e-9)).astype(np.float32)


def clips(cache: Path, n_tracks: int) -> list[dict]:
    """The excerpts of every task: ``{"key", "load", "tasks": {task: (label, group)}}``; ``load()`` gives the
    excerpt, 16 kHz mono float32, ≤ 30 s (decoded only when its features are not cached yet)."""
    from embedkit import audio

    out: dict[str, dict] = {}

    def add(key: str, task: str, label: str, group: str, load) -> None:
        out.setdefault(key, {"key": key, "load": load, "tasks": {}})["tasks"][task] = (label, group)

    if heads_bench.FIXTURES.exists():
        for p in sorted(heads_bench.FIXTURES.iterdir()):
            if p.suffix in (".ogg", ".wav") and (audio.probe(p).duration_s or 0) >= 20:
                add(f"rec/{p.name}", "recording", p.stem, p.stem, lambda p=p: heads_bench.load_excerpt(p))
    else:
        log(f"fixtures not found at {heads_bench.FIXTURES}: no recording-identity task")
    roots = heads_bench.fetch_packages(cache / "packages", heads_bench.PACKAGES)
    for pkg, root in roots.items():
        tracks = heads_bench.package_tracks(root, n_tracks)
        if len(tracks) < 3:
            continue
        for p in tracks:
            add(f"pkg/{pkg}/{p.relative_to(root)}", "package", pkg, str(p), lambda p=p: heads_bench.load_excerpt(p))
        for guitar in sorted(root.rglob("guitar.ogg")):  # Frets on Fire: lead guitar alone / band without it
            song = guitar.with_name("song.ogg")
            if song.exists():
                for p, label in ((song, "backing (song.ogg)"), (guitar, "lead guitar (guitar.ogg)")):
                    add(f"pkg/{pkg}/{p.relative_to(root)}", "stem", label, str(song.parent),
                        lambda p=p: heads_bench.load_excerpt(p))
    rng = np.random.default_rng(16)
    for band, (lo, hi) in TEMPO_BANDS.items():
        for i in range(TEMPO_CLIPS):
            bpm = float(rng.uniform(lo, hi))
            seed = int(rng.integers(2**31))
            add(f"tempo/{band}/{i}", "tempo", band, f"{band}/{i}",
                lambda bpm=bpm, seed=seed: tempo_clip(np.random.default_rng(seed), bpm))
    return list(out.values())


def patch_features(model: str, items: list[dict], cache: Path, precision: str = "fp32") -> dict[str, np.ndarray]:
    """``{clip key: (n_patches, D) float32}`` for one model, cached in ``cache/feats_<model>[_<precision>].npz``."""
    from embedkit import Embedder

    path = cache / (f"feats_{model}.npz" if precision == "fp32" else f"feats_{model}_{precision}.npz")
    have: dict[str, np.ndarray] = {}
    if path.exists():
        with np.load(path) as z:
            have = {k: z[k] for k in z.files}
    todo = [it for it in items if it["key"] not in have]
    if todo:
        log(f"{model}: embedding {len(todo)} excerpts")
        emb = Embedder.from_pretrained(model, precision=precision)
        for i, it in enumerate(todo):
            try:
                y16 = it["load"]()
            except Exception as exc:  # a broken track is skipped, not fatal
                log(f"skip {it['key']}: {exc}")
                continue
            have[it["key"]] = emb.embed_audio(y16, SR, return_patches=True).patch_vectors
            if i % 16 == 15:
                np.savez(path, **have)  # a rerun resumes
        np.savez(path, **have)
    return {it["key"]: have[it["key"]] for it in items if it["key"] in have}


def segments(items: list[dict], feats: dict[str, np.ndarray], task: str, seg: int):
    """Segment features (mean of ``seg`` consecutive patches), labels and groups of one task."""
    X, y, g = [], [], []
    for it in items:
        if task not in it["tasks"] or it["key"] not in feats:  # not in feats: a track that failed to decode
            continue
        label, group = it["tasks"][task]
        P = feats[it["key"]]
        for i in range(P.shape[0] // seg):
            X.append(P[i * seg:(i + 1) * seg].mean(axis=0))
            y.append(label)
            # recording identity: 3-s segments in 9-s blocks; other tasks: all segments of a track/song/clip together
            g.append(f"{group}#{i // 3}" if task == "recording" else group)
    return np.asarray(X, np.float32), np.asarray(y), np.asarray(g)


# ---- measures -----------------------------------------------------------------------------------


def evaluate(X, y, g, head: str, folds: int, full_grid: bool = False) -> tuple[float, ...]:
    """Nested-CV accuracy of ``head``: ``(mean, std, fold 1, fold 2, …)`` over the outer group folds."""
    from embedkit.evaluation import nested_cv
    from embedkit.heads import Head

    grid = None if full_grid else GRID.get(head)
    r = nested_cv(Head(kind=head, grid=grid), X, y, groups=g, folds=folds)
    a = r.metrics["accuracy"]
    return (float(a["mean"]), float(a["std"]), *(float(v) for v in a["folds"]))


def few_label(X, y, g, k: int, draws: int = FEW_DRAWS) -> tuple[float, float]:
    """Accuracy with ``k`` labelled groups per class, tested on every group none of whose items was labelled;
    mean ± std over ``draws`` random draws. Where classes share groups (the two stems of one song), ``k`` groups
    are drawn once and all their items labelled."""
    rng = np.random.default_rng(0)
    shared = any(len(set(y[g == grp])) > 1 for grp in np.unique(g))
    accs = []
    for _ in range(draws):
        chosen: set = set()
        if shared:
            groups = np.unique(g)
            chosen |= set(rng.choice(groups, size=min(k, len(groups) - 2), replace=False))
        else:
            for c in np.unique(y):
                groups = np.unique(g[y == c])
                chosen |= set(rng.choice(groups, size=min(k, len(groups) - 1), replace=False))
        train = np.isin(g, list(chosen))
        accs.append(float((fixed_logreg(X[train], y[train]).predict(X[~train]) == y[~train]).mean()))
    return float(np.mean(accs)), float(np.std(accs))


def fixed_logreg(X, y):
    """Standardised logistic regression, C = 1, no search (few-label curves and per-block analysis)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    return make_pipeline(StandardScaler(), LogisticRegression(C=1.0, max_iter=3000)).fit(X, y)


def group_cv(X, y, g, folds: int) -> tuple[float, float]:
    """Accuracy of `fixed_logreg` over the same outer group folds as the nested CV (`embedkit.folds.cv_folds`)."""
    from embedkit.folds import cv_folds

    accs = [float((fixed_logreg(X[tr], y[tr]).predict(X[te]) == y[te]).mean())
            for tr, te in cv_folds("classification", y, groups=g, folds=folds).splits]
    return float(np.mean(accs)), float(np.std(accs))


def _sliced(xyg, sl: slice):
    X, y, g = xyg
    return X[:, sl], y, g


def memo(cache: Path, key: str, fn) -> tuple[float, ...]:
    """``fn()`` cached as ``cache/results/<key>.json`` (a rerun, or a second worker, reuses it)."""
    path = cache / "results" / (key.replace("/", "_").replace(" ", "_") + ".json")
    if path.exists():
        return tuple(json.loads(path.read_text()))
    out = fn()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(list(out)))
    os.replace(tmp, path)
    return out


def cost(names: list[str], files: list[Path], cache: Path) -> dict:
    """× real time and CPU-seconds per audio second of ``embed_files`` over ``files`` per feature set (warm);
    saved to ``cache/cost.json`` with the load average, for the accuracy run to report."""
    from embedkit import Embedder, audio

    secs = sum(audio.probe(f).duration_s or 0.0 for f in files)
    load = os.getloadavg()
    out = {"files": [f.name for f in files], "audio_s": secs, "load": list(load), "at": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "sets": {}}
    for name in names:
        emb = Embedder.from_pretrained(name)
        list(emb.embed_files(files[:1]))  # trace + warm
        best = None
        for _ in range(2):
            t0, c0 = time.perf_counter(), time.process_time()
            res = list(emb.embed_files(files))
            dt, dc = time.perf_counter() - t0, time.process_time() - c0
            assert all(r.ok for r in res), [r.error for r in res if not r.ok]
            best = (dt, dc) if best is None or dt < best[0] else best
        out["sets"][name] = {"xrt": secs / best[0], "cpu_s_per_audio_s": best[1] / secs, "dim": emb.layout.dim}
        log(f"cost {name}: {secs / best[0]:.0f}× real time, {best[1] / secs * 1000:.1f} CPU-ms per audio s")
    (cache / "cost.json").write_text(json.dumps(out, indent=1))
    return out


def cost_files(n: int = 4) -> list[Path]:
    """``n`` real fixture recordings of 20–70 s (4: two minutes of audio; the cost run stays short)."""
    from embedkit import audio

    files = sorted(p for p in heads_bench.FIXTURES.iterdir() if p.suffix in (".ogg", ".wav")
                   and 20 <= (audio.probe(p).duration_s or 0) <= 70)
    return files[:n]


# ---- report -------------------------------------------------------------------------------------


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--part", choices=["accuracy", "cost"], default="accuracy",
                    help="accuracy (untimed, run at nice 10) or cost (timed: hold the timing lock)")
    ap.add_argument("--tracks", type=int, default=8, help="tracks per Debian package")
    ap.add_argument("--head", default="logreg", help="head kind for the side-by-side table (logreg, svm, ...)")
    ap.add_argument("--folds", type=int, default=4)
    ap.add_argument("--full-grid", action="store_true", help="the head's full inner-CV grid (default: logreg C ∈ {0.1, 1})")
    ap.add_argument("--cache", type=Path, default=Path(tempfile.gettempdir()) / "embedkit-bench-models")
    ap.add_argument("--all-segments", action="store_true", help="also package of origin on 3-s segments (10× the items)")
    ap.add_argument("--models", default=",".join(MODELS), help="single models to compare (combinations of them follow)")
    ap.add_argument("--cost-files", type=int, default=4, help="fixture recordings timed by --part cost")
    ap.add_argument("--shard", default="", help="i/n: compute every n-th missing result only (parallel workers; no report)")
    ap.add_argument("--no-write", action="store_true")
    args = ap.parse_args()
    args.cache.mkdir(parents=True, exist_ok=True)
    models = [m.strip() for m in args.models.split(",") if m.strip()]
    combos = [c for c in COMBOS if set(c.split("+")) <= set(models)]
    if args.part == "cost":
        cost(models + combos, cost_files(args.cost_files), args.cache)
        return

    from embedkit import pretrained
    from embedkit.composite import combined_layout
    from embedkit.features import FeatureLayout

    load = os.getloadavg()
    t_all = time.perf_counter()
    items = clips(args.cache, args.tracks)
    single = {m: patch_features(m, items, args.cache) for m in models}
    feature_sets = {m: single[m] for m in models}
    for combo in combos:
        parts = combo.split("+")
        feature_sets[combo] = {k: np.concatenate([single[m][k] for m in parts], axis=1) for k in single[parts[0]]}

    tasks = list(TASKS)
    if args.all_segments:
        tasks.insert(1, ("package of origin, 3 s", "package", 1, False))
    data = {}  # (set, task) -> X, y, g
    for name, feats in feature_sets.items():
        for _, task, seg, _ in tasks:
            data[name, task, seg] = segments(items, feats, task, seg)
    costs = json.loads((args.cache / "cost.json").read_text()) if (args.cache / "cost.json").exists() else None

    layout = combined_layout([(m, FeatureLayout.from_card(pretrained.card(m))) for m in models])
    joint = {k: np.concatenate([single[m][k] for m in models], axis=1) for k in single[models[0]]}
    # every measurement is one job with a cache key; --shard i/n runs every n-th missing job (parallel workers)
    grid_tag = "full" if args.full_grid else "small"
    jobs: dict[str, object] = {}
    for name in feature_sets:
        for _, task, seg, few in tasks:
            X, y, g = data[name, task, seg]
            jobs[f"cv2-{args.head}-{grid_tag}-{args.folds}-{name}-{task}-{seg}"] = (
                lambda X=X, y=y, g=g: evaluate(X, y, g, args.head, args.folds, full_grid=args.full_grid))
            if few:
                for k in FEW_K:
                    jobs[f"few{FEW_DRAWS}-{name}-{task}-{seg}-{k}"] = lambda X=X, y=y, g=g, k=k: few_label(X, y, g, k)
    for block, sl in layout.slices().items():
        for _, task, seg, _ in tasks:
            jobs[f"block-{args.folds}-{block}-{task}-{seg}"] = (
                lambda sl=sl, task=task, seg=seg: group_cv(*_sliced(segments(items, joint, task, seg), sl), args.folds))
    keys = list(jobs)
    if args.shard:
        i, n = (int(v) for v in args.shard.split("/"))
        keys = keys[i::n]
    res = {}
    for j, key in enumerate(keys):
        res[key] = memo(args.cache, key, jobs[key])
        log(f"[{j + 1}/{len(keys)}] {key}: {res[key][0]:.3f} ± {res[key][1]:.3f}")
    if args.shard:
        return

    def cell(key: str) -> str:
        m, sd = res[key][:2]
        return f"{m:.3f} ± {sd:.3f}"

    rows, few_rows, block_rows = [], [], []
    for name in feature_sets:
        dim = next(iter(feature_sets[name].values())).shape[1]
        row = [f"`{name}`", dim] + [cell(f"cv2-{args.head}-{grid_tag}-{args.folds}-{name}-{task}-{seg}")
                                    for _, task, seg, _ in tasks]
        for title, task, seg, few in tasks:
            if few:
                few_rows += [(title, name, k, cell(f"few{FEW_DRAWS}-{name}-{task}-{seg}-{k}")) for k in FEW_K]
        c = (costs or {}).get("sets", {}).get(name)
        ref = (costs or {}).get("sets", {}).get(models[0])
        row += ([f"{c['cpu_s_per_audio_s'] * 1000:.0f}", f"{c['cpu_s_per_audio_s'] / ref['cpu_s_per_audio_s']:.1f}×",
                 f"{c['xrt']:.0f}×"] if c and ref else ["not measured", "", ""])
        rows.append(row)
    for block, sl in layout.slices().items():
        block_rows.append([f"`{block}`", sl.stop - sl.start]
                          + [cell(f"block-{args.folds}-{block}-{task}-{seg}") for _, task, seg, _ in tasks])

    ref_name = models[0]
    paired_rows = []
    for name in feature_sets:
        if name == ref_name:
            continue
        row = [f"`{name}`"]
        for _, task, seg, _ in tasks:
            a = np.asarray(res[f"cv2-{args.head}-{grid_tag}-{args.folds}-{name}-{task}-{seg}"][2:])
            b = np.asarray(res[f"cv2-{args.head}-{grid_tag}-{args.folds}-{ref_name}-{task}-{seg}"][2:])
            d = a - b
            row.append(f"{d.mean():+.3f} ± {d.std():.3f} ({int((d > 1e-9).sum())}/{int((d < -1e-9).sum())}/{len(d)})")
        paired_rows.append(row)
    few_titles = [t for t, _, _, few in tasks if few]
    few_table = [[f"`{name}`"] + [next(v for (tt, n, kk, v) in few_rows if tt == t and n == name and kk == k)
                                  for t in few_titles for k in FEW_K] for name in feature_sets]
    few_cols = ["feature set"] + [f"{t.split(',')[0]}: k = {k}" for t in few_titles for k in FEW_K]
    counts = {task: data[next(iter(feature_sets)), task, seg] for _, task, seg, _ in tasks}
    describe = "; ".join(f"{title}: {len(v[1])} segments, {len(set(v[1]))} classes, {len(set(v[2]))} groups"
                         for (title, task, _, _), v in zip(tasks, counts.values()))
    cost_note = (
        f"Cost: `embed_files` on {len(costs['files'])} real fixture recordings ({costs['audio_s']:.0f} s of audio), "
        f"model(s) loaded and warm, best of 2, measured {costs['at']} under the timing lock (`--part cost`) with "
        f"load average {costs['load'][0]:.1f} / {costs['load'][1]:.1f} / {costs['load'][2]:.1f}. CPU-ms per audio "
        "second (process time, both cores) is the load-robust figure; wall-clock × real time on a loaded machine is "
        "a lower bound (see \"precision speed\" for the network alone on a quieter machine)."
        if costs else "Cost not measured (run `--part cost`).")
    body = (
        f"### Side by side ({args.head} head{'' if args.full_grid or args.head not in GRID else ' with C ∈ {0.1, 1}'}, "
        f"nested {args.folds}-fold, group folds)\n\n"
        + markdown_table(["feature set", "dim (mean)"] + [t[0] for t in tasks] + ["CPU-ms / audio s", f"CPU vs {models[0]}", "× real time (wall)"], rows)
        + f"\n\n{describe}. Accuracy is mean ± std over the outer folds; chance is about 1/8 (package), 1/16 "
        "(recording), 1/2 (stem) and 1/4 (tempo). A combination's vector is the concatenation of its members' cached "
        "per-patch features (equal to the multi-model embedder's: tests/test_multimodel.py). " + cost_note
        + f"\n\n### Against `{ref_name}`: paired differences on the same outer folds\n\n"
        + markdown_table(["feature set"] + [t[0] for t in tasks], paired_rows)
        + f"\n\nEach cell: mean ± std over the outer folds of (accuracy − `{ref_name}`'s accuracy on the same fold), "
        "then (folds better / folds worse / folds). The folds are identical for every feature set, so the paired "
        "spread is the noise that matters when comparing two networks."
        + f"\n\n### Few labels: k labelled groups per class, the rest tested ({FEW_DRAWS} random draws, mean ± std)\n\n"
        + markdown_table(few_cols, few_table)
        + "\n\nGroups are tracks (package; at most all but one of a package's tracks — asc-music has 3), songs "
        "(stem) and synthesized clips (tempo). Standardised logistic regression, C = 1, no inner search."
        + "\n\n### Which blocks carry each task: one block of one model at a time (Choi's layer analysis)\n\n"
        + markdown_table(["block", "dim"] + [t[0] for t in tasks], block_rows)
        + f"\n\nBlocks sliced with the models' feature layout (`composite.combined_layout`); each cell: standardised "
        f"logistic regression, C = 1 (no inner search, to keep {len(block_rows) * len(tasks)} cells affordable), over "
        f"the same outer group folds as the side-by-side table.\n\nEvery cell is cached in `--cache`/results (a rerun "
        "computes only missing cells; `--shard i/n` lets n niced workers share them); this report run assembled "
        f"them in {(time.perf_counter() - t_all) / 60:.1f} min, load average {load[0]:.1f} / {load[1]:.1f} / "
        f"{load[2]:.1f}, on {machine_line()}. Accuracy does not depend on the load."
    )
    print(body)
    if not args.no_write:
        write_section("models", body, script="benchmarks/models.py")


if __name__ == "__main__":
    main()
