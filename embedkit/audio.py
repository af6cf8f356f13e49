"""Decode any common audio format to mono float32 at the model rate, in bounded memory.

soundfile (libsndfile: wav, flac, ogg/vorbis, opus, mp3, aiff, ...) is tried first; PyAV (FFmpeg) takes
what libsndfile cannot open (m4a/aac, wma, video containers). Channels are averaged to mono *before*
resampling (as librosa does), and resampling uses soxr's streaming resampler, which gives the same
samples as a one-shot ``soxr.resample`` while holding only one block at a time.
"""
from __future__ import annotations

import logging
import os
import re
import stat
import sys
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .errors import AudioError

#: File extensions that `embedkit` treats as audio when it walks folders.
AUDIO_EXTENSIONS = frozenset(
    {".wav", ".wave", ".flac", ".ogg", ".oga", ".opus", ".mp3", ".m4a", ".mp4", ".aac", ".aif", ".aiff",
     ".au", ".snd", ".wma", ".caf", ".w64", ".webm", ".mka"}
)

#: Samples per decoded block at the file rate (about 6 s at 44.1 kHz): bounds memory on long files.
BLOCK_FRAMES = 262_144

log = logging.getLogger("embedkit")

RESAMPLE_QUALITY = "HQ"  # soxr 'HQ' = librosa's default res_type 'soxr_hq'

#: Largest |sample| accepted from a file (float formats can hold anything; ±1 is full scale). Beyond this
#: the log-mel overflows to inf/NaN, so such a file is refused rather than turned into a silent NaN vector.
MAX_ABS_SAMPLE = 1e4


@dataclass(frozen=True)
class AudioInfo:
    """What a file says about itself before decoding. ``duration_s`` may be None for some streams."""

    path: str
    samplerate: int
    channels: int
    duration_s: float | None
    decoder: str  # "soundfile" or "pyav"


def _check_path(path: Path) -> None:
    try:
        st = path.stat()
    except FileNotFoundError:
        raise AudioError(path, "no such file") from None
    except PermissionError:
        raise AudioError(path, "permission denied (on a folder above it)") from None
    except (OSError, ValueError) as exc:  # ENAMETOOLONG, ELOOP, a NUL byte in the name ...
        raise AudioError(path, f"cannot access ({getattr(exc, 'strerror', None) or exc})") from None
    if stat.S_ISDIR(st.st_mode):
        raise AudioError(path, "is a directory, not an audio file")
    if not stat.S_ISREG(st.st_mode):
        kind = ("a FIFO (named pipe)" if stat.S_ISFIFO(st.st_mode) else "a socket" if stat.S_ISSOCK(st.st_mode)
                else "a device" if stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode) else "not a regular file")
        raise AudioError(path, f"is {kind}, not an audio file (give a regular file)")
    if not os.access(path, os.R_OK):
        raise AudioError(path, "permission denied (make it readable: chmod +r)")
    if st.st_size == 0:
        raise AudioError(path, "empty file (0 bytes)")


# ---- libmpg123 (inside libsndfile) writes decoder notes straight to file descriptor 2 -------------------

_MPG123_LINE = re.compile(rb"^(\[src/libmpg123/|Note: |Warning: |\s*mpg123|.*libmpg123)")
_capture_lock = threading.Lock()
_capture: dict = {"depth": 0, "saved": None, "tmp": None}


@contextmanager
def _route_fd2_to_log(path: Path) -> Iterator[None]:
    """While libsndfile decodes an MPEG file, catch what the C library writes to fd 2 and log it (debug).

    Shared by concurrent decoder threads (reference-counted); any line that is not mpg123's is written
    back to the real stderr afterwards, so nothing else is lost.
    """
    with _capture_lock:
        active = True
        if _capture["depth"] == 0:
            try:
                sys.stderr.flush()
                tmp = tempfile.TemporaryFile()
                saved = os.dup(2)
                os.dup2(tmp.fileno(), 2)
            except (OSError, ValueError, AttributeError):  # no usable fd 2 (embedded interpreters): decode as is
                active = False
            else:
                _capture.update(saved=saved, tmp=tmp)
        if active:
            _capture["depth"] += 1
    try:
        yield
    finally:
        if active:
            with _capture_lock:
                _capture["depth"] -= 1
                if _capture["depth"] == 0:
                    _restore_fd2(path)


def _restore_fd2(path: Path) -> None:
    saved, tmp = _capture["saved"], _capture["tmp"]
    _capture.update(saved=None, tmp=None)
    try:
        sys.stderr.flush()
    except (OSError, ValueError):
        pass
    os.dup2(saved, 2)
    os.close(saved)
    tmp.seek(0)
    data = tmp.read()
    tmp.close()
    other = []
    for line in data.splitlines(keepends=True):
        if _MPG123_LINE.match(line):
            log.debug("libmpg123 (%s): %s", path, line.decode("utf-8", "replace").rstrip())
        else:
            other.append(line)
    if other:
        os.write(2, b"".join(other))


def _is_mpeg(path: Path) -> bool:
    return path.suffix.lower() in (".mp3", ".mp2", ".mpga")


@contextmanager
def _quiet_decoder(path: Path) -> Iterator[None]:
    if _is_mpeg(path):
        with _route_fd2_to_log(path):
            yield
    else:
        yield


def _looks_like_mpeg(path: Path) -> bool:
    """ID3 tag or an MPEG frame sync at the start (libsndfile's mpg123 prints noise on anything else)."""
    with open(path, "rb") as f:
        head = f.read(3)
    return head[:3] == b"ID3" or (len(head) >= 2 and head[0] == 0xFF and (head[1] & 0xE0) == 0xE0)


def _soundfile_info(path: Path) -> AudioInfo | None:
    import soundfile as sf

    if path.suffix.lower() in (".mp3", ".mp2") and not _looks_like_mpeg(path):
        return None  # not MPEG audio whatever its name says: let FFmpeg judge it quietly
    try:
        with _quiet_decoder(path):
            info = sf.info(str(path))
    except Exception:  # libsndfile cannot open it: let PyAV try
        return None
    duration = info.frames / info.samplerate if info.frames > 0 else None
    return AudioInfo(str(path), int(info.samplerate), int(info.channels), duration, "soundfile")


def _pyav_info(path: Path) -> AudioInfo:
    import av

    try:
        with av.open(str(path)) as container:
            if not container.streams.audio:
                raise AudioError(path, "no audio stream in file")
            stream = container.streams.audio[0]
            duration = None
            if stream.duration is not None and stream.time_base is not None:
                duration = float(stream.duration * stream.time_base)
            elif container.duration is not None:
                duration = container.duration / 1_000_000
            rate = stream.codec_context.sample_rate or stream.rate
            channels = stream.codec_context.channels
            if not rate:
                raise AudioError(path, "audio stream has no sample rate")
            return AudioInfo(str(path), int(rate), int(channels), duration, "pyav")
    except AudioError:
        raise
    except Exception as exc:
        raise AudioError(path, f"not a readable audio file ({_short(exc)})") from None


def _short(exc: BaseException) -> str:
    """One short line for an exception; FFmpeg errors keep their reason, not libav's raw errno."""
    strerror = getattr(exc, "strerror", None)
    text = str(strerror or exc).strip()
    return (text.splitlines()[0] if text else type(exc).__name__)[:160]


def probe(path: str | os.PathLike) -> AudioInfo:
    """Sample rate, channels and duration of ``path`` without decoding it. Raises `AudioError`."""
    p = Path(path)
    _check_path(p)
    return _soundfile_info(p) or _pyav_info(p)


def _blocks_soundfile(path: Path, start: int, stop: int | None) -> Iterator[np.ndarray]:
    import soundfile as sf

    with _quiet_decoder(path):
        f = sf.SoundFile(str(path))
    with f:
        if start:
            with _quiet_decoder(path):
                f.seek(start)
        remaining = None if stop is None else max(stop - start, 0)
        while remaining is None or remaining > 0:
            n = BLOCK_FRAMES if remaining is None else min(BLOCK_FRAMES, remaining)
            with _quiet_decoder(path):
                block = f.read(n, dtype="float32", always_2d=True)
            if block.shape[0] == 0:
                break
            if remaining is not None:
                remaining -= block.shape[0]
            yield block.mean(axis=1, dtype=np.float32) if block.shape[1] > 1 else block[:, 0]


def _blocks_pyav(path: Path, start: int, stop: int | None) -> Iterator[np.ndarray]:
    import av

    with av.open(str(path)) as container:
        stream = container.streams.audio[0]
        seen = 0
        for frame in container.decode(stream):
            arr = frame.to_ndarray()
            if arr.dtype.kind in "iu":
                scale = float(np.iinfo(arr.dtype).max) + 1.0
                arr = arr.astype(np.float32) / scale
            else:
                arr = arr.astype(np.float32, copy=False)
            channels = len(frame.layout.channels)
            if frame.format.is_planar:
                arr = arr.reshape(channels, -1)
            else:
                arr = arr.reshape(-1, channels).T
            mono = arr.mean(axis=0, dtype=np.float32) if channels > 1 else arr[0]
            lo, hi = seen, seen + mono.shape[0]
            seen = hi
            if hi <= start:
                continue
            if stop is not None and lo >= stop:
                break
            a = max(start - lo, 0)
            b = mono.shape[0] if stop is None else min(stop - lo, mono.shape[0])
            if b > a:
                yield np.ascontiguousarray(mono[a:b])


def iter_audio(
    path: str | os.PathLike,
    *,
    sr: int = 16000,
    offset_s: float = 0.0,
    duration_s: float | None = None,
) -> Iterator[np.ndarray]:
    """Yield the file as consecutive mono float32 blocks at ``sr`` Hz (each ≤ ~6 s of input).

    Only one block at the file rate is held at a time, so a 2-hour file costs a few MB here.
    ``offset_s``/``duration_s`` select an excerpt (in seconds of the original file).
    Raises `AudioError` naming the file when it is missing, empty, corrupt or not audio.
    """
    p = Path(path)
    info = probe(p)
    start = int(round(offset_s * info.samplerate))
    stop = None if duration_s is None else start + int(round(duration_s * info.samplerate))
    blocks = _blocks_soundfile(p, start, stop) if info.decoder == "soundfile" else _blocks_pyav(p, start, stop)
    resampler = None
    if info.samplerate != sr:
        import soxr

        resampler = soxr.ResampleStream(info.samplerate, sr, 1, dtype="float32", quality=RESAMPLE_QUALITY)
    n_out = 0
    n_in = 0
    try:
        for block in blocks:
            _check_samples(p, block, n_in, info.samplerate)
            n_in += block.size
            out = block if resampler is None else resampler.resample_chunk(block, last=False)
            if out.size:
                n_out += out.size
                yield out
        if resampler is not None:
            tail = resampler.resample_chunk(np.zeros(0, np.float32), last=True)
            if tail.size:
                n_out += tail.size
                yield tail
    except AudioError:
        raise
    except Exception as exc:
        raise AudioError(p, f"decoding failed ({_short(exc)})") from None
    if n_out == 0:
        raise AudioError(p, "no audio samples decoded (empty or truncated stream)")
    total = None if info.duration_s is None else int(info.duration_s * info.samplerate)
    expected = None if total is None else min(total, stop if stop is not None else total) - start
    if expected and expected - n_in > max(0.05 * expected, info.samplerate):
        log.warning("%s: decoded %.1f s of the %.1f s its header announces (truncated file?)",
                    p, n_in / info.samplerate, expected / info.samplerate)


def _check_samples(path: Path, block: np.ndarray, start: int, samplerate: int) -> None:
    """Refuse NaN/inf samples and absurd magnitudes (float files): they would give a NaN or garbage vector."""
    finite = np.isfinite(block)
    if not finite.all():
        i = int(np.flatnonzero(~finite)[0])
        kind = "NaN" if np.isnan(block[i]) else "infinite"
        raise AudioError(path, f"{kind} sample values (first at {(start + i) / samplerate:.2f} s); the file is damaged "
                               "or not audio: re-export it")
    peak = float(np.max(np.abs(block))) if block.size else 0.0
    if peak > MAX_ABS_SAMPLE:
        i = int(np.argmax(np.abs(block)))
        raise AudioError(path, f"sample values out of range (|x| up to {peak:.3g} at {(start + i) / samplerate:.2f} s; "
                               "float audio is full scale at ±1): re-export or normalise it")


def load(
    path: str | os.PathLike, *, sr: int = 16000, offset_s: float = 0.0, duration_s: float | None = None
) -> np.ndarray:
    """The whole file (or excerpt) as one ``(n_samples,) float32`` mono array at ``sr`` Hz."""
    return np.concatenate(list(iter_audio(path, sr=sr, offset_s=offset_s, duration_s=duration_s)))


def to_mono_resampled(y: np.ndarray, sr: int, *, target_sr: int = 16000) -> np.ndarray:
    """Downmix an in-memory signal and resample it to ``target_sr``.

    ``y``: ``(n,)`` mono or ``(n, channels)`` interleaved-style (soundfile layout) array; a
    ``(channels, n)`` array with channels ≤ 8 < n is accepted too (librosa layout).
    Returns ``(m,) float32``.
    """
    y = np.asarray(y)
    if y.ndim == 2:
        if y.shape[0] <= 8 < y.shape[1]:
            y = y.T
        y = y.mean(axis=1)
    elif y.ndim != 1:
        raise ValueError(f"audio must be 1-D or 2-D, given y.shape={y.shape}")
    if y.dtype.kind in "iu":
        y = y.astype(np.float32) / (float(np.iinfo(y.dtype).max) + 1.0)
    y = np.ascontiguousarray(y, dtype=np.float32)
    if y.size == 0:
        raise ValueError("audio is empty, given y.shape=(0,)")
    if sr <= 0:
        raise ValueError(f"sample rate must be positive, given sr={sr}")
    if sr != target_sr:
        import soxr

        y = soxr.resample(y, sr, target_sr, quality=RESAMPLE_QUALITY).astype(np.float32, copy=False)
    return y
