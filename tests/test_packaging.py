"""Packaging: the wheel maps cli/ and pretrained/ into the embedkit namespace; imports stay light."""
from __future__ import annotations

import json
import re
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def wheel_build(tmp_path_factory) -> tuple[Path, str]:
    """Build the wheel once: ``(wheel path, the build's verbose output)``."""
    out = tmp_path_factory.mktemp("wheel")
    proc = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-v", "-w", str(out),
                           str(REPO)], check=True, capture_output=True, text=True)
    (whl,) = out.glob("embedkit-*.whl")
    return whl, proc.stdout + proc.stderr


@pytest.fixture(scope="module")
def wheel_path(wheel_build) -> Path:
    return wheel_build[0]


def test_build_prints_no_setuptools_warning(wheel_build):
    """`pip install -e .` / a wheel build is silent: no package-data or discovery warnings from setuptools."""
    log = wheel_build[1]
    bad = [ln for ln in log.splitlines() if "Warning" in ln or "!!" in ln or "would be ignored" in ln]
    assert not bad, "setuptools warned while building:\n" + "\n".join(bad[:10])


def test_every_subpackage_is_packaged(wheel_names):
    """A new package under embedkit/ (or cli/, pretrained/) must be listed in setup.cfg's `packages`."""
    missing = []
    for src, dst in (("embedkit", "embedkit"), ("cli", "embedkit/cli"), ("pretrained", "embedkit/pretrained")):
        for init in (REPO / src).rglob("__init__.py"):
            rel = init.parent.relative_to(REPO / src).as_posix()
            name = dst if rel == "." else f"{dst}/{rel}"
            if "__pycache__" not in name and f"{name}/__init__.py" not in wheel_names:
                missing.append(name.replace("/", "."))
    assert not missing, f"add to setup.cfg [options] packages: {', '.join(sorted(missing))}"


def test_wheel_ships_type_marker_and_model_cards(wheel_names):
    assert "embedkit/py.typed" in wheel_names
    assert sum(n.startswith("embedkit/pretrained/cards/") and n.endswith(".json") for n in wheel_names) >= 4


@pytest.fixture(scope="module")
def wheel_names(wheel_path) -> list[str]:
    with zipfile.ZipFile(wheel_path) as zf:
        return zf.namelist()


def test_wheel_installs_cli_and_pretrained_inside_embedkit(wheel_names):
    assert "embedkit/cli/main.py" in wheel_names
    assert "embedkit/pretrained/convert.py" in wheel_names
    assert "embedkit/pretrained/cards/msd_vgg.json" in wheel_names
    assert "embedkit/backbones/vgg.py" in wheel_names
    tops = {n.split("/")[0] for n in wheel_names}
    assert not tops & {"cli", "pretrained", "tests", "benchmarks"}, tops
    assert not any(n.endswith((".h5", ".wav", ".ogg")) for n in wheel_names)


def test_wheel_metadata(wheel_path):
    with zipfile.ZipFile(wheel_path) as zf:
        (entry,) = [n for n in zf.namelist() if n.endswith("entry_points.txt")]
        assert "embedkit = embedkit.cli.main:main" in zf.read(entry).decode()
        (meta,) = [n for n in zf.namelist() if n.endswith("METADATA")]
        text = zf.read(meta).decode()
    assert "Requires-Python: >=3.11" in text
    for dep in ("tensorflow", "keras", "faiss-cpu", "numpy", "click", "soundfile", "soxr"):
        assert f"Requires-Dist: {dep}" in text
    assert "faiss-gpu" in text and ('extra == "gpu"' in text or "extra == 'gpu'" in text)


def _modules_after(code: str) -> set[str]:
    out = subprocess.run([sys.executable, "-c", code + "\nimport sys, json; print(json.dumps(sorted(sys.modules)))"],
                         check=True, capture_output=True, text=True)
    return set(json.loads(out.stdout.strip().splitlines()[-1]))


def test_import_embedkit_does_not_import_tensorflow():
    mods = _modules_after("import embedkit, embedkit.features, embedkit.frontend, embedkit.audio")
    assert not {"tensorflow", "keras", "faiss"} & mods


def test_cli_help_does_not_import_tensorflow():
    code = ("import sys\nfrom embedkit.cli.main import cli\n"
            "try:\n    cli.main(['--help'], standalone_mode=False)\nexcept SystemExit:\n    pass\n"
            "for sub in ['models', 'tag', 'embed']:\n"
            "    try:\n        cli.main([sub, '--help'], standalone_mode=False)\n    except SystemExit:\n        pass\n")
    mods = _modules_after(code)
    assert "embedkit.cli.main" in mods
    assert not {"tensorflow", "keras", "faiss"} & mods


def test_design_doc_names_every_module():
    """docs/design.md gives each module its one job: a new module must get a row there."""
    doc = (REPO / "docs" / "design.md").read_text()
    named = set(re.findall(r"^\| `([\w./]+)` \|", doc, re.M))
    families = " ".join(re.findall(r"Families: ([\w, ]+)\.", doc))
    missing = []
    for src, prefix in (("embedkit", ""), ("cli", "cli/"), ("pretrained", "pretrained")):
        for p in sorted((REPO / src).rglob("*.py")):
            rel = p.relative_to(REPO / src).with_suffix("")
            parts = [x for x in rel.parts if x != "__init__"]
            if "__pycache__" in rel.parts or parts in (["_version"],) or (src == "cli" and not parts):
                continue
            if src == "cli":
                name = prefix + ".".join(parts)
            elif src == "pretrained":
                name = ".".join(["pretrained", *parts])
            else:
                name = ".".join(parts) or "embedkit"
            if name not in named and not (len(parts) == 2 and parts[0] in ("backbones", "datasets")
                                          and not parts[1].startswith("_") and parts[1] in families):
                missing.append(name)
    assert not missing, f"add a row to docs/design.md for: {', '.join(missing)}"
