"""Providers against the real SDKs, talking HTTP to the local stand-ins."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import time
from pathlib import Path
from types import GeneratorType
from typing import Any

import pytest
from standins import (
    TEST_ANTHROPIC_KEY,
    TEST_OPENAI_KEY,
    AnthropicStandIn,
    OpenAIStandIn,
    anthropic_standin,
    closed_port,
    openai_standin,
)

from llmscript_magic._errors import (
    AuthenticationError,
    ConfigurationError,
    LLMScriptError,
    MissingKeyError,
    OverloadedError,
    ProviderConnectionError,
    ProviderError,
    ProviderTimeoutError,
    RateLimitError,
    UnknownModelError,
)
from llmscript_magic.providers.anthropic import AnthropicProvider
from llmscript_magic.providers.base import Message, Provider, Reply, Request, Usage, resolve_model
from llmscript_magic.providers.openai import OpenAIProvider
from llmscript_magic.testing.fake import FakeProvider

__all__ = ["anthropic_standin", "openai_standin"]  # fixtures, imported for use here

CODE = "import math\n\nprint(math.sqrt(2))\nfor i in range(3):\n    print(i)\n"
SYSTEM = "You write one runnable Python script and nothing else."
WRONG_KEY = "sk-ant-WRONG-recognisable-key-4242"


def make_request(model: str = "claude-sonnet-5-5", **kw: Any) -> Request:
    return Request(model=model, system=SYSTEM,
                   messages=(Message("user", "print the square root of two"),), **kw)


def run(provider: Provider, request: Request) -> tuple[list[str], Reply]:
    reply = Reply()
    return list(provider.stream(request, reply)), reply


def failure(provider: Provider, request: Request) -> LLMScriptError:
    with pytest.raises(LLMScriptError) as info:
        run(provider, request)
    return info.value


def assert_user_facing(err: BaseException, *secrets: str, logs: str = "") -> None:
    """One line, and no key anywhere a user or a log could see it."""
    text = str(err)
    assert text and "\n" not in text
    if logs:
        assert "HTTP Request" in logs  # the SDK's debug log was captured, so its absence counts
    for secret in secrets:
        assert secret not in text
        assert secret not in repr(err)
        assert secret not in logs


@pytest.fixture(autouse=True)
def _fresh_fake() -> Any:
    FakeProvider.reset()
    yield
    FakeProvider.reset()


# -- Anthropic: the happy path --------------------------------------------------------
def test_anthropic_streams_chunks_with_usage_and_stop_reason(
        anthropic_standin: AnthropicStandIn) -> None:
    anthropic_standin.enqueue(CODE, chunk_size=7, usage={
        "input_tokens": 12, "output_tokens": 30,
        "cache_read_input_tokens": 900, "cache_creation_input_tokens": 40})
    chunks, reply = run(AnthropicProvider(), make_request())

    assert len(chunks) == -(-len(CODE) // 7) > 1
    assert "".join(chunks) == CODE == reply.text
    assert reply.usage == Usage(input_tokens=12, output_tokens=30,
                                cache_read_input_tokens=900, cache_creation_input_tokens=40)
    assert reply.stop_reason == "end_turn" and not reply.truncated
    assert reply.model == "claude-sonnet-5-5"


def test_anthropic_request_caches_the_system_prompt_and_sends_the_key(
        anthropic_standin: AnthropicStandIn) -> None:
    anthropic_standin.enqueue("x = 1\n")
    anthropic_standin.enqueue("x = 2\n")
    run(AnthropicProvider(), make_request(max_tokens=321))
    run(AnthropicProvider(), make_request(temperature=0.25))

    first, second = anthropic_standin.requests
    assert first.body["system"] == [{"type": "text", "text": SYSTEM,
                                     "cache_control": {"type": "ephemeral"}}]
    assert first.body["messages"] == [{"role": "user", "content": "print the square root of two"}]
    assert first.body["max_tokens"] == 321 and first.body["stream"] is True
    assert "temperature" not in first.body
    assert second.body["temperature"] == 0.25
    assert first.sent_key(TEST_ANTHROPIC_KEY)
    assert TEST_ANTHROPIC_KEY not in repr(anthropic_standin.requests)


def test_anthropic_max_tokens_stop_is_truncated(anthropic_standin: AnthropicStandIn) -> None:
    anthropic_standin.enqueue("def f(:\n    return [", stop_reason="max_tokens")
    _, reply = run(AnthropicProvider(), make_request())
    assert reply.stop_reason == "max_tokens" and reply.truncated


def test_anthropic_default_model_is_current_in_the_installed_sdk() -> None:
    from typing import Literal, get_args, get_origin

    from anthropic._data import DEPRECATED_MODELS
    from anthropic.types import ModelParam

    literal = next(a for a in get_args(ModelParam) if get_origin(a) is Literal)
    assert AnthropicProvider.default_model in get_args(literal)
    assert AnthropicProvider.default_model not in DEPRECATED_MODELS
    listed = AnthropicProvider.list_models()
    assert AnthropicProvider.default_model in listed
    assert not set(listed) & set(DEPRECATED_MODELS)
    assert set(AnthropicProvider.models) <= set(listed)


# -- Anthropic: errors ------------------------------------------------------------------
@pytest.mark.parametrize(("status", "error_type", "cls", "says"), [
    (400, None, ProviderError, "rejected the request (400): messages: roles must alternate"),
    (403, None, AuthenticationError, "(403)"),
    (404, None, UnknownModelError,
     "Anthropic has no model 'claude-nope-1': pick one from %llmscript models."),
    (429, None, RateLimitError, "rate limit"),
    (529, None, OverloadedError, "overloaded (529)"),
    (503, "api_error", OverloadedError, "overloaded (503)"),
    (500, None, ProviderError, "failed (500"),
])
def test_anthropic_error_statuses_map_to_one_line_errors(
        anthropic_standin: AnthropicStandIn, caplog: pytest.LogCaptureFixture,
        status: int, error_type: str | None, cls: type[Exception], says: str) -> None:
    caplog.set_level(logging.DEBUG)
    message = "messages: roles must alternate" if status == 400 else None
    anthropic_standin.enqueue(status=status, error_type=error_type, message=message)
    provider = AnthropicProvider(max_retries=0)
    err = failure(provider, make_request("claude-nope-1"))

    assert type(err) is cls
    assert says in str(err)
    assert_user_facing(err, TEST_ANTHROPIC_KEY, logs=caplog.text)
    assert TEST_ANTHROPIC_KEY not in repr(provider)


def test_anthropic_rejected_key_is_401_and_never_shown(
        anthropic_standin: AnthropicStandIn, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    provider = AnthropicProvider(WRONG_KEY)
    err = failure(provider, make_request())
    assert type(err) is AuthenticationError
    assert str(err) == "The Anthropic API rejected the key (401): check ANTHROPIC_API_KEY."
    assert anthropic_standin.last.sent_key(WRONG_KEY)
    assert anthropic_standin.request_count == 1  # 401 is not retried
    assert_user_facing(err, WRONG_KEY, logs=caplog.text)
    assert WRONG_KEY not in repr(provider)


def test_anthropic_api_message_echoing_the_key_is_redacted(
        anthropic_standin: AnthropicStandIn) -> None:
    anthropic_standin.enqueue(status=400, message=f"bad header for key {TEST_ANTHROPIC_KEY}\n!")
    err = failure(AnthropicProvider(), make_request())
    assert type(err) is ProviderError and "bad header for key" in str(err)
    assert_user_facing(err, TEST_ANTHROPIC_KEY)


def test_anthropic_missing_key_fails_before_any_request(
        anthropic_standin: AnthropicStandIn, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ANTHROPIC_API_KEY")
    with pytest.raises(MissingKeyError, match="ANTHROPIC_API_KEY"):
        run(AnthropicProvider(), make_request())
    assert anthropic_standin.request_count == 0


def test_anthropic_retries_overloaded_then_succeeds(anthropic_standin: AnthropicStandIn) -> None:
    anthropic_standin.enqueue(status=529)
    anthropic_standin.enqueue(CODE)
    chunks, _ = run(AnthropicProvider(max_retries=1), make_request())
    assert "".join(chunks) == CODE
    assert anthropic_standin.request_count == 2
    assert anthropic_standin.requests[1].headers["x-stainless-retry-count"] == "1"


def test_anthropic_rate_limit_exhausts_retries(anthropic_standin: AnthropicStandIn) -> None:
    for _ in range(3):
        anthropic_standin.enqueue(status=429, retry_after=0.02)
    start = time.monotonic()
    err = failure(AnthropicProvider(max_retries=2), make_request())
    assert type(err) is RateLimitError and "after 2 retries" in str(err)
    assert anthropic_standin.request_count == 3
    assert time.monotonic() - start < 5  # retry-after was honoured, not the default backoff


def test_anthropic_timeout_before_headers(anthropic_standin: AnthropicStandIn) -> None:
    anthropic_standin.enqueue(hang=True)
    start = time.monotonic()
    err = failure(AnthropicProvider(timeout=0.4, max_retries=0), make_request())
    assert type(err) is ProviderTimeoutError and isinstance(err, TimeoutError)
    assert "0.4 s" in str(err)
    assert time.monotonic() - start < 5


def test_anthropic_timeout_mid_stream(anthropic_standin: AnthropicStandIn) -> None:
    anthropic_standin.enqueue(CODE, chunk_size=5, stall_after=2)
    reply = Reply()
    got: list[str] = []
    with pytest.raises(ProviderTimeoutError):
        for chunk in AnthropicProvider(timeout=0.4, max_retries=0).stream(make_request(), reply):
            got.append(chunk)
    assert "".join(got) == CODE[:10] == reply.text


def test_anthropic_connection_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    url = f"http://127.0.0.1:{closed_port()}"
    monkeypatch.setenv("ANTHROPIC_BASE_URL", url)
    err = failure(AnthropicProvider(TEST_ANTHROPIC_KEY, max_retries=0), make_request())
    assert type(err) is ProviderConnectionError and isinstance(err, ConnectionError)
    assert str(err) == (f"Could not reach the Anthropic API at {url}: check your network or "
                        f"ANTHROPIC_BASE_URL.")


def test_anthropic_error_event_mid_stream(anthropic_standin: AnthropicStandIn) -> None:
    anthropic_standin.enqueue(CODE, chunk_size=4, error_after=3, error_type="overloaded_error")
    reply = Reply()
    got: list[str] = []
    with pytest.raises(OverloadedError, match="mid-reply"):
        for chunk in AnthropicProvider().stream(make_request(), reply):
            got.append(chunk)
    assert "".join(got) == CODE[:12]
    assert anthropic_standin.request_count == 1  # a half-streamed reply is not retried


def test_anthropic_close_hangs_up_the_http_stream(anthropic_standin: AnthropicStandIn) -> None:
    anthropic_standin.enqueue(CODE * 20, chunk_size=4, chunk_delay=0.05)
    gen = AnthropicProvider().stream(make_request(), Reply())
    assert isinstance(gen, GeneratorType)  # close() is how the magic cancels
    assert next(gen) and next(gen)
    start = time.monotonic()
    gen.close()
    assert anthropic_standin.disconnected.wait(3)
    assert time.monotonic() - start < 3
    assert anthropic_standin.disconnects == 1


def test_anthropic_standin_with_nothing_queued_says_so(
        anthropic_standin: AnthropicStandIn) -> None:
    err = failure(AnthropicProvider(), make_request())
    assert type(err) is ProviderError and "no reply queued" in str(err)
    assert anthropic_standin.request_count == 1  # x-should-retry: false
    anthropic_standin.set_default("print('default')\n")
    assert "".join(run(AnthropicProvider(), make_request())[0]) == "print('default')\n"


def test_anthropic_standin_plain_json(anthropic_standin: AnthropicStandIn) -> None:
    import anthropic

    anthropic_standin.enqueue(CODE, stop_reason="max_tokens", usage={"output_tokens": 77})
    client = anthropic.Anthropic(api_key=TEST_ANTHROPIC_KEY)
    message = client.messages.create(model="claude-haiku-5-5", max_tokens=10,
                                     messages=[{"role": "user", "content": "hi"}])
    client.close()
    assert message.content[0].type == "text" and message.content[0].text == CODE
    assert message.stop_reason == "max_tokens" and message.usage.output_tokens == 77
    assert message.model == "claude-haiku-5-5"


def test_anthropic_standin_out_of_process(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    script = tmp_path / "replies.json"
    script.write_text(json.dumps({"replies": [{"text": "a = 1\n", "chunk_size": 2},
                                              {"status": 404}],
                                  "default": {"text": "b = 2\n"}}))
    log = tmp_path / "requests.jsonl"
    proc = subprocess.Popen(
        [sys.executable, str(Path(__file__).with_name("standins.py")), "anthropic",
         "--port", "0", "--script", str(script), "--api-key", TEST_ANTHROPIC_KEY,
         "--log", str(log)], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        port = int(proc.stdout.readline())
        monkeypatch.setenv("ANTHROPIC_BASE_URL", f"http://127.0.0.1:{port}")
        provider = AnthropicProvider(TEST_ANTHROPIC_KEY, max_retries=0)
        assert "".join(run(provider, make_request())[0]) == "a = 1\n"
        assert type(failure(provider, make_request())) is UnknownModelError
        assert "".join(run(provider, make_request())[0]) == "b = 2\n"
    finally:
        proc.terminate()
        assert proc.wait(timeout=10) == 0
    lines = [json.loads(line) for line in log.read_text().splitlines()]
    assert len(lines) == 3 and all(r["key_sent"] for r in lines)
    assert lines[0]["body"]["model"] == "claude-sonnet-5-5"
    assert TEST_ANTHROPIC_KEY not in log.read_text()


def test_provider_modules_do_not_import_the_sdks() -> None:
    code = ("import sys, llmscript_magic.providers.anthropic, llmscript_magic.providers.openai, "
            "llmscript_magic.testing.fake; print(sorted(m for m in ('anthropic', 'openai') "
            "if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == "[]"


# -- OpenAI -------------------------------------------------------------------------------
def test_openai_streams_chunks_with_usage(openai_standin: OpenAIStandIn) -> None:
    openai_standin.enqueue(CODE, chunk_size=9, usage={
        "prompt_tokens": 500, "completion_tokens": 21, "total_tokens": 521,
        "prompt_tokens_details": {"cached_tokens": 384}})
    chunks, reply = run(OpenAIProvider(), make_request("gpt-5-mini"))

    assert len(chunks) > 1 and "".join(chunks) == CODE == reply.text
    assert reply.usage == Usage(input_tokens=116, output_tokens=21, cache_read_input_tokens=384)
    assert reply.stop_reason == "stop" and not reply.truncated
    assert reply.model == "gpt-5-mini"
    body = openai_standin.last.body
    assert body["stream"] is True and body["stream_options"] == {"include_usage": True}
    assert body["messages"][0] == {"role": "system", "content": SYSTEM}
    assert body["max_completion_tokens"] == 4096 and "max_tokens" not in body
    assert "temperature" not in body
    assert openai_standin.last.sent_key(TEST_OPENAI_KEY)


def test_openai_length_stop_is_truncated(openai_standin: OpenAIStandIn) -> None:
    openai_standin.enqueue("while True:\n    x = [", stop_reason="length")
    _, reply = run(OpenAIProvider(), make_request("gpt-5-mini", temperature=0.5))
    assert reply.stop_reason == "length" and reply.truncated
    assert openai_standin.last.body["temperature"] == 0.5


@pytest.mark.parametrize(("status", "code", "cls", "says"), [
    (400, None, ProviderError, "rejected the request (400): Invalid request."),
    (403, None, AuthenticationError, "(403)"),
    (404, None, UnknownModelError,
     "OpenAI has no model 'gpt-nope': pick one from %llmscript models."),
    (429, None, RateLimitError, "rate limit"),
    (429, "insufficient_quota", RateLimitError, "quota exhausted"),
    (503, None, OverloadedError, "overloaded (503)"),
    (500, None, ProviderError, "failed (500)"),
])
def test_openai_error_statuses_map_to_one_line_errors(
        openai_standin: OpenAIStandIn, caplog: pytest.LogCaptureFixture,
        status: int, code: str | None, cls: type[Exception], says: str) -> None:
    caplog.set_level(logging.DEBUG)
    openai_standin.enqueue(status=status, code=code)
    provider = OpenAIProvider(max_retries=0)
    err = failure(provider, make_request("gpt-nope"))
    assert type(err) is cls
    assert says in str(err)
    assert_user_facing(err, TEST_OPENAI_KEY, logs=caplog.text)


def test_openai_rejected_key_echo_is_redacted(
        openai_standin: OpenAIStandIn, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    key = "sk-proj-WRONG-recognisable-key-4242"
    provider = OpenAIProvider(key)
    err = failure(provider, make_request("gpt-5-mini"))
    assert type(err) is AuthenticationError
    assert str(err) == "The OpenAI API rejected the key (401): check OPENAI_API_KEY."
    assert_user_facing(err, key, key[-8:], logs=caplog.text)
    assert key not in repr(provider)


def test_openai_retries_then_succeeds(openai_standin: OpenAIStandIn) -> None:
    openai_standin.enqueue(status=503)
    openai_standin.enqueue(CODE)
    chunks, _ = run(OpenAIProvider(max_retries=1), make_request("gpt-5-mini"))
    assert "".join(chunks) == CODE and openai_standin.request_count == 2


def test_openai_timeout_and_refused(openai_standin: OpenAIStandIn,
                                    monkeypatch: pytest.MonkeyPatch) -> None:
    openai_standin.enqueue(hang=True)
    err = failure(OpenAIProvider(timeout=0.4, max_retries=0), make_request("gpt-5-mini"))
    assert type(err) is ProviderTimeoutError

    url = f"http://127.0.0.1:{closed_port()}/v1"
    monkeypatch.setenv("OPENAI_BASE_URL", url)
    err = failure(OpenAIProvider(max_retries=0), make_request("gpt-5-mini"))
    assert type(err) is ProviderConnectionError
    assert str(err) == (f"Could not reach the OpenAI API at {url}: check your network or "
                        f"OPENAI_BASE_URL.")


def test_openai_error_chunk_mid_stream(openai_standin: OpenAIStandIn) -> None:
    openai_standin.enqueue(CODE, chunk_size=4, error_after=2, error_type="server_error",
                           message="The server had an error while processing your request.")
    got: list[str] = []
    with pytest.raises(ProviderError, match="server had an error") as info:
        for chunk in OpenAIProvider().stream(make_request("gpt-5-mini"), Reply()):
            got.append(chunk)
    assert "".join(got) == CODE[:8]
    assert_user_facing(info.value, TEST_OPENAI_KEY)


def test_openai_close_hangs_up_the_http_stream(openai_standin: OpenAIStandIn) -> None:
    openai_standin.enqueue(CODE * 20, chunk_size=4, chunk_delay=0.05)
    gen = OpenAIProvider().stream(make_request("gpt-5-mini"), Reply())
    assert isinstance(gen, GeneratorType)
    assert next(gen) and next(gen)
    gen.close()
    assert openai_standin.disconnected.wait(3)


def test_openai_compatible_server_needs_no_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    with OpenAIStandIn() as local:
        local.enqueue("print(1)\n")
        local.enqueue(status=404, message='model "qwen9:1b" not found, try pulling it first',
                      error_type="api_error")
        url = local.url
        provider = OpenAIProvider(base_url=url, max_retries=0)
        chunks, _ = run(provider, make_request("qwen3:8b"))
        err = failure(provider, make_request("qwen9:1b"))
    assert "".join(chunks) == "print(1)\n"
    assert local.requests[0].sent_key("not-needed")
    assert local.requests[0].body["max_tokens"] == 4096  # what older local servers know
    assert type(err) is UnknownModelError
    assert str(err) == (f"The OpenAI-compatible server at {url} has no model 'qwen9:1b': "
                        f"pull it there or pick one it serves.")


def test_openai_missing_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    with pytest.raises(MissingKeyError, match="OPENAI_API_KEY"):
        run(OpenAIProvider(), make_request("gpt-5-mini"))


def test_openai_package_missing_is_a_configuration_error(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "openai", None)  # what an uninstalled package looks like
    with pytest.raises(ConfigurationError, match=r"pip install 'llmscript-magic\[openai\]'"):
        run(OpenAIProvider(TEST_OPENAI_KEY), make_request("gpt-5-mini"))


def test_openai_default_model_is_in_the_installed_sdk() -> None:
    assert OpenAIProvider.default_model in OpenAIProvider.list_models()
    assert resolve_model("gpt-5-mini")[0] is OpenAIProvider
    assert resolve_model("o4-mini")[0] is OpenAIProvider


# -- Fake ---------------------------------------------------------------------------------
def test_fake_provider_replays_the_queue_to_fresh_instances() -> None:
    FakeProvider.enqueue(CODE)
    FakeProvider.enqueue("x = (", stop_reason="max_tokens", usage=Usage(3, 4))
    chunks, reply = run(FakeProvider(), make_request("fake"))
    assert len(chunks) > 1 and "".join(chunks) == CODE == reply.text
    assert reply.stop_reason == "end_turn" and reply.usage.output_tokens > 0
    _, reply = run(FakeProvider(), make_request("fake"))
    assert reply.truncated and reply.usage == Usage(3, 4)
    assert [r.model for r in FakeProvider.history] == ["fake", "fake"]
    assert FakeProvider.pending() == 0
    assert resolve_model("fake:")[0] is FakeProvider


def test_fake_provider_with_an_empty_queue() -> None:
    with pytest.raises(ProviderError) as info:
        run(FakeProvider(), make_request("fake"))
    assert str(info.value) == "FakeProvider has no reply queued: call FakeProvider.enqueue(...)"
    assert len(FakeProvider.history) == 1
    FakeProvider.reset()
    assert FakeProvider.history == []
