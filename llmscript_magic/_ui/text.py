"""Plain-text rendering of a generation: terminals, logs, and ``text/plain`` fallback.

The same facts as the widget, so a notebook rendered on GitHub or by
``nbconvert --to markdown`` still shows what happened.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any

from .._store.cost import format_cost, generation_cost

if TYPE_CHECKING:
    from .._pipeline.generate import Attempt, Generation
    from .._sandbox import RunResult

STATUS_WORD = {"ok": "ok", "error": "error", "timeout": "timed out", "memory": "out of memory",
               "output_capped": "output capped"}


def run_text(run: RunResult) -> str:
    lines = [f"Run ({run.backend}): {STATUS_WORD.get(run.status, run.status)}, "
             f"exit {run.exit_code}, {run.duration:.2f}s"]
    if run.stdout:
        lines += ["--- stdout ---", run.stdout.rstrip("\n")]
    if run.stderr:
        lines += ["--- stderr ---", run.stderr.rstrip("\n")]
    if run.files:
        lines.append("Files: " + ", ".join(f"{f.name} ({f.size} B)" for f in run.files))
    if run.figures:
        lines.append(f"Figures: {len(run.figures)}")
    return "\n".join(lines)


def summary_text(gen: Generation, prices: dict[str, tuple[float, float]] | None = None) -> str:
    """The whole outcome in plain text (no reply text: the code says it)."""
    u = gen.usage
    cost = format_cost(generation_cost(gen, prices))
    head = f"{gen.model} · {u.input_tokens} in / {u.output_tokens} out tokens · {cost}"
    if gen.source != "model":
        head += f" · from {gen.source} (no request made)"
    if len(gen.attempts) > 1:
        head += f" · {len(gen.attempts)} attempts"
    lines = [head]
    if gen.sent:
        lines.append("Context sent: " + "; ".join(gen.sent))
    if gen.code is not None:
        lines += ["```python", gen.code.rstrip("\n"), "```"]
    lines.append(gen.report.as_text())
    if gen.run is not None:
        lines.append(run_text(gen.run))
    return "\n".join(lines)


class TextView:
    """Streams the reply to stdout, then shows the summary with the record attached."""

    def __init__(self, prices: dict[str, tuple[float, float]] | None = None,
                 stream: bool = True) -> None:
        self.prices = prices
        self.stream = stream

    def start(self, model: str) -> None:
        if self.stream:
            print(f"Generating with {model} …", flush=True)

    def chunk(self, text: str) -> None:
        if self.stream:
            sys.stdout.write(text)
            sys.stdout.flush()

    def attempt(self, attempt: Attempt, number: int) -> None:
        if self.stream and attempt.will_retry:
            print(f"\n\nAttempt {number} failed: {attempt.report.summary_line()}; asking the "
                  "model to fix it …\n", flush=True)

    def finish(self, gen: Generation, metadata: dict[str, Any]) -> None:
        from IPython.display import Image, display

        if self.stream:
            print("\n", flush=True)
        display({"text/plain": summary_text(gen, self.prices)}, metadata=metadata, raw=True)
        if gen.run is not None:
            for png in gen.run.figures:
                display(Image(data=png, format="png"))

    def fail(self, message: str) -> None:
        pass  # the magic raises UsageError(message), which IPython prints as one line
