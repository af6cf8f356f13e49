"""Find the audio files to embed: walk folders, read list files, filter by extension or glob.

Walking is deterministic (entries sorted by name, depth first), follows symlinked folders once and
reports symlink loops, skips hidden entries (names starting with ".") unless asked, and reports
non-audio files, unreadable folders and missing paths instead of failing. Every file comes back with
the ``size``/``mtime`` that `os.scandir` already fetched, so a resume check needs no second ``stat``.
"""
from __future__ import annotations

import fnmatch
import os
import stat as _stat
import sys
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from .audio import AUDIO_EXTENSIONS


@dataclass(frozen=True)
class FoundFile:
    """One file to embed: absolute ``path`` (symlinks kept as named), ``size`` bytes, ``mtime`` seconds."""

    path: str
    size: int
    mtime: float


@dataclass
class Discovery:
    """What a walk found.

    ``files``: files to embed, in a stable order, each once. ``skipped``: ``(path, reason)`` for
    entries deliberately left out (hidden, not audio, filtered out, duplicate, symlink loop).
    ``errors``: ``(path, reason)`` for inputs that could not be examined (missing, unreadable folder):
    those count as failures.
    """

    files: list[FoundFile] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)
    errors: list[tuple[str, str]] = field(default_factory=list)

    def skipped_counts(self) -> dict[str, int]:
        """Number of skipped entries per reason kind (text before any ' (')."""
        return dict(Counter(reason.split(" (")[0] for _, reason in self.skipped))


def parse_extensions(spec: str | Sequence[str] | None) -> frozenset[str] | None:
    """``"ogg,.flac"`` or ``["ogg", "FLAC"]`` → ``{".ogg", ".flac"}``; None → None (default audio set)."""
    if spec is None:
        return None
    parts = spec.split(",") if isinstance(spec, str) else [p for s in spec for p in str(s).split(",")]
    exts = {("." + p.strip().lstrip(".")).lower() for p in parts if p.strip()}
    return frozenset(exts) or None


def read_list(source: str | os.PathLike | IO[str]) -> list[str]:
    """Paths from a list file (one per line; blank lines and lines starting with '#' ignored; '-' = stdin).

    Relative paths are taken relative to the current directory (as ``tar -T`` does).
    """
    if isinstance(source, (str, os.PathLike)) and str(source) == "-":
        lines: Iterable[str] = sys.stdin
    elif isinstance(source, (str, os.PathLike)):
        try:
            lines = Path(source).read_text(encoding="utf-8", errors="surrogateescape").splitlines()
        except OSError as exc:
            from .errors import EmbedkitError

            raise EmbedkitError(f"{source}: cannot read list file ({exc.strerror or exc})") from None
    else:
        lines = source
    out = []
    for n, line in enumerate(lines, 1):
        line = line.rstrip("\r\n")
        if "\0" in line:
            from .errors import EmbedkitError

            name = "stdin" if not isinstance(source, (str, os.PathLike)) or str(source) == "-" else os.fspath(source)
            raise EmbedkitError(f"{name} line {n}: contains a NUL byte; a list file holds one path per line as text "
                                "(use a text file, or pass the files as arguments)")
        if line.strip() and not line.lstrip().startswith("#"):
            out.append(line.strip())
    return out


def kind_of(mode: int) -> str:
    """What a non-regular file is, for messages: "named pipe (FIFO)", "socket", "device", ..."""
    if _stat.S_ISFIFO(mode):
        return "named pipe (FIFO)"
    if _stat.S_ISSOCK(mode):
        return "socket"
    if _stat.S_ISCHR(mode) or _stat.S_ISBLK(mode):
        return "device"
    if _stat.S_ISDIR(mode):
        return "folder"
    return "special file"


def file_problem(path: str | os.PathLike) -> str | None:
    """Why ``path`` cannot be embedded as a file (missing, a folder, a FIFO, ...), or None for a regular file.

    Never opens the file (opening a FIFO would block)."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return "broken symlink" if os.path.islink(path) else "no such file"
    except (OSError, ValueError) as exc:
        return f"cannot access ({getattr(exc, 'strerror', None) or exc})"
    if _stat.S_ISREG(st.st_mode):
        return None
    return f"not a regular file ({kind_of(st.st_mode)})"


class _Walker:
    def __init__(
        self,
        *,
        extensions: frozenset[str] | None,
        globs: Sequence[str] | None,
        exclude: Sequence[str] | None,
        include_hidden: bool,
        follow_symlinks: bool,
    ) -> None:
        self.extensions = extensions or AUDIO_EXTENSIONS
        self.globs = list(globs or [])
        self.exclude = list(exclude or [])
        self.include_hidden = include_hidden
        self.follow_symlinks = follow_symlinks
        self.out = Discovery()
        self._seen_files: dict[tuple[int, int], str] = {}
        self._seen_dirs: set[tuple[int, int]] = set()

    # -- filters --

    def _matches(self, rel: str, name: str, patterns: list[str]) -> bool:
        return any(fnmatch.fnmatch(rel, p) or fnmatch.fnmatch(name, p) for p in patterns)

    def _keep(self, path: str, rel: str, name: str) -> str | None:
        """None to keep the walked file ``path``, else the reason to skip it."""
        if self.exclude and self._matches(rel, name, self.exclude):
            return "excluded (--exclude)"
        if self.globs:
            return None if self._matches(rel, name, self.globs) else "filtered out (--glob)"
        ext = os.path.splitext(name)[1].lower()
        if ext not in self.extensions:
            return f"not audio ({ext or 'no extension'})"
        return None

    # -- adding files --

    def _add(self, path: str, st: os.stat_result) -> None:
        key = (st.st_dev, st.st_ino)
        first = self._seen_files.get(key)
        if first is not None:
            self.out.skipped.append((path, f"duplicate (same file as {first})"))
            return
        self._seen_files[key] = path
        self.out.files.append(FoundFile(path, int(st.st_size), float(st.st_mtime)))

    def add_explicit(self, raw: str) -> None:
        path = os.path.abspath(raw)
        try:
            st = os.stat(path)
        except FileNotFoundError:
            reason = "broken symlink" if os.path.islink(path) else "no such file or folder"
            self.out.errors.append((path, reason))
            return
        except (OSError, ValueError) as exc:
            self.out.errors.append((path, f"cannot access ({getattr(exc, 'strerror', None) or exc})"))
            return
        if _stat.S_ISDIR(st.st_mode):
            self.walk(path)
        elif _stat.S_ISREG(st.st_mode):
            self._add(path, st)  # an explicitly named file is embedded whatever its extension
        else:
            self.out.errors.append((path, f"not a regular file ({kind_of(st.st_mode)})"))

    # -- walking --

    def walk(self, root: str) -> None:
        try:
            st = os.stat(root)
        except OSError as exc:
            self.out.errors.append((root, f"cannot access ({exc.strerror or exc})"))
            return
        key = (st.st_dev, st.st_ino)
        if key in self._seen_dirs:
            self.out.skipped.append((root, "duplicate folder (given twice)"))
            return
        self._seen_dirs.add(key)
        self._walk_dir(root, root, [key])

    def _walk_dir(self, root: str, folder: str, stack: list[tuple[int, int]]) -> None:
        try:
            with os.scandir(folder) as it:
                entries = sorted(it, key=lambda e: e.name)
        except PermissionError:
            self.out.errors.append((folder, "unreadable folder (permission denied)"))
            return
        except OSError as exc:
            self.out.errors.append((folder, f"unreadable folder ({exc.strerror or exc})"))
            return
        for e in entries:
            path = os.path.join(folder, e.name)
            if e.name.startswith(".") and not self.include_hidden:
                self.out.skipped.append((path, "hidden"))
                continue
            try:
                is_link = e.is_symlink()
                if is_link and not self.follow_symlinks:
                    self.out.skipped.append((path, "symlink (not followed)"))
                    continue
                st = e.stat(follow_symlinks=True)
            except FileNotFoundError:
                self.out.skipped.append((path, "broken symlink"))
                continue
            except OSError as exc:
                self.out.errors.append((path, f"cannot access ({exc.strerror or exc})"))
                continue
            if _stat.S_ISDIR(st.st_mode):
                key = (st.st_dev, st.st_ino)
                if key in stack:
                    self.out.skipped.append((path, "symlink loop"))
                    continue
                if key in self._seen_dirs:
                    self.out.skipped.append((path, "duplicate folder (reached twice through a symlink)"))
                    continue
                self._seen_dirs.add(key)
                self._walk_dir(root, path, [*stack, key])
            elif _stat.S_ISREG(st.st_mode):
                rel = os.path.relpath(path, root).replace(os.sep, "/")
                reason = self._keep(path, rel, e.name)
                if reason is None:
                    self._add(path, st)
                else:
                    self.out.skipped.append((path, reason))
            else:
                self.out.skipped.append((path, f"not a regular file ({kind_of(st.st_mode)})"))


def discover(
    inputs: Sequence[str | os.PathLike] = (),
    *,
    from_list: str | os.PathLike | IO[str] | None = None,
    extensions: str | Sequence[str] | None = None,
    globs: Sequence[str] | None = None,
    exclude: Sequence[str] | None = None,
    include_hidden: bool = False,
    follow_symlinks: bool = True,
) -> Discovery:
    """Expand files and folders (and the lines of ``from_list``) into the audio files to embed.

    Folders are walked recursively; a walked file is kept when its extension is in ``extensions``
    (default: `embedkit.audio.AUDIO_EXTENSIONS`) or, when ``globs`` are given, when its name or path
    relative to the walked folder matches one of them; ``exclude`` globs drop files. Files named
    explicitly are always kept. Paths are made absolute; each file appears once.
    """
    w = _Walker(
        extensions=parse_extensions(extensions),
        globs=globs,
        exclude=exclude,
        include_hidden=include_hidden,
        follow_symlinks=follow_symlinks,
    )
    raw = [os.fspath(p) for p in inputs]
    if from_list is not None:
        raw += read_list(from_list)
    for r in raw:
        w.add_explicit(r)
    return w.out
