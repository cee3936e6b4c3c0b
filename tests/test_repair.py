"""The self-repair loop through %%generate: scripted replies, the real sandbox."""

from __future__ import annotations

import re
from typing import Any

import pytest
from IPython.core.interactiveshell import InteractiveShell

pytestmark = pytest.mark.docker


def text(content: Any) -> str:
    """A message's text, whether sent as a string or as content blocks (prompt caching)."""
    if isinstance(content, str):
        return content
    return "".join(block.get("text", "") for block in content)


def fence(code: str) -> str:
    return f"Here you go:\n\n```python\n{code}```\n"


def prompts(standin: Any) -> list[str]:
    return [text(r.body["messages"][-1]["content"]) for r in standin.requests]


def test_runtime_error_is_fixed_from_the_traceback(
        ip: InteractiveShell, anthropic_standin: Any, docker_client: Any,
        capsys: pytest.CaptureFixture[str]) -> None:
    anthropic_standin.enqueue(fence("values = [1, 2, 3]\nprint(values[3])\n"))
    anthropic_standin.enqueue(fence("values = [1, 2, 3]\nprint(values[-1])\n"))
    res = ip.run_cell("%%generate --run\nPrint the last value of [1, 2, 3].")
    assert res.success
    assert ip.rl_next_input == "values = [1, 2, 3]\nprint(values[-1])"
    repair = prompts(anthropic_standin)[1]
    assert "IndexError: list index out of range" in repair
    assert "/tmp/" not in repair and "/root" not in repair  # no host paths to the model
    out = capsys.readouterr().out
    assert "2 attempts" in out and re.search(r"Run \(docker, \w+\): ok, exit 0", out)


def test_module_missing_from_the_image_is_named_and_repaired(
        ip: InteractiveShell, anthropic_standin: Any, docker_client: Any,
        capsys: pytest.CaptureFixture[str]) -> None:
    anthropic_standin.enqueue(fence("import polars as pl\nprint(pl.DataFrame({'a': [1]}))\n"))
    anthropic_standin.enqueue(fence("import pandas as pd\nprint(pd.DataFrame({'a': [1]}))\n"))
    res = ip.run_cell("%%generate --run\nMake a one-column table and print it.")
    assert res.success
    repair = prompts(anthropic_standin)[1]
    assert "polars is not in the sandbox image" in repair
    assert re.search(r"Run \(docker, \w+\): ok", capsys.readouterr().out)


def test_never_right_stops_at_the_limit_with_a_summary(
        ip: InteractiveShell, anthropic_standin: Any, docker_client: Any,
        capsys: pytest.CaptureFixture[str]) -> None:
    for _ in range(3):
        anthropic_standin.enqueue(fence("raise SystemExit(3)\n"))
    res = ip.run_cell("%%generate --run --retries 2\nExit cleanly.")
    assert res.success  # the code is still inserted, for the user to fix
    assert anthropic_standin.request_count == 3
    out = capsys.readouterr().out
    assert "3 attempts" in out and "✗ run: exited with status 3" in out
    assert ip.rl_next_input == "raise SystemExit(3)"


def test_budget_stops_the_loop_early(ip: InteractiveShell, anthropic_standin: Any,
                                     docker_client: Any) -> None:
    for _ in range(3):
        anthropic_standin.enqueue(fence("raise SystemExit(3)\n"),
                                  usage={"input_tokens": 900, "output_tokens": 200})
    ip.run_cell("%%generate --run --retries 5 --budget-tokens 2000\nExit cleanly.")
    assert anthropic_standin.request_count == 2


def test_example_output_is_verified(ip: InteractiveShell, anthropic_standin: Any,
                                    docker_client: Any,
                                    capsys: pytest.CaptureFixture[str]) -> None:
    anthropic_standin.enqueue(fence("print(sum([2, 3]) * 2)\n"))
    anthropic_standin.enqueue(fence("print(sum([2, 3]))\n"))
    res = ip.run_cell("%%generate --run\nAdd the numbers and print the sum.\n"
                      "Example input: [2, 3]\nExample output: 5")
    assert res.success
    assert "the spec's example output '5' was not produced" in prompts(anthropic_standin)[1]
    assert "✓ example: output matches the spec's example" in capsys.readouterr().out


def test_retries_zero_disables_repair(ip: InteractiveShell, anthropic_standin: Any) -> None:
    anthropic_standin.enqueue(fence("print('unclosed'\n"))
    ip.run_cell("%%generate --retries 0\nSay hi.")
    assert anthropic_standin.request_count == 1
