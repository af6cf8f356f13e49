"""embedkit against the original musicnn extractor (the peer) on the same real files, whole processes timed in turn.

Usage (one command; each timed process takes the timing lock itself, so others' timed runs interleave):
  python benchmarks/peer_speed.py [--files 8] [--setup-only]

The peer is musicnn 0.1.0's ``musicnn.extractor.extractor`` (TF1 graph via ``tf.compat.v1`` + tf-keras) in
its own virtual environment ``--venv`` (default /tmp/peer-venv): created with ``python -m venv``,
it sees this environment's TensorFlow/numpy through a .pth line, adds ``tf-keras`` and ``librosa`` from PyPI,
and installs the wheel that ``embedkit models fetch`` downloaded (``~/.cache/embedkit/downloads``) with
``--no-deps`` (its pins, numpy < 1.17 and TF 1, cannot install on Python 3.11). Nothing is installed into
embedkit's environment.

Runs, each a fresh process over the same files (imports, model load and decoding included):
  1. peer default: ``extractor(file)`` once per file — its documented use: model MTT_musicnn, batch 1;
  2. peer ``extractor(file, model="MSD_vgg")``, batch 1 (the network embedkit uses by default);
  3. peer MSD_vgg at its best batch size (tried on the first 2 files among ``--peer-batches``);
  4. embedkit default: ``embedkit embed --from-list LIST --store DIR`` (msd_vgg, fp32, batch 32);
  5. embedkit ``--model mtt_musicnn`` (like with like for the peer's default);
  6. embedkit fastest: ``--fast-flags`` (default: int8, batch 64 — below its fidelity bar, see "precision fidelity").
Ratios: default ÷ default (embedkit msd_vgg vs peer MTT_musicnn), and like with like (same network).
Files: the first ``--files`` tracks of ≥ 60 s from the Debian packages of benchmarks/heads.py (mp3/ogg/opus).
Target (issue 15): embedkit's default ≤ 0.15 of the peer default's wall time. Writes "peer speed" into
docs/benchmarks.md.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import heads as heads_bench  # noqa: E402
from _report import machine_line, markdown_table, write_section  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
WHEEL = Path(os.environ.get("EMBEDKIT_HOME") or Path.home() / ".cache" / "embedkit").expanduser() / "downloads" / "musicnn-0.1.0-py3-none-any.whl"

_PEER = r"""
import json, os, sys, time
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ["TF_USE_LEGACY_KERAS"] = "1"
t0 = time.perf_counter()
from musicnn import configuration as config
config.BATCH_SIZE = int(sys.argv[1])
from musicnn.extractor import extractor
n = 0
for f in sys.argv[3:]:
    if sys.argv[2] == "default":
        taggram, tags, feats = extractor(f)
    else:
        taggram, tags, feats = extractor(f, model=sys.argv[2], extract_features=True)
    n += taggram.shape[0]
print("RESULT " + json.dumps({"patches": int(n), "wall_s": time.perf_counter() - t0}))
"""


def log(msg: str) -> None:
    print(f"[peer] {msg}", file=sys.stderr, flush=True)


def setup_venv(venv: Path) -> tuple[bool, str]:
    """Create the peer venv (idempotent). Returns (ok, what happened / why not)."""
    py = venv / "bin" / "python"
    if not WHEEL.exists():
        return False, f"the musicnn wheel is not in {WHEEL.parent} (run: embedkit models fetch --all)"
    if py.exists() and subprocess.run([str(py), "-c", "import musicnn, tf_keras, librosa"], capture_output=True).returncode == 0:
        return True, "reused"
    base = Path(os.path.realpath(sys.executable))
    subprocess.run([str(base), "-m", "venv", str(venv)], check=True)
    site_main = subprocess.run([sys.executable, "-c", "import site; print(site.getsitepackages()[0])"],
                               capture_output=True, text=True, check=True).stdout.strip()
    site_peer = subprocess.run([str(py), "-c", "import site; print(site.getsitepackages()[0])"],
                               capture_output=True, text=True, check=True).stdout.strip()
    Path(site_peer, "zz_embedkit_main.pth").write_text(site_main + "\n")
    import tensorflow as tf  # the version the peer must match

    major_minor = ".".join(tf.__version__.split(".")[:2])
    steps = [[str(py), "-m", "pip", "install", "-q", "--no-deps", f"tf-keras=={major_minor}.*"],
             [str(py), "-m", "pip", "install", "-q", "librosa"],
             [str(py), "-m", "pip", "install", "-q", "--no-deps", str(WHEEL)]]
    for cmd in steps:
        r = subprocess.run(cmd, capture_output=True, text=True)
        if r.returncode != 0:
            return False, f"{' '.join(cmd[3:])} failed: {r.stderr.strip().splitlines()[-1][:200] if r.stderr.strip() else r.returncode}"
    r = subprocess.run([str(py), "-c", "import os; os.environ['TF_USE_LEGACY_KERAS']='1'; import musicnn.extractor"],
                       capture_output=True, text=True)
    if r.returncode != 0:
        return False, f"musicnn does not import: {r.stderr.strip().splitlines()[-1][:200]}"
    return True, "created"


def pick_files(cache: Path, n: int) -> list[Path]:
    from embedkit import audio

    roots = heads_bench.fetch_packages(cache, heads_bench.PACKAGES)
    per_pkg = {pkg: heads_bench.package_tracks(root, n, min_s=60.0) for pkg, root in roots.items()}
    files: list[Path] = []
    while len(files) < n and any(per_pkg.values()):  # round robin over packages: mixed codecs and styles
        for pkg in list(per_pkg):
            if per_pkg[pkg] and len(files) < n:
                files.append(per_pkg[pkg].pop(0))
    return [f for f in files if audio.probe(f).duration_s]


LOCK = Path("/tmp/embedkit-timing.lock")
LOADS: list[float] = []  # 1-min load average when each timed process started


def timed(cmd: list[str], env: dict | None = None) -> tuple[float, str]:
    """Wall seconds and stdout of one whole process, run while holding the timing lock."""
    import fcntl

    with open(LOCK, "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        load = os.getloadavg()[0]
        t0 = time.perf_counter()
        r = subprocess.run(cmd, capture_output=True, text=True, env=env)
        wall = time.perf_counter() - t0
    LOADS.append(load)
    if r.returncode not in (0,):
        raise RuntimeError(f"{' '.join(cmd[:3])} … failed ({r.returncode}): {r.stderr.strip()[-400:]}")
    return wall, r.stdout


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--files", type=int, default=8)
    ap.add_argument("--venv", type=Path, default=Path(tempfile.gettempdir()) / "peer-venv")
    ap.add_argument("--cache", type=Path, default=Path(tempfile.gettempdir()) / "embedkit-bench-heads")
    ap.add_argument("--peer-batches", default="8,32,128")
    ap.add_argument("--fast-flags", default="--precision int8 --batch-size 64")
    ap.add_argument("--setup-only", action="store_true")
    ap.add_argument("--no-write", action="store_true")
    args = ap.parse_args()
    load = os.getloadavg()
    ok, how = setup_venv(args.venv)
    log(f"peer venv {args.venv}: {how}")
    files = pick_files(args.cache, args.files)
    from embedkit import audio

    audio_s = sum(audio.probe(f).duration_s or 0 for f in files)
    exts = sorted({f.suffix for f in files})
    if args.setup_only:
        return
    rows = []
    peer_py = str(args.venv / "bin" / "python")
    peer_default = peer_vgg = None
    if ok:
        wall, out = timed([peer_py, "-c", _PEER, "1", "default", *map(str, files)])
        n_musicnn = json.loads(next(ln for ln in out.splitlines() if ln.startswith("RESULT "))[7:])["patches"]
        peer_default = wall
        rows.append(["peer default: `extractor(file)` per file (MTT_musicnn, batch 1)", "MTT_musicnn", f"{wall:.1f}",
                     f"{audio_s / wall:.0f}×", "1.00", "", n_musicnn, f"{LOADS[-1]:.1f}"])
        log(f"peer default (MTT_musicnn) {wall:.1f} s")
        wall, out = timed([peer_py, "-c", _PEER, "1", "MSD_vgg", *map(str, files)])
        n_vgg = json.loads(next(ln for ln in out.splitlines() if ln.startswith("RESULT "))[7:])["patches"]
        peer_vgg = wall
        rows.append(["peer: `extractor(file, model='MSD_vgg')` per file, batch 1", "MSD_vgg", f"{wall:.1f}",
                     f"{audio_s / wall:.0f}×", f"{wall / peer_default:.2f}", "1.00", n_vgg, f"{LOADS[-1]:.1f}"])
        log(f"peer MSD_vgg batch 1 {wall:.1f} s")
        trial = {}
        for b in [int(x) for x in args.peer_batches.split(",") if x.strip()]:
            trial[b], _ = timed([peer_py, "-c", _PEER, str(b), "MSD_vgg", *map(str, files[:2])])
        best = min(trial, key=trial.get)
        wall, _ = timed([peer_py, "-c", _PEER, str(best), "MSD_vgg", *map(str, files)])
        rows.append([f"peer: MSD_vgg, batch {best} (best of {', '.join(map(str, trial))} on 2 files)", "MSD_vgg",
                     f"{wall:.1f}", f"{audio_s / wall:.0f}×", f"{wall / peer_default:.2f}", f"{wall / peer_vgg:.2f}",
                     n_vgg, f"{LOADS[-1]:.1f}"])
        log(f"peer MSD_vgg batch {best}: {wall:.1f} s")
    with tempfile.TemporaryDirectory(prefix="embedkit-peer-") as tmp:
        lst = Path(tmp) / "files.txt"
        lst.write_text("\n".join(map(str, files)) + "\n")
        exe = str(Path(sys.executable).parent / "embedkit")
        runs = (("embedkit default: `embed --from-list LIST --store DIR`", "msd_vgg", [], peer_vgg),
                ("embedkit `… --model mtt_musicnn`", "MTT_musicnn", ["--model", "mtt_musicnn"], peer_default),
                (f"embedkit fastest: `… {args.fast_flags}`", "MSD_vgg", args.fast_flags.split(), peer_vgg))
        for label, net, flags, same in runs:
            store = Path(tmp) / f"store{len(rows)}"
            wall, _ = timed([exe, "embed", "--from-list", str(lst), "--store", str(store), "-q", *flags])
            rel = f"{wall / peer_default:.2f}" if peer_default else "n/a"
            like = f"{wall / same:.2f}" if same else "n/a"
            rows.append([label, net, f"{wall:.1f}", f"{audio_s / wall:.0f}×", rel, like, "", f"{LOADS[-1]:.1f}"])
            log(f"{label}: {wall:.1f} s")
            shutil.rmtree(store, ignore_errors=True)
    table = markdown_table(["run (whole process, same files)", "network", "wall s", "× real time",
                            "÷ peer default (default vs default)", "÷ peer, same network, batch 1 (like with like)",
                            "patches", "load at start"], rows)
    why = "" if ok else f"\n\nThe peer could not be run: {how}."
    body = (f"{table}{why}\n\n{len(files)} Debian tracks ({audio_s / 60:.1f} min; {', '.join(exts)}), each run a fresh process (imports, model load, decoding "
            f"included), the timing lock held for each. The peer's default model is MTT_musicnn, embedkit's msd_vgg "
            f"(0.59 vs 0.94 GFLOP per second of audio for the musicnn graph): the default-vs-default column compares "
            f"what each tool does when called plainly, the like-with-like column the same network. Target: "
            f"embedkit's default ≤ 0.15 of the peer default's wall time. Load average at start {load[0]:.1f} / "
            f"{load[1]:.1f} / {load[2]:.1f} on {machine_line()}"
            + (" — loaded by other jobs (see each row's load): wall times are upper bounds."
               if max([load[0], *LOADS]) > 2.5 else "."))
    print(body)
    if not args.no_write:
        write_section("peer speed", body, script="benchmarks/peer_speed.py")


if __name__ == "__main__":
    main()
