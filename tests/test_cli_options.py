"""The CLI vocabulary: each option defined once (cli/options.py) and meaning the same in every command."""
from __future__ import annotations

import re
from pathlib import Path

import click
import pytest

from embedkit.cli import options
from embedkit.cli.main import COMMANDS, cli

REPO = Path(__file__).resolve().parent.parent


def all_commands() -> list[tuple[str, click.Command]]:
    ctx = click.Context(cli)
    out = []
    for name in sorted(COMMANDS):
        cmd = cli.get_command(ctx, name)
        if isinstance(cmd, click.Group):
            out += [(f"{name} {sub}", c) for sub, c in sorted(cmd.commands.items())]
        else:
            out.append((name, cmd))
    return out


def shared_options() -> dict[str, click.Parameter]:
    """flag -> the option object defined in cli/options.py (by its shown spellings; hidden aliases left out)."""
    flags = {}
    for name in dir(options):
        if name.endswith("_option") and name not in ("verbose_option", "quiet_option"):
            opt = options.option_object(getattr(options, name))
            for flag in opt.opts:
                if flag not in getattr(opt, "hidden_aliases", ()):
                    flags[flag] = opt
    return flags


#: flags that must mean exactly one thing (the issue's list, plus the settings of every vector)
STRICT = ["-k", "--top-k", "--json", "-m", "--model", "--patches", "--segments", "--metric", "--select-metric", "--excerpt",
          "--batch-size", "--layers", "--aggregate", "-f", "--force", "--workers", "--wait"]


def signature(p: click.Parameter) -> tuple:
    t = p.type
    return (tuple(p.opts), p.name, type(t).__name__, getattr(t, "choices", None), getattr(t, "min", None),
            getattr(t, "max", None), p.default if not callable(p.default) else "callable", getattr(p, "is_flag", None),
            getattr(p, "help", None))


def test_shared_flags_mean_the_same_everywhere():
    """A flag that cli/options.py defines is never redefined differently by a command."""
    shared = shared_options()
    bad = []
    for cname, cmd in all_commands():
        for p in cmd.params:
            shown = [f for f in getattr(p, "opts", []) if f not in getattr(p, "hidden_aliases", ())]
            for flag in shown:
                ref = shared.get(flag)
                if flag in STRICT and ref is not None and signature(p) != signature(ref):
                    bad.append(f"'{cname}' redefines {flag}: {signature(p)} vs cli/options.py {signature(ref)}")
    assert not bad, "\n".join(bad)


@pytest.mark.parametrize("flag", STRICT)
def test_flags_have_one_definition(flag):
    sigs = {signature(p) for _, cmd in all_commands() for p in cmd.params
            if flag in getattr(p, "opts", []) and flag not in getattr(p, "hidden_aliases", ())}
    assert len(sigs) <= 1, sigs


def test_top_k_has_one_default():
    defaults = {cname: p.default for cname, cmd in all_commands() for p in cmd.params if "--top-k" in getattr(p, "opts", [])}
    assert len(set(defaults.values())) == 1 and {"similar", "recommend", "tag", "predict"} <= set(defaults), defaults


def test_old_spellings_still_work_as_hidden_aliases():
    """`index build --patches` (now --segments) and `evaluate/train --metric` (now --select-metric)."""
    ctx = click.Context(cli)
    index_build = cli.get_command(ctx, "index").commands["build"]
    seg = next(p for p in index_build.params if "--segments" in p.opts)
    assert "--patches" in seg.opts and "--patches" not in (seg.get_help_record(ctx) or ("",))[0]
    for name in ("train", "evaluate"):
        sel = next(p for p in cli.get_command(ctx, name).params if "--select-metric" in getattr(p, "opts", []))
        assert "--metric" in sel.opts and "--metric" not in (sel.get_help_record(ctx) or ("",))[0]
    store = cli.get_command(ctx, "store")
    assert "list" in store.commands and "ls" in store.commands


def test_no_model_name_literals_in_the_cli():
    """The default model is `DEFAULT_MODEL` (embedkit.pretrained), never a literal in a command module."""
    hits = [f"{p.name}:{i}" for p in sorted((REPO / "cli").glob("*.py"))
            for i, line in enumerate(p.read_text().splitlines(), 1) if re.search(r"[\"']msd_vgg[\"']", line)]
    assert not hits, hits


def test_embed_store_options_defines_no_option_itself():
    text = (REPO / "cli" / "embed_store_options.py").read_text()
    assert "click.option(" not in text and "click.Option(" not in text
