"""One declaration per option: traits, flags, help and the merge all come from the schema."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from IPython.core.interactiveshell import InteractiveShell
from traitlets import Bool, Int, Unicode

from llmscript_magic._notebook.config import CellOptions, arguments, merge, traits
from llmscript_magic._notebook.magics import GenerateMagics
from llmscript_magic._pipeline.options import Options, declared, option


def _flags(parser: Any) -> dict[str, Any]:
    return {a.dest: a for a in parser._actions if a.option_strings}


def test_every_option_is_a_trait_or_a_flag_with_the_same_help_and_default() -> None:
    trait_map = GenerateMagics.class_traits(config=True)
    flags = _flags(GenerateMagics.generate.parser)
    for name, info, value in declared(CellOptions):
        user = info.name or name
        assert info.config or info.flag, name
        if info.config:
            trait = trait_map[user]
            assert trait.help == info.help
            assert trait.default() == (info.text if info.parse else
                                           "" if value is None and isinstance(trait, Unicode)
                                           else value), name
        else:
            assert user not in trait_map
        if info.flag:
            action = flags[name]
            assert f"--{user.replace('_', '-')}" in action.option_strings
            assert action.help == info.help.replace("%", "%%")
        else:
            assert name not in flags
    # nothing configurable or flagged exists outside the schema
    schema = {info.name or name for name, info, _ in declared(CellOptions)}
    assert set(trait_map) <= schema
    assert set(flags) <= {name for name, _, _ in declared(CellOptions)}


def test_one_declaration_adds_a_trait_a_flag_and_the_merge() -> None:
    """What adding an option takes: one field. Traits, flags and merge follow."""

    @dataclass
    class Extra(CellOptions):
        shout: bool = option(False, "Ask for upper-case output.")
        depth: int = option(3, "How deep to go.", low=1)

    made = traits(Extra)
    assert isinstance(made["shout"], Bool) and isinstance(made["depth"], Int)

    @arguments(Extra, name="%extra")
    def magic(line: str, cell: str) -> None:  # pragma: no cover - only parsed
        """Extra magic."""

    configured = type("C", (), {**{k: v.default_value for k, v in made.items()
                                   if not k.startswith("_")}, "prices": {}})()
    opts = merge(Extra, configured, magic.parser.parse_args(["--shout", "--depth", "5"]))
    assert opts.shout is True and opts.depth == 5
    opts = merge(Extra, configured, magic.parser.parse_args([]))
    assert opts.shout is False and opts.depth == 3
    with pytest.raises(ValueError, match="--depth must be at least 1, got 0"):
        merge(Extra, configured, magic.parser.parse_args(["--depth", "0"]))


def test_flags_override_config_and_no_flags_switch_config_off(ip: InteractiveShell) -> None:
    gm = ip.magics_manager.registry["GenerateMagics"]
    ip.run_line_magic("config", "GenerateMagics.run = True")
    ip.run_line_magic("config", "GenerateMagics.memory = '1g'")
    parse = gm.generate.parser.parse_args
    assert merge(CellOptions, gm, parse([])).run is True
    assert merge(CellOptions, gm, parse(["--no-run"])).run is False
    assert merge(CellOptions, gm, parse([])).memory_mb == 1024
    assert merge(CellOptions, gm, parse(["--memory", "512m"])).memory_mb == 512
    assert merge(CellOptions, gm, parse(["--allow-imports", "pandas, json"])).allow_imports \
        == frozenset({"pandas", "json"})


def test_environment_defaults_are_read_when_the_magic_is_made(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """LLMSCRIPT_REPLAY set after import (papermill, nbconvert) still counts."""
    monkeypatch.setenv("LLMSCRIPT_REPLAY", str(tmp_path / "nb.ipynb"))
    assert GenerateMagics(None).replay == str(tmp_path / "nb.ipynb")
    monkeypatch.delenv("LLMSCRIPT_REPLAY")
    assert GenerateMagics(None).replay == ""


def test_braces_in_flags_are_not_expanded(ip: InteractiveShell, capsys: Any) -> None:
    """`{n}` in a flag is ours (e.g. --check), never IPython's variable expansion."""
    ip.user_ns["n"] = 5
    result = ip.run_cell('%%generate --model "x{n}:y"\nSum the rows.')
    assert not result.success
    assert "Unknown provider 'x{n}'" in str(result.error_in_exec)


def test_api_key_is_not_in_the_options_repr() -> None:
    assert "sk-secret" not in repr(Options(api_key="sk-secret"))


def test_bad_choice_is_one_line_naming_the_trait(ip: InteractiveShell) -> None:
    ip.run_line_magic("config", "GenerateMagics.sandbox = 'dockr'")
    result = ip.run_cell("%%generate\nSum the rows.")
    assert "GenerateMagics.sandbox = 'dockr' is not one of docker, local, course, none" \
        in str(result.error_in_exec)
