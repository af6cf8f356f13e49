"""Options, output and exit-code conventions shared by all embedkit commands.

Define each option once here and reuse it (as black and pip-tools do). Results go to stdout;
progress bars, logs and warnings to stderr. Exit codes: 0 ok, 1 error, 2 usage (click's own),
3 finished but some inputs failed.
"""
from __future__ import annotations

import json
import logging
import os
import sys
from collections.abc import Callable
from typing import Any

import click

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_PARTIAL = 3

log = logging.getLogger("embedkit")


def configure_logging(*, verbose: int = 0, quiet: bool = False) -> None:
    """Send embedkit's logs to stderr; silence TensorFlow's C++ chatter unless -vv."""
    level = logging.ERROR if quiet else (logging.DEBUG if verbose > 1 else logging.INFO if verbose else logging.WARNING)
    logging.basicConfig(stream=sys.stderr, level=level, format="embedkit: %(message)s")
    logging.getLogger("embedkit").setLevel(level)
    if verbose < 2:
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


class PartialFailure(Exception):
    """Raised by a command that finished but had some inputs fail (exit code 3)."""


def run_guarded(group: click.Group, argv: list[str] | None) -> int:
    """Run the click group; turn embedkit's own errors into one-line messages and exit codes."""
    from embedkit.errors import EmbedkitError

    try:
        group.main(args=argv, prog_name="embedkit", standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("embedkit: aborted", err=True)
        return EXIT_ERROR
    except click.ClickException as exc:
        exc.show()
        return exc.exit_code
    except click.exceptions.Exit as exc:
        return exc.exit_code
    except PartialFailure as exc:
        if str(exc):
            click.echo(f"embedkit: {exc}", err=True)
        return EXIT_PARTIAL
    except EmbedkitError as exc:
        click.echo(f"embedkit: error: {exc}", err=True)
        return EXIT_ERROR
    except KeyboardInterrupt:
        click.echo("embedkit: interrupted", err=True)
        return 130
    except BrokenPipeError:
        return EXIT_OK
    return EXIT_OK


def emit_json(obj: Any) -> None:
    """Write one JSON document to stdout (numpy scalars and arrays converted)."""
    click.echo(json.dumps(obj, indent=2, default=_json_default, ensure_ascii=False))


def _json_default(o: Any) -> Any:
    import numpy as np

    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, (np.floating, np.integer)):
        return o.item()
    if isinstance(o, (set, frozenset)):
        return sorted(o)
    return str(o)


def progress_enabled(ctx: click.Context | None = None) -> bool:
    """Progress bars only when not --quiet and stderr is a terminal or EMBEDKIT_PROGRESS=1."""
    ctx = ctx or click.get_current_context(silent=True)
    quiet = bool(ctx and ctx.obj and ctx.obj.get("quiet"))
    if quiet:
        return False
    from embedkit.progress import default_enabled

    return default_enabled()


# ---- reusable options -------------------------------------------------------------------------

json_option = click.option("--json", "as_json", is_flag=True, help="Machine-readable JSON on stdout.")
model_option = click.option(
    "-m", "--model", default="msd_vgg", show_default=True, help="Pretrained model (see 'embedkit models list')."
)
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
k_option = click.option("-k", "--top-k", "k", type=click.IntRange(1), default=10, show_default=True, help="Results per query.")


def compose(*decorators: Callable) -> Callable:
    """Apply several click decorators at once: ``@compose(json_option, model_option)``."""

    def wrap(f: Callable) -> Callable:
        for d in reversed(decorators):
            f = d(f)
        return f

    return wrap
