"""%%generate end to end through a real InteractiveShell and the real anthropic SDK."""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

import pytest
from IPython.core.interactiveshell import InteractiveShell
from standins import TEST_ANTHROPIC_KEY

from llmscript_magic._errors import LLMScriptError

SALES_SPEC = """\
Read sales.csv, sum the numeric columns and write totals.json.
Input: a CSV path
Output: a JSON object {column: total}
Constraints:
- handle missing values
"""
SALES_CODE = '''\
import csv
import json


def totals(path: str) -> dict[str, float]:
    """Sum every numeric column, skipping blanks."""
    sums: dict[str, float] = {}
    with open(path, newline="") as f:
        for row in csv.DictReader(f):
            for key, value in row.items():
                try:
                    sums[key] = sums.get(key, 0.0) + float(value)
                except (TypeError, ValueError):
                    continue

    return sums


if __name__ == "__main__":
    with open("totals.json", "w") as out:
        json.dump(totals("sales.csv"), out)
'''
REPLY = f"Here is the script:\n\n```python\n{SALES_CODE}```\n\nIt writes totals.json."


def run(ip: InteractiveShell, line: str, cell: str) -> Any:
    return ip.run_cell(f"%%generate {line}\n{cell}")


def test_streams_extracts_and_inserts_below(ip: InteractiveShell, anthropic_standin: Any,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    anthropic_standin.enqueue(REPLY, chunk_size=5)
    result = run(ip, "", SALES_SPEC)
    assert result.success, result.error_in_exec
    assert ip.rl_next_input == SALES_CODE.rstrip("\n")
    out = capsys.readouterr().out
    assert "It writes totals.json." in out  # the raw reply streamed
    assert "syntax" in out and "✓" in out  # the checklist
    body = anthropic_standin.last.body
    assert body["stream"] is True
    assert body["model"] == "claude-sonnet-5-5"
    user = body["messages"][-1]["content"]
    assert "a JSON object {column: total}" in user  # braces untouched
    assert "- handle missing values" in user
    assert anthropic_standin.last.sent_key(TEST_ANTHROPIC_KEY)


def test_flags_reach_the_request(ip: InteractiveShell, anthropic_standin: Any) -> None:
    anthropic_standin.enqueue(REPLY)
    run(ip, "--model anthropic:claude-haiku-4-5 --max-tokens 900 --temperature 0.2 "
        "--system 'Prefer pathlib.' --no-insert", "Sum a CSV.")
    body = anthropic_standin.last.body
    assert (body["model"], body["max_tokens"], body["temperature"]) == (
        "claude-haiku-4-5", 900, 0.2)
    assert "Prefer pathlib." in json.dumps(body["system"])
    assert ip.rl_next_input is None  # --no-insert


def test_config_traits_set_defaults(ip: InteractiveShell, anthropic_standin: Any) -> None:
    anthropic_standin.enqueue(REPLY)
    ip.run_line_magic("config", "GenerateMagics.max_tokens = 1234")
    run(ip, "", "Sum a CSV.")
    assert anthropic_standin.last.body["max_tokens"] == 1234


def test_help_documents_flags(ip: InteractiveShell) -> None:
    from llmscript_magic._notebook.magics import GenerateMagics

    doc = GenerateMagics.generate.__doc__ or ""
    for flag in ("--model", "--max-tokens", "--temperature", "--system", "--no-insert", "--run",
                 "--sandbox", "--retries", "--check", "--replay"):
        assert flag in doc


@pytest.mark.parametrize(("line", "cell", "expected"), [
    ("--bogus", "x", "Unknown flag --bogus: see %%generate? for the flags."),
    ("--contxt df", "x", "Unknown flag --contxt: did you mean --context?"),
    ("--max-tokens lots", "x", "invalid int value"),
    ("--sandbox podman", "x", "invalid choice"),
    ("--memory huge", "x", "--memory 'huge' is not a size"),
    ("--model nosuch-model", "x", "Unknown model 'nosuch-model'"),
    ("--model acme:x", "x", "Unknown provider 'acme'"),
    ("", "   \n", "needs a spec"),
    ("--input missing.csv", "x", "--input 'missing.csv': no such file"),
    ("--check \"x == 1", "x", "check the quotes"),
])
def test_user_mistakes_are_one_line(ip: InteractiveShell, anthropic_standin: Any,
                                    capsys: pytest.CaptureFixture[str], line: str, cell: str,
                                    expected: str) -> None:
    result = run(ip, line, cell)
    assert not result.success
    err = capsys.readouterr().err
    assert expected in err
    assert "Traceback" not in err
    assert anthropic_standin.request_count == 0


def test_no_key_says_how_to_fix(ip: InteractiveShell, anthropic_standin: Any,
                                monkeypatch: pytest.MonkeyPatch,
                                capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.delenv("ANTHROPIC_API_KEY")
    result = run(ip, "", "Sum a CSV.")
    err = capsys.readouterr().err
    assert not result.success
    assert "set the ANTHROPIC_API_KEY environment variable" in err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert anthropic_standin.request_count == 0


@pytest.mark.parametrize(("status", "etype", "expected"), [
    (401, "authentication_error", "rejected the key"),
    (404, "not_found_error", "has no model"),
    (429, "rate_limit_error", "429"),
    (529, "overloaded_error", "overloaded"),
])
def test_api_errors_are_one_line_and_kernel_survives(
        ip: InteractiveShell, anthropic_standin: Any, capsys: pytest.CaptureFixture[str],
        status: int, etype: str, expected: str) -> None:
    anthropic_standin.set_default(status=status, error_type=etype)
    result = run(ip, "", "Sum a CSV.")
    err = capsys.readouterr().err
    assert not result.success
    assert expected.lower() in err.lower()
    assert "Traceback" not in err and TEST_ANTHROPIC_KEY not in err
    assert ip.run_cell("1 + 1").result == 2  # the shell keeps working


def test_refusal_reports_no_code(ip: InteractiveShell, anthropic_standin: Any,
                                 capsys: pytest.CaptureFixture[str]) -> None:
    anthropic_standin.enqueue("I can't help with deleting other people's files.")
    result = run(ip, "", "Delete every file on the server.")
    assert not result.success
    assert "replied without code" in capsys.readouterr().err
    assert ip.rl_next_input is None
    assert anthropic_standin.request_count == 1  # a refusal is not retried


def test_truncated_reply_is_reported_never_inserted(ip: InteractiveShell, anthropic_standin: Any,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    anthropic_standin.enqueue("```python\nimport csv\ndef f(", stop_reason="max_tokens")
    result = run(ip, "--max-tokens 10", "Sum a CSV.")
    assert not result.success
    assert "max_tokens" in capsys.readouterr().err
    assert ip.rl_next_input is None


def test_syntax_error_is_repaired(ip: InteractiveShell, anthropic_standin: Any,
                                  capsys: pytest.CaptureFixture[str]) -> None:
    anthropic_standin.enqueue("```python\nprint('hi'\n```")
    anthropic_standin.enqueue("```python\nprint('hi')\n```")
    result = run(ip, "", "Say hi.")
    assert result.success
    assert ip.rl_next_input == "print('hi')"
    second = anthropic_standin.last.body["messages"]
    assert [m["role"] for m in second] == ["user", "assistant", "user"]
    assert "Syntax error at line 1" in second[-1]["content"]
    assert "2 attempts" in capsys.readouterr().out


def test_unchanged_cell_is_served_from_cache(ip: InteractiveShell, anthropic_standin: Any,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    anthropic_standin.enqueue(REPLY)
    run(ip, "", SALES_SPEC)
    ip.rl_next_input = None
    run(ip, "", SALES_SPEC)
    assert anthropic_standin.request_count == 1
    assert ip.rl_next_input == SALES_CODE.rstrip("\n")
    assert "from cache" in capsys.readouterr().out
    anthropic_standin.enqueue(REPLY)
    run(ip, "--refresh", SALES_SPEC)
    assert anthropic_standin.request_count == 2


def test_usage_and_models_magics(ip: InteractiveShell, anthropic_standin: Any,
                                 capsys: pytest.CaptureFixture[str]) -> None:
    anthropic_standin.enqueue(REPLY, usage={"input_tokens": 1000, "output_tokens": 500})
    run(ip, "", "Sum a CSV.")
    capsys.readouterr()
    ip.run_line_magic("llmscript", "usage")
    out = capsys.readouterr().out
    assert "1000 in / 500 out tokens" in out and "$0.0105" in out
    row = next(line for line in out.splitlines() if "claude" in line)
    assert row.startswith("In [") and row.rstrip().endswith("ok")  # named by its cell


def test_usage_lists_stopped_generations(ip: InteractiveShell, anthropic_standin: Any,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    """A generation stopped by the user still shows in %llmscript usage, as stopped."""
    import threading

    gm = ip.magics_manager.registry["GenerateMagics"]
    anthropic_standin.enqueue(REPLY)
    stop = threading.Event()
    stop.set()
    from llmscript_magic._ui.text import TextView

    with pytest.raises(LLMScriptError, match="stopped"):
        gm.session.generate("Sum a CSV.", gm.options(gm.generate.parser.parse_args([]),
                                                     "Sum a CSV."), TextView(), cancel=stop)
    capsys.readouterr()
    ip.run_line_magic("llmscript", "usage")
    out = capsys.readouterr().out
    assert "anthropic:claude-sonnet-5-5" in out and out.splitlines()[1].rstrip().endswith(
        "stopped")
    ip.run_line_magic("llmscript", "models")
    out = capsys.readouterr().out
    assert "ANTHROPIC_API_KEY is set" in out and TEST_ANTHROPIC_KEY not in out
    assert "anthropic:claude-sonnet-5-5" in out


def test_api_key_trait_is_never_shown(ip: InteractiveShell,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    ip.run_line_magic("config", "GenerateMagics.api_key = 'sk-ant-very-secret'")
    ip.run_line_magic("config", "GenerateMagics")
    out = capsys.readouterr().out
    assert "api_key" in out and "sk-ant-very-secret" not in out


def test_load_ext_is_light() -> None:
    code = ("import sys; from IPython.core.interactiveshell import InteractiveShell as S; "
            "S.instance().run_line_magic('load_ext', 'llmscript_magic'); "
            "print(sorted(m for m in ('anthropic', 'docker', 'ipywidgets', 'openai') "
            "if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    assert out.strip().splitlines()[-1] == "[]"


def test_thinking_is_shown_apart_and_never_becomes_code(
        ip: InteractiveShell, anthropic_standin: Any,
        capsys: pytest.CaptureFixture[str]) -> None:
    """--thinking: the reasoning streams (labelled), the code comes from the answer only."""
    draft = "Draft:\n```python\nprint('draft, never run')\n```\nBetter: a loop."
    anthropic_standin.enqueue(REPLY, thinking=draft, chunk_size=8)
    result = run(ip, "--thinking 2048", "Sum a CSV.")
    assert result.success, result.error_in_exec
    out = capsys.readouterr().out
    assert "[model's reasoning, not code]" in out and "Better: a loop." in out
    assert out.index("Better: a loop.") < out.index("[answer]")
    assert "draft, never run" not in (ip.rl_next_input or "")
    assert anthropic_standin.last.body["thinking"] == {"type": "enabled", "budget_tokens": 2048}


def test_thinking_below_the_api_minimum_is_one_line(
        ip: InteractiveShell, anthropic_standin: Any,
        capsys: pytest.CaptureFixture[str]) -> None:
    result = run(ip, "--thinking 100", "Sum a CSV.")
    assert not result.success
    assert "at least 1024" in str(result.error_in_exec)
    assert anthropic_standin.request_count == 0


def test_notebook_data_is_a_cached_prefix_across_tasks(
        ip: InteractiveShell, anthropic_standin: Any,
        capsys: pytest.CaptureFixture[str]) -> None:
    """A second task over the same variable re-reads the data from the prompt cache."""
    import pandas as pd

    for name in ("north", "south", "east", "west"):  # data past the API's 1,024-token minimum
        ip.user_ns[name] = pd.DataFrame({f"{name}_measure_{c}": [c * 1.5, c * 2.25, None]
                                         for c in range(40)})
    anthropic_standin.enqueue(REPLY)
    anthropic_standin.enqueue(REPLY)
    assert run(ip, "--no-insert", "Total sales in {north} {south} {east} {west}.").success
    assert run(ip, "--no-insert", "Count regions in {north} {south} {east} {west}.").success
    gm = ip.magics_manager.registry["GenerateMagics"]
    first, second = gm.session.history[-2:]
    assert first.usage.cache_creation_input_tokens >= 1024
    # everything up to the data (system, environment, data) is read back; only the new
    # task after it is written
    assert second.usage.cache_read_input_tokens >= 1024
    assert second.usage.cache_creation_input_tokens < 100
    ip.run_line_magic("llmscript", "usage")
    assert "Prompt cache: " in capsys.readouterr().out
