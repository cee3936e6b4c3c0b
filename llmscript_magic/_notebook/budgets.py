"""A kernel's budgets and its course: the guard a cell runs under, and what
``%llmscript usage`` says is left.

The session budget counts this kernel's model requests as they are answered (repair
rounds and failed generations included); the daily budget adds up every kernel of
the user through the ``Ledger`` file. The course's values are applied first
(``_course/settings.apply_course``), so a student's ``%config`` can only lower them.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from .._course.budget import Guard, Ledger, Limit, usd
from .._course.settings import CourseSettings, apply_course, by_course, current_course
from .._errors import LLMScriptError
from .config import CellOptions


class Spending:
    """What this kernel has spent on model requests, counted reply by reply."""

    def __init__(self) -> None:
        self.session = 0.0
        self.ledger = Ledger()
        self.course: CourseSettings | None = None


def with_course(opts: CellOptions, spending: Spending) -> tuple[CellOptions, list[str]]:
    """The cell's options under the course file (read afresh), and the course's notes."""
    spending.course = current_course()
    return apply_course(opts, spending.course)


def _raise_hint(name: str, course: CourseSettings | None, value: float | None) -> str:
    if by_course(course, name, value):
        return f"only the teacher can raise it ({course.path if course else ''})"
    if name == "daily_budget":
        return "raise %config GenerateMagics.daily_budget, or wait until tomorrow"
    return "raise %config GenerateMagics.session_budget, or restart the kernel"


def limits(opts: CellOptions, spending: Spending) -> list[Limit]:
    """The session and daily limits in force for this cell."""
    course = spending.course
    found = []
    if opts.session_budget is not None:
        found.append(Limit("session budget", opts.session_budget, lambda: spending.session,
                           _raise_hint("session_budget", course, opts.session_budget),
                           by_course(course, "session_budget", opts.session_budget)))
    if opts.daily_budget is not None:
        found.append(Limit("daily budget", opts.daily_budget, spending.ledger.spent_today,
                           _raise_hint("daily_budget", course, opts.daily_budget),
                           by_course(course, "daily_budget", opts.daily_budget)))
    return found


def guarded(opts: CellOptions, spending: Spending, prices: Any) -> CellOptions:
    """``opts`` with the guard every model request of this cell is checked against."""
    daily = opts.daily_budget is not None

    def on_spend(cost: float, model: str) -> None:
        spending.session += cost
        if daily:
            spending.ledger.add(cost, model)

    guard = Guard(limits(opts, spending), prices or None, on_spend)
    if opts.max_cost is not None and by_course(spending.course, "max_cost", opts.max_cost):
        guard = guard.with_max_cost(opts.max_cost)
        guard.limits[0].how_to_raise = "only the teacher can raise it"
        guard.limits[0].by_course = True
        return replace(opts, guard=guard, max_cost=None)
    return replace(opts, guard=guard)


def budget_text(configured: Any, spending: Spending) -> str:
    """The lines ``%llmscript usage`` adds: each budget, spent and left."""
    try:
        spending.course = current_course()
        opts, _ = apply_course(_configured_options(configured), spending.course)
    except LLMScriptError as err:  # a broken course file or trait: the next cell says so too
        return f"Budgets: unknown ({err})"
    lines = [f"Spent by this kernel: {usd(spending.session)}"]
    for limit in limits(opts, spending):
        who = " (set by the course)" if limit.by_course else ""
        lines.append(f"{limit.name.capitalize()}{who}: {usd(limit.spent())} spent, "
                     f"{usd(limit.left)} left of {usd(limit.total)}")
    if opts.max_cost is not None:
        lines.append(f"Per cell (--max-cost): at most {usd(opts.max_cost)} a cell")
    if opts.model.startswith("course:"):
        lines.append(_service_line())
    elif len(lines) == 1:
        lines.append("No budget set (see %config GenerateMagics.session_budget, daily_budget "
                     "and --max-cost).")
    return "\n".join(lines)


def _service_line() -> str:
    """What the course service counts for this student (the budgets that bind)."""
    from ..providers.course import CourseProvider

    try:
        me = CourseProvider().status()
    except LLMScriptError as err:
        return f"Course service: {err}"
    parts = [f"Course service: {usd(me['cost_today'])} spent today, "
             f"{usd(me['cost_total'])} in all ({me['requests']} requests, "
             f"{me['refused']} refused)"]
    for name, spent in (("daily_budget", me["cost_today"]), ("total_budget", me["cost_total"])):
        if me.get(name) is not None:
            parts.append(f"{name.split('_')[0]} budget {usd(me[name])}, "
                         f"{usd(max(0.0, me[name] - spent))} left")
    return "; ".join(parts)


def _configured_options(configured: Any) -> CellOptions:
    """The traits as options, without a cell's flags."""
    import argparse

    from .config import merge

    opts: CellOptions = merge(CellOptions, configured, argparse.Namespace())
    return opts


__all__ = ["Spending", "budget_text", "guarded", "limits", "with_course"]
