"""The registry of head kinds: which estimators `Head` can fit, for which tasks, and how.

Built-in kinds (fitted by `embedkit.heads.selection.fit_config`): ``svm``, ``logreg``, ``mlp``
(classification), ``svr``, ``ridge``, ``mlp`` (regression), ``logreg``, ``mlp`` (multilabel).

A new kind lives in its own module and registers itself when imported::

    # embedkit/heads/attention.py
    from .registry import HeadKind, register
    from .models import Model, register_model

    @register_model                      # so that a saved head's card can be loaded again
    class AttentionModel(Model):
        kind = "attention"               # card "model_type"
        ...                              # arrays(), meta(), from_arrays(), scores(Z)

    register(HeadKind("attention", tasks=("classification", "multilabel"), fit=fit_attention,
                      grid=lambda task: [...], defaults=lambda task: {...}, input="patches"))

``fit(task, Z, y, params, *, class_weight, seed, K=None) -> Model`` fits one hyper-parameter setting on
standardised input; ``grid(task)`` / ``defaults(task)`` give the candidates searched by the inner CV
and the fixed setting used when data are too few. ``input`` says what one example is: ``"tracks"``
(a track vector, the default) or ``"patches"`` (a track's per-patch vectors; such a kind supplies its
own ``estimator``, an importable ``"module:Class"`` with the `Head` API).

Modules listed in `PLUGINS` are imported on first use of the registry when they exist, so a kind
named there needs no edit of any other file (the CLI's ``--head`` choices come from `names`).
"""
from __future__ import annotations

import importlib
import importlib.util
from collections.abc import Callable
from dataclasses import dataclass

from .base import TASKS, HeadError

#: Optional modules that register more kinds (imported lazily, skipped when absent).
PLUGINS: dict[str, str] = {"attention": "embedkit.heads.attention"}


@dataclass(frozen=True)
class HeadKind:
    """One estimator a head can be: its ``name``, the ``tasks`` it can do and how to fit it
    (``fit`` None = built-in, fitted by `embedkit.heads.selection.fit_config`)."""

    name: str
    tasks: tuple[str, ...]
    fit: Callable | None = None
    grid: Callable[[str], list[dict]] | None = None
    defaults: Callable[[str], dict] | None = None
    input: str = "tracks"
    estimator: str | None = None
    description: str = ""


_KINDS: dict[str, HeadKind] = {}
_plugins_loaded = False


def register(kind: HeadKind) -> HeadKind:
    """Add (or replace) a head kind; returns it."""
    bad = [t for t in kind.tasks if t not in TASKS]
    if bad:
        raise HeadError(f"head kind {kind.name!r}: unknown task(s) {bad}; expected {', '.join(TASKS)}")
    _KINDS[kind.name] = kind
    return kind


def _load_plugins() -> None:
    global _plugins_loaded
    if _plugins_loaded:
        return
    _plugins_loaded = True
    for module in PLUGINS.values():
        try:
            if importlib.util.find_spec(module) is None:
                continue
        except (ImportError, ValueError):
            continue
        importlib.import_module(module)


def get(name: str) -> HeadKind:
    """The registered kind ``name`` (raises `HeadError` naming the known kinds)."""
    if name not in _KINDS:
        _load_plugins()
    try:
        return _KINDS[name]
    except KeyError:
        raise HeadError(f"unknown head kind {name!r}; expected one of {', '.join(names())}") from None


def estimator_class(name: str) -> type | None:
    """The class that fits and loads kind ``name`` when it is not `Head` (its ``estimator``), else None."""
    est = get(name).estimator
    if est is None:
        return None
    module, _, attr = est.partition(":")
    return getattr(importlib.import_module(module), attr)


def names(task: str | None = None) -> list[str]:
    """Registered kind names (those that can do ``task``, when given), built-ins first."""
    _load_plugins()
    return [k for k, v in _KINDS.items() if task is None or task in v.tasks]


for _k in (
    HeadKind("svm", ("classification",), description="support vector machine (Choi et al.'s grid)"),
    HeadKind("logreg", ("classification", "multilabel"), description="logistic regression"),
    HeadKind("mlp", ("classification", "regression", "multilabel"), description="small ReLU MLP"),
    HeadKind("svr", ("regression",), description="support vector regression"),
    HeadKind("ridge", ("regression",), description="ridge regression"),
):
    register(_k)
BUILTIN = tuple(_KINDS)
