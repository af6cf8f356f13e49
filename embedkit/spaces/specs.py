"""The vector spec of a space's vectors: read it from a store, compare two of them (one line on mismatch).

Thin glue over `embedkit.spec` (the one vector spec): a space card stores ``VectorSpec.to_json()`` of
the vectors it was fitted on, and every use checks the vectors' spec against it.
"""
from __future__ import annotations

from typing import Any

from ..spec import SpecError, SpecMismatchError, VectorSpec


def store_spec(store: Any) -> dict:
    """``VectorSpec.to_json()`` of an open store's track vectors."""
    spec = getattr(store, "spec", None)
    if not isinstance(spec, VectorSpec):
        spec = VectorSpec.from_json(store.manifest, source=getattr(store, "path", None))
    return spec.to_json()


def as_spec(spec: Any) -> VectorSpec | None:
    """A `VectorSpec` from a spec, its JSON dict or a store; None when it cannot be read."""
    if isinstance(spec, VectorSpec):
        return spec
    if hasattr(spec, "manifest"):
        spec = store_spec(spec)
    if not spec:
        return None
    try:
        return VectorSpec.from_json(dict(spec))
    except SpecError:
        return None


def describe(spec: Any) -> str:
    s = as_spec(spec)
    return s.describe() if s is not None else "(unknown spec)"


def check(mine: Any, theirs: Any, *, what: str, other_what: str, hint: str) -> None:
    """Raise `SpecMismatchError` (one line) when ``theirs`` is not the spec ``mine`` was fitted on."""
    a, b = as_spec(mine), as_spec(theirs)
    if a is None or b is None:
        return
    a.check_compatible(b, what=what, other_what=other_what, hint=hint)
    fa, fb = (dict(mine).get("fingerprint") if isinstance(mine, dict) else None,
              dict(theirs).get("fingerprint") if isinstance(theirs, dict) else None)
    if fa and fb and fa != fb:
        raise SpecMismatchError(f"{what} was fitted on vectors of spec {fa[:12]}…, {other_what} are {fb[:12]}… "
                                f"({a.describe()}); {hint}")
