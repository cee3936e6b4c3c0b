"""Stand-in for the Anthropic Messages API: ``POST /v1/messages``, JSON or the real SSE
event sequence (with mid-stream error events), and the API's own error bodies."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from typing import Any

from standins.server import Handler, RecordedRequest, Scripted, StandIn

TEST_ANTHROPIC_KEY = "sk-ant-test-key-0000"

_ANTHROPIC_TYPES = {400: "invalid_request_error", 401: "authentication_error",
                    403: "permission_error", 404: "not_found_error", 413: "request_too_large",
                    429: "rate_limit_error", 500: "api_error", 503: "overloaded_error",
                    529: "overloaded_error"}
#: what the API sends to verify a thinking block later; opaque to clients
_SIGNATURE = "EqQBCkgIARABGAIiQL3standin0signature"
_ANTHROPIC_MESSAGES = {
    "invalid_request_error": "Invalid request.",
    "authentication_error": "invalid x-api-key",
    "permission_error": "Your API key does not have permission to use the specified resource.",
    "request_too_large": "Request exceeds the maximum allowed number of bytes.",
    "rate_limit_error": "Number of request tokens has exceeded your per-minute rate limit.",
    "api_error": "Internal server error",
    "overloaded_error": "Overloaded",
}


class AnthropicStandIn(StandIn):
    """``POST /v1/messages``: JSON, or SSE with the real event sequence and error events."""

    kind = "anthropic"
    api_path = "/v1/messages"

    def _key_from(self, headers: dict[str, str]) -> str | None:
        # SDK 2.x sends the key as a bearer token; older ones used x-api-key
        bearer = headers.get("authorization", "").removeprefix("Bearer ").strip()
        return headers.get("x-api-key") or bearer or None

    def _ids(self) -> dict[str, str]:
        return {"request-id": f"req_{uuid.uuid4().hex[:24]}"}

    #: the smallest prefix the API caches (1,024 tokens for most models)
    min_cache_tokens = 1024

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        #: prompt prefixes written to the (simulated) prompt cache
        self._prompt_cache: set[str] = set()

    def reset(self) -> None:
        super().reset()
        with self._lock:
            self._prompt_cache.clear()

    def _check(self, req: RecordedRequest, key: str | None) -> tuple[int, str, str] | None:
        if self._expected_key is not None and key != self._expected_key:
            return 401, "authentication_error", "invalid x-api-key"
        if "anthropic-version" not in req.headers:
            return 400, "invalid_request_error", "anthropic-version: header is required"
        if not isinstance(req.body, dict) or "model" not in req.body:
            return 400, "invalid_request_error", "model: Field required"
        return self._check_thinking(req.body)

    @staticmethod
    def _check_thinking(body: dict[str, Any]) -> tuple[int, str, str] | None:
        """The API's own rules for extended thinking, with its messages."""
        thinking = body.get("thinking")
        if not isinstance(thinking, dict) or thinking.get("type") != "enabled":
            return None
        budget = thinking.get("budget_tokens")
        if not isinstance(budget, int) or budget < 1024:
            return (400, "invalid_request_error",
                    "thinking.enabled.budget_tokens: Input should be greater than or equal to 1024")
        if budget >= int(body.get("max_tokens") or 0):
            return (400, "invalid_request_error",
                    "`max_tokens` must be greater than `thinking.budget_tokens`")
        if body.get("temperature") not in (None, 1):
            return (400, "invalid_request_error",
                    "`temperature` may only be set to 1 when thinking is enabled")
        return None

    @staticmethod
    def _thinks(s: Scripted, body: dict[str, Any]) -> bool:
        thinking = body.get("thinking")
        return bool(s.thinking) and isinstance(thinking, dict) and thinking.get("type") == "enabled"

    def _cache_usage(self, body: dict[str, Any]) -> tuple[int, int, int]:
        """(uncached input, cache writes, cache reads), the way the API counts them.

        The prompt is a sequence of blocks (system, then each message's); a block with
        ``cache_control`` is a breakpoint, and a top-level ``cache_control`` marks the
        last block. The longest prefix seen before (by model, ending on any block
        boundary up to the last breakpoint) is read from the cache, the rest up to the
        last breakpoint is written, and prefixes shorter than ``min_cache_tokens`` are
        never cached. Tokens are about four characters each.
        """
        blocks: list[Any] = []  # (place, block): what a cached prefix is made of
        marks: list[int] = []  # blocks carrying a breakpoint
        system = body.get("system")
        places = [("system", item) for item in
                  (system if isinstance(system, list) else [system] if system else [])]
        for message in body.get("messages") or []:
            content = message.get("content")
            places.extend((message.get("role"), item)
                          for item in (content if isinstance(content, list) else [content]))
        for place, item in places:
            if isinstance(item, dict) and "cache_control" in item:
                marks.append(len(blocks))
            # a breakpoint is not content, and a string is one text block
            block = {k: v for k, v in item.items() if k != "cache_control"} \
                if isinstance(item, dict) else {"type": "text", "text": item}
            blocks.append((place, block))
        if body.get("cache_control") and blocks and len(blocks) - 1 not in marks:
            marks.append(len(blocks) - 1)  # top-level cache_control: the last block
        sizes = [max(1, len(json.dumps(block)) // 4) for _, block in blocks]
        total = sum(sizes)
        if not marks:
            return total, 0, 0

        def key(end: int) -> str:  # the prefix up to and including block ``end``
            return str(body.get("model")) + json.dumps(blocks[:end + 1])

        last = marks[-1]
        with self._lock:
            hit = next((end for end in range(last, -1, -1) if key(end) in self._prompt_cache),
                       None)
            read = sum(sizes[:hit + 1]) if hit is not None else 0
            upto = sum(sizes[:last + 1])
            written = upto - read if upto >= self.min_cache_tokens else 0
            self._prompt_cache.update(key(end) for end in marks
                                      if sum(sizes[:end + 1]) >= self.min_cache_tokens)
        return total - read - written, written, read

    def _error_body(self, status: int, etype: str | None, message: str | None,
                    code: str | None, *, model: Any = None) -> dict[str, Any]:
        etype = etype or _ANTHROPIC_TYPES.get(status, "api_error")
        if message is None:
            message = f"model: {model}" if etype == "not_found_error" and model else \
                _ANTHROPIC_MESSAGES.get(etype, etype)
        return {"type": "error", "error": {"type": etype, "message": message},
                "request_id": f"req_{uuid.uuid4().hex[:24]}"}

    def _usage(self, s: Scripted, body: dict[str, Any], pieces: int) -> dict[str, Any]:
        uncached, written, read = self._cache_usage(body)
        # about four characters a token, as for the input: realistic figures for the demos
        thought = max(1, len(s.thinking) // 4) if self._thinks(s, body) else 0
        usage: dict[str, Any] = {"input_tokens": uncached,
                                 "cache_creation_input_tokens": written,
                                 "cache_read_input_tokens": read,
                                 "output_tokens": max(1, pieces, len(s.text) // 4) + thought}
        usage.update(s.usage or {})
        return usage

    def _message(self, s: Scripted, body: dict[str, Any], model: str) -> dict[str, Any]:
        content: list[dict[str, Any]] = [{"type": "text", "text": s.text}]
        if self._thinks(s, body):
            content.insert(0, {"type": "thinking", "thinking": s.thinking,
                               "signature": _SIGNATURE})
        return {"id": f"msg_{uuid.uuid4().hex[:24]}", "type": "message", "role": "assistant",
                "model": model, "content": content,
                "stop_reason": s.stop_reason or "end_turn", "stop_sequence": None,
                "usage": self._usage(s, body, len(self._pieces(s)))}

    @staticmethod
    def _sse(event: str, data: dict[str, Any]) -> bytes:
        return f"event: {event}\ndata: {json.dumps(data)}\n\n".encode()

    def _events(self, s: Scripted, body: dict[str, Any], model: str,
                h: Handler) -> Iterator[bytes]:
        pieces = self._pieces(s)
        usage = self._usage(s, body, len(pieces))
        start_usage = {**usage, "output_tokens": 1}
        message: dict[str, Any] = {
            "id": f"msg_{uuid.uuid4().hex[:24]}", "type": "message", "role": "assistant",
            "model": model, "content": [], "stop_reason": None, "stop_sequence": None,
            "usage": start_usage}
        yield self._sse("message_start", {"type": "message_start", "message": message})
        index = 0
        if self._thinks(s, body):  # a thinking block first, then the answer's text block
            yield self._sse("content_block_start", {
                "type": "content_block_start", "index": 0,
                "content_block": {"type": "thinking", "thinking": "", "signature": ""}})
            yield self._sse("ping", {"type": "ping"})
            for piece in self._pieces(Scripted(text=s.thinking, chunk_size=s.chunk_size)):
                yield self._sse("content_block_delta", {
                    "type": "content_block_delta", "index": 0,
                    "delta": {"type": "thinking_delta", "thinking": piece}})
            yield self._sse("content_block_delta", {
                "type": "content_block_delta", "index": 0,
                "delta": {"type": "signature_delta", "signature": _SIGNATURE}})
            yield self._sse("content_block_stop", {"type": "content_block_stop", "index": 0})
            index = 1
        yield self._sse("content_block_start", {"type": "content_block_start", "index": index,
                                                "content_block": {"type": "text", "text": ""}})
        if not index:
            yield self._sse("ping", {"type": "ping"})
        for n, piece in enumerate(pieces):
            if s.error_after is not None and n == s.error_after:
                etype = s.error_type or "overloaded_error"
                yield self._sse("error", self._error_body(200, etype, s.message, None))
                return
            if s.stall_after is not None and n == s.stall_after:
                h._wait(3600)  # returns only when the stand-in stops
                return
            if n and s.chunk_delay:
                h._wait(s.chunk_delay)
            yield self._sse("content_block_delta", {
                "type": "content_block_delta", "index": index,
                "delta": {"type": "text_delta", "text": piece}})
        yield self._sse("content_block_stop", {"type": "content_block_stop", "index": index})
        yield self._sse("message_delta", {
            "type": "message_delta",
            "delta": {"stop_reason": s.stop_reason or "end_turn", "stop_sequence": None},
            "usage": {"output_tokens": usage["output_tokens"]}})
        yield self._sse("message_stop", {"type": "message_stop"})
