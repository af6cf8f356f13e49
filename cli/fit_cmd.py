"""``embedkit fit`` (train a zoo architecture) and ``embedkit models archs`` (the zoo's families and defaults)."""
from __future__ import annotations

import click

from ._common import emit_json, json_option, progress_enabled
from .options import batch_size_option, excerpt_option, force_option


def _fractions(ctx, param, value):
    """``--prune 0.5`` or ``--prune 0.375,0.25,1,1,1`` → a float or a list of floats, each in [0.05, 1]."""
    if value is None:
        return None
    try:
        parts = [float(v) for v in value.split(",")]
    except ValueError:
        raise click.BadParameter(f"{value!r} is not a fraction or a comma list of fractions") from None
    if not all(0.05 <= f <= 1.0 for f in parts):
        raise click.BadParameter(f"{value!r}: every fraction must lie in [0.05, 1]")
    return parts[0] if len(parts) == 1 else parts


@click.command("fit")
@click.argument("inputs", nargs=-1, metavar="AUDIO|STORE...")
@click.option("--arch", help="Architecture to train (see: embedkit models archs); implied by --init.")
@click.option("-o", "--output", "name", required=True, metavar="NAME", help="Name of the trained model in the cache.")
@click.option("--teacher", metavar="MODEL", help="Distil from this pretrained model, or 'ensemble' (the four musicnn models).")
@click.option("--labels", "labels_csv", type=click.Path(dir_okay=False), help="Labels CSV (path,label / labels / values).")
@click.option("--task", type=click.Choice(["auto", "classification", "multilabel", "regression"]), default="auto",
              show_default=True, help="Task of --labels.")
@click.option("--group-column", help="Labels column keeping related files on one side of the validation split.")
@click.option("--init", metavar="MODEL", help="Fine-tune this pretrained model (its architecture replaces --arch).")
@click.option("--freeze", type=click.IntRange(0, 64), default=0, show_default=True, help="With --init: freeze the first N blocks.")
@click.option("--prune", callback=_fractions, metavar="FRACTION[,...]",
              help="With --init: a narrower copy keeping this fraction of every block's filters (largest L1 norm, "
                   "Li et al. 2017), e.g. 0.5, or one fraction per conv block, e.g. 0.375,0.25,1,1,1.")
@click.option("--input-seconds", type=click.FloatRange(1.0, 30.0), help="Training input length (default: the paper's).")
@click.option("--epochs", type=click.IntRange(1, 10000), default=20, show_default=True)
@batch_size_option
@click.option("--lr", type=click.FloatRange(1e-6, 1.0), default=1e-3, show_default=True, help="Adam learning rate.")
@click.option("--patience", type=click.IntRange(1, 10000), default=5, show_default=True, help="Early stopping patience (epochs).")
@click.option("--valid-fraction", type=click.FloatRange(0.05, 0.5), default=0.2, show_default=True)
@click.option("--augment", default="none", show_default=True,
              help="Comma list of pitch, stretch, gain, noise, specaugment, mixup (or all / none).")
@click.option("--feature-matching", type=click.FloatRange(0.0, 100.0), default=0.0, show_default=True,
              help="Weight of the feature-matching term (distillation).")
@excerpt_option  # train on the centred excerpt of each file
@click.option("--max-cpu-seconds", "max_cpu_s", type=click.FloatRange(1.0, None), help="Stop after this much process CPU time.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--run-dir", type=click.Path(file_okay=False), help="Checkpoint folder (default $EMBEDKIT_HOME/runs/NAME).")
@click.option("--restart", is_flag=True, help="Discard the run folder's checkpoints and start over.")
@force_option  # replaces an existing trained model called NAME
@json_option
def fit(inputs, arch, name, teacher, labels_csv, task, group_column, init, freeze, prune, input_seconds, epochs, batch_size, lr,
        patience, valid_fraction, augment, feature_matching, excerpt, max_cpu_s, seed, run_dir, restart, force, as_json):
    """Train a zoo architecture on AUDIO files/folders or STOREs and save it as model NAME.

    From a teacher (--teacher msd_vgg: soft tags of unlabelled audio), from labels (--labels CSV), or by
    fine-tuning (--init msd_vgg --freeze 2); --init msd_vgg --prune 0.5 --teacher msd_vgg distils a pruned,
    half-width copy of the teacher. Checkpoints every epoch; rerun the same command to resume.
    The result works everywhere a model name does: embed -m NAME, tag -m NAME, stores, heads, indexes.
    """
    from embedkit.train import fit as run_fit

    if not inputs and not labels_csv:
        raise click.UsageError("give AUDIO files, folders or STOREs (or --labels CSV)")
    card = run_fit(list(inputs), arch=arch, name=name, teacher=teacher, labels=labels_csv, task=task,
                   group_column=group_column, init=init, freeze=freeze, prune=prune, input_s=input_seconds, epochs=epochs,
                   batch_size=batch_size, lr=lr, patience=patience, valid_fraction=valid_fraction, augment=augment,
                   feature_matching=feature_matching, excerpt_s=excerpt, max_cpu_s=max_cpu_s, seed=seed,
                   run_dir=run_dir, restart=restart, force=force, progress=progress_enabled(),
                   log=lambda m: click.echo(f"embedkit fit: {m}", err=True))
    tr = card["training"]
    out = {"name": card["name"], "path": card["path"], "architecture": card["architecture"],
           "parameters": card["parameters"], "mode": tr["mode"], "epochs": tr["epochs"], "best_epoch": tr["best_epoch"],
           "stopped": tr["stopped"], "metrics": tr["metrics"], "data_fingerprint": tr["data_fingerprint"]}
    if as_json:
        emit_json(out)
        return
    shown = ", ".join(f"{k} {v:.4f}" for k, v in tr["metrics"].items() if isinstance(v, float))
    click.echo(f"{card['name']}: {card['architecture']}, {card['parameters']:,} parameters, {tr['epochs']} epochs "
               f"(best {tr['best_epoch']}): {shown} -> {card['path']}")


@click.command("archs")
@json_option
def archs(as_json: bool) -> None:
    """The trainable architectures: family, paper, input kind, default input length and configuration."""
    from embedkit import backbones

    rows = [{"arch": a.name, "family": a.family, "paper": a.paper, "input": a.input_kind, "input_s": round(a.input_s, 3), "parameters": a.params,
             "fixed_input": a.fixed_input, "defaults": a.defaults, "note": a.note} for a in backbones.ARCHS.values()]
    if as_json:
        emit_json(rows)
        return
    click.echo(f"{'arch':<15} {'input':<9} {'input s':>7} {'params':>10}  family — paper")
    for r in rows:
        click.echo(f"{r['arch']:<15} {r['input']:<9} {r['input_s']:>7} {r['parameters']:>10,}  {r['family']} — {r['paper']}")


def show_trained(card: dict) -> None:
    """`embedkit models show` for a trained model: architecture, training record, feature layout."""
    tr = card["training"]
    click.echo(f"{card['name']}: {card['description']}")
    click.echo(f"  path:         {card['path']}")
    click.echo(f"  architecture: {card['architecture']} ({card['paper']}), {card['parameters']:,} parameters, "
               f"input {card['input_kind']}, trained on {card['input']['train_input_seconds']:.2f}-s windows")
    click.echo(f"  training:     {tr['mode']} ({tr['task']}), teacher {tr['teacher']}, init {tr['init']}, "
               f"{tr['epochs']} epochs (best {tr['best_epoch']}), {tr['tracks_train']} / {tr['tracks_valid']} tracks "
               f"train / valid, data {tr['data_fingerprint'][:16]}")
    click.echo("  metrics:      " + ", ".join(f"{k} {v:.4f}" for k, v in tr["metrics"].items() if isinstance(v, float)))
    from .models_cmd import echo_features_and_labels  # lazy: models_cmd imports this module

    echo_features_and_labels(card)
    click.echo(f"  weights sha256: {card['weights_sha256']}")
