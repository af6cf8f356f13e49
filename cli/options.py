"""Every command-line option of embedkit, defined ONCE, with one meaning everywhere (like pip-tools' options.py).

How to use: ``from .options import json_option, top_k_option`` and stack them on a click command. How to add
an option: define it here, in the section it belongs to, as ``<name>_option = click.option(...)``; never
redefine it in a command module (tests/test_cli_options.py checks that no two commands spell the same flag
differently). An option whose meaning had to split keeps its old spelling as a *hidden alias*
(``aliases=[...]`` below): it still works, it is not shown in ``--help``.

Sections: global (-q/-v, --json) · model and vector settings (-m, --layers, --aggregate, --batch-size,
--excerpt, --precision goes here) · inputs (--store, --from-list, --workers, ...) · results (-k, --metric,
--segments, --patches) · artefacts (-f/--force).

Vocabulary (one meaning each):

- ``-k/--top-k N``: how many results to show per query / file (default 10 everywhere).
- ``--patches``: also keep / include the per-patch vectors (embed, store export).
- ``--segments``: segment search: search / index the per-patch vectors (similar, index build).
- ``--metric cosine|l2``: the distance of a vector index. The inner-CV selection metric of heads is
  ``--select-metric`` (old spelling ``--metric`` kept as a hidden alias there).
- ``-f/--force``: replace an existing artefact of the same kind (never a foreign folder).
"""
from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import click

from embedkit.engines import DEFAULT_ENGINE, ENGINES
from embedkit.pretrained import DEFAULT_MODEL

__all__ = [
    "DEFAULT_MODEL", "AliasOption", "FiniteFloat", "TextLines", "compose", "option_object",
    "verbose_option", "quiet_option", "json_option",
    "model_option", "layers_option", "aggregate_option", "batch_size_option", "excerpt_option", "precision_option",
    "store_option", "store_argument", "from_list_option", "ext_option", "glob_option", "exclude_option",
    "hidden_option", "workers_option", "engine_option", "address_option", "wait_option", "retry_failed_option", "tags_option", "queries_option",
    "top_k_option", "patches_option", "segments_option", "distance_metric_option", "select_metric_option",
    "force_option", "space_option",
]


# ---- helpers ------------------------------------------------------------------------------------------


class AliasOption(click.Option):
    """A click option with hidden alias spellings: accepted on the command line, left out of ``--help``."""

    def __init__(self, param_decls: Sequence[str], *, aliases: Sequence[str] = (), **kw: Any) -> None:
        self.hidden_aliases = tuple(aliases)
        super().__init__([*param_decls[:-1], *aliases, param_decls[-1]] if _has_dest(param_decls)
                         else [*param_decls, *aliases], **kw)

    def get_help_record(self, ctx: click.Context) -> tuple[str, str] | None:
        saved = self.opts
        self.opts = [o for o in self.opts if o not in self.hidden_aliases]
        try:
            return super().get_help_record(ctx)
        finally:
            self.opts = saved


def _has_dest(decls: Sequence[str]) -> bool:
    return bool(decls) and not decls[-1].startswith("-")


class FiniteFloat(click.ParamType):
    """A float that must be finite (no nan/inf) and at least ``min``; the unit goes in the error message."""

    name = "float"

    def __init__(self, min: float | None = None, unit: str = "") -> None:
        self.min = min
        self.unit = unit

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> float:
        try:
            x = float(value)
        except (TypeError, ValueError):
            self.fail(f"{value!r} is not a number", param, ctx)
        if not math.isfinite(x):
            self.fail(f"{value!r} is not a finite number", param, ctx)
        if self.min is not None and x < self.min:
            self.fail(f"{x:g} is below the minimum of {self.min:g}{self.unit}", param, ctx)
        return x


class TextLines(click.ParamType):
    """A text file of lines ('-' = stdin) read up front: non-blank lines not starting with '#', stripped.

    Refuses, with one line naming the file and line, a file that holds NUL bytes or is not text, so that
    a binary file given by mistake is a usage error and never reaches the filesystem calls.
    """

    name = "file"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> list[str]:
        if isinstance(value, list):
            return value
        import sys

        name = "stdin" if value == "-" else str(value)
        try:
            if value == "-":
                data = sys.stdin.buffer.read() if hasattr(sys.stdin, "buffer") else sys.stdin.read().encode()
            else:
                with open(value, "rb") as f:
                    data = f.read()
        except OSError as exc:
            self.fail(f"{name}: cannot read ({exc.strerror or exc})", param, ctx)
        lines = []
        for n, raw in enumerate(data.split(b"\n"), 1):
            if b"\0" in raw:
                self.fail(f"{name}: line {n} contains a NUL byte (not a text list; give one path per line)", param, ctx)
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError:
                line = raw.decode("utf-8", errors="surrogateescape")  # file names need not be UTF-8
            line = line.rstrip("\r").strip()
            if line and not line.startswith("#"):
                lines.append(line)
        return lines


def option_object(decorator: Callable) -> click.Parameter:
    """The ``click.Option`` that an option decorator adds (to merge options into an existing command)."""

    def dummy() -> None:
        pass

    decorator(dummy)
    return dummy.__click_params__[-1]  # type: ignore[attr-defined]


def compose(*decorators: Callable) -> Callable:
    """Apply several click decorators at once: ``@compose(json_option, model_option)``."""

    def wrap(f: Callable) -> Callable:
        for d in reversed(decorators):
            f = d(f)
        return f

    return wrap


# ---- global: every command accepts these (cli/main.py adds -q/-v to every subcommand too) -------------


def _set_global(ctx: click.Context, param: click.Parameter, value: Any) -> Any:
    """Callback of -q/-v given after a subcommand: update the root's settings and the logging level."""
    if not value:
        return value
    root = ctx.find_root()
    root.obj = root.obj if isinstance(root.obj, dict) else {}
    if param.name == "quiet":
        root.obj["quiet"] = True
    else:
        root.obj["verbose"] = int(root.obj.get("verbose") or 0) + int(value)
    from ._common import configure_logging

    configure_logging(verbose=int(root.obj.get("verbose") or 0), quiet=bool(root.obj.get("quiet")))
    return value


verbose_option = click.option("-v", "--verbose", count=True, expose_value=False, callback=_set_global,
                              help="More log output on stderr (-vv for debug); shows the traceback of an error.")
quiet_option = click.option("-q", "--quiet", is_flag=True, expose_value=False, callback=_set_global,
                            help="No progress bars, logs or warnings; results and errors only.")
json_option = click.option("--json", "as_json", is_flag=True, help="Machine-readable JSON on stdout.")


# ---- model and vector settings ---------------------------------------------------------------------------
# (issue 15 adds --precision here; issue 16 lets --model take 'a+b' for a multi-model vector)

model_option = click.option(
    "-m", "--model", default=DEFAULT_MODEL, show_default=True,
    help="Pretrained model (see 'embedkit models list'); several joined with '+' (e.g. msd_vgg+msd_musicnn) "
         "give one vector of all their blocks.")
layers_option = click.option(
    "--layers",
    default=None,
    metavar="LIST",
    help="Feature blocks to keep, by number or name (e.g. '1,2,3' or 'pool4,pool5'). Default: all.",
)
aggregate_option = click.option(
    "--aggregate",
    type=click.Choice(["mean", "mean+std"]),
    default="mean",
    show_default=True,
    help="How patch features become one track vector.",
)
batch_size_option = click.option(
    "--batch-size", type=click.IntRange(1, 4096), default=32, show_default=True, help="Patches per network batch."
)
excerpt_option = click.option(
    "--excerpt", type=FiniteFloat(min=3.0, unit=" s (one 3-s patch)"), default=None, metavar="SECONDS",
    help="Embed only a centred excerpt of this many seconds of each file (MSD used 30-s previews; at least 3).")
precision_option = click.option(
    "--precision", type=click.Choice(["fp32", "bf16", "int8", "int8dyn", "auto"], case_sensitive=False), default=None,
    help="Numeric precision of the network: fp32 (the reference; default), bf16, int8 (full integer), int8dyn "
         "(int8 weights, activations quantized at run time), or auto (the fastest that meets its fidelity bar on "
         "this machine). A store keeps the precision it was made with.")


# ---- inputs --------------------------------------------------------------------------------------------

store_argument = click.argument("store_path", metavar="STORE", type=click.Path(file_okay=False))
store_option = click.option(
    "--store", type=click.Path(file_okay=False), default=None, metavar="STORE",
    help="Embed into this resumable store folder (created on first use). A rerun skips files already embedded, "
         "recognises moved files by content hash, and embeds only what is new.")
from_list_option = click.option(
    "--from-list", type=TextLines(), default=None, metavar="FILE",
    help="Also embed the files/folders listed in FILE, one per line ('-' = stdin).")
ext_option = click.option(
    "--ext", "extensions", default=None, metavar="LIST",
    help="Extensions to take when walking folders, e.g. 'ogg,flac' (default: all common audio formats).")
glob_option = click.option(
    "--glob", "globs", multiple=True, metavar="PATTERN",
    help="Only walked files whose name or relative path matches PATTERN (repeatable; overrides --ext).")
exclude_option = click.option("--exclude", multiple=True, metavar="PATTERN",
                              help="Skip walked files matching PATTERN (repeatable).")
hidden_option = click.option("--hidden", "include_hidden", is_flag=True,
                             help="Also walk hidden files and folders (names starting with '.').")
workers_option = click.option("--workers", type=click.IntRange(1, 64), default=2, show_default=True,
                              help="Decoding threads running ahead of the network.")
engine_option = click.option(
    "--engine", type=click.Choice(ENGINES), default=DEFAULT_ENGINE, show_default=True,
    help="Where the network runs: this process, or a Ray Data actor pool (this machine, or a cluster with "
         "--address; needs pip install 'embedkit[ray]'). The store and its vectors are the same.")
address_option = click.option(
    "--address", default=None, metavar="ADDR",
    help="Ray cluster for --engine ray (ray://HEAD:10001, HOST:6379 or auto; default: start Ray here).")
wait_option = click.option(
    "--wait", type=FiniteFloat(min=0.0, unit=" s"), default=0.0, metavar="SECONDS",
    help="If another process is writing the store, wait up to SECONDS for it (default: fail at once).")
retry_failed_option = click.option("--retry-failed", is_flag=True,
                                   help="Retry files that failed in an earlier run (default: skip them).")
tags_option = click.option("--tags", is_flag=True, help="Also keep the tag probabilities of each file (new store only).")
queries_option = click.option("--queries", "queries_file", type=TextLines(), default=None, metavar="FILE",
                              help="More queries, one per line ('-' reads stdin).")


# ---- results ---------------------------------------------------------------------------------------------

top_k_option = click.option("-k", "--top-k", "k", type=click.IntRange(1), default=10, show_default=True,
                            help="How many results to show per query or file.")
patches_option = click.option("--patches", is_flag=True,
                              help="Also keep / include the per-patch vectors (one per 3-s patch, with start times).")
segments_option = click.option(
    "--segments", cls=AliasOption, aliases=["--patches"], is_flag=True,
    help="Segment search: over the per-patch vectors (needs a store embedded with --patches).")
distance_metric_option = click.option(
    "--metric", type=click.Choice(["cosine", "l2"]), default="cosine", show_default=True,
    help="Distance of the vector index; cosine: L2-normalised vectors, inner product.")
select_metric_option = click.option(
    "--select-metric", "selection_metric", cls=AliasOption, aliases=["--metric"], default=None, metavar="NAME",
    help="Inner-CV metric the head maximises: accuracy, balanced_accuracy, macro_f1 | r2 | roc_auc, pr_auc.")


# ---- artefacts -------------------------------------------------------------------------------------------

force_option = click.option("-f", "--force", is_flag=True,
                            help="Replace an existing output of the same kind (never a folder of other files).")


# ---- similarity spaces (issue 12) --------------------------------------------------------------------------

space_option = click.option(
    "--space", default=None, metavar="NAME",
    help="Compare vectors in similarity space NAME of the store ('embedkit metric fit' / 'metric baseline'; "
         "'index build --space auto' chooses the zero-label baseline now). Default: raw cosine.")
