"""Small downstream heads on embedding vectors: classify, regress or tag from a few labels.

    from embedkit.heads import Head
    head = Head("classification", "svm", layout=store.layout).fit(X, y)
    head.save("genre.head"); Head.load("genre.head").predict(X)

Modules, one job each:

- `base`: tasks, per-task defaults, `HeadError` / `NotFittedError`;
- `layout`: `InputLayout` (which columns belong to which network block) and layer-subset grids;
- `models`: plain-array numpy inference models (linear, kernel SVC with Platt probabilities,
  kernel SVR, MLP), identical to scikit-learn's to ~1e-9;
- `selection`: fitting one setting with scikit-learn (`fit_config`), hyper-parameter grids (Choi's
  SVM grid), the inner-CV search and Platt calibration;
- `head`: the `Head` estimator (fit / predict / save / load / align);
- `card`: the files of a saved head (``card.json`` + ``weights.npz``, checksummed, no pickle);
- `registry`: the head kinds. **Adding a kind** (e.g. ``attention``): write
  ``embedkit/heads/attention.py`` that defines its inference model (subclass `models.Model`,
  decorated with `models.register_model`) and calls ``registry.register(HeadKind("attention",
  tasks=(...), fit=..., grid=..., defaults=..., input="patches"))``; `registry.PLUGINS` already
  names that module, so it is imported on first use and ``--head attention`` appears in the CLI.

The folds of the inner CV come from `embedkit.folds.cv_folds`, the same splitter that
`embedkit.evaluation` uses for its outer folds.
"""
from __future__ import annotations

from .base import DEFAULT_KIND, SELECTION_METRIC, TASKS, HeadError, HeadEstimator, NotFittedError
from .card import (
    CARD_FILE,
    HEAD_FORMAT,
    HEAD_FORMAT_VERSION,
    WEIGHTS_FILE,
    _array_sha,
    _json_default,
    check_compatible,
    read_card,
    read_head,
    write_head,
)
from .card import library_versions as _library_versions
from .head import Head, _inner_splits
from .layout import InputLayout, parse_layers_grid
from .models import (
    _MODEL_TYPES,
    MODEL_TYPES,
    KernelSVC,
    KernelSVR,
    LinearModel,
    MLPModel,
    Model,
    _kernel,
    _Model,
    _predict_index,
    _scores_of,
    _sq_dists,
    platt_fit,
    platt_proba,
    register_model,
)
from ..activations import sigmoid as _sigmoid  # noqa: F401  (old private names, kept for callers)
from ..activations import softmax as _softmax  # noqa: F401
from . import registry
from .registry import BUILTIN, HeadKind, register
from .selection import (
    _C_ORDER,
    _GAMMA_ORDER,
    CHOI_C,
    CHOI_GAMMA,
    KERNEL_CACHE_MAX,
    _balanced_weights,
    _calibrate_svc,
    _fit_config,
    _fit_predict_precomputed,
    _resolve_gamma,
    _score_fold,
    _search,
    _subsample,
    _svc_from_sklearn,
    default_grid,
    default_params,
    fit_config,
    selection_score,
)

#: Built-in kinds per task (compatibility; the registry is the source: `registry.names(task)`).
KINDS = {t: tuple(k for k in BUILTIN if t in registry.get(k).tasks) for t in TASKS}


def load_head(path: str) -> HeadEstimator:
    """Open a saved head of any registered kind: `Head` for track vectors, or the kind's own estimator
    (e.g. `embedkit.heads.attention.AttentionHead` for per-patch input), chosen from its card."""
    kind = read_card(path).get("kind")
    own = registry.estimator_class(kind) if kind in registry.names() else None
    return (own or Head).load(path)
