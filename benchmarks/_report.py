"""Write a benchmark's results into its own section of docs/benchmarks.md (other sections untouched)."""
from __future__ import annotations

import datetime as _dt
import os
import platform
import re
from pathlib import Path

DOC = Path(__file__).resolve().parent.parent / "docs" / "benchmarks.md"
_HEADER = "# Benchmarks\n\nEach section is written by the script named in it; rerun the script to refresh it.\n"


def machine_line() -> str:
    """One line describing the machine: CPU model, cores, RAM, Python."""
    from embedkit.precision import cpu_model

    cpu = cpu_model()
    try:
        mem_kb = int(next(l for l in Path("/proc/meminfo").read_text().splitlines() if l.startswith("MemTotal")).split()[1])
        mem = f"{mem_kb / 2**20:.0f} GiB RAM"
    except (OSError, StopIteration):
        mem = "RAM unknown"
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return f"{cpu}, {cores} cores, {mem}, Python {platform.python_version()}"


def write_section(name: str, body_markdown: str, *, script: str) -> None:
    """Replace (or append) the section ``name`` of docs/benchmarks.md with ``body_markdown``."""
    DOC.parent.mkdir(parents=True, exist_ok=True)
    text = DOC.read_text() if DOC.exists() else _HEADER
    stamp = _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    section = (
        f"<!-- BEGIN {name} -->\n## {name}\n\n"
        f"`python {script}` — {stamp} — {machine_line()}\n\n{body_markdown.rstrip()}\n<!-- END {name} -->"
    )
    pattern = re.compile(rf"<!-- BEGIN {re.escape(name)} -->.*?<!-- END {re.escape(name)} -->", re.S)
    text = pattern.sub(lambda _: section, text) if pattern.search(text) else text.rstrip() + "\n\n" + section + "\n"
    DOC.write_text(text)


def markdown_table(headers: list[str], rows: list[list[object]]) -> str:
    """A GitHub-flavoured Markdown table."""
    def fmt(v: object) -> str:
        return f"{v:.4g}" if isinstance(v, float) else str(v)

    out = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    out += ["| " + " | ".join(fmt(v) for v in row) + " |" for row in rows]
    return "\n".join(out)
