"""Spec -> system prompt + user message.

The system prompt is fixed text (so Anthropic prompt caching can reuse it);
everything about this cell goes into the user message. User text is joined,
never ``str.format``-ed, so braces and code in a spec arrive untouched.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from ..providers.base import Message
from .spec import Spec

SYSTEM_PROMPT = """\
You write one complete, runnable Python 3 script for the task the user describes.

Reply format:
- Put the whole script in ONE fenced code block tagged python. No other code blocks.
- Before the block, at most two sentences; after it, nothing.
- If the task is impossible or unclear, say so in one short paragraph and write no code.

The script:
- includes every import it needs and uses only the standard library plus the packages
  the user's environment lists;
- runs top to bottom as `python3 script.py`, with no input() and no command-line arguments
  unless the task asks for them;
- reads and writes files only in the current working folder, using relative paths;
- handles missing or malformed data gracefully and prints a short summary of what it did;
- has type hints and short docstrings on functions.
"""

_SANDBOX_ENV = """\
It will run in a sandbox, and unchanged as a notebook cell: Python 3 with numpy, pandas and \
matplotlib (figures left open are shown; do not call matplotlib.use() or choose a backend), \
no network, a small writable working folder, a time limit."""


@dataclass(frozen=True)
class Prompt:
    system: str
    messages: tuple[Message, ...]

    @property
    def user(self) -> str:
        return self.messages[-1].content


def render_spec(spec: Spec) -> str:
    """The user-facing task text, structured when the spec had sections."""
    if not spec.sections:
        return spec.task
    out = [spec.task] if spec.task else []
    if spec.input:
        out.append(f"Input:\n{spec.input}")
    if spec.output:
        out.append(f"Output:\n{spec.output}")
    if spec.constraints:
        out.append("Constraints:\n" + "\n".join(f"- {c}" for c in spec.constraints))
    if spec.example_input:
        out.append(f"Example input:\n{spec.example_input}")
    if spec.example_output:
        out.append(f"Example output:\n{spec.example_output}")
    return "\n\n".join(out)


def build_prompt(
    spec: Spec,
    *,
    extra_system: str | None = None,
    environment: str | None = _SANDBOX_ENV,
    context: Sequence[str] = (),
    history: Sequence[Message] = (),
) -> Prompt:
    """Assemble the request; ``context`` blocks are data descriptions, fenced by the caller."""
    system = SYSTEM_PROMPT
    if extra_system:
        system += "\nExtra instructions from the user:\n" + extra_system.strip() + "\n"
    # Stable, possibly long parts first (environment, notebook data), the task last: the
    # provider may cache that prefix, so a new task over the same data re-reads it cheaply.
    prefix = "\n\n".join([*(["Environment:\n" + environment] if environment else []),
                           *context])
    task = "Task:\n" + render_spec(spec)
    text = prefix + "\n\n" + task if prefix else task
    mark = len(prefix) + 2 if context else 0  # a breakpoint pays off only for notebook data
    return Prompt(system, (*history, Message("user", text, cache_prefix=mark)))


def repair_message(report: str) -> Message:
    """The follow-up turn of the repair loop: what failed, trimmed by the caller."""
    return Message(
        "user",
        "The script did not pass its checks:\n\n" + report.strip() + "\n\n"
        "Reply with the complete corrected script in one python code block.",
    )
