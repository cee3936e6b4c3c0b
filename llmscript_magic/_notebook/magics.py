"""``%%generate`` and ``%llmscript``: parse, call the notebook session, display.

Traits and flags are derived from the options schema (``config.py``), so
``%%generate?`` is the help and ``%config GenerateMagics.model = ...`` works for
every option. User mistakes surface as ``UsageError``: one line, no traceback,
and the cell's text is never touched.
"""

from __future__ import annotations

import shlex
from typing import Any

from IPython.core.error import UsageError
from IPython.core.magic import Magics, cell_magic, line_magic, magics_class, no_var_expand
from traitlets import validate

from .._errors import LLMScriptError
from .._ui.inert import printable
from .config import CellOptions, arguments, merge, traits
from .session import NotebookSession


class _Secret(str):
    """A str that never shows itself in repr (``%config`` prints current values)."""

    def __repr__(self) -> str:
        return "'<hidden>'"


def _parse(magic: Any, line: str) -> Any:
    """Like ``parse_argstring``, but with shell quoting: IPython's ``arg_split`` keeps the
    quotes, so ``--check "x == 3"`` would arrive as a (always true) string literal."""
    try:
        argv = shlex.split(line)
    except ValueError as err:
        raise UsageError(f"Cannot parse the flags ({err}): check the quotes.") from None
    args, unknown = magic.parser.parse_known_args(argv)
    if unknown:
        raise UsageError(_unknown_flag(magic.parser, unknown[0]))
    return args


def _unknown_flag(parser: Any, word: str) -> str:
    """One line for a typo'd flag, with the nearest real one."""
    import difflib

    if not word.startswith("-"):
        return (f"Unexpected {word!r} on the %%generate line: put the spec in the cell body, "
                "and quote flag values that contain spaces.")
    flag = word.split("=", 1)[0]
    known = [s[2:] for a in parser._actions for s in a.option_strings if s.startswith("--")]
    near = difflib.get_close_matches(flag.lstrip("-"), known, n=1, cutoff=0.7)
    hint = f"did you mean --{near[0]}?" if near else "see %%generate? for the flags."
    return f"Unknown flag {flag}: {hint}"


EXAMPLE = ("%%generate needs a spec below the first line, for example:\n"
           "%%generate --run\nRead sales.csv and print the total of each numeric column.")


def blank_spec(lines: list[str]) -> list[str]:
    """Input transformer: a ``%%generate`` cell with no body reaches the magic (IPython
    would reject it with a generic message) so the user sees an example instead."""
    if lines and lines[0].lstrip().startswith("%%generate") and not "".join(lines[1:]).strip():
        return [lines[0].rstrip("\n") + "\n", " \n"]
    return lines


#: Every option with config=True as a trait, derived from the schema.
_Traits = type("_Traits", (Magics,), traits(CellOptions))


@magics_class
class GenerateMagics(_Traits):  # type: ignore[misc, valid-type]
    """Turn a plain-words spec into validated Python code in a new cell below."""

    def __init__(self, shell: Any = None, **kwargs: Any) -> None:
        super().__init__(shell=shell, **kwargs)
        self.session = NotebookSession(shell)

    @validate("api_key")
    def _hide_key(self, proposal: Any) -> Any:
        value = proposal["value"]
        return _Secret(value) if value else value

    @arguments(CellOptions, name="%generate")
    @no_var_expand
    @cell_magic
    def generate(self, line: str, cell: str) -> None:
        """Generate Python code from the plain-words spec in this cell.

        The spec may be free text or have sections: ``Input:``, ``Output:``,
        ``Constraints:`` (``-`` items), ``Example input:`` and ``Example output:``.
        """
        args = _parse(self.generate, line)
        if not cell.strip():
            if getattr(args, "fix", None) is None:
                raise UsageError(EXAMPLE)
            from .fix import FIX_SPEC

            cell = FIX_SPEC  # a bare `%%generate --fix`: the failing cell is the spec
        session = self.session
        try:
            opts = self.options(args, cell)
            view = self._view(cell, opts)
            gen = session.generate(cell, opts, view, cancel=getattr(view, "cancel", None))
        except LLMScriptError as err:
            raise UsageError(printable(str(err))) from None
        if gen.code is None:  # the error quotes the reply: no escape sequence reaches a terminal
            raise UsageError(printable(gen.error or "No code was generated."))
        try:
            session.deliver(gen, opts)
        except LLMScriptError as err:  # e.g. an --output that cannot be decoded
            raise UsageError(printable(str(err))) from None

    def options(self, args: Any, spec_text: str = "") -> CellOptions:
        """Traits, then flags on top, then the notebook's data; raises LLMScriptError."""
        opts: CellOptions = merge(CellOptions, self, args)
        self.session.prices = {k: (float(v[0]), float(v[1])) for k, v in opts.prices.items()}
        return self.session.prepare(spec_text, opts)

    def _view(self, cell: str, opts: CellOptions) -> Any:
        """The widget in a kernel with ipywidgets; plain text in terminals and tests."""
        kernel = getattr(self.shell, "kernel", None)
        if opts.widgets and kernel is not None:
            try:
                from .._ui.widget import WidgetView
            except ImportError:
                pass
            else:
                return WidgetView(self.session, cell, opts, source_cell=self.session.cell_id(),
                                  kernel=kernel)
        from .._ui.text import TextView

        return TextView(self.session.prices)


@magics_class
class LLMScriptMagics(Magics):
    """``%llmscript models | usage``: what is configured and what it has cost."""

    @line_magic
    def llmscript(self, line: str) -> None:
        """%llmscript models | usage | explain [N] | test NAME [N] | session [status|reset]

        ``explain`` explains the last error (or cell In [N], error or not) in prose.
        ``session`` says whether this kernel's ``--session`` is alive; ``session reset``
        ends it (its variables, files and processes).
        """
        from .._ui.reports import list_models_text, usage_text

        cmd = line.strip().split()
        gm = self.shell.magics_manager.registry.get("GenerateMagics") if self.shell else None
        if cmd == ["models"]:
            print(list_models_text())
            if gm is not None:
                from .policy import policy_text

                print(policy_text(gm))
        elif cmd == ["usage"]:
            print(usage_text(gm.session if gm is not None else None))
            if gm is not None:
                from .budgets import budget_text

                print(budget_text(gm, gm.session.spending))
        elif cmd[:1] == ["sandbox"]:
            from .sandbox_env import sandbox_command

            sandbox_command(cmd[1:])
        elif cmd[:1] == ["test"] and gm is not None:  # the teacher's tests (issue 27)
            from .teacher_tests import run_teacher_test

            try:
                print(run_teacher_test(gm, self.shell, cmd[1:]))
            except LLMScriptError as err:
                raise UsageError(str(err)) from None
        elif cmd[:1] == ["session"]:  # --session's state (issue 24)
            from .sandbox_session import session_command

            print(session_command(cmd[1:]))
        elif cmd[:1] == ["explain"] and len(cmd) <= 2 and gm is not None:
            self._explain(gm, cmd[1] if len(cmd) == 2 else "")
        else:
            raise UsageError("Usage: %llmscript models | %llmscript usage | "
                             "%llmscript explain [N] | %llmscript sandbox build|require ... | "
                             "%llmscript test NAME [N] | %llmscript session [status|reset]")

    def _explain(self, gm: Any, arg: str) -> None:
        """Show the explanation as Markdown: a display output, kept in the notebook."""
        from IPython.display import display

        from .explain import explain

        try:
            found = explain(gm, arg)
        except LLMScriptError as err:
            raise UsageError(printable(str(err))) from None
        display(found.bundle(), raw=True)
