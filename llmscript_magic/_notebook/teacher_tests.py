"""``%llmscript test NAME [N]``: the student's own code against the teacher's test.

The course file's ``[tests]`` table names conditions over a script's variables (the
same as ``--check``). The student's cell (default: the one above) runs in the sandbox
like generated code, and the condition is evaluated there, apart from the script, so
the code cannot give itself the verdict. Tutor mode uses the same kind of check to
spot a reply that is already a full solution.
"""

from __future__ import annotations

import argparse
from typing import Any

from .._course.settings import apply_course, current_course
from .._errors import ConfigurationError
from .cells import current_count
from .config import CellOptions, merge

USAGE = "Usage: %llmscript test NAME [N] (NAME from the course's [tests]; N: the cell, " \
        "default the one above)"


def run_teacher_test(configured: Any, shell: Any, args: list[str]) -> str:
    """Run cell In[N] (default: the previous cell) against test NAME; the report as text."""
    from .._pipeline.generate import check_code
    from .._ui.text import run_text

    course = current_course()
    tests = dict(course.tests) if course is not None else {}
    if not args or len(args) > 2 or (len(args) == 2 and not args[1].isdigit()):
        raise ConfigurationError(USAGE)
    name = args[0]
    if name not in tests:
        raise ConfigurationError(f"No test {name!r} in the course file: the course has "
                                 f"{', '.join(sorted(tests)) or 'no tests'}.")
    cells = shell.user_ns.get("In", [])
    number = int(args[1]) if len(args) == 2 else current_count(shell) - 1
    if not 0 < number < len(cells) or not cells[number].strip():
        raise ConfigurationError(f"There is no cell In [{number}] to test: pass its number, "
                                 "e.g. %llmscript test mean 4.")
    opts, _ = apply_course(merge(CellOptions, configured, argparse.Namespace()), course)
    if opts.sandbox == "none":
        raise ConfigurationError("The teacher's tests run in the sandbox: set "
                                 "%config GenerateMagics.sandbox = 'docker' (or 'local').")
    attempt = check_code(cells[number], "", opts, run=True, check=tests[name])
    verdict = next((c for c in attempt.report.checks if c.layer == "check"), None)
    passed = attempt.report.ok and verdict is not None and verdict.status == "pass"
    lines = [f"Test {name} on In [{number}]: " + ("passed" if passed else "not passed")
             + f" ({tests[name]})", attempt.report.as_text()]
    if attempt.run is not None:
        lines.append(run_text(attempt.run, limit=4000))
    return "\n".join(lines)


__all__ = ["run_teacher_test"]
