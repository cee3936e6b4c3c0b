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

    python tests/standins.py anthropic --port 0 --script replies.json [--log requests.jsonl]

prints the port on its first stdout line, then serves until SIGTERM/SIGINT.
``replies.json`` is either a list of replies or ``{"replies": [...], "default": {...}}``;
each reply is an object with ``enqueue``'s keyword names (``text``, ``status`` ...).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import select
import signal
import socket
import sys
import threading
import time
import uuid
from collections import deque
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field, fields
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, ClassVar, TypeVar

TEST_ANTHROPIC_KEY = "sk-ant-test-key-0000"
TEST_OPENAI_KEY = "sk-openai-test-key-0000"
REDACTED = "<redacted>"
_KEY_HEADERS = ("x-api-key", "authorization", "api-key")

__all__ = [
    "TEST_ANTHROPIC_KEY",
    "TEST_OPENAI_KEY",
    "AnthropicStandIn",
    "OpenAIStandIn",
    "RecordedRequest",
    "Scripted",
    "anthropic_standin",
    "closed_port",
    "openai_standin",
]


@dataclass
class Scripted:
    """One scripted answer. Field names are ``enqueue``'s keywords and the JSON keys."""

    text: str = ""
    #: None: "end_turn" (Anthropic) / "stop" (OpenAI)
    stop_reason: str | None = None
    #: merged over computed defaults; the API's own key names
    usage: dict[str, Any] | None = None
    #: HTTP status; >= 400 sends an error body instead of a reply
    status: int = 200
    #: error type in the body (defaults from the status); with ``error_after`` a mid-stream error
    error_type: str | None = None
    #: OpenAI ``error.code`` (e.g. "model_not_found"); Anthropic ignores it
    code: str | None = None
    #: error message (defaults per error type)
    message: str | None = None
    #: seconds to wait before the response headers
    delay: float = 0.0
    #: never answer: hold the connection until the client gives up
    hang: bool = False
    #: characters per text delta
    chunk_size: int = 8
    #: seconds between text deltas
    chunk_delay: float = 0.0
    #: after this many text deltas, send an error event (type ``error_type``) and end
    error_after: int | None = None
    #: after this many text deltas, go silent until the client gives up
    stall_after: int | None = None
    #: seconds, sent as retry-after-ms and retry-after; None: 0.01 on 429/5xx so retries are fast
    retry_after: float | None = None
    #: extra response headers
    headers: dict[str, str] = field(default_factory=dict)
    #: model echoed back (default: the requested one)
    model: str | None = None

    @classmethod
    def from_json(cls, data: dict[str, Any] | str) -> Scripted:
        if isinstance(data, str):
            return cls(text=data)
        known = {f.name for f in fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"unknown reply keys {sorted(unknown)}; known: {sorted(known)}")
        return cls(**data)


@dataclass
class RecordedRequest:
    """A request as the stand-in saw it, safe to print: key headers are redacted."""

    method: str
    path: str
    headers: dict[str, str]
    body: Any
    _key: str | None = field(default=None, repr=False, compare=False)

    @property
    def key_sent(self) -> bool:
        return bool(self._key)

    def sent_key(self, key: str) -> bool:
        """Whether exactly this key was sent (without ever exposing the one that was)."""
        return self._key == key

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data.pop("_key")
        data["key_sent"] = self.key_sent
        return data


_S = TypeVar("_S", bound="_StandIn")


class _ClientGone(Exception):
    """The client closed the connection while we were answering."""


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False  # stop() hangs up on held connections instead
    standin: _StandIn

    def handle_error(self, request: Any, client_address: Any) -> None:
        # a client hanging up on an idle keep-alive connection is normal, not news
        if not isinstance(sys.exc_info()[1], (ConnectionError, TimeoutError)):
            super().handle_error(request, client_address)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        pass

    # -- plumbing -------------------------------------------------------------
    def setup(self) -> None:
        super().setup()
        self.server.standin._connections.add(self.connection)

    def finish(self) -> None:
        self.server.standin._connections.discard(self.connection)
        with contextlib.suppress(OSError):
            super().finish()

    def _client_gone(self) -> bool:
        try:
            readable, _, _ = select.select([self.connection], [], [], 0)
            if not readable:
                return False
            return self.connection.recv(1, socket.MSG_PEEK) == b""
        except (OSError, ValueError):
            return True

    def _wait(self, seconds: float) -> None:
        """Sleep, but notice a client that hangs up (that is how cancellation shows)."""
        end = time.monotonic() + seconds
        stopping = self.server.standin._stopping
        while True:
            if self._client_gone():
                raise _ClientGone
            left = end - time.monotonic()
            if left <= 0 or stopping.is_set():
                return
            stopping.wait(min(left, 0.02))

    def _send_json(self, status: int, body: Any, headers: dict[str, str]) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for name, value in headers.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)
        self.wfile.flush()

    def _start_sse(self, headers: dict[str, str]) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream; charset=utf-8")
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Transfer-Encoding", "chunked")
        for name, value in headers.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.flush()

    def _chunk(self, data: bytes) -> None:
        try:
            self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
            self.wfile.flush()
        except OSError as err:
            raise _ClientGone from err

    # -- the request ----------------------------------------------------------
    def do_GET(self) -> None:
        self._record_and_answer()

    def do_POST(self) -> None:
        self._record_and_answer()

    def _record_and_answer(self) -> None:
        standin = self.server.standin
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        try:
            body: Any = json.loads(raw) if raw else None
        except ValueError:
            body = raw.decode("utf-8", "replace")
        headers = {k.lower(): v for k, v in self.headers.items()}
        key = standin._key_from(headers)
        for name in _KEY_HEADERS:
            if name in headers:
                headers[name] = REDACTED
        recorded = RecordedRequest(self.command, self.path, headers, body, key)
        standin._record(recorded)
        try:
            standin._answer(self, recorded, key)
        except _ClientGone:
            standin._note_disconnect()
            self.close_connection = True


class _StandIn:
    """Shared machinery: a thread-hosted server, a reply queue, a request log."""

    kind: ClassVar[str]
    #: path the SDK posts to
    api_path: ClassVar[str]

    def __init__(self, *, port: int = 0, api_key: str | None = None,
                 default: Scripted | str | None = None, log_path: str | None = None) -> None:
        """``api_key``: when set, other keys get the API's real 401 answer."""
        self._port = port
        self._expected_key = api_key
        self.default: Scripted | None = Scripted(text=default) if isinstance(default, str) \
            else default
        self._log_path = log_path
        self._queue: deque[Scripted] = deque()
        self._lock = threading.Lock()
        self.requests: list[RecordedRequest] = []
        self.disconnects = 0
        #: set when a client hangs up in the middle of an answer
        self.disconnected = threading.Event()
        self._stopping = threading.Event()
        self._connections: set[socket.socket] = set()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle ------------------------------------------------------------
    def start(self: _S) -> _S:
        server = _Server(("127.0.0.1", self._port), _Handler)
        server.standin = self
        self._server = server
        self._stopping.clear()
        self._thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05},
                                        name=f"{self.kind}-standin", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is None:
            return
        self._stopping.set()
        self._server.shutdown()
        for conn in list(self._connections):
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
        self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._server = None

    def __enter__(self: _S) -> _S:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def port(self) -> int:
        assert self._server is not None, "start() the stand-in first"
        return int(self._server.server_address[1])

    @property
    def origin(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        """What the SDK's base-URL setting should hold."""
        return self.origin

    def __repr__(self) -> str:
        where = self.origin if self._server is not None else "stopped"
        return f"<{type(self).__name__} {where} queued={len(self._queue)}>"

    # -- scripting ------------------------------------------------------------
    def enqueue(self, text: str = "", **options: Any) -> Scripted:
        """Queue the answer to the next request (see ``Scripted`` for the options)."""
        reply = Scripted(text=text, **options)
        with self._lock:
            self._queue.append(reply)
        return reply

    def set_default(self, text: str = "", **options: Any) -> None:
        """The answer once the queue is empty (otherwise: a 500 saying so)."""
        self.default = Scripted(text=text, **options)

    def load_script(self, data: Any) -> None:
        """Load ``{"replies": [...], "default": {...}}`` or a bare list of replies."""
        if isinstance(data, list):
            data = {"replies": data}
        for item in data.get("replies", []):
            with self._lock:
                self._queue.append(Scripted.from_json(item))
        if data.get("default") is not None:
            self.default = Scripted.from_json(data["default"])

    @property
    def pending(self) -> int:
        return len(self._queue)

    @property
    def request_count(self) -> int:
        return len(self.requests)

    @property
    def last(self) -> RecordedRequest:
        assert self.requests, "the stand-in has seen no request"
        return self.requests[-1]

    def reset(self) -> None:
        with self._lock:
            self._queue.clear()
            self.requests.clear()
            self.disconnects = 0
            self.disconnected.clear()

    # -- internals --------------------------------------------------------------
    def _record(self, recorded: RecordedRequest) -> None:
        with self._lock:
            self.requests.append(recorded)
        if self._log_path:
            with self._lock, open(self._log_path, "a", encoding="utf-8") as log:
                log.write(json.dumps(recorded.to_json()) + "\n")

    def _note_disconnect(self) -> None:
        with self._lock:
            self.disconnects += 1
        self.disconnected.set()

    def _next(self) -> Scripted | None:
        with self._lock:
            return self._queue.popleft() if self._queue else self.default

    def _retry_headers(self, s: Scripted) -> dict[str, str]:
        after = s.retry_after
        if after is None and (s.status == 429 or s.status >= 500):
            after = 0.01
        if after is None:
            return {}
        return {"retry-after-ms": str(round(after * 1000)),
                "retry-after": str(math.ceil(after))}

    def _answer(self, h: _Handler, req: RecordedRequest, key: str | None) -> None:
        path = req.path.split("?")[0]
        if req.method != "POST" or path != self.api_path:
            h._send_json(404, self._error_body(404, "not_found_error", f"Not found: {path}", None),
                         self._ids())
            return
        problem = self._check(req, key)
        if problem is not None:
            status, etype, message = problem
            h._send_json(status, self._error_body(status, etype, message, None),
                         {**self._ids(), "x-should-retry": "false"})
            return
        body = req.body if isinstance(req.body, dict) else {}
        s = self._next()
        if s is None:
            message = (f"{self.kind} stand-in has no reply queued: call standin.enqueue(...) "
                       f"or set a default reply")
            h._send_json(500, self._error_body(500, None, message, None),
                         {**self._ids(), "x-should-retry": "false"})
            return
        if s.hang:
            h._wait(3600)  # returns only when the stand-in stops
            h.close_connection = True
            return
        if s.delay:
            h._wait(s.delay)
        if s.status >= 400:
            h._send_json(s.status, self._error_body(s.status, s.error_type, s.message, s.code,
                                                    model=body.get("model")),
                         {**self._ids(), **self._retry_headers(s), **s.headers})
            return
        model = s.model or str(body.get("model") or "stand-in")
        if body.get("stream"):
            h._start_sse({**self._ids(), **s.headers})
            for event in self._events(s, body, model, h):
                h._chunk(event)
            h._chunk(b"")  # the terminating zero-length chunk
        else:
            h._send_json(200, self._message(s, body, model), {**self._ids(), **s.headers})

    def _pieces(self, s: Scripted) -> list[str]:
        size = max(1, s.chunk_size)
        return [s.text[i:i + size] for i in range(0, len(s.text), size)]

    @staticmethod
    def _prompt_tokens(body: dict[str, Any]) -> int:
        return max(1, len(json.dumps([body.get("system"), body.get("messages")])) // 4)

    # -- per API --------------------------------------------------------------
    def _key_from(self, headers: dict[str, str]) -> str | None:
        raise NotImplementedError

    def _ids(self) -> dict[str, str]:
        raise NotImplementedError

    def _check(self, req: RecordedRequest, key: str | None) -> tuple[int, str, str] | None:
        raise NotImplementedError

    def _error_body(self, status: int, etype: str | None, message: str | None,
                    code: str | None, *, model: Any = None) -> dict[str, Any]:
        raise NotImplementedError

    def _message(self, s: Scripted, body: dict[str, Any], model: str) -> dict[str, Any]:
        raise NotImplementedError

    def _events(self, s: Scripted, body: dict[str, Any], model: str,
                h: _Handler) -> Iterator[bytes]:
        raise NotImplementedError


# -- Anthropic ------------------------------------------------------------------
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


class AnthropicStandIn(_StandIn):
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
                h: _Handler) -> Iterator[bytes]:
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


# -- OpenAI -----------------------------------------------------------------------
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


class OpenAIStandIn(_StandIn):
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
                h: _Handler) -> Iterator[bytes]:
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


STANDINS: dict[str, type[_StandIn]] = {"anthropic": AnthropicStandIn, "openai": OpenAIStandIn}


def closed_port() -> int:
    """A loopback port nobody listens on (for connection-refused tests)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


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


# -- out of process -------------------------------------------------------------------
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Serve an LLM API stand-in on 127.0.0.1.")
    parser.add_argument("api", choices=sorted(STANDINS))
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port (printed)")
    parser.add_argument("--script", help="JSON file: a list of replies or "
                                         '{"replies": [...], "default": {...}}')
    parser.add_argument("--default-text", help="reply text once the script runs out")
    parser.add_argument("--api-key", help="answer 401 to any other key")
    parser.add_argument("--log", help="append every request (key redacted) to this JSONL file")
    args = parser.parse_args(argv)

    standin = STANDINS[args.api](port=args.port, api_key=args.api_key, log_path=args.log)
    if args.default_text is not None:
        standin.set_default(args.default_text)
    if args.script:
        with open(args.script, encoding="utf-8") as f:
            standin.load_script(json.load(f))
    done = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: done.set())
    standin.start()
    print(standin.port, flush=True)
    print(f"{args.api} stand-in at {standin.url}", file=sys.stderr, flush=True)
    try:
        done.wait()
    finally:
        standin.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
