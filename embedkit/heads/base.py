"""What every head module shares: tasks, per-task defaults, the head errors and the estimator plumbing."""
from __future__ import annotations

import datetime as _dt
import inspect
import os
from pathlib import Path
from typing import Any, Self

import numpy as np

from ..errors import EmbedkitError

TASKS = ("classification", "regression", "multilabel")
DEFAULT_KIND = {"classification": "svm", "regression": "svr", "multilabel": "logreg"}
SELECTION_METRIC = {"classification": "accuracy", "regression": "r2", "multilabel": "roc_auc"}


class HeadError(EmbedkitError):
    """A head cannot be trained, saved, loaded or applied (message names the file or value)."""


class NotFittedError(HeadError, AttributeError):
    """The head has not been fitted yet: call ``fit`` or ``Head.load`` first."""


class HeadEstimator:
    """scikit-learn plumbing shared by `Head` and `AttentionHead` (so nested_cv and the CLI treat both alike):
    parameters are the constructor's arguments; ``output_names`` from the fitted ``classes_`` /
    ``labels_`` / ``targets_``. Subclasses define ``task`` and ``_check_fitted``."""

    task: str

    def _check_fitted(self) -> None:  # pragma: no cover - every head overrides it
        raise NotImplementedError

    def get_params(self, deep: bool = True) -> dict:
        keys = [p for p in inspect.signature(type(self).__init__).parameters if p != "self"]
        return {k: getattr(self, k) for k in keys}

    def set_params(self, **params: Any) -> Self:
        for k, v in params.items():
            setattr(self, k, v)
        return self

    def clone(self) -> Self:
        return type(self)(**self.get_params())

    def _output_fields(self) -> dict:
        """The card's output names by task: ``classes``, ``labels``, or ``targets`` + ``y_1d``."""
        if self.task == "classification":
            return {"classes": self.output_names}
        if self.task == "multilabel":
            return {"labels": self.output_names}
        return {"targets": self.output_names, "y_1d": bool(self.y_1d_)}  # type: ignore[attr-defined]

    def _write(self, path: str | os.PathLike, card: dict, arrays: dict[str, np.ndarray], *, info: dict | None,
               overwrite: bool) -> Path:
        """Add ``info`` and the provenance (embedkit version, UTC time, library versions) to ``card``, write it
        with ``arrays`` (`embedkit.heads.card.write_head`, atomic) and keep it as ``card_``; the head folder."""
        from .._version import __version__
        from .card import library_versions, write_head  # lazy: card imports this module

        card.update(info or {})
        card["embedkit_version"] = __version__
        card["created"] = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
        card["library_versions"] = library_versions()
        out = write_head(path, card, arrays, overwrite=overwrite)
        self.card_ = card
        return out

    @property
    def output_names(self) -> list[str]:
        """Class, tag or target names in output column order."""
        self._check_fitted()
        if self.task == "classification":
            return [str(c) for c in self.classes_]  # type: ignore[attr-defined]
        return list(self.labels_ if self.task == "multilabel" else self.targets_)  # type: ignore[attr-defined]
