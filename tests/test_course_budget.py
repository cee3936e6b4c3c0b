"""Budgets checked before a request is sent, the teacher's course file and tutor mode,
through a real InteractiveShell and the real anthropic SDK against the stand-in."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from IPython.core.interactiveshell import InteractiveShell

CODE = "import json\nprint(json.dumps({'total': 3}))\n"
REPLY = f"Here it is:\n\n```python\n{CODE}```\n"
SKELETON = ("def mean(xs):\n    # Hint: add the numbers up, then divide by how many there are.\n"
            "    # TODO: compute the total\n    ...\n\nprint(mean([1, 2, 3]))\n")
SOLUTION = "def mean(xs):\n    return sum(xs) / len(xs)\n\nprint(mean([1, 2, 3]))\n"
#: what a stand-in reply is billed: $0.003 in + $0.00225 out at sonnet's price
BILLED = {"input_tokens": 1000, "output_tokens": 150}


@pytest.fixture(autouse=True)
def _own_ledger(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    monkeypatch.delenv("LLMSCRIPT_COURSE", raising=False)


def run(ip: InteractiveShell, line: str, cell: str = "Print a total as JSON.") -> Any:
    return ip.run_cell(f"%%generate {line}\n{cell}")


def one_line_error(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert err.count("\n") == 1, err
    return err


def test_max_cost_refuses_before_sending(ip: InteractiveShell, anthropic_standin: Any,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    result = run(ip, "--max-cost 0.001")
    assert not result.success
    err = one_line_error(capsys)
    assert "Not sent: this request could cost up to $0.2" in err
    assert "but the --max-cost leaves $0.001 of $0.001; raise --max-cost" in err
    assert anthropic_standin.request_count == 0  # refused before any request
    assert ip.rl_next_input is None


def test_repair_rounds_count_in_the_worst_case(ip: InteractiveShell, anthropic_standin: Any,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    # one round at most ~$0.063 (4096 tokens out at $15/M plus the prompt): fits $0.10;
    # three rounds (--retries 2, the default) do not
    assert not run(ip, "--max-cost 0.10").success
    assert "3 rounds with repairs" in one_line_error(capsys)
    assert anthropic_standin.request_count == 0
    anthropic_standin.enqueue(REPLY, usage=BILLED)
    assert run(ip, "--max-cost 0.10 --retries 0").success
    assert anthropic_standin.request_count == 1
    assert ip.rl_next_input == CODE.rstrip("\n")


def test_thinking_tokens_count(ip: InteractiveShell, anthropic_standin: Any,
                               capsys: pytest.CaptureFixture[str]) -> None:
    line = "--retries 0 --max-tokens 2000 --max-cost 0.05"
    assert not run(ip, line + " --thinking 2000").success  # (2000 + 2000) * $15/M > $0.05
    assert "could cost up to $0.06" in one_line_error(capsys)
    anthropic_standin.enqueue(REPLY, usage=BILLED)
    assert run(ip, line).success
    assert anthropic_standin.request_count == 1


def test_session_budget_then_usage_then_cache_still_free(
        ip: InteractiveShell, anthropic_standin: Any,
        capsys: pytest.CaptureFixture[str]) -> None:
    ip.run_line_magic("config", "GenerateMagics.session_budget = 0.01")
    ip.run_line_magic("config", "GenerateMagics.retries = 0")
    ip.run_line_magic("config", "GenerateMagics.max_tokens = 100")
    anthropic_standin.enqueue(REPLY, usage=BILLED)
    # worst case: the prompt (with the sandbox's versions) + 100 tokens; billed $0.00525
    assert run(ip, "", "Print a total as JSON.").success
    capsys.readouterr()
    anthropic_standin.enqueue(REPLY, usage=BILLED)
    anthropic_standin.enqueue(REPLY, usage=BILLED)
    assert run(ip, "", "Print a different total.").success  # $0.00475 left: still fits
    capsys.readouterr()
    assert not run(ip, "", "Print yet another total.").success  # $0 left now
    err = one_line_error(capsys)
    assert "the session budget leaves $0.00 of $0.01" in err
    assert "raise %config GenerateMagics.session_budget" in err
    assert anthropic_standin.request_count == 2
    ip.run_line_magic("llmscript", "usage")
    out = capsys.readouterr().out
    assert "Spent by this kernel: $0.0105" in out
    assert "Session budget: $0.0105 spent, $0.00 left of $0.01" in out
    # the cache answers an unchanged request for free, whatever the budget says
    assert run(ip, "", "Print a total as JSON.").success
    assert anthropic_standin.request_count == 2
    assert "from cache (no request made;" in capsys.readouterr().out


def test_daily_budget_adds_up_across_kernels(anthropic_standin: Any, tmp_path: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    from llmscript_magic._notebook.magics import GenerateMagics, LLMScriptMagics

    shell = InteractiveShell.instance()
    results = []
    for n in range(3):  # a new GenerateMagics per "kernel": only the ledger file is shared
        shell.config.pop("GenerateMagics", None)
        shell.register_magics(GenerateMagics(shell), LLMScriptMagics(shell))
        for line in ("daily_budget = 0.007", "retries = 0", "max_tokens = 100",
                     "widgets = False", "cache = False"):
            shell.run_line_magic("config", f"GenerateMagics.{line}")
        anthropic_standin.enqueue(REPLY, usage=BILLED)
        results.append(run(shell, "", f"Print total number {n}.").success)
    assert results == [True, False, False]  # $0.00525 spent of $0.007: the next could overrun
    err = capsys.readouterr().err
    assert "the daily budget leaves $0.0017 of $0.007" in err and "wait until tomorrow" in err
    assert anthropic_standin.request_count == 1
    shell.rl_next_input = None


def course_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, text: str) -> Path:
    path = tmp_path / "course.toml"
    path.write_text("[course]\nname = \"Data 101\"\n" + text)
    monkeypatch.setenv("LLMSCRIPT_COURSE", str(path))
    return path


def test_course_settings_win_over_the_students(
        ip: InteractiveShell, anthropic_standin: Any, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    course_file(tmp_path, monkeypatch, 'model = "anthropic:claude-haiku-5"\n'
                'rules = "Use pandas. Explain each step."\ninsert = false\n'
                "session_budget = 0.003\n")
    ip.run_line_magic("config", "GenerateMagics.session_budget = 100.0")  # cannot loosen
    ip.run_line_magic("config", "GenerateMagics.retries = 0")
    ip.run_line_magic("config", "GenerateMagics.max_tokens = 300")
    anthropic_standin.enqueue(REPLY, usage=BILLED)
    assert run(ip, "--model anthropic:claude-opus-5 --insert").success
    body = anthropic_standin.last.body
    assert body["model"] == "claude-haiku-5"  # the course's model, not the student's
    assert "Course rules: Use pandas. Explain each step." in str(body["system"])
    assert ip.rl_next_input is None  # the course does not insert generated code
    out = capsys.readouterr().out
    assert "course: model anthropic:claude-haiku-5 (set by Data 101; " \
           "anthropic:claude-opus-5 was not used)" in out
    assert "course: generated code is not inserted in Data 101" in out
    # haiku bills $0.00175: $0.00125 of the course's $0.003 is left, less than the worst case
    assert not run(ip, "", "Another one.").success
    err = one_line_error(capsys)
    assert "the session budget (set by the course) leaves $0.0013 of $0.003" in err
    assert "only the teacher can raise it" in err
    assert anthropic_standin.request_count == 1
    ip.run_line_magic("llmscript", "usage")
    assert "Session budget (set by the course): $0.0018 spent" in capsys.readouterr().out


def test_course_max_cost_cannot_be_raised(ip: InteractiveShell, anthropic_standin: Any,
                                          tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    course_file(tmp_path, monkeypatch, "max_cost = 0.001\n")
    assert not run(ip, "--max-cost 5").success
    err = one_line_error(capsys)
    assert "--max-cost (set by the course)" in err and "only the teacher can raise it" in err
    assert anthropic_standin.request_count == 0


def test_tutor_mode_inserts_a_skeleton(ip: InteractiveShell, anthropic_standin: Any,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    anthropic_standin.enqueue(f"```python\n{SKELETON}```")
    assert run(ip, "--tutor", "Write mean(xs) and print the mean of 1, 2, 3.").success
    assert ip.rl_next_input == SKELETON.rstrip("\n")
    assert "Do NOT write the full solution" in str(anthropic_standin.last.body["system"])
    assert "a skeleton: TODO (line 3), ... (line 4)" in capsys.readouterr().out


def test_tutor_mode_withholds_a_full_solution(ip: InteractiveShell, anthropic_standin: Any,
                                              tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    course_file(tmp_path, monkeypatch, "tutor = true\n")  # set by the course: --no-tutor loses
    for _ in range(3):  # the model keeps writing the answer, repairs included
        anthropic_standin.enqueue(f"Easy:\n```python\n{SOLUTION}```")
    result = run(ip, "--no-tutor", "Write mean(xs) and print the mean of 1, 2, 3.")
    assert not result.success
    captured = capsys.readouterr()
    assert "Tutor mode: the model wrote a full solution, so it was not inserted" in captured.err
    assert "return sum(xs) / len(xs)" not in captured.out + captured.err  # never shown
    assert ip.rl_next_input is None
    assert anthropic_standin.request_count == 3  # asked twice more to leave the key steps
    assert "leave the key steps" in str(anthropic_standin.last.body["messages"][-1])
    cache = Path.cwd().parent / "cache"
    assert not any(SOLUTION[:20] in p.read_text(errors="ignore")
                   for p in cache.rglob("*") if p.is_file())


def test_tutor_mode_repair_gets_a_skeleton(ip: InteractiveShell, anthropic_standin: Any) -> None:
    anthropic_standin.enqueue(f"```python\n{SOLUTION}```")
    anthropic_standin.enqueue(f"```python\n{SKELETON}```")
    assert run(ip, "--tutor", "Write mean(xs).").success
    assert ip.rl_next_input == SKELETON.rstrip("\n")
    assert anthropic_standin.request_count == 2


def test_tutor_mode_withholds_what_passes_the_teachers_test(
        ip: InteractiveShell, anthropic_standin: Any) -> None:
    """A TODO comment does not make a skeleton: code that passes the check is the answer."""
    solution = "def mean(xs):\n    # TODO: nothing left, really\n    return sum(xs) / len(xs)\n" \
               "\nanswer = mean([1, 2, 3])\n"
    skeleton = "def mean(xs):\n    # TODO: add up, then divide\n    ...\n\n" \
               "answer = mean([1, 2, 3])\n"
    anthropic_standin.enqueue(f"```python\n{solution}```")
    anthropic_standin.enqueue(f"```python\n{skeleton}```")
    result = run(ip, "--tutor --run --sandbox local --retries 1 --check 'answer == 2'",
                 "Write mean(xs); answer = mean([1, 2, 3]).")
    assert result.success  # the second reply: a skeleton, which fails the check, as it should
    assert ip.rl_next_input == skeleton.rstrip("\n")
    assert "already passes the assignment's check" in str(anthropic_standin.last.body["messages"])
    assert anthropic_standin.request_count == 2  # the skeleton failing the check is not repaired


def test_student_code_against_the_teachers_test(
        ip: InteractiveShell, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    course_file(tmp_path, monkeypatch, '\n[tests]\nmean = "answer == 2"\n')
    ip.run_line_magic("config", "GenerateMagics.sandbox = 'local'")
    ip.run_cell("def mean(xs):\n    return sum(xs) / len(xs)\n\nanswer = mean([1, 2, 3])\n",
                store_history=True)
    capsys.readouterr()
    ip.run_cell("%llmscript test mean", store_history=True)
    out = capsys.readouterr().out
    assert "Test mean on In [" in out and "]: passed (answer == 2)" in out
    ip.run_cell("def mean(xs):\n    return sum(xs)\n\nanswer = mean([1, 2, 3])\n",
                store_history=True)
    ip.run_cell("%llmscript test mean", store_history=True)
    assert "]: not passed (answer == 2)" in capsys.readouterr().out
    result = ip.run_cell("%llmscript test nosuch", store_history=True)
    assert not result.success
    assert "No test 'nosuch' in the course file: the course has mean." in \
        capsys.readouterr().err


def test_tutor_mode_keeps_a_repaired_solution_out_of_the_notebook(
        ip: InteractiveShell, anthropic_standin: Any) -> None:
    """The first reply (a full solution) is in no view, record or inserted cell's metadata."""
    anthropic_standin.enqueue(f"```python\n{SOLUTION}```")
    anthropic_standin.enqueue(f"```python\n{SKELETON}```")
    gm = ip.magics_manager.registry["GenerateMagics"]
    assert run(ip, "--tutor", "Write mean(xs).").success
    gen = gm.session.history[-1]
    assert gen.code == SKELETON and gen.attempts[0].code is None and gen.entries == []
    assert "return sum(xs) / len(xs)" not in repr(gen.record())
