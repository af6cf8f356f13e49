"""Fault injection: flip random bytes in every file of a small store, its index and a head (seeded).

Each command either answers exactly as on the intact copy, or exits non-zero with a one-line message
(exit 3 "some inputs failed": every stderr line an ``embedkit:`` line). Never a traceback, never an
"internal error" (an exception no check caught), never a different answer with exit code 0.

The default run is a few hundred trials (~30 s); ``-m slow`` runs a thousand, with every command on
each damaged copy. Commands run in-process (click's CliRunner isolation around `run_guarded`, the same
function as the console script).
"""
from __future__ import annotations

import csv
import json
import os
import random
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from embedkit.cli._common import run_guarded
from embedkit.cli.main import cli

N_ITEMS = 48
LAYOUT = [(f"pool{i}", 4) for i in range(1, 6)]
DEFAULT_TRIALS = int(os.environ.get("EMBEDKIT_FAULT_TRIALS", "300"))


@dataclass(frozen=True)
class Outcome:
    code: int
    out: str
    err: str


def invoke(*args: str) -> Outcome:
    """``embedkit ARGS`` in-process: exit code, stdout, stderr (as a user would see them).

    When the command writes a file (``-o FILE``), the file's content is part of its answer.
    """
    written = Path(args[args.index("-o") + 1]) if "-o" in args else None
    if written is not None and written.is_file():
        written.unlink()
    runner = CliRunner()
    with runner.isolation() as streams:
        code = run_guarded(cli, list(args))
        out, err = streams[0].getvalue(), streams[1].getvalue()
    out_text = out.decode("utf-8", "replace")
    if written is not None and written.is_file() and code == 0:
        out_text += "\n--- " + written.name + "\n" + _content(written)
    return Outcome(code, out_text, err.decode("utf-8", "replace"))


def _content(path: Path) -> str:
    """A file's content as text to compare: an .npz by its arrays (its zip entries carry time stamps)."""
    if path.suffix == ".npz":
        import hashlib

        with np.load(path, allow_pickle=False) as z:
            return "\n".join(f"{k} {z[k].dtype} {z[k].shape} {hashlib.sha256(np.ascontiguousarray(z[k]).tobytes()).hexdigest()}"
                             for k in sorted(z.files) if k != "manifest")
    return path.read_text(errors="replace")


# ---- the artefacts: a store (with per-patch vectors), its index, a head ---------------------------------


def build_pristine(root: Path) -> Path:
    """``root/work``: ``st`` (store + ``st/index``), ``genre.head``, ``labels.csv``. Returns ``root/work``."""
    from embedkit.store import write_arrays

    work = root / "work"
    rng = np.random.default_rng(7)
    y = np.array(["jazz", "metal", "pop"])[np.arange(N_ITEMS) % 3]
    centres = np.zeros((3, 20), np.float32)
    centres[:, 8:12] = 2.0 * rng.normal(size=(3, 4))
    X = (rng.normal(size=(N_ITEMS, 20)) + centres[np.arange(N_ITEMS) % 3]).astype(np.float32)
    paths = [f"/music/album{i % 4}/t{i:03d}.ogg" for i in range(N_ITEMS)]
    patches = [rng.normal(size=(3, 20)).astype(np.float32) for _ in range(N_ITEMS)]
    write_arrays(work / "st", paths, X, layout=LAYOUT, fingerprint="fault-test", model="fake", patch=patches,
                 durations_s=[9.0] * N_ITEMS).close()
    with open(work / "labels.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["path", "label"])
        w.writerows(zip(paths, y))
    for args in (["index", "build", str(work / "st"), "--kind", "flat", "-q"],
                 ["train", str(work / "st"), str(work / "labels.csv"), "-o", str(work / "genre.head"), "--head", "logreg",
                  "--inner-folds", "2", "-j", "1", "-q"]):
        res = invoke(*args)
        assert res.code == 0, (args, res.err)
    return work


def commands(work: Path) -> dict[str, list[str]]:
    """Name -> argv of each command checked (the same paths on every trial, so outputs compare exactly)."""
    st, head = str(work / "st"), str(work / "genre.head")
    return {
        "store info": ["store", "info", st, "--json"],
        "store list": ["store", "list", st],
        "store export": ["store", "export", st, "--format", "csv", "-o", str(work / "export.csv")],
        "store export patches": ["store", "export", st, "--format", "npz", "--patches", "-o", str(work / "export.npz")],
        "store verify": ["store", "verify", st],
        "similar segments": ["similar", st, "3", "--segments", "-k", "3", "--exact", "--json"],
        "similar": ["similar", st, "1", "5", "-k", "4", "--json"],
        "similar exact": ["similar", st, "2", "-k", "4", "--exact", "--json"],
        "index info": ["index", "info", st, "--json"],
        "index build": ["index", "build", st, "--name", "fresh", "--kind", "flat", "--json"],
        "predict": ["predict", head, "--store", st, "--json"],
    }


#: which commands read which artefact (a damaged head only matters to predict)
READERS = {
    "store": ["store info", "store list", "store export", "store export patches", "store verify", "similar",
              "similar exact", "similar segments", "index build", "predict"],
    "index": ["similar", "index info", "store verify"],
    "head": ["predict"],
}

#: commands whose job is to report state: saying "damaged/unusable" with exit 0 is a right answer
REPORTERS = {"index info", "store info", "store verify"}

#: JSON keys whose value legitimately differs between two runs (time stamps, durations).
#: ``card_sha256`` (a card's digest of its own content) covers the card's time stamp, so it changes with it.
VOLATILE = {"created", "built", "build_s", "seconds", "elapsed_s", "time_s", "modified", "updated", "timestamp",
            "card_sha256"}


def normalise(name: str, out: str) -> str:
    """Output with volatile fields (time stamps, timings) removed, so that two equal answers compare equal."""
    if not out.strip().startswith(("{", "[")):
        return out
    try:
        doc = json.loads(out)
    except ValueError:
        return out

    def strip(o):
        if isinstance(o, dict):
            return {k: strip(v) for k, v in o.items() if k not in VOLATILE}
        if isinstance(o, list):
            return [strip(v) for v in o]
        return o

    return json.dumps(strip(doc), sort_keys=True)


def files_of(work: Path) -> dict[str, list[Path]]:
    """The files of each artefact (lock files excluded: they hold no data)."""
    out: dict[str, list[Path]] = {"store": [], "index": [], "head": []}
    for p in sorted(work.rglob("*")):
        if not p.is_file() or p.name in ("lock", "labels.csv") or p.suffix == ".lock":
            continue
        rel = p.relative_to(work).parts
        kind = "head" if rel[0] == "genre.head" else "index" if len(rel) > 1 and rel[1] == "index" else "store"
        if rel[0] == "st" or rel[0] == "genre.head":
            out[kind].append(p)
    return out


def flip(path: Path, rng: random.Random) -> str:
    """XOR 1-3 random bytes of ``path`` with random non-zero masks; returns a description."""
    data = bytearray(path.read_bytes())
    if not data:
        return "empty"
    spots = []
    for _ in range(rng.randint(1, 3)):
        i = rng.randrange(len(data))
        data[i] ^= rng.randint(1, 255)
        spots.append(i)
    path.write_bytes(bytes(data))
    return f"bytes {spots} of {len(data)}"


def judge(name: str, intact: Outcome, got: Outcome) -> str | None:
    """None when ``got`` is acceptable against ``intact``; else what is wrong."""
    if "Traceback" in got.err or "Traceback" in got.out:
        return f"traceback: {got.err.strip().splitlines()[-1] if got.err.strip() else got.out[-200:]}"
    if "internal error" in got.err:
        return f"uncaught exception: {got.err.strip()}"
    if got.code == 0:
        a, b = normalise(name, intact.out), normalise(name, got.out)
        if a == b:
            return None
        if name in REPORTERS and any(w in b for w in ("unusable", "damaged", "DAMAGED", "checksum")):
            return None  # an info/verify command whose answer is the damage itself
        i = next((j for j, (x, y) in enumerate(zip(a, b)) if x != y), min(len(a), len(b)))
        return f"a different answer with exit code 0 (…{a[max(0, i - 60):i + 40]!r} -> …{b[max(0, i - 60):i + 40]!r})"
    lines = got.err.strip().splitlines()
    if not lines:
        return f"exit {got.code} with no message"
    if got.code == 3:
        bad = [ln for ln in lines if not ln.startswith("embedkit:")]
        return f"exit 3 with a stray stderr line: {bad[0]!r}" if bad else None
    if len(lines) != 1:
        return f"exit {got.code} with a {len(lines)}-line message: {lines[:3]}"
    return None


@pytest.fixture(scope="module")
def pristine(tmp_path_factory):
    root = tmp_path_factory.mktemp("faults")
    work = build_pristine(root)
    keep = root / "pristine"
    shutil.copytree(work, keep, symlinks=True)
    cmds = commands(work)
    intact = {name: invoke(*argv) for name, argv in cmds.items()}
    for name, res in intact.items():
        assert res.code == 0, f"{name} fails on the intact copy: {res.err}"
    return root, work, keep, cmds, intact


def run_trials(pristine, n_trials: int, seed: int, *, all_commands: bool) -> list[str]:
    root, work, keep, cmds, intact = pristine
    rng = random.Random(seed)
    kinds = files_of(keep)
    targets = [(k, p.relative_to(keep)) for k, ps in kinds.items() for p in ps]
    failures = []
    for t in range(n_trials):
        kind, rel = targets[t % len(targets)] if t < len(targets) else rng.choice(targets)  # every file at least once
        shutil.rmtree(work)
        shutil.copytree(keep, work, symlinks=True)
        what = flip(work / rel, rng)
        names = READERS[kind] if all_commands else [rng.choice(READERS[kind])]
        for name in names:
            got = invoke(*cmds[name])
            problem = judge(name, intact[name], got)
            if problem:
                failures.append(f"trial {t}: {rel} ({what}) -> {name}: {problem}")
    return failures


def owner_summary(failures: list[str]) -> str:
    """Group failures by damaged file and command (to see whose area each is)."""
    from collections import Counter

    c = Counter()
    for f in failures:
        rel = f.split(": ", 1)[1].split(" (", 1)[0]
        name = f.split("-> ", 1)[1].split(":", 1)[0]
        c[(rel, name)] += 1
    return "\n".join(f"{n:4d}  {rel} -> {name}" for (rel, name), n in c.most_common())


def test_intact_copy_answers_and_every_file_is_covered(pristine):
    _, _, keep, _, intact = pristine
    kinds = files_of(keep)
    assert kinds["store"] and kinds["index"] and kinds["head"], kinds
    assert json.loads(intact["similar"].out)["queries"][0]["results"]
    assert len(intact["store export"].out.split("--- export.csv")[1].strip().splitlines()) == N_ITEMS + 1


#: (damaged file, command) -> why it still fails and whose area it is. Failures listed here make the test
#: xfail (named in the reason) instead of fail; any other failure fails it. Keep this list honest and short.
KNOWN_OPEN: dict[tuple[str, str, str], str] = {}


def _key(failure: str) -> tuple[str, str, str]:
    rel = failure.split(": ", 1)[1].split(" (", 1)[0]
    name, problem = failure.split("-> ", 1)[1].split(": ", 1)
    kind = next((k for k in ("different answer", "uncaught exception", "traceback") if problem.startswith(k)
                 or problem.startswith("a " + k)), problem)
    return rel, name, kind


def known(failure: str) -> str | None:
    rel, name, kind = _key(failure)
    return KNOWN_OPEN.get((rel, name, kind)) or KNOWN_OPEN.get((rel, "*", kind))


def check(failures: list[str], trials: int) -> None:
    unknown = [f for f in failures if known(f) is None]
    assert not unknown, f"{len(unknown)} bad outcomes in {trials} trials:\n{owner_summary(unknown)}\n" + "\n".join(unknown[:15])
    if failures:
        reasons = sorted({known(f) for f in failures})
        pytest.xfail(f"{len(failures)} bad outcome(s) in {trials} trials, all known open cases: " + " | ".join(reasons))


def test_flipped_bytes_never_give_a_wrong_answer_or_a_traceback(pristine):
    check(run_trials(pristine, DEFAULT_TRIALS, seed=1, all_commands=False), DEFAULT_TRIALS)


@pytest.mark.slow
def test_flipped_bytes_many_trials_every_command(pristine):
    check(run_trials(pristine, 1000, seed=2, all_commands=True), 1000)
