"""Anthropic Messages API provider, through the official SDK.

The SDK already retries 408/409/429/5xx/529 and dropped connections with
backoff (honouring ``retry-after``), so this module only streams, fills in the
``Reply`` and turns whatever the SDK raises into one-line, key-free errors.
SDK imports stay inside methods so listing providers does not load the SDK.

Prompt caching: breakpoints on the system prompt, after a message's stable
prefix (notebook data, ``Message.cache_prefix``) and, through the API's top-level
``cache_control``, on the last block, so repair attempts and follow-ups re-read the
conversation so far at the cached rate.
Extended thinking (``Request.thinking_tokens``) is streamed into ``Reply.thinking``.
"""

from __future__ import annotations

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
from .base import Message, Provider, Reply, Request, Usage, one_line
from .clients import shared_client

#: the API's smallest extended-thinking budget
MIN_THINKING_TOKENS = 1024

#: the current families, for resolving bare names; ``list_models()`` asks the SDK
_CURRENT_MODELS = ("claude-opus-5-5", "claude-sonnet-5-5", "claude-haiku-5-5")


class AnthropicProvider(Provider):
    """Claude models over the Messages API, streamed, with prompt caching and thinking."""

    name = "anthropic"
    key_env_var = "ANTHROPIC_API_KEY"
    default_model = "claude-sonnet-5-5"
    models = _CURRENT_MODELS
    model_prefixes = ("claude-",)

    @classmethod
    def list_models(cls) -> tuple[str, ...]:
        """The installed SDK's model names minus the ones it flags as deprecated."""
        from typing import Literal, get_args, get_origin

        from anthropic.types import ModelParam

        try:
            from anthropic._data import DEPRECATED_MODELS
        except ImportError:  # private module; older or newer SDKs may lack it
            DEPRECATED_MODELS = {}
        names: list[str] = []
        for arg in get_args(ModelParam):
            if get_origin(arg) is Literal:
                names.extend(str(m) for m in get_args(arg))
        return tuple(m for m in names if m not in DEPRECATED_MODELS)

    def stream(self, request: Request, reply: Reply) -> Generator[str, None, None]:
        """Stream text deltas; thinking deltas go to ``reply.thinking``, never to the text.

        Usage and stop reason come from the final message.
        """
        key = self.api_key()  # MissingKeyError before anything touches the network
        try:
            import anthropic
            import httpx2
        except ImportError as err:
            raise ConfigurationError(
                "The anthropic package is not installed: pip install llmscript-magic."
            ) from err

        params = self._params(request)
        client = shared_client(self.name, anthropic.Anthropic, self.client_options(key),
                               "ANTHROPIC_BASE_URL")
        base = str(client.base_url).rstrip("/")
        parts: list[str] = []
        reply.thinking = ""
        try:
            with client.messages.stream(**params) as events:
                for event in events:
                    if event.type == "text":
                        parts.append(event.text)
                        yield event.text
                    elif event.type == "thinking":  # reasoning: kept apart, never reply text
                        reply.thinking += event.thinking
                        yield ""  # progress: the caller shows reply.thinking as it grows
                final = events.get_final_message()
            reply.model = final.model
            reply.stop_reason = final.stop_reason
            u = final.usage
            reply.usage = Usage(
                input_tokens=u.input_tokens or 0,
                output_tokens=u.output_tokens or 0,  # thinking included, as it is billed
                cache_read_input_tokens=u.cache_read_input_tokens or 0,
                cache_creation_input_tokens=u.cache_creation_input_tokens or 0,
            )
        except anthropic.APIStatusError as err:
            raise self._status_error(err, request.model, base, key) from err
        except (anthropic.APITimeoutError, httpx2.TimeoutException) as err:
            raise ProviderTimeoutError(
                f"The Anthropic API did not answer within {self.timeout:g} s: run the cell "
                f"again, or raise the timeout."
            ) from err
        except (anthropic.APIConnectionError, httpx2.TransportError) as err:
            if parts or reply.thinking:
                raise ProviderConnectionError(
                    f"The connection to the Anthropic API at {base} dropped mid-reply: "
                    f"run the cell again."
                ) from err
            raise ProviderConnectionError(
                f"Could not reach the Anthropic API at {base}: check your network or "
                f"ANTHROPIC_BASE_URL."
            ) from err
        except anthropic.AnthropicError as err:
            raise ProviderError(f"Anthropic API error: {one_line(str(err), key)}") from err
        finally:
            reply.text = "".join(parts)  # the client stays open: its connection is reused

    def _params(self, request: Request) -> dict[str, Any]:
        """The Messages API request: cache breakpoints, and thinking when asked for."""
        params: dict[str, Any] = {
            "model": request.model,
            "max_tokens": request.max_tokens,
            "messages": _messages(request.messages),
        }
        if request.system:  # the API rejects empty text blocks
            params["system"] = [{"type": "text", "text": request.system, "cache_control": _cache()}]
        if request.thinking_tokens is not None:
            budget = request.thinking_tokens
            if budget < MIN_THINKING_TOKENS:
                raise ConfigurationError(
                    f"Extended thinking needs a budget of at least {MIN_THINKING_TOKENS} tokens "
                    f"(got {budget}): raise --thinking or leave it off."
                )
            if request.temperature is not None:
                raise ConfigurationError(
                    "Extended thinking does not work with a temperature: drop --temperature "
                    "or --thinking."
                )
            params["thinking"] = {"type": "enabled", "budget_tokens": budget}
            # max_tokens covers thinking too; keep the whole reply budget for the answer
            params["max_tokens"] = request.max_tokens + budget
        # the API's automatic breakpoint on the last block: the conversation so far, which a
        # repair attempt or a follow-up re-sends and then reads back at the cached rate
        # (extra_body: SDKs before the keyword send it just the same)
        extra: dict[str, Any] = {"cache_control": _cache()}
        if request.temperature is not None:
            extra["temperature"] = request.temperature  # SDK 2.x dropped the keyword
        params["extra_body"] = extra
        return params

    def _status_error(self, err: Any, model: str, base: str, key: str | None) -> Exception:
        """Map an ``APIStatusError`` (HTTP status, or an SSE ``error`` event mid-reply)."""
        status: int = err.status_code
        etype: str = err.type or ""
        detail = one_line(err.api_message or err.message or "", key)
        mid_reply = status < 400  # an `event: error` arrives on a 200 stream
        code = f"{status}" if not mid_reply else etype
        if status == 401 or etype == "authentication_error":
            return AuthenticationError(
                "The Anthropic API rejected the key (401): check ANTHROPIC_API_KEY."
            )
        if status == 403 or etype == "permission_error":
            return AuthenticationError(
                f"The Anthropic API refused the key access (403) to {model!r}: check "
                f"ANTHROPIC_API_KEY and its workspace permissions."
            )
        if status == 404 or etype == "not_found_error":
            if etype == "not_found_error" and ("model" in detail.lower() or not detail):
                return UnknownModelError(
                    f"Anthropic has no model {model!r}: pick one from %llmscript models."
                )
            return ProviderError(
                f"The Anthropic API at {base} answered 404 for /v1/messages: check "
                f"ANTHROPIC_BASE_URL."
            )
        if status == 429 or etype == "rate_limit_error":
            return RateLimitError(
                f"Anthropic rate limit hit ({code}) after {self.max_retries} retries: wait a "
                f"minute and run the cell again."
            )
        if status in (503, 529) or etype == "overloaded_error":
            if mid_reply:
                return OverloadedError(
                    "The Anthropic API was overloaded and stopped mid-reply: run the cell "
                    "again in a minute."
                )
            return OverloadedError(
                f"The Anthropic API is overloaded ({code}) after {self.max_retries} retries: "
                f"try again in a minute or pick another model."
            )
        if status == 400 or etype == "invalid_request_error":
            return ProviderError(f"The Anthropic API rejected the request (400): {detail}")
        if status >= 500 or etype == "api_error":
            said = f": {detail}" if detail else ""
            return ProviderError(
                f"The Anthropic API failed ({code}{said}) after {self.max_retries} retries: "
                f"try again later."
            )
        return ProviderError(f"The Anthropic API answered {code}: {detail}")


def _cache() -> dict[str, str]:
    """A cache breakpoint (a new dict each time: the SDK gets its own copy)."""
    return {"type": "ephemeral"}


def _messages(messages: tuple[Message, ...]) -> list[dict[str, Any]]:
    """Messages as the API takes them, with a breakpoint after the notebook data.

    A message whose ``cache_prefix`` marks a stable leading part (the notebook data)
    is sent as two text blocks with a breakpoint after the first, so another task
    over the same data reads it back from the cache. Only the last such message gets
    one: with the system prompt and the automatic one on the last block that makes
    three of the four breakpoints the API allows.
    """
    split_at = max((i for i, m in enumerate(messages)
                    if 0 < m.cache_prefix < len(m.content)
                    and m.content[:m.cache_prefix].strip() and m.content[m.cache_prefix:].strip()),
                   default=-1)  # the API refuses empty text blocks
    out: list[dict[str, Any]] = []
    for i, m in enumerate(messages):
        if i == split_at:
            out.append({"role": m.role, "content": [
                {"type": "text", "text": m.content[:m.cache_prefix], "cache_control": _cache()},
                {"type": "text", "text": m.content[m.cache_prefix:]}]})
        else:
            out.append({"role": m.role, "content": m.content})
    return out
