"""Cache, providers by name, audit log and cost: issue 7's parts through the real magic."""

from __future__ import annotations

import json
import multiprocessing
from pathlib import Path
from typing import Any

import pytest
from IPython.core.interactiveshell import InteractiveShell
from standins import TEST_ANTHROPIC_KEY, TEST_OPENAI_KEY, OpenAIStandIn

from llmscript_magic._store.cache import DiskCache

REPLY = "```python\nprint('hello')\n```\n"


def _writer(directory: str, tag: int) -> None:
    cache = DiskCache(directory)
    for n in range(200):
        cache.put("ab" * 32, {"key": "ab" * 32, "reply": f"{tag}-{n}|" * 500})


def test_two_writers_never_leave_a_broken_entry(tmp_path: Path) -> None:
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_writer, args=(str(tmp_path), tag)) for tag in (1, 2)]
    for p in procs:
        p.start()
    cache = DiskCache(tmp_path)
    seen = 0
    while any(p.is_alive() for p in procs):
        entry = cache.get("ab" * 32)
        if entry is not None:  # every read is a whole entry from one write
            parts = entry["reply"].split("|")[:-1]
            assert len(parts) == 500 and len(set(parts)) == 1
            seen += 1
    for p in procs:
        p.join()
        assert p.exitcode == 0
    assert seen > 0 and cache.get("ab" * 32) is not None
    assert not list(tmp_path.rglob(".tmp-*"))  # no temp files left behind


def test_openai_provider_through_the_magic(ip: InteractiveShell, openai_standin: Any) -> None:
    openai_standin.enqueue(REPLY)
    res = ip.run_cell("%%generate --model openai:gpt-5-mini\nSay hello.")
    assert res.success
    assert ip.rl_next_input == "print('hello')"
    assert openai_standin.last.body["model"] == "gpt-5-mini"
    assert openai_standin.last.sent_key(TEST_OPENAI_KEY)
    ip.run_cell("%%generate --model openai:gpt-5-mini\nSay hello.")
    assert openai_standin.request_count == 1  # the second run was a cache hit


def test_no_cache_always_asks(ip: InteractiveShell, anthropic_standin: Any) -> None:
    anthropic_standin.enqueue(REPLY)
    anthropic_standin.enqueue(REPLY)
    ip.run_cell("%%generate --no-cache\nSay hello.")
    ip.run_cell("%%generate --no-cache\nSay hello.")
    assert anthropic_standin.request_count == 2


def test_audit_log_has_hashes_not_content(ip: InteractiveShell, anthropic_standin: Any,
                                          tmp_path: Path) -> None:
    log = tmp_path / "audit.jsonl"
    ip.run_line_magic("config", f"GenerateMagics.audit_log = {str(log)!r}")
    anthropic_standin.enqueue(REPLY)
    ip.run_cell("%%generate --run --sandbox local\nSay hello to secret-project-42.")
    events = [json.loads(line) for line in log.read_text().splitlines()]
    assert [e["event"] for e in events] == ["generation", "run"]
    gen, run = events
    assert gen["model"] == "anthropic:claude-sonnet-5-5" and len(gen["spec_hash"]) == 16
    assert gen["checks"]["syntax"] == "pass" and gen["code_hash"]
    assert run["status"] == "ok" and run["exit_code"] == 0 and run["backend"] == "local"
    assert run["limits"] == {"timeout": 30.0, "memory_mb": 256, "cpus": 1.0}
    text = log.read_text()
    assert "secret-project-42" not in text and "hello" not in text
    assert TEST_ANTHROPIC_KEY not in text


def test_price_table_can_be_overridden(ip: InteractiveShell, anthropic_standin: Any,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    ip.run_line_magic("config", "GenerateMagics.prices = "
                                "{'anthropic:claude-sonnet-5': [100.0, 1000.0]}")
    anthropic_standin.enqueue(REPLY, usage={"input_tokens": 1000, "output_tokens": 1000})
    ip.run_cell("%%generate\nSay hello.")
    assert "$1.1000" in capsys.readouterr().out


def test_local_openai_compatible_server_needs_no_key(ip: InteractiveShell,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    with OpenAIStandIn() as server:  # like Ollama: checks no key
        ip.run_line_magic("config", f"GenerateMagics.base_url = '{server.url}'")
        server.enqueue(REPLY)
        res = ip.run_cell("%%generate --model openai:llama3.2\nSay hello.")
        assert res.success
        body = server.last.body
    assert body["model"] == "llama3.2" and body["max_tokens"] == 4096
