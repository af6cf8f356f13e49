"""Issue 10: model zoo, augmentation, fit loop (overfit, kill-and-resume), cache round trip, bad input."""
from __future__ import annotations

import csv
import json
import os
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from embedkit import backbones

SHARED = Path(os.environ.get("EMBEDKIT_SHARED", Path(__file__).resolve().parents[2] / "shared"))
FIXTURE = SHARED / "data" / "fixtures" / "audio" / "deb_asc-music__frontiers.ogg"
REAL_HOME = Path(os.environ.get("EMBEDKIT_HOME") or Path.home() / ".cache" / "embedkit")
SMALL = ("dieleman", "fcn", "crnn")


def _real_audio(seconds: float = 6.0) -> np.ndarray:
    if not FIXTURE.exists():
        pytest.skip(f"real fixture audio not found at {FIXTURE} (needs ../shared)")
    from embedkit import audio

    return audio.load(FIXTURE, sr=16000, offset_s=10.0, duration_s=seconds)


@pytest.fixture()
def home(tmp_path, monkeypatch):
    """An empty EMBEDKIT_HOME whose pretrained models link to the real cache (when installed)."""
    h = tmp_path / "home"
    (h / "models").mkdir(parents=True)
    for m in ("msd_vgg", "msd_musicnn", "mtt_vgg", "mtt_musicnn"):
        if (REAL_HOME / "models" / m).exists():
            (h / "models" / m).symlink_to(REAL_HOME / "models" / m)
    monkeypatch.setenv("EMBEDKIT_HOME", str(h))
    return h


def _tones(folder: Path, n_per_class: int = 4, seconds: float = 4.0) -> Path:
    """Two classes of synthetic audio (low vs high tones with noise) + a labels CSV; returns the CSV."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    t = np.arange(int(seconds * 16000)) / 16000
    rows = []
    for label, base in (("low", 220.0), ("high", 1760.0)):
        for k in range(n_per_class):
            y = 0.3 * np.sin(2 * np.pi * base * (1 + 0.03 * k) * t) + 0.01 * rng.standard_normal(t.size)
            p = folder / f"{label}{k}.wav"
            sf.write(p, y.astype(np.float32), 16000)
            rows.append({"path": p.name, "label": label})
    csv_path = folder / "labels.csv"
    with open(csv_path, "w", newline="") as f:
        w = csv.DictWriter(f, ["path", "label"])
        w.writeheader()
        w.writerows(rows)
    return csv_path


# ---- zoo ------------------------------------------------------------------------------------------


def _forward_real(arch: str) -> None:
    from embedkit import inputs
    from embedkit._tf import import_tensorflow

    import_tensorflow()
    m = backbones.build(arch)
    assert m.count_params() == backbones.get(arch).params, f"{arch} is not its stated size"
    spec = backbones.get(arch)
    patches = inputs.get(spec.input_kind).patches(_real_audio()).data  # 2 real 3-s patches
    out = m(inputs.to_model_input(spec.input_kind, patches), training=False)
    assert out["logits"].shape == (patches.shape[0], 50)
    taps = backbones.tap_names(m)
    assert len(taps) >= 2
    for name in taps:
        assert np.all(np.isfinite(np.asarray(out[name])))


@pytest.mark.parametrize("arch", SMALL)
def test_small_architectures_build_at_stated_size_and_run_on_real_audio(arch):
    _forward_real(arch)


@pytest.mark.slow
@pytest.mark.parametrize("arch", [a for a in backbones.ARCHS if a not in SMALL])
def test_every_other_architecture_builds_and_runs(arch):
    _forward_real(arch)


def test_unknown_architecture_is_one_line():
    with pytest.raises(ValueError, match="unknown architecture 'resnet9000'.*dieleman"):
        backbones.get("resnet9000")


def test_waveform_input_kind_matches_logmel_patch_grid():
    from embedkit import frontend, inputs

    y = _real_audio(7.0)
    w = inputs.get("waveform").patches(y)
    m = frontend.make_patches(frontend.logmel(y))
    assert w.data.shape[1:] == (187, 256) and w.data.shape[0] == m.data.shape[0]
    np.testing.assert_array_equal(w.data[1].ravel(), y[187 * 256: 2 * 187 * 256])


# ---- augmentation ---------------------------------------------------------------------------------


def test_augmentations_keep_length_rate_and_finiteness():
    from embedkit.train.augment import AugmentConfig, augment_waveform, mixup, pitch_shift, spec_augment, time_stretch

    y = _real_audio(3.0)
    for fn in (lambda a: pitch_shift(a, 3.0), lambda a: time_stretch(a, 0.85), lambda a: time_stretch(a, 1.2)):
        out = fn(y)
        assert out.shape == y.shape and out.dtype == np.float32 and np.all(np.isfinite(out))
        assert not np.allclose(out, y)
    cfg = AugmentConfig.parse("all")
    a = augment_waveform(y, cfg, np.random.default_rng(1))
    b = augment_waveform(y, cfg, np.random.default_rng(1))
    np.testing.assert_array_equal(a, b)  # seeded
    assert a.shape == y.shape and np.all(np.isfinite(a))
    x = spec_augment(np.ones((187, 96), np.float32) * np.arange(96), cfg, np.random.default_rng(0))
    assert x.shape == (187, 96) and np.all(np.isfinite(x))
    xm, ym = mixup(np.ones((4, 10)), np.eye(4, 2), 0.2, np.random.default_rng(0))
    assert xm.shape == (4, 10) and np.allclose(ym.sum(1), np.eye(4, 2).sum(1)[np.arange(4)] * 0 + ym.sum(1))
    with pytest.raises(ValueError, match="outside"):
        pitch_shift(y, 7.0)
    with pytest.raises(ValueError, match="unknown augmentation"):
        AugmentConfig.parse("pitch,reverb")


# ---- fit loop -------------------------------------------------------------------------------------


def test_tiny_model_overfits_a_small_labelled_set(tmp_path, home):
    from embedkit.train import fit

    labels = _tones(tmp_path / "tones")
    card = fit([], arch="dieleman", name="tones", labels=str(labels), input_s=1.0, epochs=8, patience=8,
               batch_size=8, lr=3e-3, valid_fraction=0.25, windows_per_epoch=32, log=lambda m: None)
    hist = card["training"]["history"]
    assert min(h["loss"] for h in hist) < 0.25  # guessing between two classes costs 0.69
    assert card["training"]["metrics"]["accuracy"] == 1.0
    assert card["labels"] == ["high", "low"]


def _tiny_run(folder: Path, *, epochs: int = 3, stop_after: int | None = None, max_cpu_s: float | None = None):
    """Train a 2-class dieleman on 4 synthetic tracks (validation: 2 more) in ``folder``; ``(trainer, result)``."""
    from embedkit._tf import import_tensorflow

    import_tensorflow()
    import keras

    from embedkit.train.data import PatchSampler, Prepared
    from embedkit.train.fit import build_trainer
    from embedkit.train.loop import train
    from embedkit.train.sources import Track

    rng = np.random.default_rng(0)
    items = [Prepared(Track(f"t{k}", f"t{k}", np.eye(2, dtype=np.float32)[k % 2]),
                      (rng.standard_normal(40000) * (0.1 + 0.2 * (k % 2))).astype(np.float16)) for k in range(6)]
    keras.utils.set_random_seed(0)
    m = build_trainer(backbones.build("dieleman", n_classes=2, input_len=None), None)
    s = PatchSampler(items[:4], kind="logmel", input_samples=16000, targets="label", seed=3)
    val = PatchSampler(items[4:], kind="logmel", input_samples=16000, targets="label").fixed_windows(2)[:3]
    r = train(m, s, val, task="classification", run=folder, epochs=epochs, batch_size=4, windows_per_epoch=16,
              seed=3, stop_after=stop_after, patience=50, max_cpu_s=max_cpu_s, log=lambda m: None)
    return m, r


def test_kill_and_resume_gives_the_same_weights(tmp_path, home):
    straight, _ = _tiny_run(tmp_path / "a")
    _, r = _tiny_run(tmp_path / "b", stop_after=1)  # "killed" after epoch 1
    assert r["interrupted"] and json.loads((tmp_path / "b" / "state.json").read_text())["epoch"] == 0
    resumed, r2 = _tiny_run(tmp_path / "b")
    assert r2["epochs_run"] == 3
    for a, b in zip(straight.get_weights(), resumed.get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)


def test_a_run_ended_by_its_cpu_budget_continues_with_a_larger_one(tmp_path, home):
    _, first = _tiny_run(tmp_path / "r", epochs=50, max_cpu_s=1e-3)  # the budget ends epoch 1 after one step
    assert first["stopped"].startswith("CPU budget") and first["epochs_run"] == 1
    _, again = _tiny_run(tmp_path / "r", epochs=50, max_cpu_s=1e-3)  # the same budget: nothing more to do
    assert again["epochs_run"] == 1
    _, more = _tiny_run(tmp_path / "r", epochs=50, max_cpu_s=first["cpu_s"] + 3.0)  # a larger one continues
    assert more["epochs_run"] > 1 and more["cpu_s"] > first["cpu_s"]
    assert [h["epoch"] for h in more["history"]] == list(range(1, more["epochs_run"] + 1))


def test_fit_round_trips_through_the_cache_and_embed(tmp_path, home, capsys):
    from clirun import run as cli

    from embedkit import Embedder, model_cache, pretrained
    from embedkit.train import fit

    labels = _tones(tmp_path / "tones", n_per_class=3)
    card = fit([], arch="dieleman", name="rt", labels=str(labels), input_s=1.0, epochs=2, batch_size=8,
               windows_per_epoch=16, log=lambda m: None)
    assert model_cache.exists("rt") and pretrained.check_name("RT") == "rt"
    assert (home / "models" / "rt" / "learning_curve.png").exists()
    assert pretrained.fingerprint(pretrained.card("rt"))
    wav = tmp_path / "tones" / "low0.wav"
    emb = Embedder.from_pretrained("rt")
    got = emb.embed_file(wav)
    vec = got.vector
    assert vec.shape == (sum(b["size"] for b in card["feature_blocks"]),)
    # a single-label classifier's scores are a softmax over its classes (not independent sigmoid tags)
    assert got.tags.shape == (len(card["labels"]),) and abs(float(got.tags.sum()) - 1.0) < 1e-5
    code, out, err = cli(capsys, "embed", "-m", "rt", str(wav), "--json")
    assert code == 0, err
    code, out, err = cli(capsys, "models", "list", "--json")
    assert any(r["name"] == "rt" and r.get("trained") for r in json.loads(out))
    from embedkit.spec import VectorSpec

    spec = VectorSpec.for_model("rt")
    assert spec.dim == vec.shape[0]


# ---- bad input ------------------------------------------------------------------------------------


def _no_partial_models(home: Path) -> None:
    left = [p.name for p in (home / "models").iterdir() if p.name.startswith(".") or p.name not in
            ("msd_vgg", "msd_musicnn", "mtt_vgg", "mtt_musicnn")]
    assert left == [], left
    runs = home / "runs"
    assert not runs.exists() or list(runs.iterdir()) == [], list(runs.iterdir())  # no run folder was started


def test_bad_inputs_are_one_line_errors_and_leave_no_model(tmp_path, home, capsys):
    from clirun import run as cli

    labels = _tones(tmp_path / "tones", n_per_class=2)
    missing = tmp_path / "missing.csv"
    missing.write_text("path,label\nnot_here.wav,a\n" + "".join(f"{p.name},x\n" for p in (tmp_path / "tones").glob("*.wav")))
    one = tmp_path / "one.csv"
    one.write_text("path,label\n" + "".join(f"{p},x\n" for p in (tmp_path / "tones").glob("*.wav")))
    cases = [
        (["fit", "--arch", "dieleman", "-o", "m1", "--labels", str(missing)], "not_here.wav"),
        (["fit", "--arch", "dieleman", "-o", "m2", "--labels", str(one)], "only one class"),
        (["fit", str(tmp_path / "tones"), "--arch", "dieleman", "-o", "m3", "--teacher", "nope"], "unknown model 'nope'"),
        (["fit", "--arch", "nope", "-o", "m4", "--labels", str(labels)], "unknown architecture"),
        (["fit", "--arch", "dieleman", "-o", "msd_vgg", "--labels", str(labels)], "pretrained model's name"),
    ]
    for args, needle in cases:
        code, out, err = cli(capsys, *args)
        lines = err.strip().splitlines()
        assert code == 1 and len(lines) == 1 and needle in lines[0], (args, err)
    _no_partial_models(home)


def test_teacher_not_installed_and_unwritable_cache(tmp_path, monkeypatch, capsys):
    from clirun import run as cli

    h = tmp_path / "bare"
    (h / "models").mkdir(parents=True)
    monkeypatch.setenv("EMBEDKIT_HOME", str(h))
    labels = _tones(tmp_path / "tones", n_per_class=2)
    code, out, err = cli(capsys, "fit", str(tmp_path / "tones"), "--arch", "dieleman", "-o", "t1", "--teacher", "msd_vgg")
    assert code == 1 and "embedkit models fetch msd_vgg" in err and len(err.strip().splitlines()) == 1
    assert list((h / "models").iterdir()) == [] and not (h / "runs").exists()
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    monkeypatch.setenv("EMBEDKIT_HOME", str(blocker / "home"))  # the cache cannot be created, even as root
    code, out, err = cli(capsys, "fit", "--arch", "dieleman", "-o", "t2", "--labels", str(labels))
    assert code == 1 and "not writable" in err and len(err.strip().splitlines()) == 1, err


@pytest.mark.slow
def test_a_killed_fit_process_resumes_to_the_uninterrupted_weights(tmp_path, home):
    """A real SIGKILL of `embedkit fit` after its first checkpoint; the rerun ends where a straight run does."""
    import signal
    import subprocess
    import sys
    import time

    import h5py

    labels = _tones(tmp_path / "tones", n_per_class=3)
    base = [sys.executable, "-m", "embedkit.cli.main", "fit", "--arch", "dieleman", "--labels", str(labels),
            "--input-seconds", "1", "--epochs", "4", "--patience", "4", "--batch-size", "8", "--seed", "5"]
    env = {**os.environ, "EMBEDKIT_HOME": str(home)}
    subprocess.run([*base, "-o", "straight"], env=env, check=True, capture_output=True)
    proc = subprocess.Popen([*base, "-o", "killed"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    state = home / "runs" / "killed" / "state.json"
    deadline = time.time() + 300
    while not state.exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (home / "models" / "killed").exists()
    subprocess.run([*base, "-o", "killed"], env=env, check=True, capture_output=True)

    def weights(name):
        out = []
        with h5py.File(home / "models" / name / "model.weights.h5") as f:
            f.visititems(lambda k, v: out.append((k, v[()])) if isinstance(v, h5py.Dataset) else None)
        return out

    a, b = weights("straight"), weights("killed")
    assert [k for k, _ in a] == [k for k, _ in b]
    for (_, x), (_, y) in zip(a, b):
        np.testing.assert_allclose(x, y, rtol=1e-4, atol=1e-5)


@pytest.mark.slow
def test_distillation_from_msd_vgg_on_real_audio(tmp_path, home):
    from embedkit import Embedder, pretrained
    from embedkit.train import fit

    if not pretrained.is_installed("msd_vgg"):
        pytest.skip("msd_vgg not installed (embedkit models fetch msd_vgg)")
    files = sorted((SHARED / "data" / "fixtures" / "audio").glob("deb_*.ogg"))[:6]
    if len(files) < 6:
        pytest.skip(f"real fixture audio not found under {SHARED}")
    # two validation tracks of other packages, so the teacher's top tags vary and the ROC-AUC is defined
    card = fit([str(f) for f in files], arch="fcn", name="student", teacher="msd_vgg", input_s=3.0, epochs=2,
               excerpt_s=12, feature_matching=1.0, augment="gain,specaugment", windows_per_epoch=16,
               valid_fraction=0.34, log=lambda m: None)
    tr = card["training"]
    assert tr["mode"] == "distill" and tr["teacher"] == "msd_vgg" and tr["tracks_valid"] == 2
    assert 0.0 <= tr["metrics"]["fidelity_roc_auc"] <= 1.0 and -1.0 <= tr["metrics"]["fidelity_corr"] <= 1.0
    assert card["labels"] == Embedder.from_pretrained("msd_vgg").labels
    tags = Embedder.from_pretrained("student").tag(str(files[0]), top_k=3)
    assert len(tags) == 3


# ---- structured pruning (Li et al. 2017) ----------------------------------------------------------


def _msd_vgg_installed():
    from embedkit import pretrained

    if not (REAL_HOME / "models" / "msd_vgg").exists() or not pretrained.is_installed("msd_vgg"):
        pytest.skip("msd_vgg not installed (embedkit models fetch msd_vgg)")


def test_pruning_keeps_the_largest_l1_filters_and_a_full_copy_is_the_teacher(home):
    from embedkit import frontend, pretrained
    from embedkit._tf import import_tensorflow
    from embedkit.train.prune import init_pruned, pruned_options

    _msd_vgg_installed()
    import_tensorflow()
    teacher = backbones.build("vgg")
    teacher.load_weights(str(pretrained.weights_path("msd_vgg")))
    patches = frontend.make_patches(frontend.logmel(_real_audio(6.0))).data
    # keeping every filter rebuilds the teacher exactly (the index bookkeeping, dense rows included)
    full = backbones.build("vgg", **pruned_options("vgg", 1.0))
    init_pruned(full, "msd_vgg")
    a, b = teacher(patches, training=False), full(patches, training=False)
    for k in ("logits", "pool1", "pool5"):
        np.testing.assert_allclose(np.asarray(a[k]), np.asarray(b[k]), rtol=1e-5, atol=1e-5)
    # half width: the kept filters are the teacher's of largest L1 norm, restricted to the kept inputs
    half = backbones.build("vgg", **pruned_options("vgg", 0.5))
    rec = init_pruned(half, "msd_vgg")
    assert rec["n_filters"] == 64 and rec["of"] == 128 and half.count_params() < teacher.count_params() / 3
    w1 = teacher.get_layer("conv1").kernel.numpy()
    keep1 = np.array(rec["kept"]["conv1"])
    assert set(keep1) == set(np.argsort(-np.abs(w1).sum(axis=(0, 1, 2)))[:64])
    np.testing.assert_array_equal(half.get_layer("conv1").kernel.numpy(), w1[..., keep1])
    w2 = teacher.get_layer("conv2").kernel.numpy()[:, :, keep1, :]
    np.testing.assert_array_equal(half.get_layer("conv2").kernel.numpy(), w2[..., rec["kept"]["conv2"]])
    assert np.all(np.isfinite(np.asarray(half(patches, training=False)["logits"])))


def test_per_block_pruning_keeps_whole_deep_blocks_of_the_teacher(home):
    from embedkit import pretrained
    from embedkit._tf import import_tensorflow
    from embedkit.errors import EmbedkitError
    from embedkit.train.prune import init_pruned, pruned_options

    assert pruned_options("vgg", [0.375, 0.25, 1, 1, 1]) == {"n_filters": [48, 32, 128, 128, 128]}
    with pytest.raises(EmbedkitError, match="one fraction or 5"):
        pruned_options("vgg", [0.5, 0.5])
    with pytest.raises(EmbedkitError, match=r"in \(0, 1\]"):
        pruned_options("vgg", [0.5, 0.5, 1.5, 1, 1])
    _msd_vgg_installed()
    import_tensorflow()
    teacher = backbones.build("vgg")
    teacher.load_weights(str(pretrained.weights_path("msd_vgg")))
    student = backbones.build("vgg", **pruned_options("vgg", [0.375, 0.25, 1, 1, 1]))
    rec = init_pruned(student, "msd_vgg")
    assert rec["n_filters"] == [48, 32, 128, 128, 128] and rec["fraction"] == pytest.approx(464 / 640)
    assert [b["size"] for b in backbones.feature_blocks(student)] == [48, 32, 128, 128, 128]
    # conv3 keeps every filter but reads only conv2's 32 kept channels; conv4 and conv5 are the teacher's own
    keep2 = np.array(rec["kept"]["conv2"])
    np.testing.assert_array_equal(student.get_layer("conv3").kernel.numpy(), teacher.get_layer("conv3").kernel.numpy()[:, :, keep2, :])
    for name in ("conv4", "bn4", "conv5", "bn5", "logits"):
        for a, b in zip(student.get_layer(name).get_weights(), teacher.get_layer(name).get_weights()):
            np.testing.assert_array_equal(a, b)


def test_prune_cli_takes_one_fraction_or_one_per_block(tmp_path, home, capsys):
    from clirun import run as cli

    labels = _tones(tmp_path / "tones", n_per_class=2)
    code, out, err = cli(capsys, "fit", "--init", "msd_vgg", "-o", "p3", "--labels", str(labels), "--prune", "0.5,x")
    assert code == 2 and "not a fraction" in err, err
    code, out, err = cli(capsys, "fit", "--init", "msd_vgg", "-o", "p3", "--labels", str(labels), "--prune", "0.5,0.01,1,1,1")
    assert code == 2 and "[0.05, 1]" in err, err
    if (home / "models" / "msd_vgg").exists():
        code, out, err = cli(capsys, "fit", "--init", "msd_vgg", "-o", "p3", "--labels", str(labels), "--prune", "0.5,0.5")
        assert code == 1 and "one fraction or 5" in err and len(err.strip().splitlines()) == 1, err
    _no_partial_models(home)


def test_prune_needs_a_prunable_init_one_line(tmp_path, home, capsys):
    from clirun import run as cli

    labels = _tones(tmp_path / "tones", n_per_class=2)
    code, out, err = cli(capsys, "fit", "--arch", "vgg", "-o", "p1", "--labels", str(labels), "--prune", "0.5")
    assert code == 1 and "--prune needs --init" in err and len(err.strip().splitlines()) == 1, err
    if (home / "models" / "msd_musicnn").exists():
        code, out, err = cli(capsys, "fit", "--init", "msd_musicnn", "-o", "p2", "--labels", str(labels), "--prune", "0.5")
        assert code == 1 and "--prune works on vgg" in err and len(err.strip().splitlines()) == 1, err
    _no_partial_models(home)
