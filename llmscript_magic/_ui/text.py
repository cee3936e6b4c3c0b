"""Plain-text rendering of a generation: terminals, logs, and ``text/plain`` fallback.

The same facts as the widget, so a notebook rendered on GitHub or by
``nbconvert --to markdown`` still shows what happened.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from .._protocol import OUTPUT_KEY
from .._store.cost import format_cost, generation_cost
from .inert import printable

if TYPE_CHECKING:
    from .._pipeline.generate import Attempt, Generation
    from .._sandbox import OutputFile, RunResult

MAX_FIGURES = 12  # figures shown per result (the rest are counted)
STATUS_WORD = {"ok": "ok", "error": "error", "timeout": "timed out", "memory": "out of memory",
               "output_capped": "output capped"}


def file_line(name: str, size: int, entry: Mapping[str, Any] | None = None) -> str:
    """One written file and where it went on disk (``entry`` from the session's save)."""
    where = f" → {entry['note']}" if entry and entry.get("note") else ""
    return f"{name} ({size} B){where}"


def saved_by_name(saved: Sequence[Mapping[str, Any]]) -> dict[str, Mapping[str, Any]]:
    return {str(e.get("name")): e for e in saved}


#: files listed one by one in a result; the rest are counted (a run may write thousands)
MAX_FILE_ROWS = 50


def listed_files(run: RunResult, saved: Sequence[Mapping[str, Any]]
                 ) -> tuple[list[OutputFile], str]:
    """The run's files a view lists (not the harness's), and one line counting the rest."""
    where = saved_by_name(saved)
    shown = [f for f in run.files if not where or f.name in where]
    rest = shown[MAX_FILE_ROWS:]
    if not rest:
        return shown, ""
    counts: dict[str, int] = {}
    for f in rest:
        status = str((where.get(f.name) or {}).get("status", "not saved"))
        counts[status] = counts.get(status, 0) + 1
    return shown[:MAX_FILE_ROWS], (f"{len(rest)} more files not listed (" + ", ".join(
        f"{n} {status}" for status, n in sorted(counts.items(), key=lambda i: -i[1])) + ")")


def capped(text: str, limit: int | None) -> str:
    """``text`` cut to ``limit`` UTF-8 bytes, saying how much was left out."""
    raw = text.encode("utf-8", "replace")
    if limit is None or len(raw) <= limit:
        return text
    return raw[:limit].decode("utf-8", "ignore") + f"\n… {len(raw) - limit} more bytes not shown"


def run_text(run: RunResult, saved: Sequence[Mapping[str, Any]] = (),
             limit: int | None = None) -> str:
    """The run in plain text; ``limit`` caps each stream (bytes) for what a notebook keeps."""
    isolation = f", {run.isolation}" if getattr(run, "isolation", "") else ""
    lines = [f"Run ({run.backend}{isolation}): {STATUS_WORD.get(run.status, run.status)}, "
             f"exit {run.exit_code}, {run.duration:.2f}s"]
    if run.reason and run.status != "ok":
        lines.append(run.reason)
    if run.warning:  # a weaker backend or limits the engine cannot enforce: never silent
        lines.append(f"Warning: {run.warning}")
    if run.session:  # --session: kept, fresh, or ended (and what that means for its state)
        lines.append(f"Session: {run.session}")
    if run.stdout:
        lines += ["--- stdout ---", capped(run.stdout.rstrip("\n"), limit)]
    if run.stderr:
        lines += ["--- stderr ---", capped(run.stderr.rstrip("\n"), limit)]
    if run.files:
        where = saved_by_name(saved)
        shown, more = listed_files(run, saved)  # not the harness's; thousands are counted
        lines.append("Files: " + "; ".join([*(file_line(f.name, f.size, where.get(f.name))
                                              for f in shown), *([more] if more else [])]))
    if run.figures:
        lines.append(f"Figures: {len(run.figures)}")
    return "\n".join(lines)


def source_note(source: str, button: bool = False) -> str:
    """Where a reply came from when no request was made, and how to ask the model again."""
    again = "Regenerate or --refresh" if button else "--refresh"
    return f"from {source} (no request made; {again} asks the model again)"


def headline(gen: Generation, prices: dict[str, tuple[float, float]] | None = None) -> list[str]:
    """Model, tokens, cost, where the reply came from: the parts of the first line."""
    u = gen.usage
    parts = [gen.model, f"{u.input_tokens} in / {u.output_tokens} out tokens",
             f"est. {format_cost(generation_cost(gen, prices))}"]
    context = [s for s in gen.sent if not s.startswith("course: ")]
    if context:  # the size-bounded notebook data that went into the prompt
        parts.append("context: " + "; ".join(context))
    parts += [s for s in gen.sent if s.startswith("course: ")]  # what the teacher decided
    if gen.source != "model":
        parts.append(source_note(gen.source))
    if len(gen.attempts) > 1:
        parts.append(f"{len(gen.attempts)} attempts")
    return parts


def summary_text(gen: Generation, prices: dict[str, tuple[float, float]] | None = None, *,
                 attempt: Attempt | None = None, saved: Sequence[Mapping[str, Any]] = (),
                 note: str = "", limit: int | None = None) -> str:
    """The whole outcome in plain text (no reply text: the code says it), control
    characters spelled out: it is what a terminal shows.

    ``attempt`` is the one shown (default: the generation's last); ``note``
    says what it is when it is not the generation's own (a run of edited code).
    """
    a = attempt if attempt is not None else (gen.last if gen.attempts else None)
    lines = [" · ".join(headline(gen, prices))]
    if note:
        lines.append(note)
    code = a.code if a is not None else None
    if code is not None:
        lines += ["```python", code.rstrip("\n"), "```"]
    lines.append((a.report if a is not None else gen.report).as_text())
    if a is not None and a.run is not None:
        lines.append(run_text(a.run, saved, limit))
    return printable("\n".join(lines))


def saved_files(metadata: Mapping[str, Any] | None) -> list[dict[str, Any]]:
    """Where the session saved the run's files (it passes them in the output metadata)."""
    return list(((metadata or {}).get(OUTPUT_KEY) or {}).get("files") or [])


class TextView:
    """Streams the reply to stdout, then the persistent result (``rich.py``) with the record."""

    def __init__(self, prices: dict[str, tuple[float, float]] | None = None,
                 stream: bool = True) -> None:
        self.prices = prices
        self.stream = stream
        self._thought = False
        self._waited = float("-inf")  # when a wait for the sandbox was last said

    def start(self, model: str) -> None:
        if self.stream:
            print(f"Generating with {model} …", flush=True)

    def chunk(self, text: str) -> None:
        if self.stream:
            if self._thought:  # the answer starts: end the reasoning block
                sys.stdout.write("\n[answer]\n")
                self._thought = False
            sys.stdout.write(printable(text))
            sys.stdout.flush()

    def thinking(self, text: str) -> None:
        """The model's reasoning, marked so it is never mistaken for the answer."""
        if self.stream:
            if not self._thought:
                sys.stdout.write("[model's reasoning, not code]\n")
            self._thought = True
            sys.stdout.write(printable(text))
            sys.stdout.flush()

    def waiting(self, ahead: int | None) -> None:
        """A run waits for the engine's sandbox budget: said once, then at most every 5 s."""
        import time

        from .._sandbox.fairshare import waiting_text

        now = time.monotonic()
        if self.stream and ahead is not None and now - self._waited >= 5:
            self._waited = now
            print(f"\n{waiting_text(ahead)} …", flush=True)
        elif ahead is None:
            self._waited = float("-inf")

    def attempt(self, attempt: Attempt, number: int) -> None:
        if self.stream and attempt.will_retry:
            print(printable(f"\n\nAttempt {number} failed: {attempt.report.summary_line()}; "
                            "asking the model to fix it …\n"), flush=True)

    def finish(self, gen: Generation, metadata: dict[str, Any]) -> None:
        from IPython.display import display

        if self.stream:
            print("\n", flush=True)
        from .rich import figure_bundle, result_bundle

        saved = saved_files(metadata)
        display(result_bundle(gen, prices=self.prices, saved=saved), metadata=metadata, raw=True)
        if gen.run is not None:
            for n, png in enumerate(gen.run.figures[:MAX_FIGURES], 1):
                display(figure_bundle(png, n), raw=True)

    def fail(self, message: str) -> None:
        pass  # the magic raises UsageError(message), which IPython prints as one line
