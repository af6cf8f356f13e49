"""The ``embedkit`` command: a click group whose subcommands are imported only when used.

Importing this module (and ``embedkit --help``) never imports TensorFlow or FAISS.
"""
from __future__ import annotations

import importlib
import sys

import click

from embedkit._version import __version__

from ._common import run_guarded

#: command name -> "module:attribute" (relative to embedkit.cli), imported lazily.
COMMANDS: dict[str, str] = {
    "models": "models_cmd:models",
    "fit": "fit_cmd:fit",
    "tag": "tag_cmd:tag",
    "embed": "embed_cmd:embed",
    "store": "store_cmd:store",
    "index": "index_cmd:index",
    "similar": "similar_cmd:similar",
    "recommend": "recommend_cmd:recommend",
    "train": "heads_cmd:train",
    "evaluate": "heads_cmd:evaluate",
    "predict": "heads_cmd:predict",
    "datasets": "datasets_cmd:datasets",
    "demo": "demo_cmd:demo",
    "serve": "serve_cmd:serve",
    "highlight": "highlight_cmd:highlight",
    "metric": "metric_cmd:metric",
}

_HELP = {
    "models": "List, show and fetch pretrained models.",
    "fit": "Train a zoo architecture: distil a teacher, learn labels, or fine-tune.",
    "tag": "Print MSD/MTT tag probabilities for audio files.",
    "embed": "Embed audio files or whole folders (into a resumable store with --store).",
    "store": "Inspect, export and prune embedding stores.",
    "index": "Build and inspect FAISS similarity indexes over a store.",
    "similar": "Find the songs nearest to a query (id, path, audio file or vector).",
    "recommend": "Content-based and cold-start recommendations from a listening history.",
    "train": "Train a small classifier/regressor head on store vectors.",
    "evaluate": "Nested cross-validation of a head: honest metrics, learning curves.",
    "predict": "Predict labels/values with a trained head.",
    "datasets": "Readers for GTZAN, Ballroom, EmoMusic, Jamendo, MagnaTagATune, FMA layouts.",
    "demo": "Run the main job end to end on a built-in synthesized example.",
    "serve": "A local web page to explore a store: map, listen, tags, neighbours.",
    "highlight": "The most representative segment of each track (attention, tags, loudness, repetition).",
    "metric": "Similarity spaces: learn one from groups or segments, or a zero-label baseline.",
}


class LazyGroup(click.Group):
    """A group that imports a subcommand's module only when that subcommand runs."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        target = COMMANDS.get(cmd_name)
        if target is None:
            return None
        module_name, attr = target.split(":")
        return with_global_options(getattr(importlib.import_module(f"{__package__}.{module_name}"), attr))

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        # Short help without importing the subcommand modules.
        rows = [(name, _HELP.get(name, "")) for name in self.list_commands(ctx)]
        with formatter.section("Commands"):
            formatter.write_dl(rows)


def with_global_options(cmd: click.Command) -> click.Command:
    """Let ``cmd`` (and every subcommand of a group) accept -q/-v after its name: ``embed DIR --store S -q``.

    Applied by the group to each command it loads, so no command module needs to repeat them.
    """
    from .options import option_object, quiet_option, verbose_option

    if getattr(cmd, "_embedkit_global_options", False):
        return cmd
    if isinstance(cmd, click.Group):
        for sub in cmd.commands.values():
            with_global_options(sub)
    taken = {o for p in cmd.params for o in getattr(p, "opts", [])}
    for deco in (verbose_option, quiet_option):
        opt = option_object(deco)
        if not set(opt.opts) & taken:
            cmd.params.append(opt)
    cmd._embedkit_global_options = True  # type: ignore[attr-defined]
    return cmd


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="embedkit")
@click.option("-v", "--verbose", count=True, help="More log output on stderr (-vv for debug); tracebacks of errors. "
              "Accepted after the subcommand too.")
@click.option("-q", "--quiet", is_flag=True, help="No progress bars, logs or warnings; results and errors only. "
              "Accepted after the subcommand too.")
@click.pass_context
def cli(ctx: click.Context, verbose: int, quiet: bool) -> None:
    """embedkit: music embeddings from an MSD-pretrained CNN, small heads, similarity and recommendation.

    Results go to stdout, progress and logs to stderr. Exit codes: 0 ok, 1 error, 2 usage,
    3 finished but some inputs failed.
    """
    from ._common import configure_logging

    ctx.obj = {"verbose": verbose, "quiet": quiet}
    configure_logging(verbose=verbose, quiet=quiet)


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point."""
    sys.exit(run_guarded(cli, argv))


if __name__ == "__main__":  # pragma: no cover
    main()

