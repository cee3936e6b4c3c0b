"""Tutor mode: the model explains and leaves the key steps to the student.

The prompt asks for a skeleton whose key steps are placeholders (``TODO``, ``...``,
``pass``, ``raise NotImplementedError``) with the explanation and hints as comments.
The reply is then checked, because a model may write the whole answer anyway: code
with no placeholder left, or that already passes the teacher's ``--check``, is a full
solution. That check fails like any other layer (the model is asked again), and if
the last attempt is still a full solution its code is withheld: nothing is inserted,
nothing of it is cached or kept in the notebook, and the student gets one line.
"""

from __future__ import annotations

import ast
import re
from typing import TYPE_CHECKING

from .._course.settings import TUTOR_SYSTEM
from .validate import Check

if TYPE_CHECKING:
    from .generate import Attempt, Generation

_TODO = re.compile(r"#.*\bTODO\b", re.IGNORECASE)
WITHHELD = ("Tutor mode: the model wrote a full solution, so it was not inserted (nor kept); "
            "run the cell again, or ask for a hint on one step in the spec.")


def tutor_system(system: str, tutor: bool) -> str:
    """The extra system text: the user's (or the course's) plus tutor mode's instructions."""
    if not tutor:
        return system
    return f"{system}\n\n{TUTOR_SYSTEM}".strip()


def placeholders(code: str) -> list[str]:
    """What is left for the student: TODO comments, ``...``, ``pass``, NotImplementedError."""
    found = [f"TODO (line {n})" for n, line in enumerate(code.splitlines(), 1)
             if _TODO.search(line)]
    try:
        tree = ast.parse(code)
    except SyntaxError:
        return found
    for node in ast.walk(tree):
        if isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant) \
                and node.value.value is Ellipsis:
            found.append(f"... (line {node.lineno})")
        elif isinstance(node, ast.Pass):
            found.append(f"pass (line {node.lineno})")
        elif isinstance(node, ast.Raise) and node.exc is not None and "NotImplementedError" in \
                ast.unparse(node.exc):
            found.append(f"raise NotImplementedError (line {node.lineno})")
    return found


def tutor_check(attempt: Attempt) -> Check:
    """Fail when the code is a full solution: no placeholder, or it passes the teacher's check."""
    assert attempt.code is not None
    passed = [c for c in attempt.report.checks if c.name == "check" and c.status == "pass"]
    if passed:
        return Check("tutor", "fail", "this is a full solution: it already passes the "
                     "assignment's check; leave the key steps as TODO for the student",
                     layer="tutor")
    left = placeholders(attempt.code)
    if not left:
        return Check("tutor", "fail", "this is a full solution: no TODO, ..., pass or raise "
                     "NotImplementedError is left; leave the key steps to the student",
                     layer="tutor")
    return Check("tutor", "pass", "a skeleton: " + ", ".join(left[:4])
                 + (f" and {len(left) - 4} more" if len(left) > 4 else ""), layer="tutor")


def gave_solution(attempt: Attempt) -> bool:
    """Whether the tutor check failed: the only failure tutor mode repairs (a skeleton is
    expected to fail the teacher's check; "fixing" that would write the solution)."""
    return any(c.name == "tutor" and c.status == "fail" for c in attempt.report.checks)


def hide_solution(attempt: Attempt) -> None:
    """Blank an attempt that is a full solution before any view sees it (the repair round
    sends the model its own reply from the conversation, not from here)."""
    if gave_solution(attempt):
        attempt.code, attempt.reply, attempt.run = None, "", None


def withhold_solution(gen: Generation) -> None:
    """No code if the last attempt is a full solution, and no reply holding one is recorded."""
    for attempt in gen.attempts:
        hide_solution(attempt)
    if any(gave_solution(a) for a in gen.attempts):
        gen.entries = []  # the record goes into the notebook, which the student can read
    if gen.attempts and gave_solution(gen.last):
        gen.last.error = WITHHELD


__all__ = ["gave_solution", "hide_solution", "placeholders", "tutor_check", "tutor_system",
           "withhold_solution"]
