"""``embedkit models``: list, show and fetch the pretrained models (cards and cache)."""
from __future__ import annotations

import click

from ._common import emit_json
from .options import force_option, json_option


@click.group("models")
def models() -> None:
    """List, show and fetch pretrained models (converted from the musicnn 0.1.0 wheel, ISC licence)."""


def _summary(card: dict) -> dict:
    return {
        "name": card["name"],
        "installed": card["installed"],
        "architecture": card["architecture"],
        "trained_on": card["trained_on"],
        "parameters": card.get("parameters"),
        "dim": sum(b["size"] for b in card["feature_blocks"]),
        "roc_auc": card["reported_test_metrics"]["roc_auc"],
        "pr_auc": card["reported_test_metrics"]["pr_auc"],
    }


@models.command("list")
@json_option
def list_models(as_json: bool) -> None:
    """One line per model: installed or not, architecture, feature size, reported test AUC."""
    from embedkit import pretrained

    from embedkit import model_cache

    rows = [_summary(pretrained.card(n)) for n in pretrained.MODEL_NAMES]
    trained = model_cache.summaries()  # models trained by `embedkit fit` (issue 10)
    if as_json:
        emit_json(rows + trained)
        return
    click.echo(f"{'name':<12} {'installed':<9} {'arch':<8} {'dim':>4} {'params':>8} {'ROC-AUC':>7} {'PR-AUC':>6}  trained on")
    for r in rows:
        default = " (default)" if r["name"] == pretrained.DEFAULT_MODEL else ""
        click.echo(
            f"{r['name']:<12} {'yes' if r['installed'] else 'no':<9} {r['architecture']:<8} {r['dim']:>4} "
            f"{r['parameters']:>8} {r['roc_auc']:>7.4f} {r['pr_auc']:>6.4f}  {r['trained_on']}{default}"
        )
    for line in model_cache.format_rows(trained):
        click.echo(line)
    if not all(r["installed"] for r in rows):
        click.echo("install with: embedkit models fetch --all", err=True)


@models.command("show")
@click.argument("name")
@json_option
def show(name: str, as_json: bool) -> None:
    """Print the full card of model NAME: source, licence, preprocessing, labels, feature layout."""
    from embedkit import pretrained

    card = pretrained.card(name)
    if as_json:
        emit_json(card)
        return
    if "training" in card:  # trained by `embedkit fit` (issue 10)
        from .fit_cmd import show_trained

        show_trained(card)
        return
    src = card["source"]
    click.echo(f"{card['name']}: {card['description']}")
    click.echo(f"  installed:    {'yes, ' + card['path'] if card['installed'] else 'no (embedkit models fetch ' + card['name'] + ')'}")
    click.echo(f"  source:       {src['package']} {src['version']} ({src['file']}, {src['checkpoint']}), {src['authors']}")
    click.echo(f"  licence:      {card['license']}")
    click.echo(f"  architecture: {card['architecture']}, {card.get('parameters')} parameters")
    click.echo(f"  trained on:   {card['trained_on']}; reported test ROC-AUC {card['reported_test_metrics']['roc_auc']:.4f}, "
               f"PR-AUC {card['reported_test_metrics']['pr_auc']:.4f}")
    pre = card["preprocessing"]
    click.echo(f"  input:        {pre['sample_rate']} Hz mono, log-mel {pre['n_mels']} bands, n_fft {pre['n_fft']}, hop "
               f"{pre['hop_length']}, patches of {pre['patch_frames']} frames ({card['input']['patch_seconds']} s)")
    echo_features_and_labels(card)
    if card["installed"]:
        click.echo(f"  weights sha256: {card['weights_sha256']}")


def echo_features_and_labels(card: dict) -> None:
    """The ``features`` (feature blocks, per patch, in order) and ``labels`` lines of `embedkit models show`."""
    start = 0
    click.echo("  features:     (per patch, concatenated in this order)")
    for b in card["feature_blocks"]:
        click.echo(f"    [{start:>4}:{start + b['size']:<4}] {b['name']:<12} {b['source']}")
        start += b["size"]
    click.echo(f"  labels ({len(card['labels'])}): {', '.join(card['labels'])}")


@models.command("fetch")
@click.argument("names", nargs=-1)
@click.option("--all", "all_models", is_flag=True, help="Fetch and convert all four models.")
@click.option("--wheel", type=click.Path(exists=True, dir_okay=False), help="Use this local musicnn-0.1.0 wheel (offline).")
@force_option  # convert again even if the cache is valid
@json_option
def fetch(names: tuple[str, ...], all_models: bool, wheel: str | None, force: bool, as_json: bool) -> None:
    """Download the musicnn 0.1.0 wheel (pip), verify it, convert NAMES (default msd_vgg) to Keras weights."""
    from embedkit import pretrained
    from embedkit.pretrained.convert import convert

    targets = list(pretrained.MODEL_NAMES) if all_models else [pretrained.check_name(n) for n in names] or [pretrained.DEFAULT_MODEL]
    cards = []
    for name in targets:
        card = convert(name, wheel=wheel, force=force)
        cards.append({"name": name, "path": str(pretrained.model_dir(name)), "weights_sha256": card["weights_sha256"],
                      "parameters": card["parameters"]})
        if not as_json:
            click.echo(f"{name}: ok ({card['parameters']} parameters) -> {pretrained.model_dir(name)}")
    if as_json:
        emit_json(cards)


from .fit_cmd import archs as _archs  # noqa: E402  (issue 10: `embedkit models archs`)

models.add_command(_archs)
