"""Benchmark ``embed DIR --store``: throughput, peak memory and no-op rerun time on a real music corpus.

The corpus is free game music from Debian (``apt-get download wesnoth-1.16-music`` ..., unpacked with
``dpkg -x`` into a temporary folder outside the repository, never committed), at least ``--min-hours``
of audio. Each measured run is a fresh Python process (model load included in its wall time) that
calls `embedkit.collection.embed_into_store` and reports its own peak RSS.

Figures: audio hours per wall hour (= × real time), peak RSS, the time of a no-op rerun over the
finished store (per 1,000 files, measured on a 5,000-file store of short synthesized files so that
fixed start-up costs do not hide the per-file cost), the same with ``--excerpt 30``, and the speed of
decoding + log-mel alone (one thread), which bounds what overlapping can hide.

    python benchmarks/embed_collection.py [--corpus DIR] [--min-hours 2] [--workers 2] [--no-write]
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "benchmarks"))

PACKAGES = ["wesnoth-1.16-music", "warzone2100-music"]
DEFAULT_CORPUS = Path(os.environ.get("EMBEDKIT_BENCH_CORPUS", Path(tempfile.gettempdir()) / "embedkit-bench-corpus"))


def _hours(files: list[Path]) -> float:
    from embedkit import audio

    total = 0.0
    for f in files:
        try:
            total += audio.probe(f).duration_s or 0.0
        except Exception:
            pass
    return total / 3600


def _audio_files(root: Path) -> list[Path]:
    from embedkit.discovery import discover

    return [Path(f.path) for f in discover([root]).files] if root.exists() else []


def build_corpus(corpus: Path, min_hours: float) -> tuple[list[Path], list[str]]:
    """Download and unpack Debian music packages into ``corpus`` until it holds ≥ ``min_hours``."""
    used: list[str] = []
    for pkg in PACKAGES:
        dest = corpus / pkg
        if not _audio_files(dest):
            with tempfile.TemporaryDirectory() as tmp:
                cmd = ["apt-get", "download", pkg]
                r = subprocess.run(cmd, cwd=tmp, capture_output=True, text=True)
                if r.returncode != 0:
                    subprocess.run(["apt-get", "update", "-qq"], capture_output=True)
                    r = subprocess.run(cmd, cwd=tmp, capture_output=True, text=True)
                if r.returncode != 0:
                    print(f"could not download {pkg}: {r.stderr.strip()[-200:]}", file=sys.stderr)
                    continue
                dest.mkdir(parents=True, exist_ok=True)
                for deb in Path(tmp).glob("*.deb"):
                    subprocess.run(["dpkg", "-x", str(deb), str(dest)], check=True)
        used.append(pkg)
        files = _audio_files(corpus)
        if _hours(files) >= min_hours:
            break
    # keep whole packages, but stop adding files once min_hours is reached (sorted, deterministic)
    chosen, total = [], 0.0
    from embedkit import audio

    for f in sorted(_audio_files(corpus)):
        if total >= min_hours * 3600:
            break
        try:
            total += audio.probe(f).duration_s or 0.0
        except Exception:
            continue
        chosen.append(f)
    return chosen, used


_CHILD = r"""
import json, resource, sys, time
t0 = time.perf_counter()
from embedkit.collection import embed_into_store
args = json.loads(sys.argv[1])
emb, load_s = None, 0.0
if args.get("preload"):
    from embedkit import Embedder
    emb = Embedder.from_pretrained(args.get("model") or "msd_vgg", batch_size=args["batch_size"],
                                   precision=args.get("precision") or "fp32")
    load_s = time.perf_counter() - t0
extra = {"precision": args["precision"]} if args.get("precision") not in (None, "fp32") else {}
if args.get("model"):
    extra["model"] = args["model"]
s = embed_into_store(args["inputs"], args["store"], progress=False, from_list=args.get("from_list"), embedder=emb,
                     excerpt_s=args.get("excerpt_s"), workers=args["workers"], batch_size=args["batch_size"], **extra)
s["load_s"] = load_s
s["process_wall_s"] = time.perf_counter() - t0
ru = resource.getrusage(resource.RUSAGE_SELF)
s["peak_rss_mib"] = ru.ru_maxrss / 1024
s["cpu_s"] = ru.ru_utime + ru.ru_stime
s.pop("failures", None)
print("RESULT " + json.dumps(s))
"""


def run_child(**args) -> dict:
    t = time.perf_counter()
    r = subprocess.run([sys.executable, "-c", _CHILD, json.dumps(args)], capture_output=True, text=True)
    wall = time.perf_counter() - t
    line = next((ln for ln in r.stdout.splitlines() if ln.startswith("RESULT ")), None)
    if line is None:
        raise SystemExit(f"benchmark child failed (rc {r.returncode}):\n{r.stderr[-3000:]}")
    out = json.loads(line[7:])
    out["outer_wall_s"] = wall
    return out


def decode_speed(files: list[Path], seconds: float = 600.0) -> float:
    """× real time of decode + resample + log-mel alone, one thread, over the first ``seconds`` of audio."""
    from embedkit import audio, frontend

    done, t = 0.0, time.perf_counter()
    for f in files:
        stream = frontend.LogMelStream()
        for block in audio.iter_audio(f):
            stream.push(block)
        stream.finish()
        done += stream.n_samples / frontend.SR
        if done >= seconds:
            break
    return done / (time.perf_counter() - t)


def noop_per_1000(tmp: Path, n_files: int = 5000) -> tuple[float, float]:
    """(seconds per 1,000 files of a no-op rerun inside the function, whole process incl. Python start-up)."""
    import numpy as np
    import soundfile as sf

    from embedkit.pretrained import model_fingerprint
    from embedkit.store import Store, file_sha256

    lib = tmp / "many"
    y = (0.1 * np.random.default_rng(0).standard_normal(1600)).astype(np.float32)
    for i in range(n_files):
        d = lib / f"{i // 100:03d}"
        d.mkdir(parents=True, exist_ok=True)
        sf.write(d / f"f{i:05d}.wav", y * (1 + i % 7), 16000)
    fp = model_fingerprint("msd_vgg")
    if fp is None:
        raise SystemExit("msd_vgg is not installed: embedkit models fetch msd_vgg")
    from embedkit import pretrained
    from embedkit.features import FeatureLayout

    layout = FeatureLayout.from_card(pretrained.card("msd_vgg"))
    manifest = {"model": "msd_vgg", "fingerprint": fp, "dim": layout.dim, "layout": layout.to_json(),
                "model_blocks": [{"name": b.name, "size": b.size} for b in layout.blocks], "layers": layout.names}
    from embedkit.discovery import discover

    with Store.create(tmp / "many_store", manifest) as st, st.transaction():
        # a store as a real run leaves it, vectors random (a no-op rerun never reads them)
        for f in discover([lib]).files:
            st.add_embedded(f.path, np.random.default_rng(0).standard_normal(layout.dim), size=f.size,
                            mtime=f.mtime, sha256=file_sha256(f.path), duration_s=0.1, samplerate=16000)
    r = run_child(inputs=[str(lib)], store=str(tmp / "many_store"), workers=2, batch_size=32)
    assert r["embedded"] == 0 and r["unchanged"] == n_files, r
    return r["wall_s"] / n_files * 1000, r["outer_wall_s"] / n_files * 1000


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--corpus", type=Path, default=DEFAULT_CORPUS, help="where to unpack the Debian packages")
    ap.add_argument("--min-hours", type=float, default=2.0)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--also-batch", type=int, default=64, help="one more whole-files run at this batch size (0 = skip)")
    ap.add_argument("--model", default=None, help="model(s) for the runs (default: the default model)")
    ap.add_argument("--precision", default=None, help="fp32 | bf16 | int8 | auto for the runs (default: fp32)")
    ap.add_argument("--only-whole", action="store_true", help="only the whole-files run at the default batch size (quick)")
    ap.add_argument("--no-write", action="store_true", help="print only, do not update docs/benchmarks.md")
    args = ap.parse_args()

    from _report import machine_line, markdown_table, write_section

    files, used = build_corpus(args.corpus, args.min_hours)
    hours = _hours(files)
    if hours < args.min_hours:
        raise SystemExit(f"corpus has only {hours:.2f} h of audio (< {args.min_hours} h)")
    exts = sorted({f.suffix for f in files})
    print(f"corpus: {len(files)} files, {hours:.2f} h ({', '.join(used)}; {', '.join(exts)}) in {args.corpus}", flush=True)
    load = os.getloadavg()
    rows = []
    model_load = 0.0
    with tempfile.TemporaryDirectory(prefix="embedkit-bench-") as tmpd:
        tmp = Path(tmpd)
        lst = tmp / "files.txt"
        lst.write_text("\n".join(str(f) for f in files) + "\n")
        runs = [("whole files", None, args.batch_size), ("--excerpt 30", 30.0, args.batch_size)]
        if args.only_whole:
            runs = runs[:1]
        elif args.also_batch:
            runs.append((f"whole files, --batch-size {args.also_batch}", None, args.also_batch))
        for k, (label, excerpt, batch) in enumerate(runs):
            store = tmp / f"store_{k}"
            full = run_child(inputs=[], from_list=str(lst), store=str(store), excerpt_s=excerpt,
                             workers=args.workers, batch_size=batch, preload=True, model=args.model,
                             precision=args.precision)
            assert full["embedded"] == len(files), full
            model_load = model_load or full["load_s"]
            noop = run_child(inputs=[], from_list=str(lst), store=str(store), excerpt_s=excerpt,
                             workers=args.workers, batch_size=batch, model=args.model, precision=args.precision)
            assert noop["embedded"] == 0 and noop["unchanged"] == len(files), noop
            xrt = full["audio_hours"] * 3600 / full["process_wall_s"]
            xrt_embed = full["audio_hours"] * 3600 / full["wall_s"]
            xrt_cpu = full["audio_hours"] * 3600 / (full["cpu_s"] / 2)
            rows.append([label, len(files), f"{full['audio_hours']:.2f}", f"{full['decoded_hours']:.2f}",
                         f"{full['process_wall_s']:.0f}", f"{xrt:.0f}×", f"{xrt_embed:.0f}×",
                         f"{full['cpu_s']:.0f}", f"{xrt_cpu:.0f}×",
                         f"{full['peak_rss_mib']:.0f}", f"{noop['wall_s']:.2f}", f"{noop['outer_wall_s']:.1f}"])
            print(rows[-1], flush=True)
            disk = sum(p.stat().st_size for p in store.rglob("*") if p.is_file())
            rows[-1].append(f"{disk / 2**20:.1f}")
        per1000, per1000_proc = (float("nan"), float("nan")) if args.only_whole else noop_per_1000(tmp)
        dec = decode_speed(files)
    headers = ["run", "files", "audio h", "decoded h", "wall s", "× real time (process)", "× real time (embedding)",
               "process CPU s", "× real time if both cores were ours (audio ÷ CPU s/2)", "peak RSS MiB", "no-op rerun s (function)", "no-op rerun s (process)", "store MiB"]
    body = markdown_table(headers, rows)
    noop_line = ("" if args.only_whole else
                 f"No-op rerun over a 5,000-file store: **{per1000:.2f} s per 1,000 files** inside `embed_into_store` "
                 "(walk + one SQLite query + stat comparison; the model is not loaded), "
                 f"{per1000_proc:.2f} s per 1,000 files for the whole process including Python start-up. ")
    notes = f"""
Corpus: {len(files)} files, {hours:.2f} h of Debian game music ({', '.join(used)}; {', '.join(exts)}),
unpacked outside the repository. Workers {args.workers}, batch {args.batch_size} (the default) unless the row says
otherwise. Each run is a fresh process:
"process" wall time includes Python start-up and loading the model (the first run's load took
{model_load:.1f} s); "embedding" is the pipeline alone (walk, hashing, decoding, network, store writes).
"× real time" counts hours of music covered (with `--excerpt 30`: whole-file durations, of which only the
"decoded h" were decoded and run through the network).

{noop_line}Decode + resample + log-mel alone, one thread: **{dec:.0f}× real time**.

Targets (issue 3): ≥ 150× real time, ≤ 2 GiB peak RSS, ≤ 2 s per 1,000 files for a no-op rerun; issue 15: ≥ 200×
with the default settings on 2 cores. Where the CPU goes per stage: section "Embedding speed" (benchmarks/embed_speed.py).
Load average when the benchmark started: {load[0]:.1f} / {load[1]:.1f} / {load[2]:.1f} (1/5/15 min) on
{machine_line()}; anything else running on the machine makes the throughput figures lower bounds.
"""
    print(body)
    print(notes)
    if not args.no_write:
        flags = " ".join(f for f in (f"--model {args.model}" if args.model else "",
                                     f"--precision {args.precision}" if args.precision else "") if f)
        write_section("embed_collection" + (f" ({flags})" if flags else ""), body + "\n" + notes,
                      script="benchmarks/embed_collection.py" + (f" {flags}" if flags else "")
                      + (" --only-whole" if args.only_whole else ""))


if __name__ == "__main__":
    main()
