"""Progress bars on stderr (tqdm), shown when stderr is a terminal or ``EMBEDKIT_PROGRESS=1``."""
from __future__ import annotations

import os
import sys
from collections.abc import Iterable
from typing import Any


def default_enabled() -> bool:
    """True when a bar is wanted by default: stderr is a terminal, or ``EMBEDKIT_PROGRESS=1``."""
    return sys.stderr.isatty() or os.environ.get("EMBEDKIT_PROGRESS") == "1"


def bar(iterable: Iterable | None = None, *, total: int | None = None, desc: str = "", enabled: bool = True,
        **kw: Any):
    """A tqdm bar on stderr (a no-op bar when ``enabled`` is False); wraps ``iterable`` when given."""
    from tqdm import tqdm

    return tqdm(iterable, total=total, desc=desc, disable=not enabled, file=sys.stderr, dynamic_ncols=True, **kw)
