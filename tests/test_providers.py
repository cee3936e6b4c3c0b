"""Providers against the real SDKs, talking HTTP to the local stand-ins."""

from __future__ import annotations

import json
import logging
import re
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
from llmscript_magic.providers import (
    Message,
    Provider,
    Reply,
    Request,
    Usage,
    providers,
    resolve_model,
)
from llmscript_magic.providers.anthropic import AnthropicProvider
from llmscript_magic.providers.openai import OpenAIProvider
from llmscript_magic.testing import FakeProvider

__all__ = ["anthropic_standin", "openai_standin"]  # fixtures, imported for use here

CODE = "import math\n\nprint(math.sqrt(2))\nfor i in range(3):\n    print(i)\n"
SYSTEM = "You write one runnable Python script and nothing else."
WRONG_KEY = "sk-ant-WRONG-recognisable-key-4242"


@pytest.fixture(autouse=True)
def _closed_clients() -> Any:
    """Each test starts without shared SDK clients, and leaves none open behind it."""
    from llmscript_magic.providers.clients import close_clients

    close_clients()
    yield
    close_clients()


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
    assert first.body["cache_control"] == {"type": "ephemeral"}  # the API marks the last block
    assert "thinking" not in first.body
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
        if proc.stdout is not None:
            proc.stdout.close()
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
def test_fake_answers_from_its_own_queue(fake: FakeProvider) -> None:
    fake.enqueue(CODE)
    fake.enqueue("x = (", stop_reason="max_tokens", usage=Usage(3, 4))
    chunks, reply = run(fake, make_request("fake"))
    assert len(chunks) > 1 and "".join(chunks) == CODE == reply.text
    assert reply.stop_reason == "end_turn" and reply.usage.output_tokens > 0
    _, reply = run(fake, make_request("fake"))
    assert reply.truncated and reply.usage == Usage(3, 4)
    assert [r.model for r in fake.history] == ["fake", "fake"]
    assert fake.pending() == 0
    assert resolve_model("fake:")[0] is FakeProvider

    other = FakeProvider()  # queues are per instance, not shared through the class
    other.enqueue("y = 1\n")
    assert fake.pending() == 0 and other.pending() == 1 and other.history == []


def test_fake_with_an_empty_queue_says_how_to_fix_it(fake: FakeProvider) -> None:
    with pytest.raises(ProviderError) as info:
        run(fake, make_request("fake"))
    assert str(info.value) == "FakeProvider has no reply queued: call fake.enqueue(...) first."
    assert len(fake.history) == 1
    fake.reset()
    assert fake.history == []


def test_registered_fake_answers_the_pipeline(fake: FakeProvider) -> None:
    from llmscript_magic import generate

    fake.enqueue("```python\nprint(6 * 7)\n```\n")
    gen = generate("Print six times seven.", model="fake:fake", cache=False)
    assert gen.ok and gen.code == "print(6 * 7)\n" and gen.model == "fake:fake"
    assert fake.pending() == 0 and "six times seven" in fake.history[0].messages[-1].content


def test_fake_is_not_a_provider_users_see() -> None:
    from llmscript_magic._ui.reports import list_models_text

    assert "fake" not in providers()
    assert "fake" not in list_models_text()
    with pytest.raises(UnknownModelError) as info:
        resolve_model("fake:fake")
    known = ", ".join(sorted(providers()))  # built-ins and installed plugins
    assert "fake'" in str(info.value) and f"known providers: {known} (" in str(info.value)


# -- The public contract and the registry ------------------------------------------------
def test_the_public_contract_is_importable_from_the_package() -> None:
    import llmscript_magic.providers as public
    from llmscript_magic import _errors

    for name in ("Provider", "Request", "Reply", "Usage", "Message", "one_line", "register",
                 "ProviderError", "AuthenticationError", "RateLimitError", "OverloadedError",
                 "ProviderTimeoutError", "ProviderConnectionError", "MissingKeyError"):
        assert name in public.__all__
    assert public.ProviderError is _errors.ProviderError  # one tree, re-exported

    class Listed(Provider):
        name = "listed"
        default_model = "m1"
        models = ("m1", "m2")

        def stream(self, request: Request, reply: Reply) -> Any:
            yield ""

    assert Listed.list_models() == ("m1", "m2")  # the documented default
    assert "list_models" in vars(Provider)


README_BLOCK = re.compile(r"^### Write a provider\n.*?^```python\n(.*?)^```", re.S | re.M)


def test_readme_provider_example_runs_end_to_end() -> None:
    from llmscript_magic import generate
    from llmscript_magic.providers import unregister

    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text(encoding="utf-8")
    found = README_BLOCK.search(readme)
    assert found, "README.md has no python block under '### Write a provider'"
    namespace: dict[str, Any] = {"__name__": "readme_example"}
    try:
        exec(compile(found.group(1), "README.md", "exec"), namespace)
        assert "echo" in providers()
        gen = generate("Say hello.", model="echo:", cache=False, run=True, sandbox="local")
    finally:
        unregister("echo")
    assert gen.ok, gen.report
    assert gen.model == "echo:echo-1"
    assert gen.run is not None and gen.run.stdout == "hello from echo\n"
    assert gen.usage.input_tokens > 0 and gen.last.stop_reason == "end_turn"
    assert "echo" not in providers()


@pytest.fixture
def registered() -> Any:
    """Register provider classes for one test; unregistered afterwards."""
    from llmscript_magic.providers import register, unregister

    names: list[str] = []

    def add(cls: type[Provider]) -> type[Provider]:
        names.append(cls.name)
        return register(cls)  # type: ignore[no-any-return]

    yield add
    for name in names:
        unregister(name)


FLAKY_KEY = "flaky-secret-key-0451"


class Flaky(Provider):
    """A plugin with a bug: it raises something outside our error tree mid-reply."""

    name = "flaky"
    key_env_var = "FLAKY_API_KEY"
    default_model = "f1"

    def stream(self, request: Request, reply: Reply) -> Any:
        yield "```python\nprint(1)\n"
        raise RuntimeError(f"session for {self.api_key()} expired\nat line 2")


def test_a_plugin_exception_reaches_the_user_as_one_line(
        registered: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    from llmscript_magic import generate

    registered(Flaky)
    monkeypatch.setenv("FLAKY_API_KEY", FLAKY_KEY)
    with pytest.raises(ProviderError) as info:
        generate("Print one.", model="flaky:", cache=False, sandbox="local")
    text = str(info.value)
    assert text.startswith(
        "Provider flaky failed: RuntimeError: session for *** expired at line 2;")
    assert "report it to the provider's author" in text
    assert_user_facing(info.value, FLAKY_KEY)
    assert isinstance(info.value.__cause__, RuntimeError)  # kept for whoever debugs the plugin


def test_a_plugin_exception_in_the_magic_shows_no_traceback(
        registered: Any, monkeypatch: pytest.MonkeyPatch, ip: Any,
        capsys: pytest.CaptureFixture[str]) -> None:
    registered(Flaky)
    monkeypatch.setenv("FLAKY_API_KEY", FLAKY_KEY)
    result = ip.run_cell("%%generate --model flaky:f1\nPrint one.")
    out = capsys.readouterr()
    shown = out.out + out.err
    assert not result.success
    assert "Provider flaky failed: RuntimeError" in shown
    assert "Traceback" not in shown and FLAKY_KEY not in shown


def test_an_unknown_provider_is_quoted_verbatim(
        ip: Any, capsys: pytest.CaptureFixture[str]) -> None:
    said = (f"Unknown provider 'x{{n}}' in --model 'x{{n}}:y'; known providers: "
            f"{', '.join(sorted(providers()))} (see %llmscript models).")
    with pytest.raises(UnknownModelError) as info:
        resolve_model("x{n}:y")
    assert str(info.value) == said
    ip.user_ns["n"] = 3  # IPython would expand {n} in the flags without @no_var_expand
    assert not ip.run_cell('%%generate --model "x{n}:y"\nSum the rows.').success
    shown = capsys.readouterr()
    assert said in shown.out + shown.err


def test_entry_points_are_scanned_once(monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib.metadata

    from llmscript_magic.providers import rescan

    calls: list[str] = []
    real = importlib.metadata.entry_points

    def counting(**kw: Any) -> Any:
        calls.append(kw.get("group", ""))
        return real(**kw)

    rescan()
    monkeypatch.setattr(importlib.metadata, "entry_points", counting)
    for _ in range(3):
        assert {"anthropic", "openai"} <= set(providers())
        resolve_model("claude-sonnet-5-5")
    assert calls == ["llmscript_magic.providers"]


BROKEN_PLUGINS = {
    "plug_needs_sdk.py": "import nonexistent_vendor_sdk\n",
    "plug_crashes.py": "raise RuntimeError('config file ~/.plug missing')\n",
    "plug_not_a_provider.py": "class Thing:\n    pass\n",
}
BROKEN_ENTRY_POINTS = """\
[llmscript_magic.providers]
needs-sdk = plug_needs_sdk:VendorProvider
crashes = plug_crashes:CrashProvider
not-a-provider = plug_not_a_provider:Thing
vanished = plug_vanished_module:GoneProvider
"""


@pytest.fixture
def broken_plugins(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    """An installed distribution whose four provider entry points all fail to load."""
    from llmscript_magic.providers import rescan

    for name, code in BROKEN_PLUGINS.items():
        (tmp_path / name).write_text(code)
    info = tmp_path / "llmscript_broken_plugins-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: llmscript-broken-plugins\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(BROKEN_ENTRY_POINTS)
    monkeypatch.syspath_prepend(str(tmp_path))
    rescan()
    yield
    rescan()


def test_plugins_that_fail_to_load_are_reported_with_their_fix(
        broken_plugins: None, ip: Any, capsys: pytest.CaptureFixture[str]) -> None:
    from llmscript_magic._cli.doctor import _providers

    assert {"anthropic", "openai"} <= set(providers())  # the others still load
    assert not {"needs-sdk", "crashes", "not-a-provider", "vanished"} & set(providers())

    ip.run_line_magic("llmscript", "models")
    listed = capsys.readouterr().out
    assert ("needs-sdk  (FAILED to load: cannot import nonexistent_vendor_sdk): pip install "
            "nonexistent_vendor_sdk (needed by llmscript-broken-plugins)") in listed
    assert ("crashes  (FAILED to load: RuntimeError: config file ~/.plug missing): upgrade, "
            "reinstall or uninstall llmscript-broken-plugins") in listed
    assert ("not-a-provider  (FAILED to load: plug_not_a_provider:Thing is not a Provider "
            "subclass)") in listed
    assert ("vanished  (FAILED to load: its module plug_vanished_module is missing): reinstall "
            "it: pip install --force-reinstall llmscript-broken-plugins") in listed

    ok, line = _providers()
    assert not ok and "\n" not in line
    assert "needs-sdk: failed to load (cannot import nonexistent_vendor_sdk)" in line

    with pytest.raises(UnknownModelError) as info:
        resolve_model("needs-sdk:model-1")
    assert str(info.value) == ("Provider 'needs-sdk' failed to load (cannot import "
                               "nonexistent_vendor_sdk): pip install nonexistent_vendor_sdk "
                               "(needed by llmscript-broken-plugins).")


def test_missing_openai_package_is_an_optional_note() -> None:
    code = (
        "import sys; sys.modules['openai'] = None\n"
        "from llmscript_magic._cli.doctor import _providers\n"
        "from llmscript_magic._ui.reports import list_models_text\n"
        "from llmscript_magic.providers import resolve_model\n"
        "print(list_models_text()); print(_providers())\n"
        "try:\n    resolve_model('openai:gpt-5')\nexcept Exception as err:\n    print(err)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    assert "openai  (optional, not installed): pip install 'llmscript-magic[openai]'" in out
    doctor_line = next(line for line in out.splitlines() if "providers: anthropic" in line)
    assert doctor_line.startswith("(True, ")  # an optional extra is a note, not a failure
    assert ("openai: not installed (optional): pip install 'llmscript-magic[openai]'"
            in doctor_line)
    assert "Provider 'openai' is not installed: pip install 'llmscript-magic[openai]'." in out
    assert "    anthropic:claude-sonnet-5-5" in out


# -- Clients are reused -----------------------------------------------------------------
def test_generations_reuse_one_client_and_one_connection(
        anthropic_standin: AnthropicStandIn, caplog: pytest.LogCaptureFixture) -> None:
    from llmscript_magic import generate
    from llmscript_magic.providers import clients

    caplog.set_level(logging.DEBUG)
    for n in range(3):
        anthropic_standin.enqueue(f"```python\nprint({n})\n```\n")
    clients.close_clients()
    for n in range(3):
        gen = generate(f"Print {n}.", model="anthropic:", cache=False, sandbox="local")
        assert gen.code == f"print({n})\n"
    assert anthropic_standin.request_count == 3
    assert anthropic_standin.connections_opened == 1  # kept alive between generations
    assert clients.client_count() == 1
    assert "HTTP Request" in caplog.text
    assert TEST_ANTHROPIC_KEY not in caplog.text
    assert TEST_ANTHROPIC_KEY not in repr(clients._clients)


def test_other_settings_get_their_own_client(anthropic_standin: AnthropicStandIn) -> None:
    for _ in range(3):
        anthropic_standin.enqueue("x = 1\n")
    run(AnthropicProvider(), make_request())
    run(AnthropicProvider(timeout=33.0), make_request())  # a different timeout: a new client
    run(AnthropicProvider(), make_request())  # the first one again
    assert anthropic_standin.connections_opened == 2
    assert [r.sent_key(TEST_ANTHROPIC_KEY) for r in anthropic_standin.requests] == [True] * 3


def test_shared_client_is_built_once_under_concurrency() -> None:
    import threading

    from llmscript_magic.providers.clients import shared_client

    built: list[int] = []

    def make(**options: Any) -> object:
        time.sleep(0.05)  # slow enough that unsynchronised threads would all build one
        built.append(1)
        return object()

    got: list[object] = []
    threads = [threading.Thread(target=lambda: got.append(shared_client(
        "concurrency-test", make, {"api_key": "k", "timeout": 1.0, "max_retries": 0})))
        for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(built) == 1 and len(got) == 8 and all(g is got[0] for g in got)


# -- Anthropic: extended thinking --------------------------------------------------------
DRAFT = "Draft: ```python\nprint(1.41)\n``` but sqrt is better."


def test_anthropic_thinking_is_kept_apart_from_the_reply(
        anthropic_standin: AnthropicStandIn) -> None:
    anthropic_standin.enqueue(CODE, thinking=DRAFT, chunk_size=6)
    chunks, reply = run(AnthropicProvider(), make_request(thinking_tokens=2048))

    body = anthropic_standin.last.body
    assert body["thinking"] == {"type": "enabled", "budget_tokens": 2048}
    assert body["max_tokens"] == 4096 + 2048  # the answer keeps its whole budget
    assert "".join(chunks) == CODE == reply.text  # the draft never becomes reply text
    assert reply.thinking == DRAFT
    # the stand-in counts about four characters a token, thinking billed as output
    assert reply.usage.output_tokens == max(-(-len(CODE) // 6), len(CODE) // 4) \
        + len(DRAFT) // 4


def test_anthropic_thinking_off_sends_and_keeps_none(anthropic_standin: AnthropicStandIn) -> None:
    anthropic_standin.enqueue(CODE, thinking=DRAFT)  # the API thinks only when asked to
    _, reply = run(AnthropicProvider(), make_request())
    assert reply.text == CODE and reply.thinking == ""
    assert "thinking" not in anthropic_standin.last.body


@pytest.mark.parametrize(("kw", "says"), [
    ({"thinking_tokens": 500}, "at least 1024 tokens (got 500)"),
    ({"thinking_tokens": 2048, "temperature": 0.2}, "drop --temperature or --thinking"),
])
def test_anthropic_thinking_settings_the_api_refuses_fail_before_sending(
        anthropic_standin: AnthropicStandIn, kw: dict[str, Any], says: str) -> None:
    with pytest.raises(ConfigurationError, match=re.escape(says)):
        run(AnthropicProvider(), make_request(**kw))
    assert anthropic_standin.request_count == 0


def test_the_fake_carries_thinking_too(fake: FakeProvider) -> None:
    fake.enqueue(CODE, thinking=DRAFT)
    chunks, reply = run(fake, make_request("fake"))
    assert "".join(chunks) == CODE and reply.thinking == DRAFT


# -- Anthropic: prompt caching -------------------------------------------------------------
def _cached(blocks: Any) -> list[bool]:
    """Which content blocks of a message carry a cache breakpoint."""
    if isinstance(blocks, str):
        return [False]
    return ["cache_control" in b for b in blocks]


def test_repair_attempts_read_the_conversation_from_the_prompt_cache(
        anthropic_standin: AnthropicStandIn) -> None:
    from llmscript_magic import generate
    from llmscript_magic._store.cost import estimate

    table = "\n".join(f"| {n} | item-{n} | {n * 1.5:.2f} |" for n in range(400))  # ~2.5k tokens
    anthropic_standin.enqueue("```python\nprint(undefined_name)\n```\n")
    anthropic_standin.enqueue("```python\nprint('fixed')\n```\n")
    gen = generate("Sum the price column.", model="anthropic:", cache=False, retries=1,
                   run=True, sandbox="local", context=(f"Data `df`:\n{table}",))
    assert gen.ok and len(gen.attempts) == 2

    first, second = (r.body for r in anthropic_standin.requests)
    # breakpoints: the system prompt, right after the notebook data (which comes before
    # the task), and (top-level cache_control) the last block
    for body in (first, second):
        assert _cached(body["system"]) == [True]
        assert body["cache_control"] == {"type": "ephemeral"}
        data, task = body["messages"][0]["content"]
        assert "Data `df`" in data["text"] and data["cache_control"] == {"type": "ephemeral"}
        assert task["text"].startswith("Task:\nSum the price column.")
        assert all(isinstance(m["content"], str) for m in body["messages"][1:])
    assert [m["role"] for m in second["messages"]] == ["user", "assistant", "user"]

    one, two = (a.usage for a in gen.attempts)
    assert one.cache_read_input_tokens == 0 and one.cache_creation_input_tokens > 1024
    # the repair re-sends system + first message: read back, not paid for again
    assert two.cache_read_input_tokens == one.cache_creation_input_tokens
    assert 0 < two.cache_creation_input_tokens < one.cache_creation_input_tokens
    assert gen.usage == one + two

    price_in, price_out = 3.0, 15.0  # the default table's Sonnet price per million tokens
    expected = (gen.usage.input_tokens * price_in + gen.usage.output_tokens * price_out
                + gen.usage.cache_read_input_tokens * price_in * 0.1
                + gen.usage.cache_creation_input_tokens * price_in * 1.25) / 1_000_000
    assert estimate(gen.model, gen.usage) == pytest.approx(expected)
    uncached = (one.input_tokens + one.cache_creation_input_tokens + two.input_tokens
                + two.cache_creation_input_tokens + two.cache_read_input_tokens)
    assert estimate(gen.model, gen.usage) < (uncached * price_in + gen.usage.output_tokens
                                             * price_out) / 1_000_000 * 1.2


def test_a_short_prompt_is_below_the_minimum_and_caches_nothing(
        anthropic_standin: AnthropicStandIn) -> None:
    anthropic_standin.enqueue("x = 1\n")
    anthropic_standin.enqueue("x = 1\n")
    _, first = run(AnthropicProvider(), make_request())
    _, second = run(AnthropicProvider(), make_request())
    assert first.usage.cache_creation_input_tokens == second.usage.cache_read_input_tokens == 0


def test_notebook_data_gets_its_own_breakpoint(anthropic_standin: AnthropicStandIn) -> None:
    data = "Data `df` (pandas.DataFrame, 900 rows):\n" + "\n".join(
        f"{n},{n * 2},{n % 7}" for n in range(900))
    tasks = ("\n\nTask: sum column a.", "\n\nTask: plot column b.")

    def two_cells(split: bool) -> tuple[Usage, Usage]:
        anthropic_standin.reset()
        replies = []
        for task in tasks:
            anthropic_standin.enqueue("x = 1\n")
            message = Message("user", data + task, cache_prefix=len(data) if split else 0)
            replies.append(run(AnthropicProvider(),
                               Request("claude-sonnet-5-5", SYSTEM, (message,)))[1])
        return replies[0].usage, replies[1].usage

    _, unsplit = two_cells(split=False)
    assert unsplit.cache_read_input_tokens == 0  # the task changed, so the prefix did

    first, second = two_cells(split=True)
    blocks = anthropic_standin.last.body["messages"][0]["content"]
    assert [b["text"] for b in blocks] == [data, tasks[1]]
    assert _cached(blocks) == [True, False]  # the task is the last block: marked top-level
    # a different task over the same data reads the data back; only the task is new
    assert 1024 < second.cache_read_input_tokens < first.cache_creation_input_tokens
    assert second.cache_creation_input_tokens < 20


def test_openai_requests_reuse_one_client(openai_standin: OpenAIStandIn) -> None:
    from llmscript_magic.providers import clients

    for n in range(2):
        openai_standin.enqueue(f"x = {n}\n")
    assert [run(OpenAIProvider(), make_request("gpt-5-mini"))[1].text for _ in range(2)] == \
        ["x = 0\n", "x = 1\n"]
    assert clients.client_count() == 1
    # The connection is not kept: the openai SDK closes a stream at [DONE] before the chunked
    # terminator is read, so httpcore drops it (openai/openai-python#3440, open upstream).
    assert openai_standin.connections_opened == 2
