"""A scripted provider for tests and demos (after simonw/llm's mock model).

Each instance has its own queue of replies and its own ``history`` of requests.
Register an instance for the length of a test and the pipeline uses *that*
instance whenever a model name says ``fake:``::

    fake = FakeProvider()
    register(fake)
    fake.enqueue("```python\\nprint(1)\\n```")
    generate("Print one.", model="fake:fake")
    unregister("fake")

It is never an installed plugin: users do not see it unless a test registers it.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from ..providers import Provider, ProviderError, Reply, Request, Usage


@dataclass(frozen=True)
class _Queued:
    text: str
    stop_reason: str
    usage: Usage | None = field(default=None)
    thinking: str = ""


class FakeProvider(Provider):
    """Answers from its queue instead of a network: no key, no SDK."""

    name = "fake"
    key_env_var = None
    default_model = "fake"
    models = ("fake",)

    def __init__(self, api_key: str | None = None, **options: Any) -> None:
        super().__init__(api_key, **options)
        self._lock = threading.Lock()
        self._queue: deque[_Queued] = deque()
        #: every request this instance answered (or refused), in order
        self.history: list[Request] = []

    def enqueue(self, text: str, *, stop_reason: str = "end_turn",
                usage: Usage | None = None, thinking: str = "") -> None:
        """Queue the next reply; ``stop_reason="max_tokens"`` makes it truncated."""
        with self._lock:
            self._queue.append(_Queued(text, stop_reason, usage, thinking))

    def pending(self) -> int:
        """Replies still queued, so a test can check all of them were used."""
        with self._lock:
            return len(self._queue)

    def reset(self) -> None:
        """Forget queued replies and history."""
        with self._lock:
            self._queue.clear()
            self.history.clear()

    def stream(self, request: Request, reply: Reply) -> Iterator[str]:
        """Yield the queued text in a few chunks, like a real stream."""
        with self._lock:
            self.history.append(request)
            item = self._queue.popleft() if self._queue else None
        if item is None:
            raise ProviderError("FakeProvider has no reply queued: call fake.enqueue(...) first.")
        reply.thinking = item.thinking
        size = max(1, -(-len(item.text) // 4))  # about four chunks
        parts: list[str] = []
        for start in range(0, len(item.text), size):
            part = item.text[start:start + size]
            parts.append(part)
            yield part
        prompt = request.system + "".join(m.content for m in request.messages)
        reply.usage = item.usage or Usage(
            input_tokens=len(prompt.split()), output_tokens=len(item.text.split())
        )
        reply.stop_reason = item.stop_reason
        reply.model = request.model
        reply.text = "".join(parts)
