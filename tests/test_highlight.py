"""Highlights (embedkit.highlight, `embedkit highlight`): window choice, bounds, thumbnails, errors."""
from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf

from clirun import run
from embedkit.highlight import (
    HOP_S,
    Highlighter,
    HighlightError,
    best_window,
    choose,
    plot_curve,
    repetition_curve,
    write_thumbnail,
)

SR = 16000


def _tone_with_loud_part(seconds: float, loud: tuple[float, float], sr: int = SR) -> np.ndarray:
    t = np.arange(int(seconds * sr)) / sr
    y = 0.05 * np.sin(2 * np.pi * 220 * t)
    a, b = int(loud[0] * sr), int(loud[1] * sr)
    y[a:b] *= 12
    return y.astype(np.float32)


def test_best_window_is_the_brute_force_maximum():
    rng = np.random.default_rng(0)
    for _ in range(50):
        c = rng.normal(size=int(rng.integers(1, 40)))
        w = int(rng.integers(1, 12))
        k, s = best_window(c, w)
        ww = min(w, c.size)
        sums = [c[i:i + ww].sum() for i in range(c.size - ww + 1)]
        assert k == int(np.argmax(sums)) and s == pytest.approx(max(sums))


def test_bounds_always_inside_the_file():
    rng = np.random.default_rng(1)
    for _ in range(200):
        T = int(rng.integers(1, 80))
        dur = T * HOP_S - float(rng.uniform(0, HOP_S))
        length = float(rng.uniform(0.5, 120))
        s, e, _, _, whole = choose(rng.normal(size=T), np.arange(T) * HOP_S, dur, length)
        assert 0.0 <= s < e <= dur + 1e-9
        assert whole == (dur <= length) or T == 1
        if not whole:
            assert e - s == pytest.approx(length)


def test_short_file_returns_the_whole_file(write_wav, capsys):
    p = write_wav("short.wav", _tone_with_loud_part(7.0, (2, 4)))
    h = Highlighter("loudness", length_s=30).highlight_file(p)
    assert (h.start_s, h.end_s, h.whole_file) == (0.0, pytest.approx(7.0), True)
    code, out, err = run(capsys, "highlight", str(p), "--method", "loudness", "--length", "30", "--json")
    assert code == 0, err
    import json

    rec = json.loads(out)[0]
    assert rec["whole_file"] is True and rec["start_s"] == 0.0 and rec["end_s"] == pytest.approx(7.0)


def test_loudness_finds_the_loud_part_and_thumbnails_decode(write_wav, tmp_path, capsys):
    p = write_wav("song.wav", _tone_with_loud_part(60.0, (33, 45), sr=22050), sr=22050)
    h = Highlighter("loudness", length_s=12).highlight_file(p)
    assert 0 <= h.start_s < h.end_s <= 60.0
    assert min(h.end_s, 45) - max(h.start_s, 33) >= 8  # overlaps the loud 12 s by most of its length
    for fmt in ("ogg", "flac", "wav"):
        out = write_thumbnail(p, h.start_s, h.end_s, tmp_path / f"t.{fmt}", fade_s=0.5)
        y, sr = sf.read(out)
        assert sr == 22050
        assert len(y) / sr == pytest.approx(h.end_s - h.start_s, abs=0.05)
        assert abs(y[0]) < 1e-3 and abs(y[-1]) < 1e-3  # faded in and out
        assert np.max(np.abs(y)) > 0.3  # the loud part is there
    with pytest.raises(HighlightError, match="already exists"):
        write_thumbnail(p, h.start_s, h.end_s, tmp_path / "t.wav")
    png = plot_curve(h, tmp_path / "c.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # the command: thumbnail + PNG, kept on rerun
    code, out, err = run(capsys, "highlight", str(p), "--method", "loudness", "--length", "12", "-o", str(tmp_path / "o"),
                         "--format", "flac")
    assert code == 0, err
    assert (tmp_path / "o" / "song.highlight.flac").exists() and (tmp_path / "o" / "song.highlight.png").exists()
    before = (tmp_path / "o" / "song.highlight.flac").stat().st_mtime_ns
    code, _, _ = run(capsys, "highlight", str(p), "--method", "loudness", "--length", "12", "-o", str(tmp_path / "o"),
                     "--format", "flac")
    assert code == 0 and (tmp_path / "o" / "song.highlight.flac").stat().st_mtime_ns == before


def test_repetition_prefers_the_repeated_material():
    rng = np.random.default_rng(3)
    chorus = rng.normal(size=(4, 64))
    parts = [rng.normal(size=(4, 64)), chorus, rng.normal(size=(4, 64)), chorus + 0.1 * rng.normal(size=(4, 64)),
             rng.normal(size=(4, 64))]
    c = repetition_curve(np.concatenate(parts))
    k, _ = best_window(c, 4)
    assert k in (3, 4, 5, 11, 12, 13)  # at least 3 of its 4 patches are one of the two choruses
    assert c[[4, 5, 6, 7, 12, 13, 14, 15]].min() > np.delete(c, [4, 5, 6, 7, 12, 13, 14, 15]).max()


def test_attention_highlight_follows_the_inserted_segment():
    from embedkit.heads.attention import AttentionHead

    rng = np.random.default_rng(0)
    proto = rng.normal(size=(2, 8))
    bags, y, where = [], [], []
    for i in range(48):
        T = int(rng.integers(20, 30))
        b = rng.normal(size=(T, 8))
        s = int(rng.integers(0, T - 5))
        b[s:s + 5] += 2.5 * proto[i % 2]
        bags.append(b)
        y.append("ab"[i % 2])
        where.append(s)
    head = AttentionHead(hidden=8, l2_grid=(1e-2,), max_iter=100).fit(bags[:36], y[:36])
    hl = Highlighter("attention", head=head, length_s=5 * HOP_S)
    hits = 0
    for b, s in zip(bags[36:], where[36:]):
        T = len(b)
        h = hl.from_patches("x", duration_s=T * HOP_S, patch_start_s=np.arange(T) * HOP_S, patches=b)
        assert 0 <= h.start_s < h.end_s <= T * HOP_S + 1e-9
        ins0, ins1 = s * HOP_S, (s + 5) * HOP_S
        hits += min(h.end_s, ins1) - max(h.start_s, ins0) >= 0.6 * 5 * HOP_S
    assert hits >= 10  # of 12 unseen tracks


def test_bad_input_gives_one_line_errors(write_wav, tmp_path, capsys):
    good = write_wav("g.wav", _tone_with_loud_part(10.0, (1, 2)))
    bad = tmp_path / "notaudio.ogg"
    bad.write_bytes(b"this is not audio at all" * 10)
    code, out, err = run(capsys, "highlight", str(good), str(bad), str(tmp_path / "missing.ogg"), "--method", "loudness", "--length", "3")
    assert code == 3
    assert str(good) in out
    lines = [line for line in err.strip().splitlines() if line.startswith("embedkit: error:")]
    assert len(lines) == 2 and any("notaudio.ogg" in line for line in lines) and any("missing.ogg" in line for line in lines)
    assert "Traceback" not in err
    code, _, err = run(capsys, "highlight", str(good), "--method", "attention")
    assert code == 2 and "--head" in err
    code, _, err = run(capsys, "highlight", str(good), "--head", str(tmp_path / "nohead"))
    assert code == 1 and "nohead" in err and len(err.strip().splitlines()) == 1
    code, _, err = run(capsys, "highlight", str(good), "--length", "0")
    assert code == 2
    code, _, err = run(capsys, "highlight")
    assert code == 2
