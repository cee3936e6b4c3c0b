"""The course service's decisions (``_course/gate.py``) without a hub: the rate limit,
the allowed models, the per-student budgets and the usage record a restart reloads."""

from __future__ import annotations

from pathlib import Path

import pytest

from llmscript_magic._course.gate import Gate, ServiceSettings, report_text
from llmscript_magic._errors import BudgetError, ConfigurationError, RateLimitError
from llmscript_magic.providers import Message, Request, Usage

MODEL = "anthropic:claude-haiku-5"


def request(max_tokens: int = 1000) -> Request:
    return Request("claude-haiku-5", "", (Message("user", "Print 1."),), max_tokens)


def gate(tmp_path: Path, **settings: object) -> Gate:
    table = {"service": {"models": [MODEL], "usage_file": str(tmp_path / "usage.jsonl"),
                         **settings}}
    return Gate(ServiceSettings.from_table(table))


def test_rate_limit_per_student(tmp_path: Path) -> None:
    g = gate(tmp_path, rate=2)
    g.admit("ann", MODEL, request())
    g.admit("ann", MODEL, request())
    with pytest.raises(RateLimitError, match="at most 2 requests a minute"):
        g.admit("ann", MODEL, request())
    g.admit("bob", MODEL, request())  # another student has a rate of their own
    assert g.report()["ann"]["refused"] == 1


def test_models_the_course_allows(tmp_path: Path) -> None:
    g = gate(tmp_path)
    assert g.model("default") == MODEL
    with pytest.raises(ConfigurationError, match="not allowed in this course"):
        g.model("anthropic:claude-opus-5")


def test_budgets_survive_a_restart(tmp_path: Path) -> None:
    g = gate(tmp_path, daily_budget=0.01, total_budget=0.02)
    g.admit("ann", MODEL, request())
    assert g.record("ann", MODEL, Usage(1000, 1000)) == pytest.approx(0.006)
    again = gate(tmp_path, daily_budget=0.01, total_budget=0.02)  # a restarted service
    with pytest.raises(BudgetError, match=r"your daily budget in this course leaves \$0.004"):
        again.admit("ann", MODEL, request())
    again.admit("ann", MODEL, request(max_tokens=100))  # a smaller worst case fits
    row = again.report()["ann"]
    assert (row["requests"], row["refused"], row["cost_today"]) == (1, 1, pytest.approx(0.006))
    assert "ann" in report_text(again.report())
    assert oct((tmp_path / "usage.jsonl").stat().st_mode & 0o777) == "0o600"


def test_bad_service_table_is_one_line(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="Unknown key"):
        ServiceSettings.from_table({"service": {"models": [MODEL], "budget": 1}})
    with pytest.raises(ConfigurationError, match="models is empty"):
        ServiceSettings.from_table({"service": {}})


def test_cli_reads_the_record_on_the_server(tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    from llmscript_magic._cli.main import main

    monkeypatch.delenv("LLMSCRIPT_COURSE_URL", raising=False)
    monkeypatch.setenv("LLMSCRIPT_COURSE", str(tmp_path / "none.toml"))
    g = gate(tmp_path)
    g.admit("ann", MODEL, request())
    g.record("ann", MODEL, Usage(1000, 1000))
    assert main(["course", "usage", "--file", str(tmp_path / "usage.jsonl")]) == 2
    assert "Cannot read the course file" in capsys.readouterr().err  # one line, no traceback
    monkeypatch.delenv("LLMSCRIPT_COURSE")
    assert main(["course", "usage", "--file", str(tmp_path / "usage.jsonl")]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[0].split()[:3] == ["student", "requests", "refused"]
    assert out.splitlines()[1].split()[:3] == ["ann", "1", "0"] and "$0.006" in out


def test_runs_one_at_a_time_within_a_rate_and_counted(tmp_path: Path) -> None:
    g = gate(tmp_path, runs=2)
    g.start_run("ann")
    with pytest.raises(RateLimitError, match="previous run in the course's sandbox is still"):
        g.start_run("ann")  # one at a time
    g.start_run("bob")  # another student's run is not held up
    g.end_run("ann", 1.5, "ok")
    g.start_run("ann")
    g.end_run("ann", 0.5, "error")
    with pytest.raises(RateLimitError, match="at most 2 sandbox runs a minute"):
        g.start_run("ann")
    row = gate(tmp_path, runs=2).report()["ann"]  # a restarted service reads them back
    assert (row["runs"], row["run_seconds"], row["refused"], row["requests"]) == \
        (2, pytest.approx(2.0), 2, 0)
    assert "   2     2.0" in report_text(gate(tmp_path).report())
