"""The spec: what the user wrote in a ``%%generate`` cell, split into sections.

A cell may be free text or carry sections (``Input:``, ``Output:``,
``Constraints:`` with ``-`` items, ``Example input:``/``Example output:``).
Parsing is line-based on section headers only; everything else, braces and
code included, passes through byte for byte (jupyter-ai's ``%%ai`` breaks on
``{}`` because it formats the prompt; we never format user text).
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field

_SECTIONS = {
    "task": "task",
    "goal": "task",
    "input": "input",
    "inputs": "input",
    "output": "output",
    "outputs": "output",
    "constraints": "constraints",
    "requirements": "constraints",
    "example input": "example_input",
    "example output": "example_output",
}
_HEADER = re.compile(
    r"^(?P<name>" + "|".join(sorted(_SECTIONS, key=len, reverse=True)) + r")\s*:\s*(?P<rest>.*)$",
    re.IGNORECASE,
)
_FENCE = re.compile(r"^\s*(`{3,}|~{3,})")
_ITEM = re.compile(r"^\s*(?:[-*•]|\d+[.)])\s+")


@dataclass(frozen=True)
class Spec:
    """A parsed spec; ``raw`` is exactly what the user wrote."""

    raw: str
    task: str
    input: str = ""
    output: str = ""
    constraints: tuple[str, ...] = ()
    example_input: str = ""
    example_output: str = ""
    sections: tuple[str, ...] = field(default=())

    @property
    def has_example(self) -> bool:
        return bool(self.example_input or self.example_output)

    def hash(self) -> str:
        """Stable id of the spec text (line endings and edge blank lines ignored)."""
        return hashlib.sha256(normalize(self.raw).encode()).hexdigest()[:16]


def normalize(text: str) -> str:
    return text.replace("\r\n", "\n").replace("\r", "\n").strip("\n") + "\n"


def parse_spec(text: str) -> Spec:
    """Split a cell body into sections; lines inside code fences are never headers."""
    raw = normalize(text)
    parts: dict[str, list[str]] = {"task": []}
    order: list[str] = []
    current = "task"
    fence: str | None = None
    for line in raw.split("\n"):
        m_fence = _FENCE.match(line)
        if fence is None and m_fence:
            fence = m_fence.group(1)
        elif fence is not None and m_fence and m_fence.group(1).startswith(fence):
            fence = None
        elif fence is None and (m := _HEADER.match(line.strip())):
            current = _SECTIONS[m.group("name").lower()]
            if current not in order:
                order.append(current)
            parts.setdefault(current, [])
            if m.group("rest"):
                parts[current].append(m.group("rest"))
            continue
        parts.setdefault(current, []).append(line)

    def text_of(name: str) -> str:
        return "\n".join(parts.get(name, [])).strip("\n")

    constraints: list[str] = []
    for line in parts.get("constraints", []):
        if _ITEM.match(line):
            constraints.append(_ITEM.sub("", line, count=1).strip())
        elif line.strip() and constraints and line.startswith((" ", "\t")):
            constraints[-1] += " " + line.strip()  # wrapped item
        elif line.strip():
            constraints.append(line.strip())
    return Spec(
        raw=raw,
        task=text_of("task"),
        input=text_of("input"),
        output=text_of("output"),
        constraints=tuple(constraints),
        example_input=text_of("example_input"),
        example_output=text_of("example_output"),
        sections=tuple(order),
    )
