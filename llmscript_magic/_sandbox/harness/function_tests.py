"""``--test EXPR``: runs in the sandbox as the script of a second run, after the first.

Loads the generated script's definitions (the script runs with ``__name__`` set to
``llmscript_tests``, so its ``if __name__ == "__main__":`` block does not), then
evaluates each test expression in the script's namespace and prints one JSON line
after ``MARKER``. The expressions call the script's own code in the script's own
process, so the script could forge this line: the verdict is labelled "tests ran with
the script's own code", apart from ``--check``, which a process the script never
touched judges. Configured by ``CONFIG`` (JSON) in the work dir; no templates.
"""

from __future__ import annotations

import ast
import json
import operator
import sys
from collections.abc import Callable
from typing import Any

MARKER = "LLMSCRIPT-TESTS "
SCRIPT = "llmscript_script.py"
CONFIG = "llmscript_tests.json"


def _line(err: BaseException) -> str:
    return f"{type(err).__name__}: {err}"[:300]


def judge(config: dict[str, Any], namespace: dict[str, Any]) -> list[dict[str, Any]]:
    """[{"ok": bool, "why": str}] per test, in order."""
    script = {"__name__": "llmscript_tests", "__file__": SCRIPT, "__builtins__": __builtins__}
    script.update({n: namespace[n] for n in config.get("inputs", []) if n in namespace})
    try:
        with open(SCRIPT, encoding="utf-8") as fh:
            exec(compile(fh.read(), SCRIPT, "exec"), script)
    except BaseException as err:  # SystemExit too: every test fails with the same reason
        why = f"the script failed while loading its definitions ({_line(err)})"
        return [{"ok": False, "why": why} for _ in config["tests"]]
    results = []
    for expr in config["tests"]:
        try:
            value, got = _evaluate(expr, script)
            results.append({"ok": bool(value), "why": "" if value else f"got {got!r}"[:300]})
        except BaseException as err:
            results.append({"ok": False, "why": _line(err)})
    return results


_OPS: dict[type, Callable[[Any, Any], Any]] = {
    ast.Eq: operator.eq, ast.NotEq: operator.ne, ast.Lt: operator.lt, ast.LtE: operator.le,
    ast.Gt: operator.gt, ast.GtE: operator.ge, ast.Is: operator.is_,
    ast.IsNot: operator.is_not, ast.In: lambda a, b: a in b,
    ast.NotIn: lambda a, b: a not in b}


def _evaluate(expr: str, scope: dict[str, Any]) -> tuple[Any, Any]:
    """(value, what to show when false): a comparison shows its left side's value."""
    body = ast.parse(expr, "<test>", "eval").body
    if isinstance(body, ast.Compare) and len(body.ops) == 1:
        left = eval(compile(ast.Expression(body.left), "<test>", "eval"), scope)
        right = eval(compile(ast.Expression(body.comparators[0]), "<test>", "eval"), scope)
        return _OPS[type(body.ops[0])](left, right), left
    value = eval(compile(ast.Expression(body), "<test>", "eval"), scope)
    return value, value


def main(namespace: dict[str, Any]) -> None:
    with open(CONFIG, encoding="utf-8") as fh:
        config = json.load(fh)
    results = judge(config, namespace)
    sys.stdout.flush()
    print("\n" + MARKER + json.dumps(results), flush=True)


if __name__ == "__main__":
    main(globals())
