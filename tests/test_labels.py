"""Label files: formats, every bad-label case as a one-line error or warning, binding to a store."""
from __future__ import annotations

import numpy as np
import pytest

from embedkit.labels import LabelError, bind, check_classes, read_labels, write_labels
from embedkit.store import write_arrays


def lab(tmp_path, text: str, name: str = "labels.csv"):
    p = tmp_path / name
    p.write_text(text, encoding="utf-8")
    return p


def one_line(exc: pytest.ExceptionInfo) -> str:
    msg = str(exc.value)
    assert "\n" not in msg
    return msg


def test_classification_with_groups_and_split(tmp_path):
    t = read_labels(lab(tmp_path, "# my labels\npath,label,group,split\na.wav,rock,x,train\nb.wav,pop,y,test\nc.wav,rock,y,train\n"))
    assert t.task == "classification" and t.keys == ["a.wav", "b.wav", "c.wav"]
    assert t.y.tolist() == ["rock", "pop", "rock"] and t.names == ["pop", "rock"]
    assert t.groups.tolist() == ["x", "y", "y"] and t.split.tolist() == ["train", "test", "train"]
    assert t.lines == [3, 4, 5] and t.class_counts() == {"pop": 1, "rock": 2}


def test_tsv_semicolons_bom_and_multilabel(tmp_path):
    t = read_labels(lab(tmp_path, "file\ttags\na.mp3\trock;guitar\nb.mp3\tpiano\nc.mp3\t\n", "l.tsv"))
    assert t.task == "multilabel" and t.names == ["guitar", "piano", "rock"]
    assert t.y.tolist() == [[1, 0, 1], [0, 1, 0], [0, 0, 0]]
    t = read_labels(lab(tmp_path, "\ufeffpath;label\na.wav;x\nb.wav;y\n"))
    assert t.key_column == "path" and t.y.tolist() == ["x", "y"]


def test_regression_and_indicator_columns(tmp_path):
    t = read_labels(lab(tmp_path, "path,arousal,valence,group\na,5.5,3,g1\nb,2,4.25,g2\n"))
    assert t.task == "regression" and t.names == ["arousal", "valence"]
    np.testing.assert_array_equal(t.y, [[5.5, 3.0], [2.0, 4.25]])
    t = read_labels(lab(tmp_path, "path,arousal,valence\na,5.5,3\nb,2,4\n"), targets="valence")
    assert t.names == ["valence"] and t.y[:, 0].tolist() == [3.0, 4.0]
    t = read_labels(lab(tmp_path, "path,rock,jazz,piano\na,1,0,1\nb,0,0,1\n"))
    assert t.task == "multilabel" and t.y.tolist() == [[1, 0, 1], [0, 0, 1]] and t.names == ["rock", "jazz", "piano"]
    assert any("never positive" in w for w in t.warnings)


@pytest.mark.parametrize(
    "text, message",
    [
        ("path,label\na.wav,rock\nb.wav,pop,extra\n", r"labels.csv line 3: 3 fields, but the header has 2"),
        ("path,label\na.wav,rock\nb.wav,\n", r"labels.csv line 3: empty label"),
        ("path,label\n,rock\n", r"labels.csv line 2: empty 'path'"),
        ("path,arousal\na.wav,5\nb.wav,nan\n", r"line 3: target 'arousal' is empty or NaN"),
        ("path,arousal\na.wav,5\nb.wav,\n", r"line 3: target 'arousal' is empty or NaN"),
        ("path,arousal\n" + "".join(f"s{i}.wav,{i}\n" for i in range(12)) + "x.wav,high\n", r"column 'arousal' holds numbers except line 14: 'high'; fix those lines"),
        ("path,label\n" + "".join(f"s{i}.wav,{i / 10}\n" for i in range(26)) + "x.wav,high\n", r"'label' holds numbers except line 28: 'high'"),
        ("path,arousal\na.wav,inf\n", r"target 'arousal' is inf"),
        ("path,label\na.wav,rock\nb.wav,pop\na.wav,jazz\n", r"line 4: 'a.wav' is labelled again with a different value \(line 2: 'rock', line 4: 'jazz'\)"),
        ("path,label,label\na,b,c\n", r"column 'label' appears twice"),
        ("path,label\n", r"header only, no labelled rows"),
        ("", r"empty labels file"),
        ("path\na.wav\n", r"no label columns besides the key 'path'"),
        ("path,label,group\na,x,\n", r"line 2: empty group"),
    ],
)
def test_bad_label_files_are_one_line_errors(tmp_path, text, message):
    with pytest.raises(LabelError) as exc:
        read_labels(lab(tmp_path, text))
    assert "labels.csv" in one_line(exc) or "label" in str(exc.value)
    assert exc.match(message)


def test_bad_tag_indicator(tmp_path):
    with pytest.raises(LabelError, match="line 3: tag 'jazz' = '2', expected 0 or 1"):
        read_labels(lab(tmp_path, "path,rock,jazz\na,1,0\nb,1,2\n"), task="multilabel")


def test_missing_file_and_unknown_columns(tmp_path):
    with pytest.raises(LabelError, match="no such labels file"):
        read_labels(tmp_path / "nope.csv")
    p = lab(tmp_path, "path,label\na,b\n")
    with pytest.raises(LabelError, match="no group column 'artist' .*columns: path, label"):
        read_labels(p, group="artist")
    with pytest.raises(LabelError, match="no target column 'mood'"):
        read_labels(p, targets="mood")


def test_identical_duplicates_are_a_warning(tmp_path):
    t = read_labels(lab(tmp_path, "path,label\na.wav,rock\nb.wav,pop\n./a.wav,rock\n"))
    assert t.keys == ["a.wav", "b.wav"]
    assert any("1 duplicate row(s) ignored (e.g. line 4 repeats line 2" in w for w in t.warnings)


def test_one_example_classes(tmp_path):
    t = read_labels(lab(tmp_path, "path,label\na,x\nb,x\nc,y\nd,y\ne,solo\n"))
    with pytest.raises(LabelError) as exc:
        check_classes(t)
    assert exc.match(r"1 class\(es\) with fewer than 2 examples, e.g. 'solo' \(1 at .*labels.csv line 6\)")
    assert "--drop-rare" in one_line(exc)
    dropped = check_classes(t, drop=True)
    assert dropped.names != [] and "solo" not in dropped.y.tolist() and len(dropped) == 4
    assert any("dropped 1 class" in w for w in dropped.warnings)
    with pytest.raises(LabelError, match="need at least 2 classes"):
        check_classes(read_labels(lab(tmp_path, "path,label\na,x\nb,x\nc,solo\n")), drop=True)


@pytest.fixture
def store(tmp_path):
    paths = [str(tmp_path / "music" / f"s{i}.wav") for i in range(4)]
    st = write_arrays(tmp_path / "st", paths, np.eye(4, 8, dtype=np.float32))
    yield st
    st.close()


def test_bind_by_path_relative_path_id_and_tail(tmp_path, store):
    music = tmp_path / "music"
    (tmp_path / "sub").mkdir()
    t = read_labels(lab(tmp_path, f"path,label\n{music}/s2.wav,a\n../music/s0.wav,b\nmoved/music/s3.wav,a\n", "sub/l.csv"))
    b = bind(t, store)
    assert b.ids.tolist() == [3, 1, 4] and not b.table.warnings
    ids = bind(read_labels(lab(tmp_path, "id,label\n2,a\n1,b\n")), store)
    assert ids.ids.tolist() == [2, 1]


def test_bind_unknown_and_failed_items(tmp_path, store):
    music = tmp_path / "music"
    t = read_labels(lab(tmp_path, f"path,label\n{music}/s0.wav,a\n{music}/s1.wav,b\n{music}/nope.wav,a\n"))
    b = bind(t, store)
    assert b.ids.tolist() == [1, 2] and len(b.unknown) == 1
    assert any("1 of 3 labelled items are not in" in w and "line 4" in w and "nope.wav" in w for w in b.table.warnings)
    with pytest.raises(LabelError, match="1 of 3 labelled items are not in"):
        bind(t, store, strict=True)
    with pytest.raises(LabelError) as exc:
        bind(read_labels(lab(tmp_path, "path,label\nx.wav,a\ny.wav,b\n")), store)
    assert "none of the 2 labelled items is embedded" in one_line(exc)
    with pytest.raises(LabelError, match="id 'abc' is not an integer"):
        bind(read_labels(lab(tmp_path, "id,label\nabc,a\n")), store)


def test_bind_reports_items_that_failed_to_embed(tmp_path):
    from embedkit.store import Store

    ok = str(tmp_path / "ok.wav")
    st = write_arrays(tmp_path / "st", [ok], np.ones((1, 4), np.float32))
    st.close()
    with Store.open(tmp_path / "st", mode="a") as w, w.transaction():
        w.add_failed(str(tmp_path / "bad.wav"), "bad.wav: not an audio file")
    with Store.open(tmp_path / "st") as st:
        t = read_labels(lab(tmp_path, f"path,label\n{ok},a\n{tmp_path}/bad.wav,b\n"))
        b = bind(t, st)
    assert len(b.ids) == 1 and b.not_embedded[0][2] == "bad.wav: not an audio file"
    assert any("have no vector" in w and "not an audio file" in w for w in b.table.warnings)


def test_write_labels_roundtrip(tmp_path):
    p = write_labels(tmp_path / "o.csv", [{"path": "a,b.wav", "labels": ["x", "y"], "v": 1.5}], ["path", "labels", "v"])
    t = read_labels(p, targets="labels", task="multilabel")
    assert t.keys == ["a,b.wav"] and t.names == ["x", "y"] and t.y.tolist() == [[1, 1]]


def test_bind_refuses_the_stale_vector_of_a_changed_file(tmp_path):
    """The store's one freshness rule: a labelled file that changed since it was embedded is not bound."""
    from embedkit.store import Store, file_sha256

    music = tmp_path / "music"
    music.mkdir()
    files = [music / f"s{i}.wav" for i in range(3)]
    with Store.create(tmp_path / "st", {"model": "toy", "fingerprint": "f" * 64, "dim": 2}) as st:
        for i, f in enumerate(files):
            f.write_bytes(bytes([i]) * 64)
            s = f.stat()
            st.add_embedded(str(f), np.full(2, i, np.float32), size=s.st_size, mtime=s.st_mtime,
                            sha256=file_sha256(f), duration_s=1.0, samplerate=16000)
    files[1].write_bytes(b"changed" * 20)
    with Store.open(tmp_path / "st") as st:
        b = bind(read_labels(lab(tmp_path, "path,label\nmusic/s0.wav,a\nmusic/s1.wav,b\nmusic/s2.wav,a\n")), st)
        assert len(b.ids) == 2 and b.not_embedded[0][1] == "music/s1.wav"
        assert "changed since it was embedded" in b.not_embedded[0][2]
        with pytest.raises(LabelError, match="changed since it was embedded"):
            bind(read_labels(lab(tmp_path, "path,label\nmusic/s0.wav,a\nmusic/s1.wav,b\n")), st, strict=True)
