"""Sidecar helper: atomic writes, kind/version checks, JSON default, hashing."""
from __future__ import annotations

import errno
import json
import os

import numpy as np
import pytest

from embedkit import sidecar
from embedkit.sidecar import SidecarError


def test_write_read_round_trip_with_numpy_values(tmp_path):
    p = tmp_path / "card.json"
    sidecar.write_json(p, {"a": np.float32(1.5), "b": np.arange(3), "c": (1, 2), "d": tmp_path}, kind="thing", version=2)
    d = sidecar.read_json(p, kind="thing", max_version=2)
    assert d == {"a": 1.5, "b": [0, 1, 2], "c": [1, 2], "d": str(tmp_path), "kind": "thing", "format_version": 2}
    assert [x.name for x in tmp_path.iterdir()] == ["card.json"]


def test_mode_follows_umask(tmp_path):
    old = os.umask(0o027)
    try:
        sidecar.write_text(tmp_path / "x.json", "{}")
    finally:
        os.umask(old)
    assert (tmp_path / "x.json").stat().st_mode & 0o777 == 0o640


def test_kind_and_both_version_spellings(tmp_path):
    p = tmp_path / "c.json"
    for doc, kind, ver in [({"format": "embedkit-head", "format_version": 3}, "embedkit-head", 3),
                           ({"format": 2}, None, 2), ({"kind": "index", "format": 1}, "index", 1), ({}, None, 0)]:
        assert sidecar.kind_of(doc) == kind and sidecar.version_of(doc) == ver
    p.write_text(json.dumps({"format": "embedkit-head", "format_version": 1}))
    with pytest.raises(SidecarError, match="not a store manifest .*kind is 'embedkit-head'"):
        sidecar.read_json(p, kind="store", what="store manifest")
    p.write_text(json.dumps({"format": 5}))
    with pytest.raises(SidecarError, match="format 5 is newer .*upgrade embedkit"):
        sidecar.read_json(p, max_version=1, what="index card")


@pytest.mark.parametrize("text,match", [("{", "not valid JSON"), ("[1]", "JSON object expected"),
                                        ('{"a": NaN}', "not valid JSON"), (b"\xff\xfe", "not valid JSON")])
def test_bad_files_are_one_line_with_the_way_out(tmp_path, text, match):
    p = tmp_path / "m.json"
    p.write_bytes(text if isinstance(text, bytes) else text.encode())
    with pytest.raises(SidecarError, match=match) as ei:
        sidecar.read_json(p, what="manifest", repair="run: embedkit store verify S")
    msg = str(ei.value)
    assert msg.startswith(str(p)) and "\n" not in msg and msg.endswith("run: embedkit store verify S")
    with pytest.raises(SidecarError, match="manifest is missing"):
        sidecar.read_json(tmp_path / "nope.json", what="manifest")


def test_nan_refused_on_write(tmp_path):
    with pytest.raises(SidecarError, match="NaN or infinite"):
        sidecar.write_json(tmp_path / "x.json", {"excerpt_s": float("nan")})
    assert list(tmp_path.iterdir()) == []


def test_failed_write_leaves_old_file_and_no_temp(tmp_path, monkeypatch):
    p = tmp_path / "manifest.json"
    sidecar.write_json(p, {"v": 1})

    def full(f):
        raise OSError(errno.ENOSPC, "No space left on device")

    with pytest.raises(SidecarError) as ei:
        sidecar.atomic_write(p, full)
    assert "no space left on device" in str(ei.value) and "free some disk space" in str(ei.value)
    assert json.loads(p.read_text()) == {"v": 1} and [x.name for x in tmp_path.iterdir()] == ["manifest.json"]


@pytest.mark.skipif(os.geteuid() == 0, reason="root ignores folder permissions")
def test_read_only_folder_is_one_line(tmp_path):
    d = tmp_path / "ro"
    d.mkdir()
    d.chmod(0o500)
    try:
        with pytest.raises(SidecarError, match="permission denied.*permissions"):
            sidecar.write_json(d / "x.json", {})
    finally:
        d.chmod(0o700)
    assert list(d.iterdir()) == []


def test_hashes(tmp_path):
    p = tmp_path / "f.bin"
    p.write_bytes(b"abc")
    assert sidecar.sha256_file(p) == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    a = np.arange(6, dtype=np.float32).reshape(2, 3)
    assert sidecar.sha256_array(a) == sidecar.sha256_array(a.copy()) != sidecar.sha256_array(a.reshape(3, 2))
    assert sidecar.sha256_array(a) != sidecar.sha256_array(a.astype(np.float64))
    assert sidecar.sha256_array(a.T) == sidecar.sha256_array(np.ascontiguousarray(a.T))
