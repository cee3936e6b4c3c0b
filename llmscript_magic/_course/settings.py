"""The teacher's settings: a course file students can read but not change.

``/etc/llmscript/course.toml`` (or the file ``$LLMSCRIPT_COURSE`` names, which the
hub sets for every student's server) fixes the model, the budgets, a rules text
added to every prompt, tutor mode and whether generated code may be inserted. They
are applied over a cell's options after its flags and ``%config``, so a student can
tighten them (a lower ``--max-cost``) but never loosen them, and each decision the
course took is named in the result. The same file's ``[service]`` table configures
the hub service (``service.py``), which enforces what the student's own kernel could
be made to skip: the key, the per-student budgets, the models and the rate.

```toml
[course]
name = "Data 101"
model = "course:anthropic:claude-haiku-5"
rules = "Use pandas. Explain each step in a comment."
insert = true
tutor = false
max_cost = 0.05          # USD per cell
session_budget = 0.50    # USD per kernel
daily_budget = 1.00      # USD per student per day
sandbox = "course"       # --run goes to the service's shared engine (no Docker socket here)

[tests]                  # %llmscript test NAME runs a student's cell against one
mean = "answer == 2"     # over the values the cell leaves (as --check)
```
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, TypeVar

from .._errors import ConfigurationError

DEFAULT_PATH = "/etc/llmscript/course.toml"
ENV_VAR = "LLMSCRIPT_COURSE"
NOTE = "course: "  # how the result marks what the course decided
#: tutor mode's instructions (the pipeline and the service both add them)
TUTOR_SYSTEM = (
    "Tutor mode: the user is a student working on an assignment. Do NOT write the full "
    "solution. Reply with one Python code block: a skeleton that runs, with the key steps "
    "left for the student as `# TODO` comments followed by `...` or `raise "
    "NotImplementedError`, and the explanation and hints as comments in the code. Never "
    "fill in the key steps, even if asked to.")


OptionsT = TypeVar("OptionsT")


def load_toml(path: Path) -> dict[str, Any]:
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover - Python 3.10
        import tomli as tomllib
    try:
        with open(path, "rb") as f:
            return tomllib.load(f)
    except (OSError, ValueError) as err:
        raise ConfigurationError(f"Cannot read the course file {path} ({err}): ask your "
                                 "teacher to fix it.") from None


@dataclass(frozen=True)
class CourseSettings:
    """The ``[course]`` table; None = the course leaves it to the student."""

    name: str = "the course"
    path: str = ""
    model: str | None = None
    rules: str = ""
    insert: bool | None = None
    tutor: bool | None = None
    max_cost: float | None = None
    session_budget: float | None = None
    daily_budget: float | None = None
    #: where --run runs: "course" = the service's shared engine (see sandbox_run.py)
    sandbox: str | None = None
    #: the teacher's tests: name -> a condition over the student's variables (``--check``)
    tests: Mapping[str, str] = field(default_factory=dict)
    raw: Mapping[str, Any] = field(default_factory=dict, repr=False)

    @classmethod
    def from_table(cls, table: Mapping[str, Any], path: str = "") -> CourseSettings:
        course = dict(table.get("course", {}))
        known = {"name", "model", "rules", "insert", "tutor", "max_cost", "session_budget",
                 "daily_budget", "sandbox"}
        unknown = sorted(set(course) - known)
        if unknown:
            raise ConfigurationError(
                f"Unknown key(s) {', '.join(unknown)} in [course] of {path or 'the course file'}: "
                f"use {', '.join(sorted(known))}.")
        for key in ("max_cost", "session_budget", "daily_budget"):
            if key in course:
                course[key] = float(course[key])
        tests = {str(k): str(v) for k, v in dict(table.get("tests", {})).items()}
        return cls(path=path, raw=table, tests=tests, **course)


def course_path() -> Path | None:
    """The course file in force: ``$LLMSCRIPT_COURSE``, else /etc/llmscript/course.toml."""
    named = os.environ.get(ENV_VAR)
    if named:
        return Path(named)
    default = Path(DEFAULT_PATH)
    return default if default.is_file() else None


def current_course() -> CourseSettings | None:
    """The course this kernel belongs to, read afresh: a teacher's edit applies to the next cell."""
    path = course_path()
    if path is None:
        return None
    return CourseSettings.from_table(load_toml(path), str(path))


def _tighter(student: float | None, course: float | None) -> float | None:
    if course is None:
        return student
    return course if student is None else min(student, course)


def apply_course(opts: OptionsT, course: CourseSettings | None) -> tuple[OptionsT, list[str]]:
    """``opts`` under the course's settings, and one note per thing the course decided."""
    if course is None:
        return opts, []
    get = lambda name: getattr(opts, name, None)  # noqa: E731
    changes: dict[str, Any] = {}
    notes: list[str] = []
    if course.model and get("model") != course.model:
        if get("model"):
            notes.append(f"{NOTE}model {course.model} (set by {course.name}; "
                         f"{get('model')} was not used)")
        changes["model"] = course.model
        changes["allowed_providers"] = None  # the course's model is the policy here
    if course.rules:
        changes["system"] = f"{get('system') or ''}\n\nCourse rules: {course.rules}".strip()
        notes.append(f"{NOTE}{course.name}'s rules were added to the prompt")
    if course.tutor is not None and bool(get("tutor")) != course.tutor:
        changes["tutor"] = course.tutor
        notes.append(f"{NOTE}tutor mode {'on' if course.tutor else 'off'} (set by "
                     f"{course.name})")
    elif course.tutor:
        notes.append(f"{NOTE}tutor mode (set by {course.name})")
    if course.sandbox and get("sandbox") not in (None, "none", course.sandbox):
        changes["sandbox"] = course.sandbox
        if get("run"):
            notes.append(f"{NOTE}the code runs in the {course.sandbox} sandbox (set by "
                         f"{course.name}; --sandbox {get('sandbox')} was not used)")
    if course.insert is False and get("insert") is not False:
        changes["insert"] = False
        notes.append(f"{NOTE}generated code is not inserted in {course.name}")
    for name in ("max_cost", "session_budget", "daily_budget"):
        if hasattr(opts, name):
            value = _tighter(get(name), getattr(course, name))
            if value != get(name):
                changes[name] = value
    if hasattr(opts, "course_locked"):
        decided = {"model": course.model, "tutor": course.tutor, "insert": course.insert,
                   "max_cost": course.max_cost, "session_budget": course.session_budget,
                   "daily_budget": course.daily_budget, "system": course.rules or None,
                   "sandbox": course.sandbox}
        changes["course_locked"] = frozenset(k for k, v in decided.items() if v is not None)
    return (replace(opts, **changes) if changes else opts), notes  # type: ignore[type-var]


def by_course(course: CourseSettings | None, name: str, value: float | None) -> bool:
    """Whether ``value`` of budget ``name`` is the course's (so only the teacher can raise it)."""
    return course is not None and value is not None and getattr(course, name) == value


__all__ = ["TUTOR_SYSTEM", "CourseSettings", "apply_course", "by_course", "course_path",
           "current_course"]
