"""Traits, ``%%generate`` flags and their merge, all derived from the options schema.

``_pipeline/options.py`` (and ``CellOptions`` for the notebook's own options)
declares each option once; this module turns the declarations into traitlets
traits (``%config GenerateMagics.NAME``), ``magic_arguments`` flags and the
merge "flag if given, else trait", so the three can never drift apart.
"""

from __future__ import annotations

import argparse
import inspect
import os
import sys
import types
import typing
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any, TypeVar

from IPython.core.magic_arguments import argument, magic_arguments
from traitlets import Bool, Dict, Float, Int, TraitType, Unicode, default

from .._errors import ConfigurationError
from .._pipeline.options import OptionInfo, Options, declared, name_set, names, option
from .fix import LAST, cell_number

F = TypeVar("F", bound=Callable[..., Any])


@dataclass
class CellOptions(Options):
    """The pipeline's options plus what only a notebook cell has."""

    insert: bool = option(True, "Insert the generated code as a new cell below.")
    widgets: bool = option(True, "Show the interactive widget (when ipywidgets and a kernel "
                           "are present); False = plain text.", flag=False)
    prices: dict[str, Any] = option({}, "Price overrides: {'provider:model-prefix': [in, out] "
                                    "USD per million tokens}.", flag=False)
    context_names: tuple[str, ...] = option(
        (), "Notebook variables to describe to the model (schema and a few rows, never the "
        "whole value); {var} in the spec works too.", name="context", config=False,
        parse=names, metavar="VAR[,VAR]")
    input_names: tuple[str, ...] = option(
        (), "A file, or a notebook variable, for the script (repeatable): variables are "
        "defined in the script's namespace, files are put in its working folder.",
        name="input", config=False, repeat=True, metavar="PATH|VAR")
    schema_only: bool = option(False, "Describe --context variables without any values.",
                               config=False)
    refine: bool = option(False, "Follow up on this cell's previous generation (sent as "
                          "conversation history).", config=False)
    # -- files the script writes (saved by _notebook/save_files.py) --------------------
    save_files: bool = option(True, "Save the files the script writes in llmscript-files/ "
                              "beside the notebook (--no-files keeps them only in the "
                              "result).", name="files")
    files_to: str = option("", "Folder for the files the script writes; '' = llmscript-files/ "
                           "beside the notebook, '.' = the notebook's folder itself (data "
                           "files only, as everywhere).", metavar="DIR")
    overwrite: bool = option(False, "Replace files this cell saved before; without it (or for "
                             "any other file) a new name is used, e.g. 'totals (1).json'.")
    files_on_failure: bool = option(False, "Save the files even when the run or a check "
                                    "failed (default: kept in the result only).")
    # -- fix, aliases and provider policy (issue 19; see fix.py, policy.py) -------------
    fix: str | None = option(None, "Write a new version of cell N that raised (default: the "
                             "last cell that raised) from its code, traceback and the "
                             "variables it uses; the spec may be empty or add guidance. N may be "
                             "cell:ID, the notebook cell with that id (the Fix button's).",
                             config=False, const=LAST, parse=cell_number, metavar="N")
    aliases: dict[str, Any] = option({}, "Model aliases usable wherever a model is named: "
                                     "{'fast': 'anthropic:claude-haiku-5'}.", flag=False)
    allowed_providers: frozenset[str] | None = option(
        None, "Comma list: only these providers may be used ('' = any).", flag=False,
        parse=name_set, metavar="A,B")
    blocked_providers: frozenset[str] | None = option(
        None, "Comma list of providers that may not be used.", flag=False, parse=name_set,
        metavar="A,B")
    #: the options the course file decided (_course/settings.py): the widget's buttons obey
    course_locked: frozenset[str] = field(default=frozenset(), repr=False)
    # -- budgets (issue 27; see _course/budget.py and budgets.py) ----------------------
    session_budget: float | None = option(None, "USD this kernel may spend on model requests; "
                                          "a request that could overrun it is not sent.",
                                          flag=False, low=0)
    daily_budget: float | None = option(None, "USD you may spend a day across kernels "
                                        "(~/.local/share/llmscript-magic/spending.jsonl).",
                                        flag=False, low=0)


def _user_name(name: str, info: OptionInfo) -> str:
    return info.name or name


def _annotation(cls: type, name: str) -> Any:
    """One field's evaluated annotation (only declared options need theirs resolved)."""
    for klass in cls.__mro__:
        text = inspect.get_annotations(klass).get(name)
        if text is not None:
            if not isinstance(text, str):
                return text
            return eval(text, vars(sys.modules[klass.__module__]))  # our own annotations
    raise KeyError(name)


def _hint(cls: type, name: str) -> tuple[Any, bool]:
    """The field's type without ``| None``, and whether None is allowed."""
    hint = _annotation(cls, name)
    if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union:
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        return args[0], len(args) < len(typing.get_args(hint))
    return hint, False


def traits(cls: type = CellOptions) -> dict[str, Any]:
    """Class attributes for a Configurable: one trait per option with ``config=True``."""
    out: dict[str, Any] = {}
    for name, info, value in declared(cls):
        if not info.config:
            continue
        user = _user_name(name, info)
        base, optional = _hint(cls, name)
        trait: TraitType[Any, Any]
        if info.parse is not None or base is str:
            text = info.text if info.parse is not None else (value or "")
            trait = Unicode(text, allow_none=optional and info.parse is None,  # type: ignore[call-overload]
                            help=info.help)
        elif base is bool:
            trait = Bool(value, help=info.help)
        elif base is int:
            trait = Int(value, help=info.help)
        elif base is float:
            trait = Float(value, allow_none=optional, help=info.help)  # type: ignore[call-overload]
        elif typing.get_origin(base) is dict or base is dict:
            trait = Dict(default_value=value, help=info.help)
        else:  # pragma: no cover - a new option type needs a line above
            raise TypeError(f"no trait for option {name!r} of type {base!r}")
        out[user] = trait.tag(config=True)
        if info.env:
            out[f"_{user}_default"] = _env_default(user, info.env, trait.default_value)
    return out


def _env_default(user: str, env: str, fallback: Any) -> Any:
    @default(user)
    def dynamic(self: Any) -> Any:
        """Read the environment when the magic is created, not when we are imported."""
        return os.environ.get(env, fallback)

    return dynamic


def arguments(cls: type = CellOptions, *, name: str | None = None) -> Callable[[F], F]:
    """``magic_arguments`` with one flag per option with ``flag=True``, in schema order."""

    def decorate(func: F) -> F:
        for field_name, info, _ in reversed(declared(cls)):
            if not info.flag:
                continue
            user = _user_name(field_name, info)
            flags = [f"--{user.replace('_', '-')}"] + ([info.short] if info.short else [])
            kw: dict[str, Any] = {"dest": field_name, "help": info.help.replace("%", "%%"),
                                  "default": None}
            base, _ = _hint(cls, field_name)
            if info.parse is None and base is bool:  # a trait can be switched off per cell
                kw["action"] = argparse.BooleanOptionalAction if info.config else "store_true"
            elif info.repeat:
                kw.update(action="append", metavar=info.metavar)
            else:
                if info.parse is None and base in (int, float):
                    kw["type"] = base
                if info.const is not None:
                    kw.update(nargs="?", const=info.const)
                if info.choices:
                    kw["choices"] = list(info.choices)
                if info.metavar:
                    kw["metavar"] = info.metavar
            func = argument(*flags, **kw)(func)
        return magic_arguments(name)(func)

    return decorate


def merge(cls: type[Options], configured: Any, args: argparse.Namespace) -> Any:
    """Flags on top of traits, parsed and bounds-checked: an ``Options`` of type ``cls``.

    Raises ConfigurationError with one line that names the flag or trait to fix.
    """
    values: dict[str, Any] = {}
    for name, info, value in declared(cls):
        user = _user_name(name, info)
        flag = getattr(args, name, None) if info.flag else None
        # a bare flag means the trait's value (--replay), or its const without a trait (--fix)
        given = flag is not None and (flag != info.const or not info.config)
        raw = flag if given else getattr(configured, user) if info.config else value
        if info.repeat:
            raw = tuple(raw or ())
        elif info.parse is not None and isinstance(raw, str):
            raw = info.parse(raw)
        if info.choices and raw not in info.choices:
            where = f"--{user.replace('_', '-')}" if given else f"GenerateMagics.{user}"
            raise ConfigurationError(f"{where} = {raw!r} is not one of "
                                     f"{', '.join(info.choices)}: pick one of those.")
        if info.low is not None and raw is not None and raw < info.low:
            raise ConfigurationError(f"--{user.replace('_', '-')} must be at least "
                                     f"{info.low:g}, got {raw}.")
        values[name] = raw
    return replace(cls(), **values)


__all__ = ["CellOptions", "arguments", "merge", "traits"]
