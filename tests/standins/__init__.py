"""Local stand-ins for the Anthropic Messages API and the OpenAI chat-completions API.

Real HTTP servers on 127.0.0.1 (stdlib ``ThreadingHTTPServer`` in a thread) that
the real SDKs talk to through their base-URL settings; nothing leaves loopback.
Replies are scripted per request with ``enqueue``; every request is recorded with
its key header redacted (``RecordedRequest.sent_key(k)`` still tells whether a
given key was sent).

In-process (pytest)::

    def test_x(anthropic_standin):
        anthropic_standin.enqueue("print('hi')", chunk_size=4)

Out of process (browser/notebook tests)::

    python tests/standins anthropic --port 0 --script replies.json [--log requests.jsonl]

prints the port on its first stdout line, then serves until SIGTERM/SIGINT.
``replies.json`` is either a list of replies or ``{"replies": [...], "default": {...}}``;
each reply is an object with ``enqueue``'s keyword names (``text``, ``status`` ...).

Layout: ``server.py`` is the shared plumbing (server, queue, request log), ``anthropic.py``
and ``openai.py`` speak each API, ``__main__.py`` serves one out of process, and this
module holds the pytest fixtures (``pytest_plugins = ["standins"]`` in conftest).
"""

from __future__ import annotations

from collections.abc import Iterator

from standins.anthropic import TEST_ANTHROPIC_KEY, AnthropicStandIn
from standins.openai import TEST_OPENAI_KEY, OpenAIStandIn
from standins.server import REDACTED, RecordedRequest, Scripted, StandIn, closed_port

__all__ = [
    "REDACTED",
    "STANDINS",
    "TEST_ANTHROPIC_KEY",
    "TEST_OPENAI_KEY",
    "AnthropicStandIn",
    "OpenAIStandIn",
    "RecordedRequest",
    "Scripted",
    "StandIn",
    "anthropic_standin",
    "closed_port",
    "openai_standin",
]

STANDINS: dict[str, type[StandIn]] = {"anthropic": AnthropicStandIn, "openai": OpenAIStandIn}


# -- pytest fixtures ------------------------------------------------------------------
try:
    import pytest
except ImportError:  # run as a plain script without pytest installed
    pytest = None  # type: ignore[assignment]

if pytest is not None:

    def _loopback_only(monkeypatch: pytest.MonkeyPatch) -> None:
        for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy",
                     "all_proxy"):
            monkeypatch.delenv(name, raising=False)
        monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
        monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")

    @pytest.fixture
    def anthropic_standin(monkeypatch: pytest.MonkeyPatch) -> Iterator[AnthropicStandIn]:
        """A running Anthropic stand-in; ANTHROPIC_BASE_URL and ANTHROPIC_API_KEY point at it."""
        with AnthropicStandIn(api_key=TEST_ANTHROPIC_KEY) as standin:
            _loopback_only(monkeypatch)
            monkeypatch.setenv("ANTHROPIC_BASE_URL", standin.url)
            monkeypatch.setenv("ANTHROPIC_API_KEY", TEST_ANTHROPIC_KEY)
            monkeypatch.delenv("ANTHROPIC_AUTH_TOKEN", raising=False)
            yield standin

    @pytest.fixture
    def openai_standin(monkeypatch: pytest.MonkeyPatch) -> Iterator[OpenAIStandIn]:
        """A running OpenAI stand-in; OPENAI_BASE_URL and OPENAI_API_KEY point at it."""
        with OpenAIStandIn(api_key=TEST_OPENAI_KEY) as standin:
            _loopback_only(monkeypatch)
            monkeypatch.setenv("OPENAI_BASE_URL", standin.url)
            monkeypatch.setenv("OPENAI_API_KEY", TEST_OPENAI_KEY)
            yield standin
