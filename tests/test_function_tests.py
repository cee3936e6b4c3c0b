"""``--test EXPR``: a teacher tests the script's functions in the real sandbox.

Each test is judged after the run, in a fresh sandbox process that loads the script's
definitions (its ``__main__`` block does not run there); the result says the tests ran
with the script's own code. A failing test goes back to the model like a failed check.
Run under every isolation level: gVisor, runc and local (bubblewrap).
"""

from __future__ import annotations

import contextlib
import io
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import nbformat
import pytest
from IPython.core.interactiveshell import InteractiveShell
from nbclient import NotebookClient
from standins import TEST_ANTHROPIC_KEY, AnthropicStandIn, closed_port

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

SANDBOXES = [pytest.param("--isolation gvisor", marks=pytest.mark.docker, id="gvisor"),
             pytest.param("--isolation container", marks=pytest.mark.docker, id="runc"),
             pytest.param("--sandbox local", id="local")]


def _fenced(code: str) -> str:
    return f"```python\n{code}```"


def _generate(ip: InteractiveShell, flags: str) -> tuple[Any, str]:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        result = ip.run_cell(f"%%generate --model fake:m --no-insert --run {flags}\n"
                             "A fizzbuzz(n) function.")
    return result, out.getvalue()


@pytest.fixture
def engine(request: pytest.FixtureRequest) -> None:
    """The real engine (and gVisor) for the docker params; a skip, or a failure under CI."""
    flags = request.node.callspec.params["flags"]
    if "isolation" in flags:
        client = request.getfixturevalue("docker_client")
        request.getfixturevalue("docker_leftover_check")
        if "gvisor" in flags:
            from llmscript_magic._sandbox.engine import gvisor_problem

            if (problem := gvisor_problem(client)) is not None:
                pytest.fail(f"no gVisor: {problem}") if os.environ.get("CI") else \
                    pytest.skip(f"no gVisor: {problem}")


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
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3",
                                 "language": "python"}
    nb.cells = [nbformat.v4.new_code_cell("%load_ext llmscript_magic\n"
                                          "%config GenerateMagics.widgets = False"),
                nbformat.v4.new_code_cell(f"%%generate --run {TESTS}\n"
                                          "A fizzbuzz(n) function.")]
    base = {k: v for k, v in os.environ.items()
            if not k.endswith("_API_KEY") and k not in ("LLMSCRIPT_REPLAY", "JPY_SESSION_NAME")}
    with AnthropicStandIn(api_key=TEST_ANTHROPIC_KEY) as standin:
        standin.enqueue(_fenced(FIZZBUZZ))
        NotebookClient(nb, timeout=180, kernel_name="python3",
                       resources={"metadata": {"path": str(tmp_path)}}).execute(
            env={**base, "ANTHROPIC_BASE_URL": standin.url, "NO_PROXY": "127.0.0.1",
                 "ANTHROPIC_API_KEY": TEST_ANTHROPIC_KEY,
                 "LLMSCRIPT_CACHE_DIR": str(tmp_path / "c1")})
    path = tmp_path / "lesson.ipynb"
    nbformat.write(nb, path)
    env = {**base, "ANTHROPIC_BASE_URL": f"http://127.0.0.1:{closed_port()}",
           "LLMSCRIPT_CACHE_DIR": str(tmp_path / "c2"),
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{base.get('PATH', '')}"}
    proc = subprocess.run([sys.executable, "-m", "llmscript_magic._cli.main", "run", str(path),
                           "--replay", "-o", str(tmp_path / "out.ipynb")], env=env,
                          cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr[-2000:]
    assert "lesson.ipynb: ok" in proc.stdout
    out = nbformat.read(tmp_path / "out.ipynb", as_version=4)
    text = "".join(o.get("data", {}).get("text/plain", "") for o in out.cells[1].outputs)
    assert f"✓ test: fizzbuzz(15) == 'FizzBuzz' is true {LABEL}" in text
