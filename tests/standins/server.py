"""The shared plumbing of the stand-ins: a threaded HTTP server on 127.0.0.1, a reply
queue, a request log with key headers redacted.

Each API's module (``anthropic.py``, ``openai.py``) subclasses ``StandIn`` with that API's
paths, error bodies and event stream; this module knows nothing about either API.
"""

from __future__ import annotations

import contextlib
import json
import math
import select
import socket
import sys
import threading
import time
from collections import deque
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field, fields
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, ClassVar, TypeVar

REDACTED = "<redacted>"
_KEY_HEADERS = ("x-api-key", "authorization", "api-key")


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
    #: Anthropic: reasoning streamed as a thinking block before the text, when the request
    #: enables extended thinking (as the API does); OpenAI ignores it
    thinking: str = ""

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



_S = TypeVar("_S", bound="StandIn")


class _ClientGone(Exception):
    """The client closed the connection while we were answering."""


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False  # stop() hangs up on held connections instead
    standin: StandIn

    def handle_error(self, request: Any, client_address: Any) -> None:
        # a client hanging up on an idle keep-alive connection is normal, not news
        if not isinstance(sys.exc_info()[1], (ConnectionError, TimeoutError)):
            super().handle_error(request, client_address)


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # small SSE writes on a kept-alive connection would otherwise wait ~40 ms for the
    # client's delayed ACK (Nagle); the real APIs send without that delay
    disable_nagle_algorithm = True
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        pass

    # -- plumbing -------------------------------------------------------------
    def setup(self) -> None:
        super().setup()
        self.server.standin._connections.add(self.connection)
        self.server.standin._note_connection()

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


class StandIn:
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
        #: TCP connections accepted (a client keeping its connection alive opens one)
        self.connections_opened = 0
        #: set when a client hangs up in the middle of an answer
        self.disconnected = threading.Event()
        self._stopping = threading.Event()
        self._connections: set[socket.socket] = set()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle ------------------------------------------------------------
    def start(self: _S) -> _S:
        server = _Server(("127.0.0.1", self._port), Handler)
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

    def _note_connection(self) -> None:
        with self._lock:
            self.connections_opened += 1

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

    def _answer(self, h: Handler, req: RecordedRequest, key: str | None) -> None:
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
                h: Handler) -> Iterator[bytes]:
        raise NotImplementedError


def closed_port() -> int:
    """A loopback port nobody listens on (for connection-refused tests)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])
