"""Which files the server may send, and how: only audio files of the store's items, inside the collection.

A request never names a file directly: it names a store item (id, or a path exactly as stored), and
`FileGuard.resolve` sends that item's file only when its real path (all symlinks resolved) lies
inside one of the collection's roots — the top-most folders that hold the store's items — and is a
regular file. So ``../``, absolute paths, percent-encoded variants and symlinks that point out of
the collection are all refused, whatever the URL looks like.

Browsers play mp3, ogg/vorbis/opus, wav, flac, webm and m4a/aac; any other format (aiff, wma, ape,
wavpack, ...) is transcoded to Ogg/Opus with PyAV on first request into a private temporary folder
(never beside the store) and then served with HTTP Range support like any other file.
"""
from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
import threading
from collections.abc import Iterable
from pathlib import Path

from ..errors import EmbedkitError

#: extension -> MIME type of what Chromium/Firefox play natively.
PLAYABLE = {
    ".mp3": "audio/mpeg", ".ogg": "audio/ogg", ".oga": "audio/ogg", ".opus": "audio/ogg", ".wav": "audio/wav",
    ".flac": "audio/flac", ".webm": "audio/webm", ".m4a": "audio/mp4", ".mp4": "audio/mp4", ".aac": "audio/aac",
}
#: at most this many transcoded files are kept (least recently made are deleted first).
TRANSCODE_KEEP = 32


class FileRefused(EmbedkitError):
    """The file may not be served (outside the collection, not a regular file, not an item)."""


def collection_roots(paths: Iterable[str]) -> list[str]:
    """The top-most folders holding ``paths``: each item's folder, minus folders inside another one.

    Returned as real paths (symlinks resolved), sorted.
    """
    dirs = sorted({os.path.realpath(os.path.dirname(os.path.abspath(p))) for p in paths})
    roots: list[str] = []
    for d in dirs:
        if not any(d == r or d.startswith(r.rstrip(os.sep) + os.sep) for r in roots):
            roots.append(d)
    return roots


class FileGuard:
    """Decides whether a stored item's file may be sent (see the module doc)."""

    def __init__(self, roots: Iterable[str]) -> None:
        self.roots = [r.rstrip(os.sep) or os.sep for r in roots]

    def inside(self, real: str) -> bool:
        return any(real == r or real.startswith(r + os.sep) or r == os.sep for r in self.roots)

    def resolve(self, stored_path: str) -> Path:
        """The real path of an item's file; raises `FileRefused` (one line) when it may not be sent."""
        real = os.path.realpath(stored_path)
        if not self.inside(real):
            raise FileRefused(f"{stored_path}: resolves outside the collection; refused")
        if not os.path.isfile(real):
            raise FileRefused(f"{stored_path}: no such file any more (run 'embedkit store prune')")
        return Path(real)


def media_type(path: Path) -> str | None:
    """The MIME type of a natively playable file, None when it must be transcoded."""
    return PLAYABLE.get(path.suffix.lower())


class Transcoder:
    """Ogg/Opus copies of unplayable files in a private temporary folder (removed by `close`)."""

    def __init__(self) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="embedkit-serve-"))
        self._lock = threading.Lock()
        self._busy: dict[str, threading.Lock] = {}

    def close(self) -> None:
        shutil.rmtree(self.dir, ignore_errors=True)

    def get(self, src: Path) -> Path:
        """An Ogg/Opus version of ``src`` (made once, reused while its size and mtime are unchanged)."""
        st = src.stat()
        key = hashlib.sha256(f"{src}\0{st.st_size}\0{st.st_mtime_ns}".encode()).hexdigest()[:24]
        out = self.dir / f"{key}.opus"
        with self._lock:
            lock = self._busy.setdefault(key, threading.Lock())
        with lock:
            if not out.exists():
                tmp = self.dir / f".{key}.tmp"
                try:
                    transcode_opus(src, tmp)
                except Exception as exc:
                    tmp.unlink(missing_ok=True)
                    raise FileRefused(f"{src.name}: cannot be transcoded for the browser ({type(exc).__name__}: {exc})") from None
                os.replace(tmp, out)
                self._evict()
        return out

    def _evict(self) -> None:
        files = sorted(self.dir.glob("*.opus"), key=lambda p: p.stat().st_mtime)
        for p in files[:-TRANSCODE_KEEP]:
            p.unlink(missing_ok=True)


def transcode_opus(src: Path, dst: Path, *, bitrate: int = 128_000) -> None:
    """Decode ``src`` with PyAV (FFmpeg) and write Ogg/Opus at 48 kHz (stereo or mono as the source) to ``dst``."""
    import av

    with av.open(str(src)) as inp:
        ist = next((s for s in inp.streams if s.type == "audio"), None)
        if ist is None:
            raise ValueError("no audio stream")
        layout = "mono" if (ist.codec_context.channels or 2) == 1 else "stereo"
        with av.open(str(dst), "w", format="ogg") as out:
            ost = out.add_stream("libopus", rate=48000, layout=layout)
            ost.bit_rate = bitrate
            res = av.AudioResampler(format="s16", layout=layout, rate=48000)
            for frame in inp.decode(ist):
                for f in res.resample(frame):
                    for pkt in ost.encode(f):
                        out.mux(pkt)
            for f in res.resample(None):
                for pkt in ost.encode(f):
                    out.mux(pkt)
            for pkt in ost.encode(None):
                out.mux(pkt)
