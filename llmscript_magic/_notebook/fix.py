"""``%%generate --fix [N]``: a new version of a cell that raised, from its code and traceback.

The request carries the failing cell's code and traceback (fenced as data, see
``cells.py``) and a schema-only description of the notebook variables that code
uses, so the model can spell the columns right without seeing any values. With
``--run`` those variables go into the sandbox the way ``--input`` sends them, so
the run in the checklist shows whether the original error is gone. Everything
else (extraction, checks, the repair loop, inserting below) is an ordinary
generation.
"""

from __future__ import annotations

import ast
import re
from typing import Any

from .._errors import ConfigurationError
from .cells import (
    CellBlocks,
    CellError,
    CellRef,
    absolute,
    current_count,
    error_log,
    fence_cells,
    raised_list,
    refs_in_spec,
)
from .context import fence_nonce

#: The spec of a ``%%generate --fix`` cell with no body of its own.
FIX_SPEC = "Fix the error in my notebook cell that the fix request names."
LAST = "last"
#: ``--fix cell:ID``: the notebook cell whose id is (or starts with) ID, as the Fix button writes
CELL_PREFIX = "cell:"
_CELL_ID = re.compile(r"cell:[A-Za-z0-9_-]{1,64}")
MAX_VARIABLES = 8
VARIABLE_CHARS = 1500  # one variable's schema
_IDENT = re.compile(r"[^\W\d]\w*")


def cell_number(text: str) -> str:
    """``--fix``'s value: ``last`` (a bare ``--fix``), a count (7), a relative one (-1)
    or a cell id (``cell:1a2b3c4d``, which survives a kernel restart and a Run All)."""
    text = text.strip()
    if text == LAST or re.fullmatch(r"-?\d+", text) or _CELL_ID.fullmatch(text):
        return text
    raise ConfigurationError(f"--fix {text!r} is not a cell number: write --fix 7 to fix "
                             "In [7], or --fix alone for the last cell that raised.")


def _by_cell_id(shell: Any, target: str) -> CellError:
    """The latest error of the cell ``--fix cell:ID`` names, in this kernel's life."""
    log = error_log(shell)
    run = log.run_of(target[len(CELL_PREFIX):])
    if run is None:
        raise ConfigurationError(f"--fix {target}: that cell has not run in this kernel yet "
                                 "(a restart forgets errors): run the failing cell above, "
                                 "then this one")
    found = log.get(run.count) if run.raised else None
    if run.raised and found is None:
        raise ConfigurationError(f"--fix {target}: the error of that cell (In [{run.count}]) "
                                 "is no longer kept: run the failing cell again, then this one")
    if found is None:
        raise ConfigurationError(f"--fix {target}: that cell (In [{run.count}]) ran without "
                                 "an error last time: nothing to fix; to change working code, "
                                 f"refer to it with {{In[{run.count}]}} in a spec instead")
    return found


def fix_target(shell: Any, target: str) -> CellError:
    """The error ``--fix`` (or ``%llmscript explain``) is about; ConfigurationError if none."""
    if target.startswith(CELL_PREFIX):
        return _by_cell_id(shell, target)
    log = error_log(shell)
    if target == LAST:
        found = log.last()
        if found is None:
            raise ConfigurationError(f"--fix: nothing to fix, {raised_list(log)}: run the "
                                     "failing cell, then %%generate --fix")
        return found
    count = absolute(int(target), current_count(shell), f"--fix {target}")
    found = log.get(count)
    if found is None:
        raise ConfigurationError(f"--fix {target}: In [{count}] did not raise an error "
                                 f"({raised_list(log)}); to change working code, refer to it "
                                 f"with {{In[{count}]}} in a spec instead")
    return found


def used_names(code: str, shell: Any) -> list[str]:
    """Notebook variables ``code`` reads, in order of appearance (modules, functions and
    classes left out: they are described by their code, not their data)."""
    from .context import _CALLABLE_KINDS, _HIDDEN

    try:
        tree = ast.parse(shell.transform_cell(code) if shell is not None else code)
    except (SyntaxError, ValueError):
        found = _IDENT.findall(code)
    else:  # a name the cell assigns before it reads it is the cell's own, not the notebook's
        nodes = sorted((n for n in ast.walk(tree) if isinstance(n, ast.Name)),
                       key=lambda n: (n.lineno, n.col_offset))
        stored = {n.id for n in nodes if not isinstance(n.ctx, ast.Load)}
        first_load: dict[str, int] = {}
        first_store: dict[str, int] = {}
        for n in nodes:
            where = first_load if isinstance(n.ctx, ast.Load) else first_store
            where.setdefault(n.id, n.lineno)
        found = [name for name in first_load
                 if name not in stored or first_load[name] <= first_store[name]]
    ns = shell.user_ns if shell is not None else {}
    return [n for n in dict.fromkeys(found)
            if n in ns and not n.startswith("_") and n not in _HIDDEN
            and type(ns[n]).__name__ not in _CALLABLE_KINDS][:MAX_VARIABLES]


def _sendable(value: Any) -> bool:
    """What ``--input`` can carry into the sandbox (a custom object cannot)."""
    from collections.abc import Mapping

    from .context import _is_scalar, _module

    return (any(_module(m, value, c) for m, c in (("pandas", "DataFrame"),
                                                  ("pandas", "Series"), ("numpy", "ndarray")))
            or _is_scalar(value) or isinstance(value, (list, tuple, set, frozenset, Mapping)))


def variables_block(names: list[str], shell: Any) -> CellBlocks:
    """Schema-only descriptions of ``names`` in ``context.py``'s data fence, and which of
    them can go into the sandbox.

    The fence is ``build_context``'s, but with ``cells.py``'s data-derived nonce: the
    same failing cell asks the same request, which the reply cache then answers.
    """
    from .context import _header, describe

    if not names:
        return CellBlocks()
    ns = shell.user_ns
    texts = [describe(n, ns[n], schema_only=True, max_chars=VARIABLE_CHARS) for n in names]
    nonce = fence_nonce(texts)
    parts = [_header(nonce)] + [f"<<<DATA {nonce} {n}\n{t}\nDATA {nonce}>>>"
                                for n, t in zip(names, texts, strict=True)]
    sent = [f"{n}: schema only, {len(t)} chars" for n, t in zip(names, texts, strict=True)]
    return CellBlocks(["\n\n".join(parts)], sent, [n for n in names if _sendable(ns[n])])


def instructions(error: CellError) -> str:
    """What the model is asked to do (our words, outside the data fence)."""
    return (
        f"Fix request: the user's notebook cell In [{error.count}] raised {error.type}. Its "
        f"code and traceback are in the data block Err[{error.count}] below. Write a new "
        "version of that cell's code that does what it was meant to do without that error. "
        "The notebook variables it uses already exist when your code runs (described below, "
        "without their values): use them by name; do not load, re-create or modify them in "
        "place. Keep the rest of the cell's behaviour. The user's task text is guidance for "
        "this fix."
    )


def cell_context(shell: Any, spec_text: str, opts: Any, skip: tuple[str, ...] = ()
                 ) -> CellBlocks:
    """Prompt blocks for the cells a spec refers to and, with ``--fix``, the failing cell.

    ``skip``: variables already described (``--context``, ``{var}``), not described twice.
    """
    if shell is None:
        return CellBlocks()
    refs = refs_in_spec(spec_text, current_count(shell))
    fix = getattr(opts, "fix", None)
    if not fix:
        return fence_cells(shell, refs)
    error = fix_target(shell, fix)
    target = CellRef("Err", error.count)
    cells = fence_cells(shell, [target] + [r for r in refs if r != target])
    names = [n for n in used_names(error.code, shell) if n not in skip]
    data = variables_block(names, shell)
    return CellBlocks([instructions(error), *cells.blocks, *data.blocks],
                      [f"fix: In [{error.count}] ({error.type})", *cells.sent, *data.sent],
                      data.variables)


__all__ = ["FIX_SPEC", "cell_context", "cell_number", "fix_target", "used_names"]
