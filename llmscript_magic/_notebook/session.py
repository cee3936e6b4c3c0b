"""What one kernel accumulates, and the one method that runs a cell's generation.

The magic (parse, call, display) and the widget's buttons both go through a
``NotebookSession``: it turns notebook data into prompt context and sandbox
inputs, runs the pipeline, keeps the history per cell with usage and cost, and
hands back what the notebook shows and stores. The pipeline below it never
sees the notebook.
"""

from __future__ import annotations

import os
import re
import sys
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .._errors import CancelledError, ConfigurationError, LLMScriptError
from .._protocol import OUTPUT_KEY
from ..providers import Message, Usage
from .budgets import Spending, guarded, with_course
from .cells import current_count
from .config import CellOptions
from .insert import insert_below, parent_cell_id

if TYPE_CHECKING:
    import threading

    from .._pipeline.generate import Attempt, Generation
    from .._ui.base import View

#: the newest full generations a session keeps (``history``); older ones live on as their
#: ``%llmscript usage`` row and, for a follow-up ("now ..."), as their cell's previous
#: turns, so a long-lived kernel does not keep every reply, run output and figure forever
KEEP_GENERATIONS = 20

_FOLLOW_UP = re.compile(r"\s*(now|then|also|next|and now|instead)\b", re.IGNORECASE)


@dataclass(frozen=True, slots=True)
class UsageRow:
    """One line of ``%llmscript usage`` (slots: a kernel keeps one per generation)."""

    cell: str
    model: str
    usage: Usage = field(default_factory=Usage)
    cost: float | None = 0.0
    source: str = "model"
    status: str = "ok"


class NotebookSession:
    """History, usage and cost of one kernel, and the generation of one cell."""

    def __init__(self, shell: Any = None) -> None:
        self.shell = shell
        #: the newest KEEP_GENERATIONS generations, oldest first
        self.history: list[Generation] = []
        #: one row per generation, stopped and failed ones included, for %llmscript usage
        self.log: list[UsageRow] = []
        #: what a follow-up sends back, per cell (and for the last generation): the
        #: conversation only, not the run's files, figures or values
        self._turns: dict[str, tuple[Message, ...]] = {}
        self._last_turns: tuple[Message, ...] = ()
        self.usage = Usage()
        self.cost = 0.0
        self.prices: dict[str, tuple[float, float]] = {}
        self._labels: dict[str, str] = {}  # cell id -> the label of its first run
        self.spending = Spending()  # budgets and the course (issue 27; budgets.py)
        _usage_errors_as_error_output(shell)

    @property
    def namespace(self) -> dict[str, Any]:
        return self.shell.user_ns if self.shell is not None else {}

    def cell_id(self) -> str | None:
        return parent_cell_id(self.shell) if self.shell is not None else None

    def cell_label(self, cell_id: str | None = None) -> str:
        """How a row names its cell: ``In [7]`` (and the cell id where the front end sends one).

        A widget button has no execution count of its own: it is named after the
        ``%%generate`` cell it belongs to.
        """
        if cell_id is not None and cell_id in self._labels:
            return self._labels[cell_id] + " (button)"
        label = f"In [{current_count(self.shell)}]" if self.shell is not None else "-"
        if cell_id := cell_id or self.cell_id():
            self._labels.setdefault(cell_id, label)
        return label

    # -- one cell ------------------------------------------------------------------
    def prepare(self, spec_text: str, opts: CellOptions) -> CellOptions:
        """Notebook data as prompt context and sandbox inputs; a follow-up's history."""
        from .._sandbox.mounts import big_or_bytes
        from .context import build_context, names_in_spec
        from .data_io import encode_inputs, output_note
        from .policy import apply_policy

        opts, notes = with_course(opts, self.spending)  # the teacher's settings win
        opts = apply_policy(opts)  # --model fast -> provider:model; blocked provider: one line
        ns = self.namespace
        variables = [n for n in opts.input_names if n.isidentifier() and n in ns]
        from .._pipeline.trust import enforce  # llmscript run's limits for untrusted notebooks

        opts = enforce(opts, [n for n in opts.input_names if n not in variables])
        files: dict[str, bytes | os.PathLike[str]] = {}
        for item in opts.input_names:
            if item in variables:
                continue
            path = Path(item).expanduser()
            if not path.is_file():
                raise ConfigurationError(f"--input {item!r}: no such file or notebook variable "
                                         f"(paths are relative to {os.getcwd()}).")
            files[path.name] = big_or_bytes(path)  # a large one is bound read-only
        if opts.files_to and opts.save_files:  # before anything runs: one line, no run
            from .file_rules import destination_problem

            if why := destination_problem(Path(opts.files_to)):
                raise ConfigurationError(f"--files-to {opts.files_to!r} {why}: choose a plain "
                                         "folder for the files the script writes.")
        if opts.replay and not Path(opts.replay).is_file():
            raise ConfigurationError(f"Replay notebook {opts.replay!r} not found: pass "
                                     "--replay PATH to the saved notebook.")
        blocks, sent = [], list(notes)
        names = list(dict.fromkeys(opts.context_names + tuple(names_in_spec(spec_text, ns))))
        if names:
            from .cells import error_log

            secrets = (opts.api_key, *(error_log(self.shell).secrets if self.shell else ()))
            block = build_context(names, ns, schema_only=opts.schema_only, secrets=secrets)
            blocks.append(block.text)
            sent += [f"{i.name} ({i.type}): {i.chars} chars" + (", truncated" * i.truncated)
                     for i in block.items]
        from .fix import cell_context

        cells = cell_context(self.shell, spec_text, opts, skip=tuple(names))  # {Err[n]}, --fix
        blocks += cells.blocks
        sent += cells.sent
        if opts.run and opts.sandbox != "none":  # what the spec refers to must exist there
            variables += [n for n in (*names, *cells.variables) if n not in variables]
        inputs: tuple[Any, ...] = ()
        if variables:
            from .._pipeline.generate import sandbox_modules

            values, note = encode_inputs(variables, ns, available=sandbox_modules(opts),
                                         memory_mb=opts.memory_mb)
            inputs = tuple(values)
            blocks.append(note)
            sent.append("inputs: " + ", ".join(f"{v.name} ({len(v.data)} bytes)"
                                              for v in values))
        if opts.outputs:
            blocks.append(output_note(opts.outputs))
            if not opts.run or opts.sandbox == "none":
                raise ConfigurationError("--output needs a run: add --run (the variables come "
                                         "back from the sandbox).")
        history = opts.history
        if opts.refine or _FOLLOW_UP.match(spec_text):
            history = self._previous_turns()
            if opts.refine and not history:
                raise ConfigurationError("--refine: this cell has no previous generation to "
                                         "follow up on; run it once without --refine.")
        return replace(opts, files=files, context=tuple(blocks), sent=tuple(sent),
                       history=history, run=opts.run and opts.sandbox != "none",
                       inputs=inputs)

    def generate(self, spec_text: str, opts: CellOptions, view: View,
                 cancel: threading.Event | None = None,
                 cell_id: str | None = None) -> Generation:
        """Run the pipeline for one cell, showing progress in ``view``; remember the result.

        Raises LLMScriptError for setup problems (after telling the view); a reply
        without usable code is a Generation whose ``code`` is None.
        """
        from .._pipeline.generate import generate
        from .._sandbox.fairshare import reporting as sandbox_waits
        from ..providers import resolve_model

        cls, model = resolve_model(opts.model)
        opts = guarded(opts, self.spending, self.prices)  # checked before each request
        view.start(f"{cls.name}:{model}")
        attempts = iter(range(1, opts.retries + 2))
        try:
            with self._replay_scope(cell_id), sandbox_waits(getattr(view, "waiting", None)):
                gen = generate(spec_text, opts, on_chunk=view.chunk,
                               on_attempt=lambda a: view.attempt(a, next(attempts)),
                               cancel=cancel, on_thinking=view.thinking)
        except LLMScriptError as err:
            self.log.append(UsageRow(self.cell_label(cell_id), f"{cls.name}:{model}",
                                     status="stopped" if isinstance(err, CancelledError)
                                     else "failed"))
            view.fail(str(err))
            raise
        except KeyboardInterrupt:
            self.log.append(UsageRow(self.cell_label(cell_id), f"{cls.name}:{model}",
                                     status="stopped"))
            view.fail("Generation stopped; nothing was inserted.")
            raise
        self.remember(gen, cell_id)
        summary = self.summary(gen, cell_id)
        owner = cell_id or self.cell_id() or gen.spec.hash()  # whose files --overwrite replaces
        saved = self.save_files(gen.run, opts, owner=owner, checked=gen.report.ok)
        view.finish(gen, {OUTPUT_KEY: {"record": gen.record(), "summary": summary,
                                       "files": saved}})
        return gen

    # -- files the script wrote (issue 13; see save_files.py) ----------------------------
    def save_files(self, run: Any, opts: CellOptions, owner: str | None = None,
                   checked: bool = True) -> list[dict[str, Any]]:
        """Save a run's files in llmscript-files/ (or ``--files-to``); one entry per file.

        ``owner`` names the cell (``--overwrite`` replaces only its own files); a
        failed run or check (``checked``) saves nothing unless ``--files-on-failure``.
        """
        if run is None or not run.files:
            return []
        from .save_files import save_files

        failed = "" if run.ok and run.exit_code == 0 else \
            "kept in the result only: the run did not succeed"
        if not failed and not checked:
            failed = "kept in the result only: a check failed"
        if opts.files_on_failure and failed:
            failed = ""
        return save_files(run.files, opts.files_to or None,
                          save=opts.save_files and not failed, overwrite=opts.overwrite,
                          why_not=failed + " (--files-on-failure saves them)" * bool(failed),
                          owner=owner if owner is not None else (self.cell_id() or ""))

    def deliver(self, gen: Generation, opts: CellOptions) -> None:
        """Results into the namespace (all or nothing), the code into a cell below."""
        run = gen.run
        returned = any(c.name == "outputs" and c.status == "pass" for c in gen.report.checks)
        results: dict[str, Any] = {}
        failed: ConfigurationError | None = None
        if opts.outputs and run is not None and returned:
            from .data_io import decode_outputs

            try:  # all or nothing: a failed decode never overwrites a variable
                results = decode_outputs(run.values)
            except ConfigurationError as err:
                failed = err
        self.namespace.update(results)
        if opts.insert and gen.code is not None and self.shell is not None:
            insert_below(self.shell, gen.code, {**self.summary(gen), "record": gen.record()})
        if failed is not None:
            raise failed

    def check_code(self, code: str, spec: Any, opts: CellOptions) -> Attempt:
        """Validate and run code the user already has (the widget's Run button)."""
        from .._pipeline.generate import check_code

        return check_code(code, spec, opts, run=True)

    # -- what the session keeps -----------------------------------------------------
    def remember(self, gen: Generation, cell_id: str | None = None) -> None:
        from .._store.cost import generation_cost

        self.history.append(gen)
        del self.history[:-KEEP_GENERATIONS]
        if gen.source == "model":
            self.usage = self.usage + gen.usage
        cost = generation_cost(gen, self.prices)
        self.cost += cost or 0.0
        status = "ok" if gen.ok else "no code" if gen.code is None else "checks failed"
        self.log.append(UsageRow(self.cell_label(cell_id), sys.intern(gen.model), gen.usage, cost,
                                 gen.source, status))
        self._last_turns = _turns_of(gen)
        if cell_id := cell_id or self.cell_id():
            self._turns[cell_id] = self._last_turns

    def _replay_scope(self, cell_id: str | None) -> Any:
        """Tell replay which cell runs and, in a kernel, which notebook it is running."""
        from .._store.recordings import kernel_notebooks, replay_scope

        in_kernel = getattr(self.shell, "kernel", None) is not None
        cell_id = cell_id or self.cell_id()
        headless = in_kernel and cell_id is None  # papermill, nbconvert, nbclient
        ran = self.shell.history_manager.input_hist_raw[1:] if headless else ()
        return replay_scope(cell_id, kernel_notebooks() if in_kernel else (), ran,
                            headless=headless)

    def summary(self, gen: Generation, source_cell: str | None = None) -> dict[str, Any]:
        """What the generated cell carries (also the extension's payload), no record."""
        report = gen.report
        return {
            "source_cell": source_cell or self.cell_id(),
            "generation_id": gen.id,
            "spec_hash": gen.spec.hash(),
            "code_hash": gen.code_hash(),
            "model": gen.model,
            "created": gen.created,
            "validation": "fail" if not report.ok else "warn" if report.warnings else "pass",
            "checks": report.summary_line(),
            "source": gen.source,  # model, cache or replay: what this run cost
            "run": None if gen.run is None else {
                "status": gen.run.status, "exit_code": gen.run.exit_code,
                "duration": round(gen.run.duration, 3)},
        }

    def _previous_turns(self) -> tuple[Message, ...]:
        cell_id = self.cell_id()
        return self._turns.get(cell_id, ()) if cell_id else self._last_turns


def _turns_of(gen: Generation) -> tuple[Message, ...]:
    """The conversation a follow-up of ``gen`` continues: its prompt, reply and run."""
    if not gen.reply:
        return ()
    turns = (*gen.prompt.messages, Message("assistant", gen.reply))
    if gen.run is not None:
        from .._ui.text import run_text

        turns += (Message("user", "Result of running it:\n" + run_text(gen.run)[-2000:]),
                  Message("assistant", "Noted."))
    return turns


def _usage_errors_as_error_output(shell: Any) -> None:
    """In a kernel, show a UsageError as the cell's error output, one line, not on stderr.

    IPython prints UsageErrors to stderr, which papermill and nbconvert do not report
    ("Exception encountered" and blank lines); the kernel's error channel is what they
    show. Terminal IPython keeps its own behaviour.
    """
    if getattr(shell, "kernel", None) is None or not hasattr(shell, "_showtraceback"):
        return

    def show_usage_error(exc: BaseException) -> None:
        shell._showtraceback(type(exc), exc, [f"UsageError: {exc}"])

    shell.show_usage_error = show_usage_error


__all__ = ["NotebookSession", "UsageRow"]
