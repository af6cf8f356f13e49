"""Output and exit-code conventions shared by all embedkit commands (options live in cli/options.py).

Results go to stdout; progress bars, logs and warnings to stderr. Exit codes: 0 ok, 1 error,
2 usage (click's own), 3 finished but some inputs failed, 130 interrupted. Every error is one line
(`run_guarded`); the traceback only with -v.
"""
from __future__ import annotations

import errno
import json
import logging
import os
import sys
import traceback
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
    if quiet:  # -q: results and errors only (numpy's RuntimeWarnings, library deprecations ... are dropped)
        import warnings

        warnings.simplefilter("ignore")
    if verbose < 2:
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


class PartialFailure(Exception):
    """Raised by a command that finished but had some inputs fail (exit code 3)."""


EXIT_INTERRUPTED = 130  # 128 + SIGINT, as shells report Ctrl-C

#: errno -> (what happened, the way out), for OSErrors that a user's environment causes.
_OS_ERRORS = {
    errno.ENOSPC: ("no space left on device", "free some space and rerun; nothing half-written was kept"),
    errno.EDQUOT: ("disk quota exceeded", "free some space and rerun"),
    errno.EACCES: ("permission denied", "check the file's permissions or choose another path"),
    errno.EPERM: ("operation not permitted", "check the file's permissions or choose another path"),
    errno.EROFS: ("read-only file system", "write to another folder"),
    errno.ENOENT: ("no such file or directory", "check the path"),
    errno.ENOTDIR: ("not a directory", "check the path"),
    errno.EISDIR: ("is a directory", "give a file, or another path"),
    errno.EEXIST: ("already exists", "remove it or choose another path"),
    errno.ENAMETOOLONG: ("file name too long", "choose a shorter path"),
    errno.EMFILE: ("too many open files", "raise the limit (ulimit -n) and rerun"),
    errno.EIO: ("input/output error", "check the disk"),
}


def describe_os_error(exc: OSError) -> str:
    """One line for an OSError: the path(s), what happened, the way out."""
    what, way_out = _OS_ERRORS.get(exc.errno or -1, (exc.strerror or str(exc), ""))
    where = exc.filename if exc.filename is not None else None
    if where is not None and exc.filename2 is not None:
        where = f"{exc.filename} -> {exc.filename2}"
    head = f"{display_path(where)}: {what}" if where is not None else what
    return f"{head} ({way_out})" if way_out else head


def display_path(path: object) -> str:
    """A path fit for one line of output: control characters (newline, tab, ...) and backslashes escaped.

    File names may contain newlines; printed raw they would break line-based output (one item per line).
    ``'a\nb.ogg'`` is shown as ``a\\nb.ogg``; ordinary names are returned unchanged.
    """
    s = os.fsdecode(path) if isinstance(path, (bytes, os.PathLike)) else str(path)
    if s.isprintable() and "\\" not in s:
        return s
    out = []
    for ch in s:
        if ch == "\\":
            out.append("\\\\")
        elif ch == "\n":
            out.append("\\n")
        elif ch == "\t":
            out.append("\\t")
        elif ch == "\r":
            out.append("\\r")
        elif not ch.isprintable() or "\udc80" <= ch <= "\udcff":
            code = ord(ch) - 0xDC00 if "\udc80" <= ch <= "\udcff" else ord(ch)
            out.append(f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}")
        else:
            out.append(ch)
    return "".join(out)


def _one_line(text: str) -> str:
    """A message on one line: a newline inside (a file name holding one, a library's text) is escaped."""
    text = str(text).strip()
    return display_path(text) if not text.isprintable() else text


def error_line(msg: object) -> str:
    """``embedkit: error: MSG`` with MSG forced onto one line (for per-input errors printed as they happen)."""
    return f"embedkit: error: {_one_line(str(msg))}"


def _wants(argv: list[str], *flags: str) -> bool:
    args = argv[: argv.index("--")] if "--" in argv else argv
    return any(a in flags or (a.startswith("-v") and set(a[1:]) == {"v"} and "-v" in flags) for a in args)


def run_guarded(group: click.Group, argv: list[str] | None) -> int:
    """Run the click group; every error becomes ONE line on stderr and an exit code.

    0 ok, 1 error, 2 usage, 3 some inputs failed, 130 interrupted (Ctrl-C; a JSON object on stdout under
    --json). An error of the user's making (embedkit's own errors, OSError such as disk full or permission
    denied) is one line naming the file and the way out; anything unexpected is one line too, and the
    traceback is printed only with -v.
    """
    from embedkit.errors import EmbedkitError

    args = list(sys.argv[1:] if argv is None else argv)
    verbose = _wants(args, "-v", "--verbose")
    as_json = _wants(args, "--json")

    def fail(msg: str, code: int = EXIT_ERROR) -> int:
        if verbose:
            traceback.print_exc(file=sys.stderr)
        click.echo(f"embedkit: error: {_one_line(msg)}", err=True)
        return code

    try:
        group.main(args=args, prog_name="embedkit", standalone_mode=False)
    except click.exceptions.Abort as exc:
        if isinstance(exc.__context__, KeyboardInterrupt) or isinstance(exc.__cause__, KeyboardInterrupt):
            return _interrupted(as_json)
        click.echo("embedkit: aborted", err=True)
        return EXIT_ERROR
    except KeyboardInterrupt:
        return _interrupted(as_json)
    except click.UsageError as exc:  # one line, with the way out (click's own form takes four)
        hint = f" (see '{exc.ctx.command_path} --help')" if exc.ctx is not None else " (see 'embedkit --help')"
        click.echo(f"embedkit: error: {_one_line(exc.format_message())}{hint}", err=True)
        return exc.exit_code
    except click.ClickException as exc:
        click.echo(f"embedkit: error: {_one_line(exc.format_message())}", err=True)
        return exc.exit_code
    except click.exceptions.Exit as exc:
        return exc.exit_code
    except PartialFailure as exc:
        if str(exc):
            click.echo(f"embedkit: {_one_line(str(exc))}", err=True)
        return EXIT_PARTIAL
    except EmbedkitError as exc:
        return fail(str(exc))
    except BrokenPipeError:
        _silence_stdout()
        return EXIT_OK
    except OSError as exc:
        return fail(describe_os_error(exc))
    except MemoryError:
        return fail("out of memory (try a smaller --batch-size or fewer --workers)")
    except Exception as exc:  # a bug, or a fault no check caught yet: still one line
        where = _last_frame(exc)
        return fail(f"internal error: {type(exc).__name__}: {exc}{where} (rerun with -v for the traceback and "
                    "please report it)")
    return EXIT_OK


def _interrupted(as_json: bool) -> int:
    click.echo("embedkit: interrupted", err=True)
    if as_json:
        try:
            click.echo(json.dumps({"error": "interrupted", "exit_code": EXIT_INTERRUPTED}))
        except OSError:
            pass
    return EXIT_INTERRUPTED


def _last_frame(exc: BaseException) -> str:
    tb = traceback.extract_tb(exc.__traceback__)
    if not tb:
        return ""
    f = tb[-1]
    return f" at {os.path.basename(f.filename)}:{f.lineno}"


def _silence_stdout() -> None:
    """After a broken pipe (``embedkit ... | head``), make the interpreter's final flush quiet."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError, AttributeError):
        pass


def emit_json(obj: Any) -> None:
    """Write one JSON document to stdout (numpy scalars and arrays converted). A file name that is not UTF-8
    (a str with surrogate escapes) is written as ``\\udcNN`` escapes: valid JSON, and Python's ``json.loads``
    + ``os.fsencode`` give back its bytes."""
    text = json.dumps(obj, indent=2, default=_json_default, ensure_ascii=False)
    if not text.isascii():
        import re

        text = re.sub("[\ud800-\udfff]", lambda m: f"\\u{ord(m.group()):04x}", text)
    click.echo(text)


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


# ---- options: defined once in cli/options.py; re-exported here for modules that import them from _common ----

from .options import (  # noqa: E402
    aggregate_option,
    batch_size_option,
    compose,
    json_option,
    layers_option,
    model_option,
)
from .options import top_k_option as k_option  # noqa: E402

__all__ = ["EXIT_OK", "EXIT_ERROR", "EXIT_USAGE", "EXIT_PARTIAL", "PartialFailure", "run_guarded", "emit_json",
           "progress_enabled", "configure_logging", "display_path", "error_line", "describe_os_error", "aggregate_option", "batch_size_option", "compose",
           "json_option", "layers_option", "model_option", "k_option"]
