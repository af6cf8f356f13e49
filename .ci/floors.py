#!/usr/bin/env python3
"""Print the declared dependency floors of setup.cfg as exact pins (``pkg>=1.2`` -> ``pkg==1.2.*``).

Used by ``make test-floors``: install exactly the minimums we promise and run the fast tests on them.
Reads ``install_requires`` and the ``test`` extra; markers (``; platform_machine == ...``) are kept.
"""
from __future__ import annotations

import configparser
import re
import sys
from pathlib import Path


def floors(cfg: Path, extras: tuple[str, ...] = ("test",)) -> list[str]:
    """``setup.cfg`` requirement lines with every ``>=`` floor turned into ``==1.2.*``."""
    p = configparser.ConfigParser()
    p.read(cfg)
    lines = p["options"]["install_requires"].splitlines()
    for extra in extras:
        lines += p["options.extras_require"][extra].splitlines()
    out = []
    for line in (s.strip() for s in lines):
        if not line or line.startswith("#"):
            continue
        req, _, marker = line.partition(";")
        m = re.fullmatch(r"([A-Za-z0-9_.\[\]-]+)\s*>=\s*([0-9][^,\s]*)", req.strip())
        if m:  # the floor's release series: 1.26 -> 1.26.* (its bug-fix releases), 3 -> 3.0.*
            version = m.group(2) if "." in m.group(2) else m.group(2) + ".0"
            pinned = f"{m.group(1)}=={version}.*"
        else:
            pinned = req.strip()  # no floor declared: whatever pip picks
        out.append(pinned + (f"; {marker.strip()}" if marker else ""))
    return out


if __name__ == "__main__":
    cfg = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).resolve().parent.parent / "setup.cfg"
    print("\n".join(floors(cfg)))
