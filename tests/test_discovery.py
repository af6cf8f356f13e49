"""Tests of embedkit.discovery: walking, filters, list files, symlink loops, unreadable folders."""
from __future__ import annotations

import io
import os

import pytest

from embedkit.discovery import discover, parse_extensions, read_list


def _touch(p, data=b"x"):
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_bytes(data)
    return p


@pytest.fixture()
def tree(tmp_path):
    root = tmp_path / "lib"
    _touch(root / "b.ogg")
    _touch(root / "a.WAV")
    _touch(root / "cover.jpg")
    _touch(root / "notes")
    _touch(root / ".hidden.ogg")
    _touch(root / ".git" / "x.ogg")
    _touch(root / "album" / "01.flac", b"123")
    _touch(root / "album" / "live" / "02.mp3")
    return root


def names(d, root):
    return [os.path.relpath(f.path, root) for f in d.files]


def test_walk_sorted_recursive_with_reasons(tree):
    d = discover([tree])
    assert names(d, tree) == ["a.WAV", "album/01.flac", "album/live/02.mp3", "b.ogg"]
    assert all(os.path.isabs(f.path) for f in d.files)
    f01 = next(f for f in d.files if f.path.endswith("01.flac"))
    assert f01.size == 3 and f01.mtime == os.stat(f01.path).st_mtime
    reasons = {os.path.relpath(p, tree): r for p, r in d.skipped}
    assert reasons["cover.jpg"] == "not audio (.jpg)"
    assert reasons["notes"] == "not audio (no extension)"
    assert reasons[".hidden.ogg"] == "hidden" and reasons[".git"] == "hidden"
    assert d.skipped_counts() == {"not audio": 2, "hidden": 2}
    assert d.errors == []


def test_include_hidden(tree):
    d = discover([tree], include_hidden=True)
    assert ".hidden.ogg" in names(d, tree) and ".git/x.ogg" in names(d, tree)


def test_extension_and_glob_filters(tree):
    assert names(discover([tree], extensions="ogg, .FLAC"), tree) == ["album/01.flac", "b.ogg"]
    assert parse_extensions(["mp3,Ogg", "wav"]) == {".mp3", ".ogg", ".wav"}
    assert parse_extensions(None) is None
    # globs match the name or the path relative to the walked folder, and override extensions
    assert names(discover([tree], globs=["album/*/*"]), tree) == ["album/live/02.mp3"]
    assert names(discover([tree], globs=["*.jpg"]), tree) == ["cover.jpg"]
    assert names(discover([tree], exclude=["live/*", "*/live/*"]), tree) == ["a.WAV", "album/01.flac", "b.ogg"]


def test_explicit_files_missing_paths_and_duplicates(tree, tmp_path):
    d = discover([tree / "cover.jpg", tree / "missing.ogg", tree, tree / "b.ogg"])
    assert names(d, tree)[0] == "cover.jpg"  # named explicitly: kept whatever the extension
    assert d.errors == [(str(tree / "missing.ogg"), "no such file or folder")]
    dup = [r for p, r in d.skipped if p == str(tree / "b.ogg")]
    assert dup == [f"duplicate (same file as {tree / 'b.ogg'})"]
    assert len(d.files) == 5  # cover + the 4 audio files, b.ogg once


def test_symlink_loop_and_symlinked_folder(tree):
    os.symlink(tree, tree / "album" / "loop")
    os.symlink(tree / "album" / "live", tree / "live_link")
    os.symlink(tree / "nowhere.ogg", tree / "dangling.ogg")
    d = discover([tree])
    assert names(d, tree) == ["a.WAV", "album/01.flac", "album/live/02.mp3", "b.ogg"]
    reasons = {os.path.relpath(p, tree): r for p, r in d.skipped}
    assert reasons["album/loop"] == "symlink loop"
    assert reasons["live_link"].startswith("duplicate folder")
    assert reasons["dangling.ogg"] == "broken symlink"
    nofollow = discover([tree], follow_symlinks=False)
    assert {os.path.relpath(p, tree) for p, r in nofollow.skipped if r.startswith("symlink")} == {
        "album/loop",
        "live_link",
        "dangling.ogg",
    }


def test_unreadable_folder_reported(tree, monkeypatch):
    bad = tree / "album" / "live"
    real_scandir = os.scandir

    def scandir(path):  # root ignores permission bits, so simulate what a normal user gets
        if os.fspath(path) == str(bad):
            raise PermissionError(13, "Permission denied", str(path))
        return real_scandir(path)

    monkeypatch.setattr(os, "scandir", scandir)
    d = discover([tree])
    assert d.errors == [(str(bad), "unreadable folder (permission denied)")]
    assert names(d, tree) == ["a.WAV", "album/01.flac", "b.ogg"]


@pytest.mark.skipif(os.geteuid() == 0, reason="root can read any folder; covered by the simulated test")
def test_unreadable_folder_real_permissions(tree):
    bad = tree / "album"
    bad.chmod(0)
    try:
        d = discover([tree])
    finally:
        bad.chmod(0o755)
    assert d.errors == [(str(bad), "unreadable folder (permission denied)")]


def test_from_list_file_and_stdin(tree, tmp_path, monkeypatch):
    lst = tmp_path / "list.txt"
    lst.write_text(f"# comment\n{tree / 'b.ogg'}\n\n  {tree / 'album'}  \n")
    d = discover(from_list=lst)
    assert names(d, tree) == ["b.ogg", "album/01.flac", "album/live/02.mp3"]
    monkeypatch.chdir(tree)
    monkeypatch.setattr("sys.stdin", io.StringIO("a.WAV\nb.ogg\n"))
    d = discover(["album/01.flac"], from_list="-")
    assert names(d, tree) == ["album/01.flac", "a.WAV", "b.ogg"]
    assert read_list(io.StringIO("x\r\n#y\n z \n")) == ["x", "z"]
    from embedkit.errors import EmbedkitError

    with pytest.raises(EmbedkitError, match="nolist.txt: cannot read list file"):
        discover(from_list=tmp_path / "nolist.txt")
