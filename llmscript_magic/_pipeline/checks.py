"""Run-time validation layers: the sandbox run, ``--check EXPR`` and the spec's example.

A check expression is evaluated in the sandbox after the script, in the
script's own globals, so it can look at variables and files the script made.
The script goes in as ``script.py`` and a small runner executes it with
``runpy``; the runner prints one marker line that is removed before the user
sees stdout.
"""

from __future__ import annotations

import json
import re
from typing import TYPE_CHECKING

from .validate import Check

if TYPE_CHECKING:
    from .._sandbox import RunResult
    from .spec import Spec

MARKER = "@@llmscript-check:"
SCRIPT_NAME = "script.py"
_RUN_SCRIPT = """\
import json, os, sys
_ns = {{"__name__": "__main__", "__file__": {script!r}, "__builtins__": __builtins__}}
try:
    with open({script!r}) as _f:
        exec(compile(_f.read(), {script!r}, "exec"), _ns)
except SystemExit as _e:
    if _e.code not in (0, None):
        raise
"""
_CHECK = """\
_g = {{"json": json, "os": os, "sys": sys, **_ns}}
try:
    _ok, _why = bool(eval({expr!r}, _g)), ""
except Exception as _e:
    _ok, _why = False, f"{{type(_e).__name__}}: {{_e}}"
sys.stdout.flush()
print("\\n" + {marker!r} + json.dumps([_ok, _why[:300]]))
"""


def wrap(code: str, *, check: str | None = None, outputs: str = "") -> tuple[str, dict[str, bytes]]:
    """Code to run plus extra input files: the script, then ``outputs``, then ``check``.

    ``outputs`` is Python source that reads the script's globals from ``_ns``.
    """
    runner = _RUN_SCRIPT.format(script=SCRIPT_NAME) + outputs
    if check:
        runner += "\n" + _CHECK.format(expr=check, marker=MARKER)
    return runner, {SCRIPT_NAME: code.encode()}


def take_marker(stdout: str) -> tuple[str, tuple[bool, str] | None]:
    """Strip the runner's marker line from stdout; return its verdict if present."""
    idx = stdout.rfind("\n" + MARKER)
    if idx < 0:
        return stdout, None
    line = stdout[idx + 1 + len(MARKER):].splitlines()[0]
    try:
        ok, why = json.loads(line)
    except ValueError:
        return stdout, None
    return stdout[:idx], (bool(ok), str(why))


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
    return Check("run", "fail", why + (f": {last.splitlines()[-1]}" if last else ""),
                 layer="run")


def expr_check(expr: str, verdict: tuple[bool, str] | None) -> Check:
    if verdict is None:
        return Check("check", "fail", f"--check {expr!r} did not run (the script failed first)",
                     layer="check")
    ok, why = verdict
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
