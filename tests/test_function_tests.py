"""``--test EXPR``: a teacher tests the script's functions in the real sandbox.

Each test is judged after the run, in a fresh sandbox process that loads the script's
definitions (its ``__main__`` block does not run there); the result says the tests ran
with the script's own code. A failing test goes back to the model like a failed check.
Run under every isolation level: gVisor, runc and local (bubblewrap).
"""

from __future__ import annotations

import contextlib
import io
from pathlib import Path
from typing import Any

import pytest
from IPython.core.interactiveshell import InteractiveShell
from replay_helpers import record_then_replay
from sandbox_fixtures import SANDBOX_FLAGS

FIZZBUZZ = '''def fizzbuzz(n):
    if n % 15 == 0:
        return "FizzBuzz"
    if n % 3 == 0:
        return "Fizz"
    if n % 5 == 0:
        return "Buzz"
    return str(n)


if __name__ == "__main__":
    print("main block ran")
    print([fizzbuzz(i) for i in range(1, 16)])
'''
BUGGY = FIZZBUZZ.replace('    if n % 15 == 0:\n        return "FizzBuzz"\n', "")
TESTS = ('--test "fizzbuzz(15) == \'FizzBuzz\'" --test "fizzbuzz(3) == \'Fizz\'" '
         '--test "__name__ != \'__main__\'"')
LABEL = "(tests ran with the script's own code)"

SANDBOXES = SANDBOX_FLAGS


def _fenced(code: str) -> str:
    return f"```python\n{code}```"


def _generate(ip: InteractiveShell, flags: str) -> tuple[Any, str]:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        result = ip.run_cell(f"%%generate --model fake:m --no-insert --run {flags}\n"
                             "A fizzbuzz(n) function.")
    return result, out.getvalue()


@pytest.fixture
def engine(engine_for: None) -> None:
    """The real engine (and gVisor) for the docker params."""


@pytest.mark.parametrize("flags", SANDBOXES)
def test_passing_tests_are_shown_and_labelled(flags: str, engine: None, ip: InteractiveShell,
                                              fake: Any) -> None:
    fake.enqueue(_fenced(FIZZBUZZ))
    result, shown = _generate(ip, f"{flags} {TESTS}")
    assert result.success, result.error_in_exec
    assert f"✓ test: fizzbuzz(15) == 'FizzBuzz' is true {LABEL}" in shown
    assert f"✓ test: fizzbuzz(3) == 'Fizz' is true {LABEL}" in shown
    assert f"✓ test: __name__ != '__main__' is true {LABEL}" in shown  # main block not run
    assert "main block ran" in shown  # ... while the script's own run did run it
    assert len(fake.history) == 1


@pytest.mark.parametrize("flags", SANDBOXES)
def test_a_failing_test_goes_back_to_the_model(flags: str, engine: None, ip: InteractiveShell,
                                               fake: Any) -> None:
    fake.enqueue(_fenced(BUGGY))
    fake.enqueue(_fenced(FIZZBUZZ))
    result, shown = _generate(ip, f"{flags} {TESTS}")
    assert result.success, result.error_in_exec
    assert len(fake.history) == 2
    repair = fake.history[1].messages[-1].content
    assert f"- test: fizzbuzz(15) == 'FizzBuzz' failed: got 'Fizz' {LABEL}" in repair
    assert f"✓ test: fizzbuzz(15) == 'FizzBuzz' is true {LABEL}" in shown


def test_a_test_that_raises_or_a_script_that_exits_fails_with_its_reason(
        ip: InteractiveShell, fake: Any) -> None:
    fake.enqueue(_fenced(FIZZBUZZ))
    _result, shown = _generate(ip, '--sandbox local --retries 0 --test "fizzbuzz()"')
    assert "✗ test: fizzbuzz() failed: TypeError: fizzbuzz() missing 1 required" in shown
    fake.enqueue(_fenced("import sys\nprint('hi')\nsys.exit(0)\n"))
    _result, shown = _generate(ip, '--sandbox local --retries 0 --no-cache --test "1 == 1"')
    assert ("✗ test: 1 == 1 failed: the script failed while loading its definitions "
            "(SystemExit: 0)") in shown


def test_test_needs_a_run_and_check_points_to_it(ip: InteractiveShell, fake: Any) -> None:
    result = ip.run_cell('%%generate --model fake:m --no-insert --test "f(1) == 2"\nf(n).')
    assert str(result.error_in_exec) == ("--test needs a run: add --run (the tests call the "
                                         "script's functions in the sandbox).")
    assert fake.history == []
    fake.enqueue(_fenced(FIZZBUZZ))
    _result, shown = _generate(ip, "--sandbox local --retries 0 "
                               "--check \"fizzbuzz(15) == 'FizzBuzz'\"")
    assert "was not evaluated" in shown
    assert "to test the script's functions, use --test EXPR instead" in shown


@pytest.mark.docker
def test_a_notebook_whose_tests_pass_replays_with_exit_0(tmp_path: Path,
                                                         docker_client: Any) -> None:
    proc, out = record_then_replay(
        ["%load_ext llmscript_magic\n%config GenerateMagics.widgets = False",
         f"%%generate --run {TESTS}\nA fizzbuzz(n) function."],
        [_fenced(FIZZBUZZ)], tmp_path, "lesson.ipynb")
    assert proc.returncode == 0, proc.stdout + proc.stderr[-2000:]
    assert "lesson.ipynb: ok" in proc.stdout
    text = "".join(o.get("data", {}).get("text/plain", "") for o in out.cells[1].outputs)
    assert f"✓ test: fizzbuzz(15) == 'FizzBuzz' is true {LABEL}" in text
