"""A scripted provider for tests and demos (after simonw/llm's mock model).

Replies are queued on the class, so code that builds its own provider from a
model name (``fake:``) still gets them; every request is kept in ``history``.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Generator
from dataclasses import dataclass, field
from typing import ClassVar

from .._errors import ProviderError
from ..providers.base import Provider, Reply, Request, Usage


@dataclass(frozen=True)
class _Queued:
    text: str
    stop_reason: str
    usage: Usage | None = field(default=None)


class FakeProvider(Provider):
    """Answers from a queue instead of a network: no key, no SDK."""

    name = "fake"
    key_env_var = None
    default_model = "fake"
    models = ("fake",)

    _queue: ClassVar[deque[_Queued]] = deque()
    history: ClassVar[list[Request]] = []

    @classmethod
    def enqueue(cls, text: str, *, stop_reason: str = "end_turn",
                usage: Usage | None = None) -> None:
        """Queue the next reply; ``stop_reason="max_tokens"`` makes it truncated."""
        FakeProvider._queue.append(_Queued(text, stop_reason, usage))

    @classmethod
    def reset(cls) -> None:
        """Forget queued replies and history (call between tests)."""
        FakeProvider._queue.clear()
        FakeProvider.history.clear()

    @classmethod
    def pending(cls) -> int:
        """Replies still queued, so a test can check all of them were used."""
        return len(FakeProvider._queue)

    def stream(self, request: Request, reply: Reply) -> Generator[str, None, None]:
        """Yield the queued text in a few chunks, like a real stream."""
        FakeProvider.history.append(request)
        if not FakeProvider._queue:
            raise ProviderError("FakeProvider has no reply queued: call FakeProvider.enqueue(...)")
        item = FakeProvider._queue.popleft()
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
