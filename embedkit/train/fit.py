"""`fit`: train a zoo architecture from a teacher, from labels, or by fine-tuning, and save it to the cache.

Order of work (nothing is written to the model cache until the very end, and then atomically):
check the name, architecture, teacher and cache first → collect files and labels → grouped validation
split → decode (+ teacher) into the run folder → build (and initialise / freeze) → `loop.train` with
per-epoch checkpoints → learning curve → `model_cache.save` with a card.
Run folder: ``$EMBEDKIT_HOME/runs/<name>`` unless given; rerunning the same command resumes there.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from .. import frontend, model_cache
from ..errors import EmbedkitError
from . import sources
from .augment import AugmentConfig
from .checkpoint import json_safe
from .data import PatchSampler, prepare
from .losses import TASKS

VALID_WINDOWS_PER_TRACK = 10
VALID_BYTES = 256 << 20  # validation inputs held in memory: at most ~256 MiB (at least one window per track)


def _check_cache_writable() -> None:
    root = model_cache.root()
    try:
        root.mkdir(parents=True, exist_ok=True)
        fd, p = tempfile.mkstemp(prefix=".write-test.", dir=root)
        os.close(fd)
        os.unlink(p)
    except OSError as exc:
        from ..sidecar import os_error_text

        raise model_cache.ModelCacheError(os_error_text(root, exc, action="model cache is not writable")) from None


def feature_scale(feats: np.ndarray) -> np.ndarray:
    """Per-dimension scale ``(D,)`` that standardises teacher features ``(n, D)`` for feature matching: their
    standard deviation, floored at a tenth of the median one, so a dimension that happens to be (almost)
    constant on the training tracks (a ReLU channel silent there) cannot blow up on other tracks."""
    std = feats.std(0)
    return np.maximum(std, 0.1 * float(np.median(std)) + 1e-6).astype(np.float32)


def _pool_taps(out: dict, names: list[str]):
    from keras import layers, ops

    def pool(t):
        return ops.mean(t, axis=(1, 2)) if len(t.shape) == 4 else (ops.mean(t, axis=1) if len(t.shape) == 3 else t)

    return layers.Concatenate(name="pooled_taps")([layers.Lambda(pool, name=f"pool_{n}")(out[n]) for n in names])


def build_trainer(backbone, fm_dim: int | None):
    """Wrap a backbone for training: outputs ``logits`` (and ``proj``, a linear map of the pooled taps)."""
    import keras

    from .. import backbones

    out = {"logits": backbone.output["logits"]}
    if fm_dim:
        pooled = _pool_taps(backbone.output, backbones.tap_names(backbone))
        out["proj"] = keras.layers.Dense(fm_dim, name="fm_proj")(pooled)
    return keras.Model(backbone.input, out, name="trainer")


def init_from(backbone, init: str, n_classes: int) -> str:
    """Copy the pretrained model ``init``'s weights into ``backbone`` (all layers but a resized ``logits``)."""
    from .. import backbones, pretrained

    card = pretrained.card(init)
    src = backbones.build(card["architecture"])
    src.load_weights(str(pretrained.weights_path(init)))
    for layer in src.layers:
        if not layer.weights:
            continue
        dst = backbone.get_layer(layer.name)
        if layer.name == "logits" and src.get_layer("logits").weights[0].shape[-1] != n_classes:
            continue
        dst.set_weights(layer.get_weights())
    return card["architecture"]


def freeze_first(backbone, n_blocks: int) -> list[str]:
    """Freeze every layer up to the ``n_blocks``-th tap in graph order; returns the frozen layer names."""
    from .. import backbones

    if n_blocks <= 0:
        return []
    order = {layer.name: i for i, layer in enumerate(backbone.layers)}
    tap_layers = sorted(order[backbone.output[n]._keras_history[0].name] for n in backbones.tap_names(backbone))
    if n_blocks > len(tap_layers):
        raise EmbedkitError(f"--freeze {n_blocks}: the model has only {len(tap_layers)} blocks")
    cut = tap_layers[n_blocks - 1]
    frozen = []
    for layer in backbone.layers[: cut + 1]:
        if layer.weights:
            layer.trainable = False
            frozen.append(layer.name)
    return frozen


def fit(inputs: list[str], *, arch: str | None = None, name: str, teacher: str | None = None,
        labels: str | None = None, task: str = "auto", group_column: str | None = None,
        groups: dict[str, str] | None = None, init: str | None = None, freeze: int = 0,
        prune: float | list[float] | None = None,
        input_s: float | None = None, epochs: int = 20, batch_size: int = 16, lr: float = 1e-3,
        patience: int = 5, valid_fraction: float = 0.2, augment: str | None = None,
        feature_matching: float = 0.0, seed: int = 0, excerpt_s: float | None = None,
        max_cpu_s: float | None = None, windows_per_epoch: int | None = None, run_dir: str | None = None,
        restart: bool = False, force: bool = False, progress: bool = False,
        arch_options: dict[str, Any] | None = None, log: Callable[[str], None] | None = None,
        stop_after: int | None = None) -> dict[str, Any]:
    """Train and save model ``name``; returns its card (``training`` holds history and metrics).

    Exactly one of ``teacher`` (distillation) or ``labels`` (a labels CSV) gives the targets; ``init``
    (a pretrained model) fine-tunes it, its architecture replacing ``arch``; with ``prune`` (a fraction
    of filters to keep, or one per conv block) the network is a narrower copy of ``init`` initialised by L1-norm filter pruning
    (`embedkit.train.prune`). ``groups`` maps a path to a split group (e.g. a package), overriding
    per-track grouping.
    """
    from .. import backbones, pretrained
    from . import teacher as teacher_mod

    log = log or (lambda m: print(m, file=sys.stderr))
    key = model_cache.check_new_name(name)
    if model_cache.exists(key) and not force:
        raise model_cache.ModelCacheError(f"a model called {key!r} already exists in {model_cache.root()}; pass --force to replace it")
    if (teacher is None) == (labels is None):
        raise EmbedkitError("give exactly one training signal: --teacher MODEL (distillation) or --labels CSV")
    if init is not None:
        init = pretrained.check_name(init)
        pretrained.weights_path(init, verify=False)
        arch = pretrained.card(init)["architecture"]
    if arch is None:
        raise EmbedkitError("choose an architecture with --arch (see: embedkit models archs) or --init MODEL")
    if freeze and init is None:
        raise EmbedkitError("--freeze needs --init MODEL (a pretrained network to keep frozen)")
    if prune is not None:
        from .prune import pruned_options

        if init is None:
            raise EmbedkitError("--prune needs --init MODEL (the pretrained network to prune)")
        arch_options = {**(arch_options or {}), **pruned_options(arch, prune)}
    try:
        spec = backbones.get(arch)
    except ValueError as exc:
        raise EmbedkitError(f"{exc}; see: embedkit models archs") from None
    if teacher is not None:
        teacher = teacher.strip().lower()
        teacher_mod.check(teacher)
    _check_cache_writable()
    aug = AugmentConfig.parse(augment)
    if input_s is None:
        input_s = 2.992 if spec.fixed_input else spec.input_s
    if spec.fixed_input and abs(input_s - 2.992) > 1e-3:
        raise EmbedkitError(f"architecture {spec.name!r} takes 187-frame (2.992 s) inputs only; drop --input-seconds")
    if not 1.0 <= input_s <= 30.0:
        raise EmbedkitError(f"--input-seconds {input_s} is outside 1–30 s")
    input_samples = frontend.PATCH_FRAMES * frontend.HOP if spec.fixed_input else int(round(input_s * 16000))

    # ---- data ------------------------------------------------------------------------------------
    paths = sources.collect(inputs) if inputs else []
    if labels is not None:
        tracks, task, names = sources.labelled_tracks(labels, paths, task=task, group=group_column)
        if task not in TASKS:
            raise EmbedkitError(f"unsupported task {task!r}")
    else:
        task = "distill"
        tracks = [sources.Track(p, p) for p in paths]
        names = []
    if groups:
        for t in tracks:
            t.group = groups.get(t.path, t.group)
    target_stats = None
    if task == "regression":
        ys = np.stack([t.target for t in tracks])
        target_stats = (ys.mean(0), ys.std(0) + 1e-8)
        for t in tracks:
            t.target = ((t.target - target_stats[0]) / target_stats[1]).astype(np.float32)
    train_t, valid_t = sources.split(tracks, valid_fraction, seed)
    labels_sha = hashlib.sha256(Path(labels).read_bytes()).hexdigest() if labels else ""
    data_fp = sources.fingerprint(tracks, f"{labels_sha}|{excerpt_s}|{valid_fraction}|{seed}")

    run = Path(run_dir) if run_dir else pretrained.home() / "runs" / key
    config = {"arch": spec.name, "task": task, "teacher": teacher, "init": init, "freeze": freeze, "input_s": input_s,
              "batch_size": batch_size, "lr": lr, "augment": aug.to_json(), "feature_matching": feature_matching,
              "seed": seed, "data_fingerprint": data_fp, "arch_options": arch_options or {},
              "windows_per_epoch": windows_per_epoch, **({"prune": prune} if prune is not None else {})}
    if restart:
        shutil.rmtree(run, ignore_errors=True)
    run.mkdir(parents=True, exist_ok=True)
    cfg_path = run / "config.json"
    if cfg_path.exists() and json.loads(cfg_path.read_text()) != json.loads(json.dumps(config)):
        raise EmbedkitError(f"{run} holds a run with other settings or data; pass --restart to start over there")
    cfg_path.write_text(json.dumps(config, indent=2, sort_keys=True))

    tch = teacher_mod.Teacher(teacher) if teacher else None
    if tch is not None:
        names = tch.labels
    prep_train = prepare(train_t, run / "prep" / "train", teacher=tch, excerpt_s=excerpt_s, progress=progress, log=log)
    prep_valid = prepare(valid_t, run / "prep" / "valid", teacher=tch, excerpt_s=excerpt_s, progress=progress, log=log)
    if not prep_train or not prep_valid:
        raise EmbedkitError("no usable audio on one side of the validation split; add more files")
    feat_mean = feat_std = None
    fm_dim = None
    if task == "distill" and feature_matching > 0:
        allf = np.concatenate([p.feats for p in prep_train])
        feat_mean, feat_std = allf.mean(0), feature_scale(allf)
        fm_dim = allf.shape[1]
    common = {"kind": spec.input_kind, "input_samples": input_samples, "targets": "teacher" if task == "distill" else "label",
              "feat_mean": feat_mean, "feat_std": feat_std}
    sampler = PatchSampler(prep_train, augment=aug, seed=seed, **common)
    window_bytes = 4 * (input_samples if spec.input_kind == "waveform" else (input_samples // frontend.HOP) * frontend.N_MELS)
    per_track = max(1, min(VALID_WINDOWS_PER_TRACK, VALID_BYTES // (window_bytes * len(prep_valid))))
    val = PatchSampler(prep_valid, seed=seed, **common).fixed_windows(per_track)[:3]

    # ---- model -----------------------------------------------------------------------------------
    from .._tf import import_tensorflow

    import_tensorflow()
    import keras

    keras.utils.set_random_seed(seed)
    n_out = len(names)
    arch_config = backbones.config(spec.name, n_classes=n_out, **(arch_options or {}))
    if not spec.fixed_input:
        arch_config["input_len"] = None
    backbone = backbones.build(spec.name, **arch_config)
    frozen: list[str] = []
    pruning = None
    if init is not None:
        if prune is not None:
            from .prune import init_pruned

            pruning = init_pruned(backbone, init)
        else:
            init_from(backbone, init, n_out)
        frozen = freeze_first(backbone, freeze)
    trainer = build_trainer(backbone, fm_dim)
    log(f"{spec.name}: {backbone.count_params():,} parameters; {len(prep_train)} training / {len(prep_valid)} "
        f"validation tracks; task {task}")
    from .loop import train

    result = train(trainer, sampler, val, task=task, run=run, epochs=epochs, batch_size=batch_size, lr=lr,
                   patience=patience, fm_weight=feature_matching, seed=seed, windows_per_epoch=windows_per_epoch,
                   max_cpu_s=max_cpu_s, progress=progress, log=log, stop_after=stop_after)
    if result.get("interrupted"):
        return {"interrupted": True, "run": str(run), "state": result}
    curve = _curve(run, result["history"], task)

    # ---- card + cache ----------------------------------------------------------------------------
    best = next(h for h in result["history"] if h["epoch"] == result["best_epoch"])
    card = _card(spec, arch_config, backbone, names, task=task, teacher=teacher, init=init, freeze=freeze,
                 frozen=frozen, data_fp=data_fp, n_train=len(prep_train), n_valid=len(prep_valid), input_s=input_s,
                 aug=aug, seed=seed, result=result, best=best, target_stats=target_stats,
                 feature_matching=feature_matching, excerpt_s=excerpt_s, pruning=pruning)
    model_cache.save(key, backbone, json_safe(card), force=force, extra_files=[curve] if curve else [])
    return model_cache.load_card(key)


def _card(spec, arch_config, backbone, names, *, task, teacher, init, freeze, frozen, data_fp, n_train, n_valid,
          input_s, aug, seed, result, best, target_stats, feature_matching, excerpt_s, pruning=None) -> dict[str, Any]:
    from .. import __version__, backbones, inputs, pretrained

    kind = inputs.get(spec.input_kind)
    pre = dict(pretrained.source_card("msd_vgg")["preprocessing"])
    if spec.input_kind == "waveform":
        pre = {k: pre[k] for k in ("sample_rate", "resampler", "downmix", "short_clip")}
        pre.update({"input": "raw waveform, 256-sample frames", "patch_frames": frontend.PATCH_FRAMES})
    metrics = {k: v for k, v in best.items() if k not in ("epoch", "wall_s", "steps")}
    signal = f"distillation from {teacher}" if teacher else f"{task} labels"
    return {
        "description": f"{spec.family} ({spec.paper}) trained by embedkit fit: {signal}"
                       + (f", initialised from {init}" if init else "")
                       + (f" pruned to {pruning['fraction']:.0%} of its filters ({pruning['n_filters']} per block)" if pruning else ""),
        "architecture": spec.name, "arch_config": arch_config, "family": spec.family, "paper": spec.paper,
        "input_kind": spec.input_kind, "parameters": int(backbone.count_params()),
        "trained_on": f"{signal} on {n_train} tracks (data {data_fp[:12]})",
        "source": {"package": "embedkit", "version": __version__, "file": "(trained locally)", "checkpoint": "",
                   "authors": "embedkit fit", "url": ""},
        "license": "weights trained locally by the user; inherits the terms of the training audio"
                   + (f" and of {init}" if init else "") + (f" and of teacher {teacher}" if teacher else ""),
        "reported_test_metrics": {"roc_auc": metrics.get("fidelity_roc_auc", metrics.get("roc_auc")), "pr_auc": None},
        "input": {"sample_rate": 16000, "patch": list(kind.patch_shape), "patch_seconds": 2.992,
                  "train_input_seconds": input_s},
        "preprocessing": pre,
        "labels": list(names),
        "feature_blocks": backbones.feature_blocks(backbone),
        "training": {
            "mode": "distill" if teacher else ("finetune" if init else "labels"), "task": task, "teacher": teacher,
            "init": init, "freeze": freeze, "frozen_layers": frozen, "prune": pruning, "data_fingerprint": data_fp,
            "tracks_train": n_train, "tracks_valid": n_valid, "excerpt_s": excerpt_s,
            "epochs": result["epochs_run"], "best_epoch": result["best_epoch"], "stopped": result.get("stopped"),
            "cpu_s": result["cpu_s"], "epoch_wall_s": result.get("epoch_wall_s"), "metrics": metrics,
            "history": result["history"], "augment": aug.to_json(), "seed": seed, "feature_matching": feature_matching,
            "target_mean": None if target_stats is None else target_stats[0].tolist(),
            "target_std": None if target_stats is None else target_stats[1].tolist(),
        },
    }


def _curve(run: Path, history: list[dict], task: str) -> Path | None:
    """Learning curve (training and validation loss per epoch) as ``<run>/learning_curve.png``."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    ep = [h["epoch"] for h in history]
    fig, ax = plt.subplots(figsize=(5, 3.2), dpi=100)
    ax.plot(ep, [h["loss"] for h in history], "o-", label="training loss")
    ax.plot(ep, [h["val_loss"] for h in history], "s-", label="validation loss")
    ax.set_xlabel("epoch")
    ax.set_ylabel("loss")
    ax.set_title(f"embedkit fit ({task})")
    ax.legend()
    fig.tight_layout()
    out = run / "learning_curve.png"
    fig.savefig(out)
    plt.close(fig)
    return out
