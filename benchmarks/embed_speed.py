"""Embedding speed per stage on real music, and the network's GFLOP/s against a measured matmul peak.

Usage: flock /tmp/embedkit-timing.lock python benchmarks/embed_speed.py [--audio DIR] [--model msd_vgg]
       [--precision fp32|bf16|int8|auto] [--batch-size 64] [--repeat 2]
Default audio: ../shared/data/fixtures/audio (25 real recordings, ~12.5 min). Writes docs/benchmarks.md.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _report import markdown_table, write_section  # noqa: E402

REPO = Path(__file__).resolve().parent.parent


def conv_flops_per_patch(model) -> float:
    """Multiply-adds ×2 of every Conv2D/Dense layer for one (187, 96) patch."""
    import keras

    total = 0.0
    for layer in model.layers:
        if isinstance(layer, keras.layers.Conv2D):
            kh, kw, cin, cout = layer.kernel.shape
            _, h, w, _ = layer.output.shape
            total += 2.0 * h * w * cout * cin * kh * kw
        elif isinstance(layer, keras.layers.Dense):
            cin, cout = layer.kernel.shape
            total += 2.0 * cin * cout
    return total


def matmul_peak(tf, seconds: float = 3.0) -> float:
    """Best float32 GFLOP/s of 2048² matmuls (numpy/BLAS and TensorFlow/oneDNN), measured now."""
    best = 0.0
    a = np.random.default_rng(0).random((2048, 2048), dtype=np.float32)
    ta = tf.constant(a)
    for fn in (lambda: a @ a, lambda: tf.matmul(ta, ta).numpy()):
        fn()
        n, t0 = 0, time.perf_counter()
        while time.perf_counter() - t0 < seconds / 2:
            fn()
            n += 1
        best = max(best, n * 2 * 2048**3 / (time.perf_counter() - t0) / 1e9)
    return best


def _peak_rss_run(path: Path, model: str) -> tuple[float, float, int]:
    """Embed one file in a fresh process; returns (seconds, peak RSS MiB, n_patches)."""
    import json
    import subprocess

    code = (
        "import json, resource, sys, time\n"
        "from embedkit import Embedder\n"
        f"emb = Embedder.from_pretrained({model!r})\n"
        "t = time.perf_counter()\n"
        f"r = emb.embed_file({str(path)!r})\n"
        "dt = time.perf_counter() - t\n"
        "print(json.dumps([dt, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, r.n_patches]))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True)
    dt, rss, n = json.loads(out.stdout.strip().splitlines()[-1])
    return dt, rss, n


def long_file_rows(minutes: list[float], model: str) -> list[list[object]]:
    """Peak memory of embedding synthesized 44.1 kHz stereo WAVs of each length (written to a temp dir)."""
    import tempfile

    import soundfile as sf

    rows = []
    rng = np.random.default_rng(0)
    block = 44100 * 10
    t = np.arange(block) / 44100
    with tempfile.TemporaryDirectory() as tmp:
        for m in minutes:
            path = Path(tmp) / f"long_{m:g}min.wav"
            with sf.SoundFile(path, "w", 44100, 2, subtype="PCM_16") as f:
                for k in range(int(m * 6)):
                    y = 0.2 * np.sin(2 * np.pi * (220 + 20 * (k % 12)) * t) + 0.05 * rng.standard_normal(block)
                    f.write(np.stack([y, y[::-1]], axis=1).astype(np.float32))
            dt, rss, n = _peak_rss_run(path, model)
            held = m * 60 * 44100 * 2 * 8 / 2**20
            rows.append([f"{m:g} min, 44.1 kHz stereo WAV ({path.stat().st_size / 2**20:.0f} MiB)", n, f"{dt:.1f}",
                         f"{m * 60 / dt:.0f}×", f"{rss:.0f}", f"{held:.0f}"])
            path.unlink()
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--audio", type=Path, default=REPO.parent / "shared" / "data" / "fixtures" / "audio")
    ap.add_argument("--model", default="msd_vgg")
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--precision", default="fp32", help="fp32 | bf16 | int8 | auto (embedkit.precision)")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--repeat", type=int, default=2, help="end-to-end passes (best is reported)")
    ap.add_argument("--long-minutes", default="3,120", help="lengths of synthesized long files for the memory check ('' = skip)")
    ap.add_argument("--no-write", action="store_true")
    args = ap.parse_args()

    from embedkit import Embedder, audio, frontend
    from embedkit._tf import import_tensorflow
    from embedkit.precision import cpu_flags

    files = sorted(p for p in args.audio.iterdir() if p.suffix.lower() in audio.AUDIO_EXTENSIONS)
    if not files:
        sys.exit(f"no audio in {args.audio}")
    tf = import_tensorflow()
    emb = Embedder.from_pretrained(args.model, batch_size=args.batch_size, precision=args.precision)

    # stage by stage, one file at a time, one thread
    t_decode = t_resample = t_logmel = 0.0
    c_decode = c_resample = c_logmel = 0.0  # CPU seconds (time.process_time: honest on a loaded machine)
    audio_s = 0.0
    all_patches = []
    import soxr

    for f in files:
        t0, c0 = time.perf_counter(), time.process_time()
        info = audio.probe(f)
        raw = np.concatenate(list(audio._blocks_soundfile(f, 0, None)) if info.decoder == "soundfile"
                             else list(audio._blocks_pyav(f, 0, None)))
        t1, c1 = time.perf_counter(), time.process_time()
        y = raw if info.samplerate == 16000 else soxr.resample(raw, info.samplerate, 16000, quality=audio.RESAMPLE_QUALITY)
        t2, c2 = time.perf_counter(), time.process_time()
        patches = frontend.make_patches(frontend.logmel(y))
        t3, c3 = time.perf_counter(), time.process_time()
        t_decode, t_resample, t_logmel = t_decode + t1 - t0, t_resample + t2 - t1, t_logmel + t3 - t2
        c_decode, c_resample, c_logmel = c_decode + c1 - c0, c_resample + c2 - c1, c_logmel + c3 - c2
        audio_s += raw.size / info.samplerate
        all_patches.append(patches.data)
    patches = np.concatenate(all_patches)
    emb.forward(patches[: args.batch_size])  # warm-up / tracing
    t_net = c_net = float("inf")
    for _ in range(2):  # best of two passes (the first may still allocate)
        t0, c0 = time.perf_counter(), time.process_time()
        emb.forward(patches)
        t_net, c_net = min(t_net, time.perf_counter() - t0), min(c_net, time.process_time() - c0)
    gflop = 0.0
    for member in emb._members:  # FLOPs of the fp32 graph of every model (int8 runs the same arithmetic)
        backbone = getattr(member.net, "_backbone", None)
        if backbone is None:
            from embedkit import pretrained
            from embedkit.network import build_backbone

            backbone = build_backbone(member.card["architecture"], str(pretrained.weights_path(member.name)))
        gflop += conv_flops_per_patch(backbone) / 1e9
    net_gflops = patches.shape[0] * gflop / t_net
    peak = matmul_peak(tf)

    e2e, c_e2e = [], []
    for _ in range(args.repeat):
        t0, c0 = time.perf_counter(), time.process_time()
        res = list(emb.embed_files(files, workers=args.workers))
        e2e.append(time.perf_counter() - t0)
        c_e2e.append(time.process_time() - c0)
        assert all(r.ok for r in res), [r for r in res if not r.ok]
    t_e2e = min(e2e)

    c_sum = c_decode + c_resample + c_logmel + c_net
    rows = [
        ["decode (native rate)", f"{t_decode:.2f}", f"{audio_s / t_decode:.0f}×", f"{c_decode:.2f}", f"{100 * c_decode / c_sum:.0f} %"],
        ["resample → 16 kHz (soxr HQ)", f"{t_resample:.2f}", f"{audio_s / t_resample:.0f}×", f"{c_resample:.2f}",
         f"{100 * c_resample / c_sum:.0f} %"],
        ["log-mel + patching", f"{t_logmel:.2f}", f"{audio_s / t_logmel:.0f}×", f"{c_logmel:.2f}", f"{100 * c_logmel / c_sum:.0f} %"],
        [f"network ({patches.shape[0]} patches, batch {args.batch_size})", f"{t_net:.2f}", f"{audio_s / t_net:.0f}×",
         f"{c_net:.2f}", f"{100 * c_net / c_sum:.0f} %"],
        ["sum of stages (serial)", f"{t_decode + t_resample + t_logmel + t_net:.2f}",
         f"{audio_s / (t_decode + t_resample + t_logmel + t_net):.0f}×", f"{c_sum:.2f}", "100 %"],
        [f"**end to end** (`embed_files`, {args.workers} decode threads, best of {args.repeat})", f"{t_e2e:.2f}",
         f"**{audio_s / t_e2e:.0f}×**", f"{min(c_e2e):.2f}", ""],
    ]
    table = markdown_table(["stage", "seconds", "× real time", "CPU s", "share of CPU"], rows)
    load = os.getloadavg()
    net = (f"Network: {gflop:.2f} GFLOP per 3-s patch, **{net_gflops:.0f} GFLOP/s** = "
           f"**{100 * net_gflops / peak:.0f} %** of the float32 matmul peak measured in the same run "
           f"({peak:.0f} GFLOP/s, best of numpy/OpenBLAS and TensorFlow/oneDNN 2048² matmuls); "
           f"{1000 * t_net / patches.shape[0]:.1f} ms and {1000 * c_net / patches.shape[0]:.1f} CPU-ms per patch "
           f"(`Embedder.forward`, the same call as benchmarks/precision.py --part speed). CPU vector flags: "
           f"{', '.join(sorted(f for f in cpu_flags() if f.startswith(('avx', 'amx')))) or 'none'}. "
           f"Load average at start {load[0]:.1f} / {load[1]:.1f} / {load[2]:.1f}"
           + (" (machine loaded by other jobs: figures are lower bounds)." if load[0] > 2.5 else "."))
    body = (f"Model `{args.model}`, precision `{emb.precision}`, {len(files)} real recordings from `{args.audio.name}/` "
            f"({audio_s / 60:.1f} min of audio, mixed 22.05/44.1/48 kHz, OGG Vorbis and WAV).\n\n{table}\n\n{net}\n")
    minutes = [float(m) for m in args.long_minutes.split(",") if m.strip()]
    if minutes:
        mem = markdown_table(["file", "patches", "seconds", "× real time", "peak RSS MiB (whole process)",
                              "MiB if held as float64 at 44.1 kHz stereo"], long_file_rows(minutes, args.model))
        body += (f"\nMemory on long files (one `embed_file` call in a fresh process; the RSS includes TensorFlow "
                 f"and the model, ~0.5 GiB):\n\n{mem}\n")
    print(body)
    if not args.no_write:
        suffix = "" if (args.model, emb.precision) == ("msd_vgg", "fp32") else f" ({args.model}, {emb.precision})"
        write_section("Embedding speed" + suffix, body,
                      script="benchmarks/embed_speed.py" + (f" --model {args.model} --precision {emb.precision}" if suffix else ""))


if __name__ == "__main__":
    main()
