"""Run-time validation layers: the sandbox run, ``--output``, ``--check EXPR``, the example.

The sandbox's harness evaluates the check expression after the script, over
the values it names from the script's globals and in its work dir (so it can
look at variables and files the script made), in a process the script never
touched; the ``--output`` variables come from those globals. Both come back on
the harness's own channel in the ``RunResult`` (``check``, ``values``,
``missing``), never as lines the script could print. This module turns them
into checks.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from typing import TYPE_CHECKING

from .._sandbox.values import NOT_DEFINED
from .packages import missing_hint
from .validate import Check

if TYPE_CHECKING:
    from .._sandbox import RunResult
    from .spec import Spec


def tail(text: str, lines: int = 15, chars: int = 1500) -> str:
    kept = "\n".join(text.rstrip().splitlines()[-lines:])
    return kept[-chars:]


def run_check(result: RunResult) -> Check:
    if result.status == "ok" and result.exit_code == 0:
        return Check("run", "pass", f"ran in {result.duration:.2f}s, exit 0", layer="run")
    reasons = {
        "timeout": "stopped at the time limit (raise --timeout or ask for faster code)",
        "memory": "stopped at the memory limit (raise --memory or ask for leaner code)",
        "output_capped": "printed more output than the cap allows",
    }
    why = reasons.get(result.status, f"exited with status {result.exit_code}")
    last = tail(result.stderr, 3).strip()
    return Check("run", "fail", why + (f": {last.splitlines()[-1]}" if last else "")
                 + missing_hint(result.stderr), layer="run")


def not_returned(name: str, why: str | None) -> str:
    """One line for an ``--output`` variable that did not come back (None: no word why)."""
    missing = f"The script did not leave a variable {name!r}"
    if why is None:
        return (f"{missing}: no result came back (did the script fail before its end?); "
                "nothing was assigned")
    if why == NOT_DEFINED:
        return f"{missing}: say in the spec what {name!r} should hold (nothing was assigned)"
    if why.startswith("it is ") and not why.endswith("needs pickle"):
        return (f"{missing} that can be copied back: {why}; make it a DataFrame, Series, "
                "numpy array or JSON data (nothing was assigned)")
    return f"{missing} that can be copied back ({why}); nothing was assigned"


def outputs_check(names: Sequence[str], result: RunResult) -> Check:
    """Passes when the harness returned every ``--output`` name; else says why not."""
    came = {v.name for v in result.values}
    for name in names:
        if name not in came:
            return Check("outputs", "fail", not_returned(name, result.missing.get(name)),
                         layer="run")
    return Check("outputs", "pass", "returned " + ", ".join(names), layer="run")


#: the name of a check that could not be evaluated apart from the script (not repairable)
UNEVALUATED = "check:unevaluated"


def expr_check(expr: str, verdict: tuple[bool | None, str] | None) -> Check:
    if verdict is None:
        return Check("check", "fail", f"--check {expr!r} did not run (the script failed first)",
                     layer="check")
    ok, why = verdict
    if ok is None:  # a failure (the script could force it), but no repair round: the
        # user's check, not the model's code, needs changing
        return Check(UNEVALUATED, "fail", f"--check {expr!r} was not evaluated: {why}"
                     + ("; to test the script's functions, use --test EXPR instead"
                        * ("function" in why)), layer="check")
    if ok:
        return Check("check", "pass", f"{expr} is true", layer="check")
    return Check("check", "fail", f"{expr} is false" + (f" ({why})" if why else ""),
                 layer="check")


def _squash(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip()


def example_check(spec: Spec, result: RunResult) -> Check | None:
    """The spec's example output must appear in stdout or in a written file."""
    expected = spec.example_output.strip()
    if not expected:
        return None
    try:
        want_json = json.loads(expected)
    except ValueError:
        want_json = None
    outputs = [result.stdout] + [f.data.decode("utf-8", "replace") for f in result.files]
    for out in outputs:
        if want_json is not None:
            try:
                if json.loads(out) == want_json:
                    return Check("example", "pass", "output matches the spec's example",
                                 layer="check")
            except ValueError:
                pass
        if _squash(expected) in _squash(out):
            return Check("example", "pass", "output matches the spec's example", layer="check")
    return Check("example", "fail",
                 f"the spec's example output {_squash(expected)[:80]!r} was not produced",
                 layer="check")
