"""The one vector spec: what a stored vector *is*, as one immutable value.

A `VectorSpec` says which model(s) made a vector (names + weight fingerprints + their feature blocks),
which blocks were kept (``layers``), how patches were aggregated (``mean`` | ``mean+std``), which
excerpt of each file was used (``excerpt_s``, None = whole file) and at which numeric precision the
network ran (``fp32`` | ``bf16`` | ``int8``). From those follow the column ``layout`` of the vector,
its ``dim`` and its ``fingerprint`` (same fingerprint ⇒ same vectors, bit for bit).

Store manifests, head cards and index cards carry it (``to_json`` / ``from_json``; the keys written by
embedkit 0.1 are read too), every "embed the way this store/head was made" path asks it for an
embedder (`VectorSpec.embedder`), and every compatibility question is `VectorSpec.check_compatible`,
which raises `SpecMismatchError` with one line naming both sides and the way out.

Several models (issue 16): ``models=("msd_vgg", "msd_musicnn")`` concatenates the per-patch features of
the models in that order; block names are then qualified ``"msd_vgg:pool5"`` (`qualify`), and the
combined model fingerprint is `combine_fingerprints` of the per-model ones. ``spec.model`` is the
``"+"``-joined name that `Embedder.from_pretrained` receives.

>>> spec = VectorSpec.for_model("msd_vgg", fingerprint="f" * 64)
>>> spec.dim, spec.layout[0].name, spec.layout[-1].stop
(640, 'pool1', 640)
"""
from __future__ import annotations

import hashlib
import json
import math
import os
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .errors import EmbedkitError, ModelMismatchError
from .features import AGGREGATIONS, Block, FeatureLayout, parse_layer_list
from .precision import PRECISIONS  # the one list of precisions (issue 15)

SPEC_KIND = "vector_spec"
SPEC_FORMAT_VERSION = 1
#: separator of a qualified block name in multi-model specs: ``"msd_musicnn:penultimate"``.
QUALIFIER = ":"
#: separator of model names in a multi-model name: ``"msd_vgg+msd_musicnn"``.
MODEL_JOIN = "+"


class SpecError(EmbedkitError, ValueError):
    """A vector spec is invalid or cannot be read (message names the file or key)."""


class SpecMismatchError(ModelMismatchError):
    """Two artefacts hold or expect vectors of different specs (one line: both sides + the way out)."""


def qualify(model: str, block: str) -> str:
    """``"msd_vgg", "pool5"`` → ``"msd_vgg:pool5"`` (block name inside a multi-model vector)."""
    return f"{model}{QUALIFIER}{block}"


def combine_fingerprints(fingerprints: Sequence[str | None]) -> str | None:
    """Model fingerprint of a multi-model vector: sha256 of the ordered per-model fingerprints.

    A single fingerprint is returned unchanged (so single-model artefacts keep theirs); None if any is unknown.
    """
    fps = list(fingerprints)
    if any(f is None for f in fps):
        return None
    if len(fps) == 1:
        return fps[0]
    return hashlib.sha256(json.dumps({"models": fps}).encode()).hexdigest()


def check_excerpt(value: Any, *, what: str = "excerpt_s") -> float | None:
    """None (whole file) or a finite positive number of seconds; anything else raises `SpecError`."""
    if value is None:
        return None
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise SpecError(f"{what} must be a number of seconds, given {value!r}") from None
    if not math.isfinite(v) or v <= 0:
        raise SpecError(f"{what} must be a finite number of seconds > 0, given {value!r} (omit it for the whole file)")
    return v


@dataclass(frozen=True)
class LayoutEntry:
    """Columns ``[start, stop)`` of a track vector: statistic ``stat`` of feature block ``block``.

    ``name`` is ``block`` for means and ``block + "_std"`` for standard deviations; ``model`` is set in
    multi-model specs.
    """

    name: str
    start: int
    stop: int
    stat: str = "mean"
    block: str = ""
    model: str | None = None

    @property
    def size(self) -> int:
        return self.stop - self.start

    def to_json(self) -> dict:
        d: dict[str, Any] = {"name": self.name, "block": self.block or self.name, "stat": self.stat,
                             "start": self.start, "stop": self.stop}
        if self.model is not None:
            d["model"] = self.model
        return d


@dataclass(frozen=True)
class ModelPart:
    """One model of a spec: its name, weight fingerprint (None = not known here) and feature blocks."""

    name: str
    fingerprint: str | None
    blocks: tuple[Block, ...]

    @property
    def dim(self) -> int:
        return sum(b.size for b in self.blocks)


@dataclass(frozen=True)
class VectorSpec:
    """What a track vector is: model parts, kept layers, aggregation, excerpt, precision.

    ``layers``: chosen block names (qualified ``model:block`` when several models), in block order, or
    None = all blocks (kept as None so that artefacts written with None keep their fingerprint).
    Construct with `for_model`, `for_embedder` or `from_json`; the constructor validates everything.
    """

    parts: tuple[ModelPart, ...]
    layers: tuple[str, ...] | None = None
    aggregation: str = "mean"
    excerpt_s: float | None = None
    precision: str = "fp32"
    _cache: dict = field(default_factory=dict, init=False, repr=False, compare=False, hash=False)

    def __post_init__(self) -> None:
        if not self.parts:
            raise SpecError("a vector spec needs at least one model")
        names = [p.name for p in self.parts]
        if len(set(names)) != len(names):
            raise SpecError(f"model listed twice in {MODEL_JOIN.join(names)}")
        for p in self.parts:
            if not p.blocks or any(b.size <= 0 for b in p.blocks):
                raise SpecError(f"model {p.name}: feature blocks must be non-empty with positive sizes")
        if self.aggregation not in AGGREGATIONS:
            raise SpecError(f"aggregation must be one of {', '.join(AGGREGATIONS)}, given {self.aggregation!r}")
        if self.precision not in PRECISIONS:
            raise SpecError(f"precision must be one of {', '.join(PRECISIONS)}, given {self.precision!r}")
        object.__setattr__(self, "excerpt_s", check_excerpt(self.excerpt_s))
        if self.layers is not None:
            object.__setattr__(self, "layers", self._parse_layers(self.layers))

    def _parse_layers(self, layers: str | Iterable[str | int]) -> tuple[str, ...]:
        return _parse(self, layers)

    # ---- construction ------------------------------------------------------------------------

    @classmethod
    def for_model(
        cls,
        model: str | Sequence[str],
        *,
        layers: str | Iterable[str | int] | None = None,
        aggregation: str = "mean",
        excerpt_s: float | None = None,
        precision: str = "fp32",
        fingerprint: str | Sequence[str | None] | None = None,
    ) -> VectorSpec:
        """The spec of vectors that ``model`` (a name, ``"a+b"`` or a list) makes with these settings.

        Blocks come from the model cards; fingerprints from the installed weights (None if a model is not
        installed, in which case `fingerprint` raises naming ``embedkit models fetch``) unless given.
        ``layers`` None means all blocks (stored as the full list, as ``embedkit embed`` does).
        """
        from . import pretrained

        names = _split_models(model)
        if fingerprint is None or isinstance(fingerprint, str):
            fps: list[str | None] = [fingerprint] if len(names) == 1 else [None] * len(names)
        else:
            fps = list(fingerprint)
        if len(fps) != len(names):
            raise SpecError(f"{len(fps)} fingerprints given for {len(names)} models")
        parts = []
        for name, fp in zip(names, fps):
            name = pretrained.check_name(name)
            blocks = FeatureLayout.from_card(pretrained.card(name)).blocks
            parts.append(ModelPart(name, fp if fp is not None else pretrained.model_fingerprint(name), blocks))
        spec = cls(tuple(parts), None, aggregation, excerpt_s, precision)
        return spec.with_layers(layers if layers is not None else spec.block_names)

    @classmethod
    def for_embedder(
        cls,
        emb: Any,
        *,
        layers: str | Iterable[str | int] | None = None,
        aggregation: str = "mean",
        excerpt_s: float | None = None,
        precision: str | None = None,
    ) -> VectorSpec:
        """The spec of vectors that the loaded embedder ``emb`` (``name``, ``fingerprint``, ``layout``) makes.

        A multi-model embedder may expose ``parts`` (a tuple of `ModelPart`) and ``precision``.
        """
        parts = getattr(emb, "parts", None)
        if not parts:
            parts = (ModelPart(str(emb.name), emb.fingerprint, tuple(emb.layout.blocks)),)
        prec = precision or getattr(emb, "precision", None) or "fp32"
        spec = cls(tuple(parts), None, aggregation, excerpt_s, prec)
        return spec.with_layers(layers if layers is not None else spec.block_names)

    def with_layers(self, layers: str | Iterable[str | int] | None) -> VectorSpec:
        """The same spec with other ``layers`` (parsed: ``"4,5"``, ``["pool5"]``, None = all, kept as None)."""
        return VectorSpec(self.parts, None if layers is None else self._parse_layers(layers), self.aggregation,
                          self.excerpt_s, self.precision)

    def replace(self, **changes: Any) -> VectorSpec:
        """A copy with some of ``layers``, ``aggregation``, ``excerpt_s``, ``precision``, ``parts`` changed."""
        d = {"parts": self.parts, "layers": self.layers, "aggregation": self.aggregation,
             "excerpt_s": self.excerpt_s, "precision": self.precision}
        unknown = set(changes) - set(d)
        if unknown:
            raise TypeError(f"unknown spec field(s): {', '.join(sorted(unknown))}")
        d.update(changes)
        return VectorSpec(**d)

    # ---- identity ----------------------------------------------------------------------------

    @property
    def models(self) -> tuple[str, ...]:
        return tuple(p.name for p in self.parts)

    @property
    def model(self) -> str:
        """``"msd_vgg"`` or ``"msd_vgg+msd_musicnn"``."""
        return MODEL_JOIN.join(self.models)

    @property
    def model_fingerprints(self) -> tuple[str | None, ...]:
        return tuple(p.fingerprint for p in self.parts)

    @property
    def model_fingerprint(self) -> str | None:
        """The single model's fingerprint, or `combine_fingerprints` of several; None if one is unknown."""
        return combine_fingerprints(self.model_fingerprints)

    @property
    def multi_model(self) -> bool:
        return len(self.parts) > 1

    @property
    def fingerprint(self) -> str:
        """sha256 hex of everything that decides the vector (same ⇒ bit-identical vectors).

        For one fp32 model this equals embedkit 0.1's store ``settings_fingerprint``.
        """
        if "fp" not in self._cache:
            mfp = self.model_fingerprint
            if mfp is None:
                missing = [p.name for p in self.parts if p.fingerprint is None]
                raise SpecError(
                    f"model {', '.join(missing)} is not installed, its fingerprint is unknown; "
                    f"run: embedkit models fetch {missing[0]}"
                )
            doc: dict[str, Any] = {
                "model": mfp,
                "layers": list(self.layers) if self.layers is not None else None,
                "aggregation": self.aggregation,
                "excerpt_s": self.excerpt_s,
            }
            if self.precision != "fp32":
                doc["precision"] = self.precision
            self._cache["fp"] = hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()
        return self._cache["fp"]

    # ---- layout ------------------------------------------------------------------------------

    @property
    def feature_layout(self) -> FeatureLayout:
        """Per-patch feature of all models, concatenated in model order (qualified names if several)."""
        if self.multi_model:
            return FeatureLayout(tuple(Block(qualify(p.name, b.name), b.size) for p in self.parts for b in p.blocks))
        return FeatureLayout(self.parts[0].blocks)

    @property
    def block_names(self) -> tuple[str, ...]:
        return tuple(self.feature_layout.names)

    @property
    def selected_layers(self) -> tuple[str, ...]:
        """``layers`` with None resolved to all blocks."""
        return self.layers if self.layers is not None else self.block_names

    @property
    def patch_layout(self) -> FeatureLayout:
        """The kept blocks of one patch vector (what ``--patches`` stores), ``patch_dim`` wide."""
        return self.feature_layout.subset(list(self.selected_layers))

    @property
    def patch_dim(self) -> int:
        return self.patch_layout.dim

    @property
    def layout(self) -> tuple[LayoutEntry, ...]:
        """Ordered blocks of the track vector: all means, then (``mean+std``) all standard deviations."""
        if "layout" not in self._cache:
            owner = {qualify(p.name, b.name) if self.multi_model else b.name: p.name for p in self.parts for b in p.blocks}
            out = []
            for e in self.patch_layout.to_json(aggregation=self.aggregation):
                out.append(LayoutEntry(e["name"], e["start"], e["stop"], e["stat"], e["block"],
                                       owner[e["block"]] if self.multi_model else None))
            self._cache["layout"] = tuple(out)
        return self._cache["layout"]

    @property
    def dim(self) -> int:
        """Width of the track vector."""
        return self.patch_dim * (2 if self.aggregation == "mean+std" else 1)

    def layout_json(self) -> list[dict]:
        """``[{"name", "block", "stat", "start", "stop"}]`` as in store manifests."""
        return [e.to_json() for e in self.layout]

    def layers_for(self, model: str) -> tuple[str, ...]:
        """The kept blocks of one model, unqualified (what that model's embedder is asked for)."""
        if not self.multi_model:
            return self.selected_layers
        pre = model + QUALIFIER
        return tuple(n[len(pre):] for n in self.selected_layers if n.startswith(pre))

    def embed_layers(self) -> list[str]:
        """The ``layers`` argument for the embedder: kept block names (qualified for several models)."""
        return list(self.selected_layers)

    # ---- compatibility -----------------------------------------------------------------------

    def describe(self) -> str:
        """``model=msd_vgg layers=all aggregation=mean excerpt=none`` (+ ``precision=bf16`` if not fp32)."""
        layers = "all" if self.layers is None or tuple(self.layers) == self.block_names else ",".join(self.layers)
        ex = "none" if self.excerpt_s is None else f"{self.excerpt_s:g}s"
        s = f"model={self.model} layers={layers} aggregation={self.aggregation} excerpt={ex}"
        return s + (f" precision={self.precision}" if self.precision != "fp32" else "")

    def differences(self, other: VectorSpec) -> list[str]:
        """Human-readable fields in which ``other`` differs, e.g. ``["aggregation mean ≠ mean+std"]``."""
        out = []
        if self.models != other.models:
            out.append(f"model {self.model} ≠ {other.model}")
        elif any(a and b and a != b for a, b in zip(self.model_fingerprints, other.model_fingerprints)):
            out.append(f"model fingerprint {str(self.model_fingerprint)[:16]}… ≠ {str(other.model_fingerprint)[:16]}… "
                       "(other weights or preprocessing)")
        if self.models == other.models and self.selected_layers != other.selected_layers:
            out.append(f"layers {','.join(self.selected_layers)} ≠ {','.join(other.selected_layers)}")
        if self.aggregation != other.aggregation:
            out.append(f"aggregation {self.aggregation} ≠ {other.aggregation}")
        if self.excerpt_s != other.excerpt_s:
            out.append(f"excerpt {_fmt_excerpt(self.excerpt_s)} ≠ {_fmt_excerpt(other.excerpt_s)}")
        if self.precision != other.precision:
            out.append(f"precision {self.precision} ≠ {other.precision}")
        if not out and self.dim != other.dim:
            out.append(f"dim {self.dim} ≠ {other.dim}")
        return out

    def compatible(self, other: VectorSpec) -> bool:
        return not self.differences(other)

    def check_compatible(
        self,
        other: VectorSpec | dict,
        *,
        what: str = "this artefact",
        other_what: str = "the vectors",
        hint: str | None = None,
    ) -> None:
        """Raise `SpecMismatchError` (one line: both sides, what differs, the way out) unless ``other`` matches.

        ``what`` names ``self`` (e.g. ``"head 'genre.head'"``), ``other_what`` the other side (e.g.
        ``"store music.ekstore"``). Model fingerprints are compared where both sides know them.
        """
        if isinstance(other, dict):
            other = VectorSpec.from_json(other)
        diff = self.differences(other)
        if not diff:
            return
        way = hint or (f"use vectors made with {self.describe()} (embed again with these settings), "
                       f"or rebuild {what} on {other_what}")
        raise SpecMismatchError(
            f"{what} expects vectors of {self.describe()}, {other_what} are {other.describe()} "
            f"({'; '.join(diff)}); {way}"
        )

    # ---- serialisation -----------------------------------------------------------------------

    def to_json(self) -> dict:
        """JSON-ready dict (``kind`` = ``"vector_spec"``); `from_json` reads it back exactly."""
        d: dict[str, Any] = {
            "kind": SPEC_KIND,
            "format_version": SPEC_FORMAT_VERSION,
            "model": self.model,
            "models": list(self.models),
            "model_fingerprints": list(self.model_fingerprints),
            "model_blocks": [{"model": p.name, "blocks": [{"name": b.name, "size": b.size} for b in p.blocks]}
                             for p in self.parts],
            "layers": None if self.layers is None else list(self.layers),
            "aggregation": self.aggregation,
            "excerpt_s": self.excerpt_s,
            "precision": self.precision,
            "dim": self.dim,
            "layout": self.layout_json(),
        }
        if self.model_fingerprint is not None:
            d["fingerprint"] = self.fingerprint
        return d

    def manifest_fields(self) -> dict:
        """The keys a store manifest carries for this spec (embedkit 0.1's keys + ``precision``/``models``)."""
        d: dict[str, Any] = {
            "model": self.model,
            "fingerprint": self.model_fingerprint,
            "dim": self.dim,
            "layout": self.layout_json(),
            "model_blocks": [{"name": b.name, "size": b.size} for b in self.feature_layout.blocks],
            "layers": None if self.layers is None else list(self.layers),
            "aggregation": self.aggregation,
            "excerpt_s": self.excerpt_s,
            "precision": self.precision,
        }
        if self.multi_model:
            d["models"] = list(self.models)
            d["model_fingerprints"] = list(self.model_fingerprints)
            d["model_parts"] = [{"model": p.name, "blocks": [{"name": b.name, "size": b.size} for b in p.blocks]}
                                for p in self.parts]
        if self.model_fingerprint is not None:
            d["settings_fingerprint"] = self.fingerprint
        return d

    def card_fields(self, prefix: str = "store_") -> dict:
        """The keys a head card carries (embedkit 0.1's ``model``/``store_*`` keys + ``vector_spec``)."""
        return {
            "model": self.model,
            "model_fingerprint": self.model_fingerprint,
            f"{prefix}settings_fingerprint": self.fingerprint if self.model_fingerprint else None,
            "aggregation": self.aggregation,
            f"{prefix}layers": None if self.layers is None else list(self.layers),
            "excerpt_s": self.excerpt_s,
            "precision": self.precision,
            "vector_spec": self.to_json(),
        }

    @classmethod
    def from_json(cls, d: dict, *, source: str | os.PathLike | None = None) -> VectorSpec:
        """Read a spec from `to_json` output, a dict holding ``"vector_spec"``, a store manifest, a head card
        (``model``/``model_fingerprint``/``store_layers``/``aggregation``/``excerpt_s``/``input_layout``) or
        an index card (``store: {model, model_fingerprint, settings}`` + ``dim``) of embedkit 0.1.

        Raises `SpecError` (naming ``source`` and the key) for wrong types or a layout that disagrees with ``dim``.
        """
        where = f"{source}: " if source is not None else ""
        if not isinstance(d, dict):
            raise SpecError(f"{where}expected a JSON object, found {type(d).__name__}")
        try:
            if isinstance(d.get("vector_spec"), dict):
                return cls.from_json(d["vector_spec"], source=source)
            if d.get("kind") == SPEC_KIND:
                return cls._from_native(d, where)
            if isinstance(d.get("store"), dict) and "model_fingerprint" in d["store"]:
                return cls._from_index_card(d, where)
            if "input_layout" in d or "store_settings_fingerprint" in d or "store_layers" in d:
                return cls._from_head_card(d, where)
            if "layout" in d or "dim" in d:
                return cls._from_manifest(d, where)
        except SpecError as exc:
            msg = str(exc)
            raise SpecError(msg if not where or msg.startswith(where) else where + msg) from None
        except (TypeError, ValueError, KeyError, AttributeError) as exc:
            raise SpecError(f"{where}malformed vector settings ({type(exc).__name__}: {exc})") from None
        raise SpecError(f"{where}no vector spec here (no model, layout or dim)")

    @classmethod
    def _from_native(cls, d: dict, where: str) -> VectorSpec:
        if int(_get(d, "format_version", int, where, default=1)) > SPEC_FORMAT_VERSION:
            raise SpecError(f"{where}vector spec format {d['format_version']} is newer than this embedkit; upgrade embedkit")
        fps = _get(d, "model_fingerprints", list, where)
        blocks = _get(d, "model_blocks", list, where)
        if len(fps) != len(blocks):
            raise SpecError(f"{where}'model_fingerprints' and 'model_blocks' list different numbers of models")
        parts = tuple(
            ModelPart(str(b["model"]), _opt_str(fp, "model_fingerprints", where),
                      tuple(Block(str(x["name"]), _int(x["size"], "model_blocks", where)) for x in b["blocks"]))
            for fp, b in zip(fps, blocks)
        )
        spec = cls(parts, _layers(d.get("layers"), where), _get(d, "aggregation", str, where, default="mean"),
                   d.get("excerpt_s"), _get(d, "precision", str, where, default="fp32"))
        _check_dim(spec, d, "dim", where)
        return spec

    @classmethod
    def _from_manifest(cls, d: dict, where: str) -> VectorSpec:
        dim = _int(_get(d, "dim", None, where), "dim", where)
        agg = _get(d, "aggregation", str, where, default="mean")
        layers = _layers(d.get("layers"), where)
        layout = _get(d, "layout", list, where, default=None)
        prec = _get(d, "precision", str, where, default="fp32")
        if isinstance(d.get("model_parts"), list):
            fps = _get(d, "model_fingerprints", list, where)
            parts = tuple(
                ModelPart(str(b["model"]), _opt_str(fp, "model_fingerprints", where),
                          tuple(Block(str(x["name"]), _int(x["size"], "model_parts", where)) for x in b["blocks"]))
                for fp, b in zip(fps, d["model_parts"])
            )
        else:
            model = _get(d, "model", str, where, default="unknown")
            fp = _opt_str(d.get("fingerprint"), "fingerprint", where)
            mb = _get(d, "model_blocks", list, where, default=None)
            if mb:
                blocks = tuple(Block(str(b["name"]), _int(b["size"], "model_blocks", where)) for b in mb)
            else:
                blocks = _blocks_from_layout(model, layout, dim, agg, layers, where)
            parts = (ModelPart(model, fp, blocks),)
        spec = cls(parts, layers, agg, d.get("excerpt_s"), prec)
        if layout is not None:
            _check_layout(spec, layout, where)
        _check_dim(spec, d, "dim", where)
        return spec

    @classmethod
    def _from_head_card(cls, d: dict, where: str) -> VectorSpec:
        model = d.get("model")
        if not isinstance(model, str) or not model:
            raise SpecError(f"{where}head card names no model (a head saved without a vector spec)")
        layout = _get(d, "input_layout", list, where, default=None)
        dim = _int(d.get("input_dim"), "input_dim", where) if d.get("input_dim") is not None else None
        agg = _get(d, "aggregation", str, where, default="mean")
        layers = _layers(d.get("store_layers"), where)
        if dim is None and layout:
            dim = max(int(e["stop"]) for e in layout)
        names = _split_models(model)
        if len(names) > 1:
            raise SpecError(f"{where}multi-model head card without a 'vector_spec' entry")
        blocks = _blocks_from_layout(model, layout, dim, agg, layers, where)
        spec = cls((ModelPart(model, _opt_str(d.get("model_fingerprint"), "model_fingerprint", where), blocks),),
                   layers, agg, d.get("excerpt_s"), _get(d, "precision", str, where, default="fp32"))
        if dim is not None and spec.dim != dim:
            raise SpecError(f"{where}layout gives {spec.dim} columns but 'input_dim' says {dim}")
        return spec

    @classmethod
    def _from_index_card(cls, d: dict, where: str) -> VectorSpec:
        s = d["store"]
        if isinstance(s.get("vector_spec"), dict):
            return cls.from_json(s["vector_spec"])
        settings = _parse_describe(str(s.get("settings") or ""))
        model = str(s.get("model") or settings.get("model") or "unknown")
        layers = None if settings.get("layers", "all") == "all" else tuple(settings["layers"].split(","))
        agg = settings.get("aggregation", "mean")
        ex = settings.get("excerpt", "none")
        excerpt = None if ex == "none" else float(ex.rstrip("s"))
        dim = _int(d.get("dim"), "dim", where) if d.get("dim") is not None and d.get("source", "tracks") == "tracks" else None
        blocks = _blocks_from_layout(model, None, dim, agg, layers, where)
        return cls((ModelPart(model, _opt_str(s.get("model_fingerprint"), "model_fingerprint", where), blocks),),
                   layers, agg, excerpt, settings.get("precision", "fp32"))

    # ---- embedding ---------------------------------------------------------------------------

    def embedder(self, batch_size: int = 32, **kwargs: Any) -> SpecEmbedder:
        """An embedder that embeds exactly the way this spec says (model(s), precision, layers, aggregation, excerpt).

        Loads ``Embedder.from_pretrained(spec.model, ...)`` (``"a+b"`` for several models; ``precision=``
        passed when not fp32) and refuses weights whose fingerprint differs from the spec's.
        """
        from .embedder import Embedder

        if self.precision != "fp32":
            kwargs["precision"] = self.precision
        emb = Embedder.from_pretrained(self.model, batch_size=batch_size, **kwargs)
        return self.bind(emb)

    def bind(self, emb: Any) -> SpecEmbedder:
        """Wrap an already loaded embedder (checked against this spec) so it embeds the way the spec says."""
        self.check_compatible(VectorSpec.for_embedder(emb, layers=self.layers, aggregation=self.aggregation,
                                                      excerpt_s=self.excerpt_s, precision=self.precision),
                              what=f"vectors of {self.model}", other_what=f"the loaded model {getattr(emb, 'name', '?')}",
                              hint=f"run: embedkit models fetch {self.models[0]} --force, or use the embedkit that made them")
        return SpecEmbedder(self, emb)


class SpecEmbedder:
    """An embedder bound to a `VectorSpec`: ``embed_file`` / ``embed_files`` / ``embed_audio`` use the spec's
    layers, aggregation and excerpt. Other attributes (``name``, ``labels``, ``tag``, ...) are the wrapped
    embedder's (``.embedder``)."""

    def __init__(self, spec: VectorSpec, emb: Any) -> None:
        self.spec = spec
        self.embedder = emb

    def _kw(self, kw: dict) -> dict:
        kw.setdefault("layers", self.spec.embed_layers())
        kw.setdefault("aggregate", self.spec.aggregation)
        kw.setdefault("excerpt_s", self.spec.excerpt_s)
        return kw

    def embed_file(self, path: str | os.PathLike, **kw: Any) -> Any:
        return self.embedder.embed_file(path, **self._kw(kw))

    def embed_files(self, paths: Iterable[str | os.PathLike], **kw: Any) -> Iterator[Any]:
        return self.embedder.embed_files(paths, **self._kw(kw))

    def embed_audio(self, y: np.ndarray, sr: int, **kw: Any) -> Any:
        kw = self._kw(kw)
        kw.pop("excerpt_s", None)
        return self.embedder.embed_audio(y, sr, **kw)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.embedder, name)


# ---- helpers ------------------------------------------------------------------------------------


def _split_models(model: str | Sequence[str]) -> list[str]:
    names = [m.strip() for m in model.split(MODEL_JOIN)] if isinstance(model, str) else [str(m).strip() for m in model]
    if not names or any(not n for n in names):
        raise SpecError(f"invalid model name {model!r}")
    return names


def _fmt_excerpt(v: float | None) -> str:
    return "none" if v is None else f"{v:g}s"


def _get(d: dict, key: str, typ: type | None, where: str, *, default: Any = ...) -> Any:
    if key not in d or d[key] is None:
        if default is ...:
            raise SpecError(f"{where}missing key {key!r}")
        return default
    v = d[key]
    if typ is not None and not isinstance(v, typ):
        raise SpecError(f"{where}{key!r} must be {typ.__name__}, found {type(v).__name__} {v!r:.40}")
    return v


def _int(v: Any, key: str, where: str) -> int:
    if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or int(v) < 0:
        raise SpecError(f"{where}{key!r} must be a non-negative integer, found {v!r:.40}")
    return int(v)


def _opt_str(v: Any, key: str, where: str) -> str | None:
    if v is None:
        return None
    if not isinstance(v, str):
        raise SpecError(f"{where}{key!r} must be a string, found {type(v).__name__}")
    return v


def _layers(v: Any, where: str) -> tuple[str, ...] | None:
    if v is None:
        return None
    if isinstance(v, str) or not isinstance(v, list) or not all(isinstance(x, str) for x in v):
        raise SpecError(f"{where}'layers' must be a list of block names or null, found {v!r:.60}")
    return tuple(v)


def _blocks_from_layout(model: str, layout: list | None, dim: int | None, agg: str, layers: Sequence[str] | None,
                        where: str) -> tuple[Block, ...]:
    """The model's blocks: from its card when the layout/dim fit it, else from the layout's mean entries."""
    from . import pretrained

    card_blocks: tuple[Block, ...] | None = None
    try:
        card_blocks = FeatureLayout.from_card(pretrained.source_card(pretrained.check_name(model))).blocks
    except (EmbedkitError, OSError, KeyError):
        card_blocks = None
    factor = 2 if agg == "mean+std" else 1
    if layout:
        means = []
        for e in layout:
            if not isinstance(e, dict):
                raise SpecError(f"{where}'layout' entries must be objects, found {e!r:.40}")
            name = str(e["name"])
            stat = e.get("stat") or ("std" if name.endswith("_std") and factor == 2 else "mean")
            if stat == "mean":
                means.append(Block(str(e.get("block") or name), _int(e["stop"], "layout", where) - _int(e["start"], "layout", where)))
        if card_blocks is not None:
            by_name = {b.name: b for b in card_blocks}
            if all(b.name in by_name and by_name[b.name].size == b.size for b in means):
                return card_blocks
        if len(means) == len(layout) and factor == 2 and len(means) == 1:  # an unnamed "all" layout of mean+std
            half = means[0].size // 2
            return (Block(means[0].name, half),) if half > 0 else tuple(means)
        return tuple(means)
    if card_blocks is not None:
        chosen = set(layers) if layers is not None else {b.name for b in card_blocks}
        if dim is None or sum(b.size for b in card_blocks if b.name in chosen) * factor == dim:
            return card_blocks
    if dim is None:
        raise SpecError(f"{where}cannot tell the feature blocks of model {model!r} (no layout, no dim)")
    return (Block("all", max(dim // factor, 1)),)


def _check_layout(spec: VectorSpec, layout: list, where: str) -> None:
    """The stored layout must cover the same columns as the spec's (names may be the old, shorter form)."""
    mine = [(e.start, e.stop) for e in spec.layout]
    theirs = [(int(e["start"]), int(e["stop"])) for e in layout]
    if mine != theirs:
        stop = theirs[-1][1] if theirs else 0
        raise SpecError(f"{where}'layout' covers columns {stop} but model blocks, layers and aggregation give {spec.dim}")


def _check_dim(spec: VectorSpec, d: dict, key: str, where: str) -> None:
    if d.get(key) is not None and _int(d[key], key, where) != spec.dim:
        raise SpecError(f"{where}'{key}' says {d[key]} but the layout covers {spec.dim} columns "
                        f"({spec.describe()}); the file was edited or damaged")


def _parse_describe(s: str) -> dict[str, str]:
    """``"model=msd_vgg layers=all aggregation=mean excerpt=none"`` → dict."""
    out = {}
    for tok in s.split():
        k, _, v = tok.partition("=")
        if v:
            out[k] = v
    return out


def _parse(spec: VectorSpec, layers: str | Iterable[str | int]) -> tuple[str, ...]:
    names = list(spec.block_names)
    if spec.multi_model and not isinstance(layers, str):
        layers = list(layers)
    items: Any = layers
    if spec.multi_model:  # allow unqualified names that are unique across models
        toks = layers.split(",") if isinstance(layers, str) else [str(x) for x in layers]
        short: dict[str, list[str]] = {}
        for n in names:
            short.setdefault(n.split(QUALIFIER, 1)[1].lower(), []).append(n)
        items = []
        for t in toks:
            t = t.strip()
            if t and QUALIFIER not in t and not t.isdigit() and t.lower() in short:
                cands = short[t.lower()]
                if len(cands) > 1:
                    raise SpecError(f"layer {t!r} is ambiguous; use one of {', '.join(cands)}")
                t = cands[0]
            items.append(t)
    try:
        return parse_layer_list(items, names)
    except ValueError as exc:
        raise SpecError(str(exc)) from None


__all__ = [
    "LayoutEntry", "ModelPart", "PRECISIONS", "SpecEmbedder", "SpecError", "SpecMismatchError", "VectorSpec",
    "check_excerpt", "combine_fingerprints", "qualify",
]
