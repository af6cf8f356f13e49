"""The one vector spec: identity, layout, compatibility, and reading embedkit 0.1's artefact keys."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest

from embedkit.spec import ModelPart, SpecError, SpecMismatchError, VectorSpec, combine_fingerprints, qualify
from embedkit.features import Block
from embedkit.store import settings_fingerprint

FP = "a" * 64
FP2 = "b" * 64


def vgg(**kw) -> VectorSpec:
    return VectorSpec.for_model("msd_vgg", fingerprint=kw.pop("fingerprint", FP), **kw)


def test_single_model_defaults_and_layout():
    s = vgg()
    assert s.models == ("msd_vgg",) and s.model == "msd_vgg" and s.precision == "fp32"
    assert s.layers == tuple(f"pool{i}" for i in range(1, 6))
    assert s.dim == 640 and [e.name for e in s.layout] == [f"pool{i}" for i in range(1, 6)]
    assert (s.layout[4].start, s.layout[4].stop) == (512, 640)
    s2 = vgg(layers="4,5", aggregation="mean+std")
    assert s2.dim == 512 and [e.name for e in s2.layout] == ["pool4", "pool5", "pool4_std", "pool5_std"]
    assert [e.stat for e in s2.layout] == ["mean", "mean", "std", "std"] and s2.patch_dim == 256


def test_fingerprint_equals_release_settings_fingerprint():
    """Artefacts of embedkit 0.1 keep matching: fp32 single-model fingerprint == store.settings_fingerprint."""
    names = [f"pool{i}" for i in range(1, 6)]
    for layers, agg, ex in [(None, "mean", None), ("4,5", "mean+std", 30.0), ("pool1", "mean", 12.5)]:
        s = vgg(layers=layers, aggregation=agg, excerpt_s=ex)
        want = s.layers if layers is not None else names
        assert s.fingerprint == settings_fingerprint(FP, layers=list(want), aggregation=agg, excerpt_s=ex)
    # and the fingerprint moves with every field, precision included
    fps = {vgg().fingerprint, vgg(layers="5").fingerprint, vgg(aggregation="mean+std").fingerprint,
           vgg(excerpt_s=30).fingerprint, vgg(precision="bf16").fingerprint, vgg(fingerprint=FP2).fingerprint}
    assert len(fps) == 6


def test_multi_model_qualified_blocks():
    s = VectorSpec.for_model("msd_vgg+msd_musicnn", fingerprint=[FP, FP2], layers="pool5,msd_musicnn:penultimate")
    assert s.models == ("msd_vgg", "msd_musicnn") and s.model == "msd_vgg+msd_musicnn"
    assert s.layers == (qualify("msd_vgg", "pool5"), "msd_musicnn:penultimate")
    assert s.dim == 128 + 200 and [e.model for e in s.layout] == ["msd_vgg", "msd_musicnn"]
    assert s.layers_for("msd_musicnn") == ("penultimate",)
    assert s.model_fingerprint == combine_fingerprints([FP, FP2]) != FP
    full = VectorSpec.for_model(["msd_vgg", "msd_musicnn"], fingerprint=[FP, FP2])
    assert full.dim == 640 + 953
    assert VectorSpec.from_json(json.loads(json.dumps(s.to_json()))) == s
    assert VectorSpec.from_json(s.manifest_fields()) == s


def test_check_compatible_one_line_names_both_sides():
    a, b = vgg(), vgg(aggregation="mean+std")
    a.check_compatible(vgg())
    a.check_compatible(a.with_layers(None))  # None means all blocks: same vectors
    with pytest.raises(SpecMismatchError) as ei:
        a.check_compatible(b, what="head 'genre.head'", other_what="store s.ekstore")
    msg = str(ei.value)
    assert "\n" not in msg and "head 'genre.head'" in msg and "store s.ekstore" in msg
    assert "aggregation mean ≠ mean+std" in msg and "rebuild" in msg
    with pytest.raises(SpecMismatchError, match="fingerprint"):
        a.check_compatible(vgg(fingerprint=FP2))
    with pytest.raises(SpecMismatchError, match="precision fp32 ≠ int8"):
        a.check_compatible(vgg(precision="int8"))
    # an unknown fingerprint on one side is not a mismatch by itself
    a.check_compatible(vgg(fingerprint=None).replace(parts=(ModelPart("msd_vgg", None, a.parts[0].blocks),)))


@pytest.mark.parametrize("bad", [0, -1, float("nan"), float("inf"), "x"])
def test_excerpt_must_be_finite_positive(bad):
    with pytest.raises(SpecError, match="excerpt"):
        vgg(excerpt_s=bad)


def test_invalid_fields_refused():
    with pytest.raises(SpecError, match="aggregation"):
        vgg(aggregation="max")
    with pytest.raises(SpecError, match="precision"):
        vgg(precision="fp8")
    with pytest.raises(SpecError, match="unknown layer"):
        vgg(layers="pool9")
    with pytest.raises(SpecError, match="ambiguous"):
        VectorSpec.for_model("msd_vgg+mtt_vgg", fingerprint=[FP, FP2], layers="pool5")


def test_unknown_model_fingerprint_names_the_fetch_command():
    s = VectorSpec((ModelPart("msd_vgg", None, (Block("pool1", 128),)),))
    with pytest.raises(SpecError, match="embedkit models fetch msd_vgg"):
        _ = s.fingerprint


def _release_manifest(**over) -> dict:
    """A store manifest exactly as embedkit 0.1's collection wrote it (keys and layout entries)."""
    layout = [{"name": f"pool{i}", "block": f"pool{i}", "stat": "mean", "start": 128 * (i - 1), "stop": 128 * i}
              for i in range(1, 6)]
    names = [f"pool{i}" for i in range(1, 6)]
    m = {"model": "msd_vgg", "fingerprint": FP, "dim": 640, "layout": layout,
         "model_blocks": [{"name": n, "size": 128} for n in names], "layers": names, "aggregation": "mean",
         "excerpt_s": None, "patch_dim": None, "n_tags": 0, "tag_labels": None, "sample_rate": 16000,
         "settings_fingerprint": settings_fingerprint(FP, layers=names, aggregation="mean", excerpt_s=None),
         "format_version": 1}
    m.update(over)
    return m


def test_reads_release_store_manifest():
    m = _release_manifest()
    s = VectorSpec.from_json(m)
    assert s == vgg() and s.fingerprint == m["settings_fingerprint"] and s.precision == "fp32"
    # test stores of 0.1 (write_arrays): layers None, layout of (name, size) pairs or "all"
    s2 = VectorSpec.from_json({"model": "rand", "fingerprint": "test", "dim": 8, "layers": None,
                               "layout": [{"name": "all", "start": 0, "stop": 8}], "aggregation": "mean"})
    assert s2.dim == 8 and s2.layers is None
    assert s2.fingerprint == settings_fingerprint("test", layers=None, aggregation="mean", excerpt_s=None)


@pytest.mark.parametrize("key,value,match", [
    ("dim", 240, "'dim' says 240"),
    ("dim", "640", "'dim' must be"),
    ("layers", "pool1", "'layers' must be a list"),
    ("aggregation", 3, "'aggregation' must be str"),
    ("excerpt_s", float("nan"), "excerpt"),
])
def test_manifest_damage_is_one_line(key, value, match):
    with pytest.raises(SpecError, match=match) as ei:
        VectorSpec.from_json(_release_manifest(**{key: value}), source="S/manifest.json")
    assert str(ei.value).startswith("S/manifest.json: ") and "\n" not in str(ei.value)


def test_reads_release_head_and_index_cards():
    names = [f"pool{i}" for i in range(1, 6)]
    spec = vgg(layers="4,5", aggregation="mean+std", excerpt_s=30)
    head_card = {"format": "embedkit-head", "format_version": 1, "input_layout": spec.layout_json(),
                 "input_dim": 512, "layers": ["pool5"], "model": "msd_vgg", "model_fingerprint": FP,
                 "store_settings_fingerprint": spec.fingerprint, "aggregation": "mean+std",
                 "store_layers": ["pool4", "pool5"], "excerpt_s": 30.0}
    assert VectorSpec.from_json(head_card) == spec
    assert VectorSpec.from_json({**head_card, **spec.card_fields()}) == spec
    full = vgg()
    index_card = {"format": 1, "kind": "flat", "dim": 640, "source": "tracks",
                  "store": {"path": "/x", "fingerprint": full.fingerprint, "model": "msd_vgg",
                            "model_fingerprint": FP, "settings": "model=msd_vgg layers=all aggregation=mean excerpt=none"}}
    got = VectorSpec.from_json(index_card)
    assert got.compatible(full) and got.dim == 640
    index_card["store"]["settings"] = f"model=msd_vgg layers={','.join(names)} aggregation=mean excerpt=none"
    assert VectorSpec.from_json(index_card).fingerprint == full.fingerprint
    with pytest.raises(SpecError, match="names no model"):
        VectorSpec.from_json({"format": "embedkit-head", "input_layout": spec.layout_json(), "input_dim": 512})


def test_json_round_trip_is_standard_json():
    s = vgg(layers="2", excerpt_s=10, precision="bf16")
    text = json.dumps(s.to_json(), allow_nan=False)
    back = VectorSpec.from_json(json.loads(text))
    assert back == s and back.fingerprint == s.fingerprint and hash(back) == hash(s)


class _Emb:
    name = "msd_vgg"

    def __init__(self, fp):
        from embedkit.features import FeatureLayout

        self.fingerprint = fp
        self.layout = FeatureLayout(tuple(Block(f"pool{i}", 128) for i in range(1, 6)))
        self.calls = []

    def embed_files(self, paths, **kw):
        self.calls.append(kw)
        return iter(())


def test_bind_refuses_other_weights_and_fixes_settings():
    spec = vgg(layers="5", aggregation="mean+std", excerpt_s=20)
    with pytest.raises(SpecMismatchError, match="models fetch"):
        spec.bind(_Emb(FP2))
    e = spec.bind(_Emb(FP))
    list(e.embed_files(["x.wav"], workers=1))
    assert e.embedder.calls[-1] == {"layers": ["pool5"], "aggregate": "mean+std", "excerpt_s": 20.0, "workers": 1}
    assert e.name == "msd_vgg" and VectorSpec.for_embedder(e.embedder) == vgg()
    assert math.isclose(spec.excerpt_s, 20.0) and np.isscalar(spec.dim)
