"""``--test EXPR``: a teacher's checks of the script's functions (issue 25).

``--check`` is judged by a process the script never touched, so it cannot call the
script's functions. ``--test`` can: after a successful run, a second sandbox run
(same sandbox, limits and inputs) loads the script's definitions in a fresh process
(``_sandbox/function_tests.py``) and evaluates each expression there. That
process runs the script's own code, which could forge the verdict, so every test
check says so. A failing test is a failed layer: the model gets it back to repair.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from .._sandbox import function_tests as harness
from .validate import Check

if TYPE_CHECKING:
    from .._sandbox import Limits, RunResult, Sandbox
    from .options import Options

#: what every --test check says, apart from --check's unforgeable verdict
LABEL = "tests ran with the script's own code"
_RUNNER = harness.program()


def verdicts(result: RunResult, count: int) -> list[dict[str, Any]] | None:
    """The tests' results from the run's last marker line; None when there is none."""
    for line in reversed(result.stdout.splitlines()):
        if line.startswith(harness.MARKER):
            try:
                found = json.loads(line[len(harness.MARKER):])
            except ValueError:
                return None
            ok = isinstance(found, list) and len(found) == count
            return found if ok and all(isinstance(r, dict) for r in found) else None
    return None


def test_checks(sandbox: Sandbox, code: str, opts: Options, limits: Limits) -> list[Check]:
    """One check per ``--test`` expression, judged in a fresh sandbox process."""
    config = {"tests": list(opts.tests), "inputs": [v.name for v in opts.inputs]}
    files = {**opts.files, harness.SCRIPT: code.encode(),
             harness.CONFIG: json.dumps(config).encode()}
    result = sandbox.run(_RUNNER, files=files, limits=limits, inputs=tuple(opts.inputs))
    found = verdicts(result, len(opts.tests))
    if found is None:
        why = result.status if result.status != "ok" else f"exit {result.exit_code}"
        last = result.stderr.strip().splitlines()[-1:] or [""]
        return [Check("test", "fail", f"--test {expr!r} did not finish ({why}"
                      + (f": {last[0][:200]}" if last[0] else "") + f"); {LABEL}",
                      layer="test") for expr in opts.tests]
    return [Check("test", "pass" if r.get("ok") is True else "fail",
                  f"{expr} is true ({LABEL})" if r.get("ok") is True
                  else f"{expr} failed: {str(r.get('why') or 'false')[:300]} ({LABEL})",
                  layer="test") for expr, r in zip(opts.tests, found, strict=True)]


def not_run(opts: Options) -> list[Check]:
    """The tests when the script's own run failed first."""
    return [Check("test", "fail", f"--test {expr!r} did not run (the script failed first)",
                  layer="test") for expr in opts.tests]


__all__ = ["LABEL", "not_run", "test_checks", "verdicts"]
