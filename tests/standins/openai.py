"""Stand-in for the OpenAI chat-completions API (and OpenAI-compatible servers):
``POST /v1/chat/completions``, JSON or SSE chunks, a usage chunk and ``[DONE]``."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from typing import Any

from standins.server import Handler, RecordedRequest, Scripted, StandIn

TEST_OPENAI_KEY = "sk-openai-test-key-0000"

_OPENAI_ERRORS: dict[int, tuple[str, str | None, str]] = {
    400: ("invalid_request_error", None, "Invalid request."),
    401: ("invalid_request_error", "invalid_api_key", "Incorrect API key provided: {masked}. "
          "You can find your API key at the dashboard."),
    403: ("invalid_request_error", "unsupported_country_region_territory",
          "Country, region, or territory not supported"),
    404: ("invalid_request_error", "model_not_found",
          "The model `{model}` does not exist or you do not have access to it."),
    429: ("requests", "rate_limit_exceeded", "Rate limit reached for requests."),
    500: ("server_error", None, "The server had an error while processing your request."),
    503: ("server_error", None, "The engine is currently overloaded, please try again later."),
}


class OpenAIStandIn(StandIn):
    """``POST /v1/chat/completions``: JSON, or SSE chunks, a usage chunk and ``[DONE]``."""

    kind = "openai"
    api_path = "/v1/chat/completions"

    @property
    def url(self) -> str:
        """OPENAI_BASE_URL includes the /v1."""
        return f"{self.origin}/v1"

    def _key_from(self, headers: dict[str, str]) -> str | None:
        auth = headers.get("authorization", "")
        return auth.removeprefix("Bearer ").strip() or None

    def _ids(self) -> dict[str, str]:
        return {"x-request-id": f"req_{uuid.uuid4().hex}"}

    def _check(self, req: RecordedRequest, key: str | None) -> tuple[int, str, str] | None:
        if self._expected_key is not None and key != self._expected_key:
            masked = f"{key[:5]}{'*' * 8}{key[-4:]}" if key and len(key) > 9 else "<empty>"
            return 401, "invalid_request_error", _OPENAI_ERRORS[401][2].format(masked=masked)
        if not isinstance(req.body, dict) or "model" not in req.body:
            return 400, "invalid_request_error", "you must provide a model parameter"
        return None

    def _error_body(self, status: int, etype: str | None, message: str | None,
                    code: str | None, *, model: Any = None) -> dict[str, Any]:
        dtype, dcode, dmessage = _OPENAI_ERRORS.get(status, ("server_error", None, "Error."))
        if message is None:
            message = dmessage.format(model=model, masked="sk-****")
        if status == 401 and code is None:
            code = "invalid_api_key"
        return {"error": {"message": message, "type": etype or dtype, "param": None,
                          "code": code if code is not None else dcode}}

    def _usage(self, s: Scripted, body: dict[str, Any], pieces: int) -> dict[str, Any]:
        prompt = self._prompt_tokens(body)
        usage: dict[str, Any] = {
            "prompt_tokens": prompt, "completion_tokens": max(1, pieces),
            "total_tokens": prompt + max(1, pieces),
            "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
            "completion_tokens_details": {"reasoning_tokens": 0, "audio_tokens": 0,
                                          "accepted_prediction_tokens": 0,
                                          "rejected_prediction_tokens": 0}}
        usage.update(s.usage or {})
        return usage

    def _message(self, s: Scripted, body: dict[str, Any], model: str) -> dict[str, Any]:
        return {"id": f"chatcmpl-{uuid.uuid4().hex[:24]}", "object": "chat.completion",
                "created": int(time.time()), "model": model, "system_fingerprint": "fp_standin",
                "choices": [{"index": 0, "finish_reason": s.stop_reason or "stop",
                             "logprobs": None,
                             "message": {"role": "assistant", "content": s.text,
                                         "refusal": None}}],
                "usage": self._usage(s, body, len(self._pieces(s)))}

    def _events(self, s: Scripted, body: dict[str, Any], model: str,
                h: Handler) -> Iterator[bytes]:
        include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
        pieces = self._pieces(s)
        base: dict[str, Any] = {"id": f"chatcmpl-{uuid.uuid4().hex[:24]}",
                                "object": "chat.completion.chunk", "created": int(time.time()),
                                "model": model, "system_fingerprint": "fp_standin"}
        if include_usage:
            base["usage"] = None

        def chunk(delta: dict[str, Any], finish: str | None = None) -> bytes:
            data = {**base, "choices": [{"index": 0, "delta": delta, "logprobs": None,
                                         "finish_reason": finish}]}
            return f"data: {json.dumps(data)}\n\n".encode()

        yield chunk({"role": "assistant", "content": "", "refusal": None})
        for n, piece in enumerate(pieces):
            if s.error_after is not None and n == s.error_after:
                err = self._error_body(500, s.error_type, s.message, s.code)
                yield f"data: {json.dumps(err)}\n\n".encode()
                return
            if s.stall_after is not None and n == s.stall_after:
                h._wait(3600)  # returns only when the stand-in stops
                return
            if n and s.chunk_delay:
                h._wait(s.chunk_delay)
            yield chunk({"content": piece})
        yield chunk({}, s.stop_reason or "stop")
        if include_usage:
            data = {**base, "choices": [], "usage": self._usage(s, body, len(pieces))}
            yield f"data: {json.dumps(data)}\n\n".encode()
        yield b"data: [DONE]\n\n"
