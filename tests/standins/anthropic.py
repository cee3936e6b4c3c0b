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

    def _check(self, req: RecordedRequest, key: str | None) -> tuple[int, str, str] | None:
        if self._expected_key is not None and key != self._expected_key:
            return 401, "authentication_error", "invalid x-api-key"
        if "anthropic-version" not in req.headers:
            return 400, "invalid_request_error", "anthropic-version: header is required"
        if not isinstance(req.body, dict) or "model" not in req.body:
            return 400, "invalid_request_error", "model: Field required"
        return None

    def _error_body(self, status: int, etype: str | None, message: str | None,
                    code: str | None, *, model: Any = None) -> dict[str, Any]:
        etype = etype or _ANTHROPIC_TYPES.get(status, "api_error")
        if message is None:
            message = f"model: {model}" if etype == "not_found_error" and model else \
                _ANTHROPIC_MESSAGES.get(etype, etype)
        return {"type": "error", "error": {"type": etype, "message": message},
                "request_id": f"req_{uuid.uuid4().hex[:24]}"}

    def _usage(self, s: Scripted, body: dict[str, Any], pieces: int) -> dict[str, Any]:
        usage: dict[str, Any] = {"input_tokens": self._prompt_tokens(body),
                                 "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0,
                                 "output_tokens": max(1, pieces)}
        usage.update(s.usage or {})
        return usage

    def _message(self, s: Scripted, body: dict[str, Any], model: str) -> dict[str, Any]:
        return {"id": f"msg_{uuid.uuid4().hex[:24]}", "type": "message", "role": "assistant",
                "model": model, "content": [{"type": "text", "text": s.text}],
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
        yield self._sse("content_block_start", {"type": "content_block_start", "index": 0,
                                                "content_block": {"type": "text", "text": ""}})
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
                "type": "content_block_delta", "index": 0,
                "delta": {"type": "text_delta", "text": piece}})
        yield self._sse("content_block_stop", {"type": "content_block_stop", "index": 0})
        yield self._sse("message_delta", {
            "type": "message_delta",
            "delta": {"stop_reason": s.stop_reason or "end_turn", "stop_sequence": None},
            "usage": {"output_tokens": usage["output_tokens"]}})
        yield self._sse("message_stop", {"type": "message_stop"})
