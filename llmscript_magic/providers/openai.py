"""OpenAI chat-completions provider; also speaks to Ollama, vLLM and llama.cpp.

``openai`` is an optional dependency, imported only when a generation runs;
without it this module does not import, and the registry says how to install it.
Its SDK retries 408/409/429/5xx and dropped connections with backoff; this
module streams, fills in the ``Reply`` and maps errors to one-line messages.
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Generator
from typing import Any

from .._errors import (
    AuthenticationError,
    ConfigurationError,
    OverloadedError,
    ProviderConnectionError,
    ProviderError,
    ProviderTimeoutError,
    RateLimitError,
    UnknownModelError,
)
from .base import Provider, Reply, Request, Usage, one_line
from .clients import shared_client

if importlib.util.find_spec("openai") is None:
    # the registry reports this as "optional, not installed" instead of listing a provider
    # that fails on first use; the SDK itself is still imported only when a generation runs
    raise ModuleNotFoundError(
        "The openai package is not installed: pip install 'llmscript-magic[openai]'.",
        name="openai")

#: what local OpenAI-compatible servers accept when they check no key at all
DUMMY_KEY = "not-needed"


class OpenAIProvider(Provider):
    """GPT/o-series models, or any server with an OpenAI-compatible chat endpoint."""

    name = "openai"
    key_env_var = "OPENAI_API_KEY"
    default_model = "gpt-5-mini"
    models = ("gpt-5", "gpt-5-mini", "gpt-5-nano", "gpt-4.1", "gpt-4.1-mini", "o3", "o4-mini")
    model_prefixes = ("gpt-", "o1", "o3", "o4")

    @classmethod
    def list_models(cls) -> tuple[str, ...]:
        """Chat model names the installed SDK knows about."""
        from typing import Literal, get_args, get_origin

        from openai.types import ChatModel

        if get_origin(ChatModel) is Literal:
            return tuple(str(m) for m in get_args(ChatModel))
        return cls.models

    def _is_compatible_server(self) -> bool:
        """True when ``base_url`` names a self-hosted server (Ollama, vLLM, llama.cpp).

        OPENAI_BASE_URL alone does not count: it is the SDK's own setting, often a
        proxy in front of OpenAI itself.
        """
        return bool(self.base_url) and "api.openai.com" not in str(self.base_url)

    def api_key(self) -> str | None:
        """Local servers (``base_url`` given) often check no key, so a dummy one will do."""
        if self._api_key or os.environ.get("OPENAI_API_KEY"):
            return super().api_key()
        if self._is_compatible_server():
            return DUMMY_KEY
        return super().api_key()  # raises MissingKeyError

    def _where(self, base: str) -> str:
        """Who answered, for messages: OpenAI itself, or the local server by its URL."""
        if self._is_compatible_server():
            return f"the OpenAI-compatible server at {base}"
        return "the OpenAI API"

    def stream(self, request: Request, reply: Reply) -> Generator[str, None, None]:
        """Stream chat-completion deltas; the last chunk carries usage."""
        key = self.api_key()
        try:
            import httpx2
            import openai
        except ImportError as err:
            raise ConfigurationError(
                "The openai package is not installed: pip install 'llmscript-magic[openai]'."
            ) from err

        client = shared_client(self.name, openai.OpenAI, self.client_options(key),
                               "OPENAI_BASE_URL")
        base = str(client.base_url).rstrip("/")
        where = self._where(base)
        messages: list[dict[str, str]] = []
        if request.system:
            messages.append({"role": "system", "content": request.system})
        messages.extend({"role": m.role, "content": m.content} for m in request.messages)
        params: dict[str, Any] = {
            "model": request.model,
            "messages": messages,
            "stream": True,
            "stream_options": {"include_usage": True},
        }
        # OpenAI's reasoning models refuse max_tokens; older local servers only know it
        limit_field = "max_tokens" if self._is_compatible_server() else "max_completion_tokens"
        params[limit_field] = request.max_tokens
        if request.temperature is not None:
            params["temperature"] = request.temperature

        parts: list[str] = []
        try:
            with client.chat.completions.create(**params) as chunks:
                for chunk in chunks:
                    if chunk.model:
                        reply.model = chunk.model
                    if chunk.usage is not None:
                        reply.usage = _usage(chunk.usage)
                    for choice in chunk.choices:
                        if choice.finish_reason:
                            reply.stop_reason = choice.finish_reason
                        text = choice.delta.content if choice.delta else None
                        if text:
                            parts.append(text)
                            yield text
        except openai.APIStatusError as err:
            raise self._api_error(err, err.status_code, request.model, base, key) from err
        except (openai.APITimeoutError, httpx2.TimeoutException) as err:
            raise ProviderTimeoutError(
                f"{_cap(where)} did not answer within {self.timeout:g} s: run the cell again, "
                f"or raise the timeout."
            ) from err
        except (openai.APIConnectionError, httpx2.TransportError) as err:
            if parts:
                raise ProviderConnectionError(
                    f"The connection to {where} dropped mid-reply: run the cell again."
                ) from err
            at = where if self._is_compatible_server() else f"the OpenAI API at {base}"
            raise ProviderConnectionError(
                f"Could not reach {at}: check your network or OPENAI_BASE_URL."
            ) from err
        except openai.APIError as err:  # an error object inside the stream
            raise self._api_error(err, None, request.model, base, key) from err
        except openai.OpenAIError as err:
            raise ProviderError(f"OpenAI client error: {one_line(str(err), key)}") from err
        finally:
            reply.text = "".join(parts)  # the client stays open: its connection is reused

    def _api_error(self, err: Any, status: int | None, model: str, base: str,
                   key: str | None) -> Exception:
        """Map an HTTP error status, or an ``{"error": ...}`` chunk mid-stream (status None)."""
        etype = str(getattr(err, "type", None) or "")
        code = str(getattr(err, "code", None) or "")
        body = getattr(err, "body", None)
        raw = body.get("message") if isinstance(body, dict) else None
        detail = one_line(str(raw or getattr(err, "message", "") or ""), key)
        where = self._where(base)
        label = str(status) if status else (code or etype or "error")
        if status == 401 or code == "invalid_api_key":
            return AuthenticationError(
                f"{_cap(where)} rejected the key (401): check OPENAI_API_KEY."
            )
        if status == 403:
            return AuthenticationError(
                f"{_cap(where)} refused the key access (403) to {model!r}: check OPENAI_API_KEY "
                f"and the project's model permissions."
            )
        if status == 404 or code == "model_not_found":
            if self._is_compatible_server():
                return UnknownModelError(
                    f"{_cap(where)} has no model {model!r}: pull it there or pick one it serves."
                )
            return UnknownModelError(
                f"OpenAI has no model {model!r}: pick one from %llmscript models."
            )
        if code == "insufficient_quota":
            return RateLimitError(
                "OpenAI quota exhausted (429 insufficient_quota): check your plan and billing."
            )
        if status == 429 or "rate_limit" in code or "rate_limit" in etype:
            return RateLimitError(
                f"{_cap(where)} rate limit hit ({label}) after {self.max_retries} retries: "
                f"wait a minute and run the cell again."
            )
        if status in (503, 529) or "overloaded" in f"{etype} {code} {detail}".lower():
            return OverloadedError(
                f"{_cap(where)} is overloaded ({label}): try again in a minute or pick another "
                f"model."
            )
        if status == 400:
            return ProviderError(f"{_cap(where)} rejected the request (400): {detail}")
        if status is None or status >= 500:
            return ProviderError(
                f"{_cap(where)} failed ({label}): try again later; it said: {detail}"
            )
        return ProviderError(f"{_cap(where)} answered {label}: {detail}")


def _cap(text: str) -> str:
    return text[:1].upper() + text[1:]


def _usage(u: Any) -> Usage:
    """OpenAI counts cached tokens inside prompt_tokens; Anthropic's convention splits them."""
    cached = 0
    details = getattr(u, "prompt_tokens_details", None)
    if details is not None:
        cached = getattr(details, "cached_tokens", 0) or 0
    return Usage(
        input_tokens=max((u.prompt_tokens or 0) - cached, 0),
        output_tokens=u.completion_tokens or 0,
        cache_read_input_tokens=cached,
    )
