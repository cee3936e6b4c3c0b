"""``%%generate`` and ``%llmscript``: thin shells over ``generate()``.

Flags are parsed by IPython's ``magic_arguments`` (so ``%%generate?`` is the
help); every default is a trait, so ``%config GenerateMagics.model = ...`` and
``ipython_config.py`` work. User mistakes surface as ``UsageError``: one line,
no traceback, and the cell's text is never touched.
"""

from __future__ import annotations

import os
import re
import shlex
from pathlib import Path
from typing import TYPE_CHECKING, Any

from IPython.core.error import UsageError
from IPython.core.magic import Magics, cell_magic, line_magic, magics_class
from IPython.core.magic_arguments import argument, magic_arguments
from traitlets import Bool, Dict, Float, Int, Unicode, validate

from .._errors import LLMScriptError
from ..providers.base import Usage
from .insert import insert_below, parent_cell_id

if TYPE_CHECKING:
    from .._pipeline.generate import Generation, Options


class _Secret(str):
    """A str that never shows itself in repr (``%config`` prints current values)."""

    def __repr__(self) -> str:
        return "'<hidden>'"


def parse_memory(text: str) -> int:
    """'512m', '1g', '256' (MB) -> megabytes."""
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([kmg]?)i?b?\s*", text.lower())
    if not m:
        raise UsageError(f"--memory {text!r} is not a size: write e.g. 256m or 1g.")
    value, unit = float(m.group(1)), m.group(2) or "m"
    mb = int(value * {"k": 1 / 1024, "m": 1, "g": 1024}[unit])
    if mb < 16:
        raise UsageError(f"--memory {text!r} is below 16m: the sandbox needs at least 16m.")
    return mb


_FOLLOW_UP = re.compile(r"\s*(now|then|also|next|and now|instead)\b", re.IGNORECASE)


def _parse(magic: Any, line: str) -> Any:
    """Like ``parse_argstring``, but with shell quoting: IPython's ``arg_split`` keeps the
    quotes, so ``--check "x == 3"`` would arrive as a (always true) string literal."""
    try:
        argv = shlex.split(line)
    except ValueError as err:
        raise UsageError(f"Cannot parse the flags ({err}): check the quotes.") from None
    return magic.parser.parse_args(argv)


def _split(text: str | None) -> list[str]:
    return [n.strip() for n in (text or "").split(",") if n.strip()]


def _names(text: str | None) -> frozenset[str] | None:
    return None if text is None else frozenset(_split(text))


@magics_class
class GenerateMagics(Magics):
    """Turn a plain-words spec into validated Python code in a new cell below."""

    model = Unicode("", help="Model as provider:model or a bare model name; '' = "
                    "anthropic's default.").tag(config=True)
    max_tokens = Int(4096, help="Upper bound on reply tokens.").tag(config=True)
    temperature = Float(None, allow_none=True, help="Sampling temperature; None = the "
                        "provider's default.").tag(config=True)
    system = Unicode("", help="Extra instructions appended to the system prompt.").tag(config=True)
    api_key = Unicode(None, allow_none=True, help="API key; prefer the provider's environment "
                      "variable (ANTHROPIC_API_KEY). Never shown or stored.").tag(config=True)
    base_url = Unicode("", help="API base URL for the provider, e.g. a local OpenAI-compatible "
                       "server (http://127.0.0.1:11434/v1 for Ollama); '' = the provider's "
                       "default or its *_BASE_URL variable.").tag(config=True)
    request_timeout = Float(120.0, help="Seconds before a model request times out.").tag(
        config=True)
    insert = Bool(True, help="Insert the generated code as a new cell below.").tag(config=True)
    run = Bool(False, help="Run the code in the sandbox after validation.").tag(config=True)
    sandbox = Unicode("docker", help="Where --run runs code: docker (hardened container), "
                      "local (subprocess with rlimits: weaker) or none.").tag(config=True)
    image = Unicode("", help="Sandbox image; '' = the built-in llmscript-sandbox image.").tag(
        config=True)
    timeout = Float(30.0, help="Wall-clock seconds a sandbox run may take.").tag(config=True)
    memory = Unicode("256m", help="Sandbox memory limit (RAM + swap), e.g. 256m, 1g.").tag(
        config=True)
    cpus = Float(1.0, help="CPU cores the sandbox may use.").tag(config=True)
    retries = Int(2, help="Repair attempts when a check fails (0 disables).").tag(config=True)
    budget_tokens = Int(0, help="Stop repairing once this many tokens are used (0 = no "
                        "budget).").tag(config=True)
    strict = Bool(False, help="Risky calls (process spawning, sockets, eval, ...) fail "
                  "validation instead of warning.").tag(config=True)
    allow_imports = Unicode("", help="Comma list: only these top-level modules may be "
                            "imported ('' = any the image has).").tag(config=True)
    deny_imports = Unicode("", help="Comma list of modules that may not be imported.").tag(
        config=True)
    cache = Bool(True, help="Reuse replies for unchanged requests from the disk cache.").tag(
        config=True)
    cache_dir = Unicode("", help="Reply cache folder; '' = ~/.cache/llmscript-magic.").tag(
        config=True)
    replay = Unicode(os.environ.get("LLMSCRIPT_REPLAY", ""), help="A notebook whose recorded "
                     "generations answer instead of a model (no key, no network); defaults "
                     "to $LLMSCRIPT_REPLAY.").tag(config=True)
    audit_log = Unicode(os.environ.get("LLMSCRIPT_AUDIT_LOG", ""), help="Append one JSON line "
                        "per generation and run to this file ('' = off).").tag(config=True)
    widgets = Bool(True, help="Show the interactive widget (when ipywidgets and a kernel are "
                   "present); False = plain text.").tag(config=True)
    prices = Dict(help="Price overrides: {'provider:model-prefix': [in, out] USD per "
                  "million tokens}.").tag(config=True)

    def __init__(self, shell: Any = None, **kwargs: Any) -> None:
        super().__init__(shell=shell, **kwargs)
        self.session_usage = Usage()
        self.session_cost = 0.0
        self.history: list[Generation] = []
        self.by_cell: dict[str, Generation] = {}

    @validate("api_key")
    def _hide_key(self, proposal: Any) -> Any:
        value = proposal["value"]
        return _Secret(value) if value else value

    # -- %%generate ------------------------------------------------------------
    @magic_arguments()
    @argument("--model", "-m", help="provider:model or a bare model name (see %%llmscript models).")
    @argument("--max-tokens", type=int, help="Upper bound on reply tokens.")
    @argument("--temperature", type=float, help="Sampling temperature.")
    @argument("--system", help="Extra instructions for the model.")
    @argument("--no-insert", action="store_true", help="Do not insert a cell below.")
    @argument("--run", action="store_true", help="Run the code in the sandbox.")
    @argument("--sandbox", choices=["docker", "local", "none"], help="Where to run.")
    @argument("--timeout", type=float, help="Sandbox wall-clock limit, seconds.")
    @argument("--memory", help="Sandbox memory limit, e.g. 256m or 1g.")
    @argument("--cpus", type=float, help="Sandbox CPU cores.")
    @argument("--input", action="append", default=[], metavar="PATH|VAR",
              help="A file, or a notebook variable, to put in the sandbox's working folder "
              "(repeatable; DataFrames, arrays, JSON data).")
    @argument("--output", metavar="VAR[,VAR]", help="Variables the script leaves, loaded back "
              "into the notebook after a successful run.")
    @argument("--context", metavar="VAR[,VAR]", help="Notebook variables to describe to the "
              "model (schema and a few rows, never the whole value); {var} in the spec works too.")
    @argument("--schema-only", action="store_true", help="Describe --context variables "
              "without any values.")
    @argument("--refine", action="store_true", help="Follow up on this cell's previous "
              "generation (sent as conversation history).")
    @argument("--image", help="Sandbox image.")
    @argument("--retries", type=int, help="Repair attempts after a failed check.")
    @argument("--check", metavar="EXPR", help="Python condition checked after the run.")
    @argument("--allow-imports", metavar="A,B", help="Only these modules may be imported.")
    @argument("--deny-imports", metavar="A,B", help="These modules may not be imported.")
    @argument("--strict", action="store_true", help="Risky calls fail instead of warn.")
    @argument("--budget-tokens", type=int, help="Token budget for the repair loop.")
    @argument("--no-cache", action="store_true", help="Neither read nor write the reply cache.")
    @argument("--refresh", action="store_true", help="Ask the model again; update the cache.")
    @argument("--replay", nargs="?", const="", default=None, metavar="NOTEBOOK",
              help="Answer from recorded generations in NOTEBOOK (default: $LLMSCRIPT_REPLAY).")
    @cell_magic
    def generate(self, line: str, cell: str) -> None:
        """Generate Python code from the plain-words spec in this cell.

        The spec may be free text or have sections: ``Input:``, ``Output:``,
        ``Constraints:`` (``-`` items), ``Example input:`` and ``Example output:``.
        """
        args = _parse(self.generate, line)
        assert self.shell is not None
        if not cell.strip():
            raise UsageError("%%generate needs a spec: describe the script in the cell body.")
        from .._pipeline.generate import generate

        opts = self.options(args, cell)
        from ..providers.base import resolve_model

        try:
            cls, model = resolve_model(opts.model)
        except LLMScriptError as err:
            raise UsageError(str(err)) from None
        view = self._view(cell, opts)
        view.start(f"{cls.name}:{model}")
        attempts = iter(range(1, opts.retries + 2))
        try:
            gen = generate(cell, opts, on_chunk=view.chunk,
                           on_attempt=lambda a: view.attempt(a, next(attempts)),
                           cancel=getattr(view, "cancel", None))
        except LLMScriptError as err:
            view.fail(str(err))
            raise UsageError(str(err)) from None
        except KeyboardInterrupt:
            view.fail("Generation stopped; nothing was inserted.")
            raise
        self._remember(gen)
        meta = self.cell_metadata(gen)
        view.finish(gen, {"llmscript": {"record": gen.record(), "summary": meta}})
        if gen.code is None:
            raise UsageError(gen.error or "No code was generated.")
        if gen.last.outputs is not None:  # all or nothing: never overwrite with a failed load
            self.shell.user_ns.update(gen.last.outputs)
        if self.insert and not args.no_insert:
            insert_below(self.shell, gen.code, {**meta, "record": gen.record()})

    def options(self, args: Any, spec_text: str = "") -> Options:
        """Traits, then flags on top; bad values become one-line UsageErrors."""
        def pick(flag: Any, trait: Any) -> Any:
            return trait if flag is None else flag

        sandbox = pick(args.sandbox, self.sandbox)
        if sandbox not in ("docker", "local", "none"):
            raise UsageError(f"Unknown sandbox {sandbox!r}: use docker, local or none.")
        files: dict[str, bytes] = {}
        ns = self.shell.user_ns if self.shell is not None else {}
        variables = [item for item in args.input if item.isidentifier() and item in ns]
        for item in args.input:
            if item in variables:
                continue
            path = Path(item).expanduser()
            if not path.is_file():
                raise UsageError(f"--input {item!r}: no such file or notebook variable (paths "
                                 f"are relative to {os.getcwd()}).")
            files[path.name] = path.read_bytes()
        replay = self.replay if args.replay == "" else args.replay
        if replay is None:
            replay = self.replay
        if replay and not Path(replay).is_file():
            raise UsageError(f"Replay notebook {replay!r} not found: pass --replay PATH to the "
                             "saved notebook.")
        from .._pipeline.generate import Options

        budget = pick(args.budget_tokens, self.budget_tokens)
        opts = Options(
            model=pick(args.model, self.model),
            max_tokens=pick(args.max_tokens, self.max_tokens),
            temperature=pick(args.temperature, self.temperature),
            system=pick(args.system, self.system) or None,
            api_key=self.api_key or None,
            base_url=self.base_url or None,
            request_timeout=self.request_timeout,
            retries=pick(args.retries, self.retries),
            budget_tokens=budget or None,
            allow_imports=_names(pick(args.allow_imports, self.allow_imports or None)),
            deny_imports=_names(pick(args.deny_imports, self.deny_imports or None)),
            strict=args.strict or self.strict,
            check=args.check,
            run=(args.run or self.run) and sandbox != "none",
            sandbox=sandbox,
            image=pick(args.image, self.image) or None,
            timeout=pick(args.timeout, self.timeout),
            memory_mb=parse_memory(pick(args.memory, self.memory)),
            cpus=pick(args.cpus, self.cpus),
            files=files,
            cache=self.cache and not args.no_cache,
            refresh=args.refresh,
            cache_dir=self.cache_dir or None,
            replay=replay or None,
            audit_log=self.audit_log or None,
        )
        opts = self._with_data(opts, args, spec_text, ns, variables)
        bounds = (("--max-tokens", opts.max_tokens, 1), ("--retries", opts.retries, 0),
                  ("--timeout", opts.timeout, 0.1), ("--cpus", opts.cpus, 0.01))
        for name, value, low in bounds:
            if value < low:
                raise UsageError(f"{name} must be at least {low}, got {value}.")
        return opts

    def _with_data(self, opts: Options, args: Any, spec_text: str, ns: dict[str, Any],
                   variables: list[str]) -> Options:
        """Notebook variables as context, as sandbox inputs and outputs; a follow-up's history."""
        from dataclasses import replace

        from .context import build_context, names_in_spec
        from .data_io import input_files, output_note

        blocks, sent = [], []
        try:
            names = list(dict.fromkeys(_split(args.context) + names_in_spec(spec_text, ns)))
            if names:
                block = build_context(names, ns, schema_only=args.schema_only)
                blocks.append(block.text)
                sent += [f"{i.name} ({i.type}): {i.chars} chars" + (", truncated" * i.truncated)
                         for i in block.items]
            files = dict(opts.files)
            if variables:
                from .._pipeline.generate import sandbox_modules

                available = sandbox_modules(opts)
                extra, note = input_files(variables, ns, available=available)
                files.update(extra)
                blocks.append(note)
                sent.append("files: " + ", ".join(sorted(extra)))
            outputs = tuple(_split(args.output))
            if outputs:
                blocks.append(output_note(outputs))
        except LLMScriptError as err:
            raise UsageError(str(err)) from None
        if outputs and not opts.run:
            raise UsageError("--output needs a run: add --run (the variables come back from "
                             "the sandbox).")
        history = opts.history
        if args.refine or _FOLLOW_UP.match(spec_text):
            history = self._previous_turns()
            if args.refine and not history:
                raise UsageError("--refine: this cell has no previous generation to follow up "
                                 "on; run it once without --refine.")
        return replace(opts, files=files, context=tuple(blocks), sent=tuple(sent),
                       outputs=outputs, history=history)

    def _previous_turns(self) -> tuple[Any, ...]:
        from ..providers.base import Message

        cell_id = parent_cell_id(self.shell) if self.shell is not None else None
        prev = self.by_cell.get(cell_id) if cell_id else (self.history[-1] if self.history
                                                           else None)
        if prev is None or not prev.reply:
            return ()
        turns = (*prev.prompt.messages, Message("assistant", prev.reply))
        if prev.run is not None:
            from .._ui.text import run_text

            turns += (Message("user", "Result of running it:\n" + run_text(prev.run)[-2000:]),
                      Message("assistant", "Noted."))
        return turns

    def cell_metadata(self, gen: Generation) -> dict[str, Any]:
        """What the generated cell carries (also the extension's payload), no record."""
        report = gen.report
        return {
            "source_cell": parent_cell_id(self.shell) if self.shell else None,
            "generation_id": gen.id,
            "spec_hash": gen.spec.hash(),
            "code_hash": gen.code_hash(),
            "model": gen.model,
            "created": gen.created,
            "validation": "fail" if not report.ok else "warn" if report.warnings else "pass",
            "checks": report.summary_line(),
            "run": None if gen.run is None else {
                "status": gen.run.status, "exit_code": gen.run.exit_code,
                "duration": round(gen.run.duration, 3)},
        }

    def _remember(self, gen: Generation) -> None:
        from .._store.cost import generation_cost

        self.history.append(gen)
        if gen.source == "model":
            self.session_usage = self.session_usage + gen.usage
        self.session_cost += generation_cost(gen, self._prices()) or 0.0
        if self.shell is not None and (cell_id := parent_cell_id(self.shell)):
            self.by_cell[cell_id] = gen

    def _prices(self) -> dict[str, tuple[float, float]]:
        return {k: (float(v[0]), float(v[1])) for k, v in self.prices.items()}

    def _view(self, cell: str, opts: Options) -> Any:
        """The widget in a kernel with ipywidgets; plain text in terminals and tests."""
        if self.widgets and getattr(self.shell, "kernel", None) is not None:
            try:
                from .._ui.widget import WidgetView
            except ImportError:
                pass
            else:
                return WidgetView(self, cell, opts)
        from .._ui.text import TextView

        return TextView(self._prices())


@magics_class
class LLMScriptMagics(Magics):
    """``%llmscript models | usage``: what is configured and what it has cost."""

    @line_magic
    def llmscript(self, line: str) -> None:
        """%llmscript models | usage"""
        from .._ui.reports import list_models_text, usage_text

        cmd = line.strip().split()
        if cmd == ["models"]:
            print(list_models_text())
        elif cmd == ["usage"]:
            gm = self.shell.magics_manager.registry.get("GenerateMagics") if self.shell else None
            print(usage_text(gm))
        else:
            raise UsageError("Usage: %llmscript models | %llmscript usage")
