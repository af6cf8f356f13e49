"""Model zoo and distillation: size, cost and speed of every family; distilled students vs the teacher.

Usage: nice python benchmarks/train.py [--budget dieleman=180,fcn=420,vgg_w50=600] [--tracks 8] [--distill-tracks 30]

A student key is a zoo architecture (trained from scratch), ``vgg_wNN``: msd_vgg pruned to NN % of its
filters per block (L1 norm, Li et al. 2017; `embedkit.train.prune`), or ``vgg_fA-B-C-D-E``: msd_vgg pruned
to A..E filters in its five blocks, then distilled the same way.

1. Every architecture of `embedkit.backbones`: parameters, GFLOP per second of audio (analytic), network
   embedding speed (× real time: forward pass of 64 log-mel / waveform patches, batch 32, best of 2, under
   the timing lock) and training time per epoch (median of 3 batch-16 steps after a warm-up, times the
   distillation epoch's steps).
2. Distillation from msd_vgg (soft tags + feature matching) on real Debian game music: students train on
   tracks (middle 30 s) of 12 other game-music packages (TRAIN_PACKAGES), for a fixed budget of CPU-seconds each; held out
   are the tracks of the eight packages of benchmarks/heads.py (never trained on, other packages).
   Fidelity to the teacher on the held-out tracks' 3-s patches: per-tag ROC-AUC against the teacher's
   top-3 tags, mean Pearson correlation of the tag probabilities.
3. Downstream: heads.py's package-of-origin (8 packages, group folds by track) and recording-identity
   (fixtures) tasks with the same SVM head and nested protocol, for the teacher, the MFCC baseline and
   every student; margin retention = (student − MFCC) / (msd_vgg − MFCC) accuracy.
4. Fine-tuning msd_vgg (conv blocks 1–3 frozen) vs frozen msd_vgg features + SVM on the same 4 group
   folds of the package-of-origin task (3-s segments), fixed CPU budget per fold.
Writes the "train" section of docs/benchmarks.md.
"""
from __future__ import annotations

import argparse
import contextlib
import fcntl
import json
import os
import re
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _report import machine_line, markdown_table, write_section  # noqa: E402
from heads import FIXTURES, PACKAGES, fetch_packages, load_excerpt, package_tracks  # noqa: E402

#: distillation audio: Debian game music never used by the held-out evaluation (heads.py's PACKAGES)
TRAIN_PACKAGES = ["drascula-music", "ufoai-music", "hedgewars-data", "supertux-data", "xmoto-data", "extremetuxracer-data",
                  "lugaru-data", "lincity-ng-data", "freeorion-data", "nexuiz-music", "warmux-data", "flare-game"]
#: students distilled before TRAIN_PACKAGES grew keep the packages they were trained on (see the table)
FIRST_TRAIN_PACKAGES = ["drascula-music", "ufoai-music"]
DEFAULT_BUDGET = "dieleman=180,fcn=420,vgg_w50=600,vgg_w33=600"
#: what is known of the machine state of the profile logs this section has used
PROFILE_LOGS = {"profile-2026-11-30-1954.log": "the zoo table of the 2026-11-30 19:54 UTC section, timed on a "
                "heavily loaded machine, load average ≈ 20",
                "profile-2026-11-30-2248.log": "vgg, vgg_w50 and vgg_w33 timed together 2026-11-30 22:40–22:48 UTC "
                "under the timing lock, load average 50 falling to 9",
                "profile-2026-12-01-0000.log": "vgg, vgg_w50 and vgg_f48-32-128-128-128 timed together 2026-12-01 "
                "00:21 UTC under the timing lock, load average ≈ 2.5 (a niced index build running beside)"}
PRUNE_LR = 3e-4  # a pruned copy starts near the teacher: a smaller step than from scratch


def student(key: str) -> dict:
    """A student key → ``{"arch", "options", "init", "prune", "lr", "family"}``."""
    import re

    from embedkit import backbones
    from embedkit.train.prune import pruned_options

    m = re.fullmatch(r"vgg_w(\d+)", key)
    if m:
        frac = int(m.group(1)) / 100
        return {"arch": "vgg", "options": pruned_options("vgg", frac), "init": "msd_vgg", "prune": frac, "lr": PRUNE_LR,
                "family": f"msd_vgg pruned to {frac:.0%} of its filters", "paper": "Li et al. 2017 (L1 filter pruning)"}
    m = re.fullmatch(r"vgg_f(\d+(?:-\d+){4})", key)
    if m:
        counts = [int(v) for v in m.group(1).split("-")]
        fracs = [c / 128 for c in counts]
        return {"arch": "vgg", "options": pruned_options("vgg", fracs), "init": "msd_vgg", "prune": fracs, "lr": PRUNE_LR,
                "family": f"msd_vgg pruned to {'/'.join(map(str, counts))} filters per block",
                "paper": "Li et al. 2017 (L1 filter pruning)"}
    spec = backbones.get(key)
    return {"arch": spec.name, "options": {}, "init": None, "prune": None, "lr": 1e-3, "family": spec.family,
            "paper": spec.paper}
PATCH = 187 * 256


def unpack_archives(root: Path) -> None:
    """Some packages (ufoai-music) ship their music inside .pk3 (zip) archives: extract the audio once."""
    import zipfile

    for pk3 in root.rglob("*.pk3"):
        dest = pk3.with_suffix(".unpacked")
        if (dest / ".done").exists():
            continue
        with zipfile.ZipFile(pk3) as z:
            for n in z.namelist():
                if n.lower().endswith((".ogg", ".wav", ".flac", ".mp3")):
                    z.extract(n, dest)
        (dest / ".done").write_text("ok")


def log(msg: str) -> None:
    print(f"[train] {msg}", file=sys.stderr, flush=True)


@contextlib.contextmanager
def timing_lock():
    with open("/tmp/embedkit-timing.lock", "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def profile(steps_per_epoch: int, names: list[str]) -> dict[str, dict]:
    import keras
    import tensorflow as tf

    from embedkit import backbones, inputs
    from embedkit.train.fit import build_trainer
    from embedkit.train.losses import loss_fn
    from embedkit.train.profile import gflop_per_second

    out = {}
    rng = np.random.default_rng(0)
    for name in names:
        sd = student(name)
        spec = backbones.get(sd["arch"])
        m = backbones.build(sd["arch"], **sd["options"])
        shape = inputs.get(spec.input_kind).patch_shape
        x = rng.standard_normal((64, *shape)).astype(np.float32)

        @tf.function(reduce_retracing=True)
        def fwd(b, m=m, kind=spec.input_kind):
            return m(inputs.to_model_input(kind, b), training=False)

        fwd(x[:32])
        with timing_lock():
            wall, cpu = min((_timed(lambda: [fwd(x[s:s + 32]) for s in range(0, 64, 32)]) for _ in range(2)),
                            key=lambda t: t[1])
        audio_s = 64 * PATCH / 16000
        xrt, xrt_cpu = audio_s / wall, audio_s / (cpu / 2)
        # training step
        trainer = build_trainer(m, None)
        opt = keras.optimizers.Adam(1e-3)
        loss = loss_fn("classification")
        xt = x[:16] if spec.input_kind == "logmel" else x[:16].reshape(16, -1)
        yt = np.eye(50, dtype=np.float32)[rng.integers(0, 50, 16)]

        @tf.function
        def step(a, b, trainer=trainer, opt=opt):
            with tf.GradientTape() as tape:
                value = loss(trainer(a, training=True)["logits"], b)
            g = tape.gradient(value, trainer.trainable_variables)
            opt.apply_gradients(zip(g, trainer.trainable_variables))
            return value

        step(xt, yt)
        times = [_timed(lambda: step(xt, yt)) for _ in range(2)]
        st, st_cpu = float(np.median([t[0] for t in times])), float(np.median([t[1] for t in times]))
        out[name] = {"family": sd["family"], "paper": sd["paper"], "params": int(m.count_params()),
                     "gflop_s": gflop_per_second(sd["arch"], **sd["options"]), "xrt": xrt, "xrt_cpu": xrt_cpu, "step_s": st,
                     "step_cpu": st_cpu, "epoch_cpu": st_cpu * steps_per_epoch, "input": spec.input_kind,
                     "default_input_s": spec.input_s}
        log(f"{name}: {out[name]['params']:,} params, {out[name]['gflop_s']:.3f} GFLOP/s, {xrt:.0f}x real time "
            f"(wall), {xrt_cpu:.0f}x (CPU-time, 2 cores), step {st:.2f} s wall / {st_cpu:.2f} CPU-s")
    return out


def profile_from_log(path: Path, steps_per_epoch: int) -> dict[str, dict]:
    """Reuse the profile lines an earlier run logged (``[train] NAME: P params, ... step W s wall / C CPU-s``)."""
    import re

    from embedkit import backbones
    from embedkit.train.profile import gflop_per_second

    pat = re.compile(r"\[train\] ([\w-]+): ([\d,]+) params, ([\d.]+) GFLOP/s, (\d+)x real time \(wall\), (\d+)x "
                     r"\(CPU-time, 2 cores\), step ([\d.]+) s wall / ([\d.]+) CPU-s")
    out = {}
    for m in pat.finditer(path.read_text()):
        name = m.group(1)
        st = student(name)
        spec = backbones.get(st["arch"])
        out[name] = {"family": st["family"], "paper": st["paper"], "params": int(m.group(2).replace(",", "")),
                     "gflop_s": gflop_per_second(st["arch"], **st["options"]), "xrt": float(m.group(4)), "xrt_cpu": float(m.group(5)),
                     "step_s": float(m.group(6)), "step_cpu": float(m.group(7)),
                     "epoch_cpu": float(m.group(7)) * steps_per_epoch, "input": spec.input_kind,
                     "default_input_s": spec.input_s}
    return out


def _timed(fn) -> tuple[float, float]:
    """(wall seconds, process CPU seconds) of ``fn()``."""
    t0, c0 = time.perf_counter(), time.process_time()
    fn()
    return time.perf_counter() - t0, time.process_time() - c0


def segment_feats(emb, y16: np.ndarray, seg_patches: int) -> np.ndarray:
    te = emb.embed_audio(y16, 16000, return_patches=True)
    P = te.patch_vectors
    n = P.shape[0] // seg_patches
    return np.stack([P[i * seg_patches:(i + 1) * seg_patches].mean(0) for i in range(n)]).astype(np.float32)


def mfcc_feats(y16: np.ndarray, seg_patches: int) -> np.ndarray:
    from embedkit.baselines import mfcc_stats

    L = seg_patches * PATCH
    n = (y16.size // PATCH) // seg_patches
    return np.stack([mfcc_stats(y16[i * L:(i + 1) * L]) for i in range(n)]).astype(np.float32)


def evaluate(X, y, groups, layout, folds, jobs) -> tuple[float, float]:
    from embedkit.evaluation import nested_cv
    from embedkit.heads import Head

    r = nested_cv(Head(layout=layout), X, y, groups=groups, folds=folds, n_jobs=jobs)
    return r.metrics["accuracy"]["mean"], r.metrics["accuracy"]["std"]


def layout_of(emb) -> list[dict]:
    return [{"name": e["name"], "start": e["start"], "stop": e["stop"]} for e in emb.layout.to_json()]


def downstream(models: dict, pkg_ex: dict, rec_ex: dict, jobs: int, ids: dict | None = None,
               cache: Path | None = None) -> dict:
    """Accuracy per (task, feature) → (mean, std). ``ids`` names each feature's weights (e.g. a student's
    weights digest); results already in the JSON ``cache`` under the same id are reused, new ones added."""
    import json

    from embedkit.baselines import MFCC_LAYOUT

    ids = {"MFCC baseline": "mfcc", **(ids or {})}
    done = json.loads(cache.read_text()) if cache and cache.exists() else {}
    res = {}
    tasks = []
    if rec_ex:
        tasks.append(("recording identity, 3 s", rec_ex, 1, 4, True))
    tasks += [("package of origin, 3 s", pkg_ex, 1, 4, False), ("package of origin, 10 s", pkg_ex, 3, 4, False)]
    for task, ex, seg, folds, blocks in tasks:
        key_of = {nm: f"{task}|{len(ex)}|{ids.get(nm, nm)}" for nm in ["MFCC baseline", *models]}
        todo = {nm for nm, k in key_of.items() if k not in done}
        feats = {"MFCC baseline": ([], MFCC_LAYOUT)}
        for nm, emb in models.items():
            feats[nm] = ([], layout_of(emb))
        ys, gs = [], []
        for (label, key), y16 in ex.items() if todo else ():
            mf = mfcc_feats(y16, seg)
            feats["MFCC baseline"][0].append(mf)
            for nm, emb in models.items():
                if nm in todo:
                    feats[nm][0].append(segment_feats(emb, y16, seg)[: len(mf)])
            ys += [label] * len(mf)
            gs += [f"{key}#{i // 3}" if blocks else key for i in range(len(mf))]
        for nm, (parts, layout) in feats.items():
            if nm in todo:
                done[key_of[nm]] = list(evaluate(np.concatenate(parts), np.array(ys), np.array(gs), layout, folds, jobs))
                if cache:
                    cache.write_text(json.dumps(done, indent=1))
            acc = res[(task, nm)] = tuple(done[key_of[nm]])
            log(f"{task} / {nm}: {acc[0]:.3f} ± {acc[1]:.3f}{'' if nm in todo else ' (cached)'}")
    return res


def fidelity_heldout(teacher_tags: np.ndarray, student, held: dict) -> dict:
    """Fidelity of ``student`` to the teacher's ``(n_patches, 50)`` tags on the held-out tracks' patches."""
    from embedkit.train.losses import fidelity

    sp = [student.embed_audio(y16, 16000, return_patches=True).patch_tags for y16 in held.values()]
    return fidelity(np.concatenate(sp), teacher_tags)


def finetune_vs_svm(pkg_ex: dict, budget_s: float, jobs: int) -> dict:
    """4 group folds of package of origin (3-s segments): fine-tuned msd_vgg vs frozen features + SVM."""
    import keras
    from sklearn.model_selection import StratifiedGroupKFold

    from embedkit import Embedder, backbones, frontend
    from embedkit.heads import Head
    from embedkit.train.data import Prepared, PatchSampler
    from embedkit.train.fit import build_trainer, freeze_first, init_from
    from embedkit.train.loop import train
    from embedkit.train.sources import Track

    emb = Embedder.from_pretrained("msd_vgg")
    keys = list(pkg_ex)
    classes = sorted({k[0] for k in keys})
    track_y = np.array([k[0] for k in keys])
    folds = StratifiedGroupKFold(4, shuffle=True, random_state=0).split(np.zeros(len(keys)), track_y, np.arange(len(keys)))
    acc_ft, acc_svm = [], []
    cache = {}
    for i, key in enumerate(keys):  # each track through the network once
        y16 = pkg_ex[key]
        te_ = emb.embed_audio(y16, 16000, return_patches=True)
        cache[i] = (te_.patch_vectors, frontend.make_patches(frontend.logmel(y16)).data[: len(te_.patch_vectors)])

    def seg(idx):
        X = np.concatenate([cache[i][0] for i in idx])
        P = np.concatenate([cache[i][1] for i in idx])
        y = np.array([keys[i][0] for i in idx for _ in range(len(cache[i][0]))])
        return X, P, y

    for k, (tr, te) in enumerate(folds):

        Xtr, _, ytr = seg(tr)
        Xte, Pte, yte = seg(te)
        head = Head(layout=layout_of(emb), n_jobs=jobs).fit(Xtr, ytr)
        acc_svm.append(float(np.mean(head.predict(Xte) == yte)))
        keras.utils.set_random_seed(k)
        bb = backbones.build("vgg", n_classes=len(classes))
        init_from(bb, "msd_vgg", len(classes))
        freeze_first(bb, 3)
        trainer = build_trainer(bb, None)
        items = [Prepared(Track(str(keys[i][1]), str(keys[i][1]), np.eye(len(classes), dtype=np.float32)[classes.index(keys[i][0])]),
                          pkg_ex[keys[i]]) for i in tr]
        sampler = PatchSampler(items, kind="logmel", input_samples=PATCH, targets="label", seed=k)
        vsel = items[:: max(1, len(items) // 6)]
        val = PatchSampler(vsel, kind="logmel", input_samples=PATCH, targets="label").fixed_windows(3)[:3]
        with tempfile.TemporaryDirectory() as run:
            train(trainer, sampler, val, task="classification", run=Path(run), epochs=50, batch_size=16, lr=3e-4,
                  patience=50, max_cpu_s=budget_s, seed=k)
        logits = np.concatenate([np.asarray(trainer(Pte[s:s + 32], training=False)["logits"]) for s in range(0, len(Pte), 32)])
        acc_ft.append(float(np.mean(np.array(classes)[logits.argmax(1)] == yte)))
        log(f"fold {k + 1}: fine-tuned {acc_ft[-1]:.3f}, frozen + SVM {acc_svm[-1]:.3f}")
    return {"finetune": (np.mean(acc_ft), np.std(acc_ft)), "svm": (np.mean(acc_svm), np.std(acc_svm)), "folds": 4}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--budget", default=DEFAULT_BUDGET, help="CPU-seconds of distillation per student")
    ap.add_argument("--finetune-budget", type=float, default=60.0, help="CPU-seconds of fine-tuning per fold")
    ap.add_argument("--tracks", type=int, default=8, help="held-out tracks per package (as heads.py)")
    ap.add_argument("--distill-tracks", type=int, default=30, help="training tracks per training package")
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--cache", type=Path, default=Path(tempfile.gettempdir()) / "embedkit-bench-train")
    ap.add_argument("--skip-profile", action="store_true")
    ap.add_argument("--profile", dest="profile_names", help="comma list of zoo archs / student keys to (re)measure; "
                    "default: every zoo arch and every pruned student (others come from --profile-from)")
    ap.add_argument("--skip-finetune", action="store_true")
    ap.add_argument("--no-write", action="store_true")
    ap.add_argument("--profile-from", type=Path, action="append",
                    help="reuse the profile lines of an earlier run's stderr log (repeatable; later ones win)")
    ap.add_argument("--reuse", action="store_true", help="reuse students already distilled into --cache's home")
    args = ap.parse_args()
    budgets = {k: float(v) for k, v in (kv.split("=") for kv in args.budget.split(",") if kv)}
    cpu0, wall0, load = time.process_time(), time.perf_counter(), os.getloadavg()
    home = args.cache / "home"
    (home / "models").mkdir(parents=True, exist_ok=True)
    real = Path(os.environ.get("EMBEDKIT_HOME") or Path.home() / ".cache" / "embedkit")
    for m in ("msd_vgg", "msd_musicnn", "mtt_vgg", "mtt_musicnn"):
        link = home / "models" / m
        if not link.exists() and (real / "models" / m).exists():
            link.symlink_to(real / "models" / m)
    os.environ["EMBEDKIT_HOME"] = str(home)
    from embedkit._tf import import_tensorflow

    import_tensorflow()
    from embedkit import Embedder, audio
    from embedkit.train import fit

    roots = fetch_packages(args.cache, TRAIN_PACKAGES + PACKAGES)
    for pk in TRAIN_PACKAGES:
        unpack_archives(roots[pk])
    train_paths = [str(p) for pk in TRAIN_PACKAGES for p in package_tracks(roots[pk], args.distill_tracks)]
    held = {}
    for pk in PACKAGES:
        for p in package_tracks(roots[pk], args.tracks):
            with contextlib.suppress(Exception):
                held[(pk, str(p))] = load_excerpt(p)
    held = {k: v for k, v in held.items() if sum(1 for kk in held if kk[0] == k[0]) >= 3}
    rec = {}
    if FIXTURES.exists():
        for p in sorted(FIXTURES.iterdir()):
            if p.suffix in (".ogg", ".wav") and (audio.probe(p).duration_s or 0) >= 20:
                rec[(p.stem, str(p))] = load_excerpt(p)
    log(f"{len(train_paths)} training tracks, {len(held)} held-out tracks, {len(rec)} recordings")
    steps = -(-max(8, len(train_paths) * 9) // 16)  # 30-s excerpts ≈ 9-10 windows of 3 s each
    from embedkit import backbones, model_cache


    teacher = Embedder.from_pretrained("msd_vgg")
    students, cards = {}, {}
    record = args.cache / "student-packages.json"  # which packages each student was distilled on
    trained_on = json.loads(record.read_text()) if record.exists() else {}
    for key, budget in budgets.items():
        t0 = time.process_time()
        st = student(key)
        if args.reuse and model_cache.exists(f"bench_{key}"):
            cards[key] = {**model_cache.load_card(f"bench_{key}"), "cpu_total": None}
            students[key] = Embedder.from_pretrained(f"bench_{key}")
            log(f"reusing bench_{key} ({cards[key]['training']['cpu_s']:.0f} CPU-s of distillation)")
            continue
        trained_on[key] = TRAIN_PACKAGES
        record.write_text(json.dumps(trained_on, indent=1))
        card = fit(train_paths, arch=st["arch"], init=st["init"], prune=st["prune"], name=f"bench_{key}",
                   teacher="msd_vgg", excerpt_s=30.0, input_s=2.992, epochs=200, patience=200, batch_size=16,
                   lr=st["lr"], feature_matching=1.0, max_cpu_s=budget, augment="gain,specaugment", force=True,
                   restart=not args.reuse, valid_fraction=0.1, log=log)
        cards[key] = {**card, "cpu_total": time.process_time() - t0}
        students[key] = Embedder.from_pretrained(f"bench_{key}")
    teacher_tags = np.concatenate([teacher.embed_audio(y16, 16000, return_patches=True).patch_tags for y16 in held.values()])
    fid = {a: fidelity_heldout(teacher_tags, e, held) for a, e in students.items()}
    models = {"msd_vgg (teacher)": teacher, **{f"{a} (distilled)": e for a, e in students.items()}}
    ids = {"msd_vgg (teacher)": "msd_vgg", **{f"{a} (distilled)": f"bench_{a}:{cards[a]['weights_sha256'][:16]}" for a in students}}
    down = downstream(models, {(k[0], k[1]): v for k, v in held.items()}, rec, args.jobs, ids,
                      args.cache / "downstream-results.json")
    cpu_p0 = time.process_time()  # timed last: training and evaluation never wait for the timing lock
    prof = {}
    for path in args.profile_from or []:  # later logs override earlier ones; ratios against each log's own vgg
        rows = profile_from_log(path, steps)
        for p in rows.values():
            p["run"], p["vgg_xrt_cpu"] = f"log {path.name}", rows.get("vgg", prof.get("vgg", {})).get("xrt_cpu", np.nan)
        prof.update(rows)
    if not args.skip_profile:
        names = (args.profile_names.split(",") if args.profile_names else
                 [*backbones.ARCHS, *(k for k in budgets if student(k)["prune"])])
        fresh = profile(steps, names)
        for p in fresh.values():  # speed ratios against the vgg timed in the same run (same load)
            p["run"], p["vgg_xrt_cpu"] = "this run", fresh.get("vgg", prof.get("vgg", {})).get("xrt_cpu", np.nan)
        prof.update(fresh)
        order = [*backbones.ARCHS, *sorted(k for k in prof if k not in backbones.ARCHS)]
        prof = {k: prof[k] for k in order if k in prof}
    cpu_profile = time.process_time() - cpu_p0
    emit = dict(prof=prof, steps=steps, train_paths=train_paths, cards=cards,
                packages={k: trained_on.get(k, FIRST_TRAIN_PACKAGES) for k in cards}, budgets=budgets, fid=fid, held=held,
                down=down, students=students, args=args, cpu0=cpu0, cpu_profile=cpu_profile, wall0=wall0, load=load)
    report(ft=None, **emit)  # written now, so a later stage cannot lose it
    if not args.skip_finetune:
        ft_cache = args.cache / f"finetune-{len(held)}-{args.finetune_budget:.0f}.json"
        if args.reuse and ft_cache.exists():
            ft = json.loads(ft_cache.read_text())
            log(f"reusing the fine-tuning comparison of {ft_cache}")
        else:
            ft = finetune_vs_svm(held, args.finetune_budget, args.jobs)
            ft_cache.write_text(json.dumps(ft, default=float))
        report(ft=ft, **emit)


def report(*, prof, steps, train_paths, cards, packages, budgets, fid, held, down, students, args, cpu0, cpu_profile, wall0,
           load, ft) -> None:
    cpu_total = time.process_time() - cpu0
    parts = []
    if prof:
        rows = [[n, p["family"], p["paper"], p["input"], f"{p['default_input_s']:.2f}", f"{p['params']:,}",
                 f"{p['gflop_s']:.3f}", f"{p['xrt_cpu']:.0f}×", f"{p['xrt']:.0f}×",
                 f"{p['xrt_cpu'] / p['vgg_xrt_cpu']:.1f}", f"{p['step_cpu']:.2f}", f"{p['epoch_cpu']:.0f}", p["run"]]
                for n, p in prof.items()]
        parts.append("### The zoo: size, cost, speed\n\n" + markdown_table(
            ["arch", "family", "paper", "input", "paper input s", "parameters", "GFLOP / s audio",
             "embedding × real time (2 cores, from CPU time)", "× real time (wall, loaded)", "speed vs vgg",
             "train step CPU-s (batch 16, 3 s)", "train CPU-s / epoch", "timed in"], rows) +
            f"\n\nEmbedding speed: network forward pass only (64 patches of 2.99 s, batch 32, the faster of 2 runs, timing "
            "lock held); the first speed column is audio seconds / (process CPU-seconds / 2), i.e. what 2 busy "
            "cores give, the second the wall-clock figure on the loaded machine. Decoding and log-mel (≈ 500× real "
            f"time together, see embed_speed) come on top. 'speed vs vgg' divides by the vgg row timed in the same "
            "run ('timed in'). Training CPU-s per epoch = median CPU-s of a batch-16 "
            f"step on 3-s inputs × {steps} steps (one pass over the distillation set: {len(train_paths)} tracks × "
            "30 s); on 2 idle cores the wall time is about half of it.")
    head = ["student", "initialised from", "training packages", "training / validation tracks", "CPU budget s", "CPU s used", "epochs", "held-out fidelity ROC-AUC (top-3 tags)",
            "held-out tag correlation", "validation ROC-AUC (training run)"]
    rows = []
    for a, c in cards.items():
        tr = c["training"]
        pr = tr.get("prune")
        init = (f"pruned msd_vgg ({'/'.join(map(str, np.atleast_1d(pr['n_filters'])))} of {pr['of']} filters per block)"
                if pr else "random")
        m = re.search(r"CPU budget of (\d+) s", tr.get("stopped") or "")  # a reused student's own budget
        budget = float(m.group(1)) if m else budgets.get(a, float("nan"))
        rows.append([a, init, f"{len(packages[a])}", f"{tr['tracks_train']} / {tr['tracks_valid']}", f"{budget:.0f}", f"{tr['cpu_s']:.0f}", tr["epochs"], f"{fid[a]['fidelity_roc_auc']:.3f}",
                     f"{fid[a]['fidelity_corr']:.3f}", f"{tr['metrics'].get('fidelity_roc_auc', float('nan')):.3f}"])
    parts.append("### Distillation from msd_vgg (fixed CPU budget)\n\n" + markdown_table(head, rows) +
                 "\n\nStudents trained on tracks (middle 30 s) of Debian game-music packages: "
                 + "; ".join(f"{a}: {', '.join(p)}" for a, p in packages.items()) +
                 f" (this run offers {len(train_paths)} tracks; a reused student keeps the tracks it was trained on); "
                 f"fidelity measured on the {len(held)} held-out tracks of {len(set(k[0] for k in held))} other packages "
                 "(heads.py's; middle 30 s, 3-s patches). Loss: soft-tag binary cross-entropy + 1.0 × feature matching "
                 "(linear map of the pooled taps to msd_vgg's standardised 640-d patch feature); 3-s inputs; gain and "
                 "SpecAugment augmentation; Adam 1e-3 (pruned copies of msd_vgg: 3e-4), batch 16; the CPU budget "
                 "(process CPU-seconds) ends training; the weights of the epoch with the lowest validation loss are kept. "
                 "`vgg_wNN`: msd_vgg's topology with NN % of the filters of every block, initialised with the teacher's "
                 "filters of largest L1 norm (Li et al. 2017, `embedkit fit --init msd_vgg --prune 0.5`), then distilled; "
                 "`vgg_fA-B-C-D-E`: the same with A..E filters in blocks 1..5 (`--prune 0.375,0.25,1,1,1` for "
                 "vgg_f48-32-128-128-128: the cost is in the early blocks, the package-of-origin information in the "
                 "deep ones).")
    base = {t: down.get((t, "MFCC baseline"), (np.nan,))[0] for t, _ in down}
    vgg = {t: down.get((t, "msd_vgg (teacher)"), (np.nan,))[0] for t, _ in down}
    rows = []
    for (t, nm), (m, s) in down.items():
        margin = "" if nm == "MFCC baseline" else f"{(m - base[t]) / (vgg[t] - base[t]):.0%}" if vgg[t] != base[t] else ""
        rows.append([t, nm, f"{m:.3f} ± {s:.3f}", margin])
    parts.append("### Downstream: same SVM head, same nested folds\n\n" + markdown_table(
        ["task", "feature", "accuracy", "share of msd_vgg's margin over MFCC"], rows))
    if prof:
        lines = []
        for a in (a for a in students if a in prof):
            sp = prof[a]["xrt_cpu"] / prof[a]["vgg_xrt_cpu"]
            pk = ("package of origin, 3 s", f"{a} (distilled)")
            r = (down[pk][0] - base[pk[0]]) / (vgg[pk[0]] - base[pk[0]])
            ok = sp >= 3 and r >= 0.9
            lines.append(f"- {a}: {sp:.1f}× msd_vgg's network speed, {r:.0%} of its margin over MFCC on package of "
                         f"origin (3 s) → target {'met' if ok else 'not met'}")
        parts.append("### Target: ≥ 3× faster than msd_vgg and ≥ 90 % of its margin over MFCC\n\n" + "\n".join(lines))
    if ft:
        parts.append("### Fine-tuning vs frozen features + SVM (package of origin, 3-s segments)\n\n" + markdown_table(
            ["method", "accuracy (4 group folds)"],
            [[f"msd_vgg fine-tuned (blocks 1–3 frozen, {args.finetune_budget:.0f} CPU-s per fold)",
              f"{ft['finetune'][0]:.3f} ± {ft['finetune'][1]:.3f}"],
             ["msd_vgg frozen features + SVM (Choi grid)", f"{ft['svm'][0]:.3f} ± {ft['svm'][1]:.3f}"]]) +
            "\n\nSame 4 stratified group folds (by track) for both; the fine-tuned network predicts each 3-s segment "
            "with its new 8-way output.")
    if args.profile_from:
        parts.append("Zoo rows timed in a 'log' come from an earlier run of this script on this machine "
                     f"(`--profile-from {' '.join(p.name for p in args.profile_from)}`; "
                     f"{'; '.join(PROFILE_LOGS.get(p.name, p.name) for p in args.profile_from)}); a row's speed ratio divides by "
                     "the vgg timed in the same log.")
    if args.reuse:
        parts.append("Students already distilled by an earlier run of this script were reused with `--reuse` (their "
                     "CPU budgets are the ones stated); downstream accuracies of unchanged weights come from the "
                     "script's result cache (same folds).")
    parts.append(f"Whole benchmark: {cpu_total / 60:.1f} CPU-minutes (profile {cpu_profile / 60:.1f}), "
                 f"{(time.perf_counter() - wall0) / 60:.1f} min wall. Load average at start {load[0]:.1f} / {load[1]:.1f} / "
                 f"{load[2]:.1f}: the machine ({machine_line()}) was shared with other jobs, so times are "
                 "upper bounds; CPU budgets are process CPU-seconds, which load does not inflate much.")
    body = "\n\n".join(parts)
    print(body)
    if not args.no_write:
        write_section("train", body, script="benchmarks/train.py")


if __name__ == "__main__":
    main()
