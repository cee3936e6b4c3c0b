"""The provider contract: what a plugin implements and what it gets back.

A provider is tiny on purpose (after simonw/llm): a name, the environment
variable holding its key, its models, and one generator method that yields
text chunks and fills in usage and stop reason on the ``Reply`` it is given.
Everything a plugin needs is importable from ``llmscript_magic.providers``;
finding and loading providers is ``registry.py``'s job, not this module's.
"""

from __future__ import annotations

import os
import re
from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

from .._errors import MissingKeyError


@dataclass(frozen=True)
class Message:
    """One turn of the conversation; ``content`` is plain text."""

    role: Literal["user", "assistant"]
    content: str
    #: length of the leading part of ``content`` that repeats verbatim across requests
    #: (notebook data); providers with prompt caching put a breakpoint right after it
    cache_prefix: int = 0


@dataclass(frozen=True)
class Request:
    """Everything a provider needs for one completion; hashable for the cache."""

    model: str
    system: str
    messages: tuple[Message, ...]
    max_tokens: int = 4096
    temperature: float | None = None
    #: extended-thinking budget for models that think before answering; None: no thinking.
    #: Providers without such a feature ignore it.
    thinking_tokens: int | None = None


@dataclass
class Usage:
    """Token counts in Anthropic's convention: cache reads/writes are not in ``input_tokens``."""

    input_tokens: int = 0
    output_tokens: int = 0  # includes thinking tokens, which are billed as output
    cache_read_input_tokens: int = 0
    cache_creation_input_tokens: int = 0

    def __add__(self, other: Usage) -> Usage:
        return Usage(
            self.input_tokens + other.input_tokens,
            self.output_tokens + other.output_tokens,
            self.cache_read_input_tokens + other.cache_read_input_tokens,
            self.cache_creation_input_tokens + other.cache_creation_input_tokens,
        )


@dataclass
class Reply:
    """Filled in by ``Provider.stream`` while it yields."""

    text: str = ""
    usage: Usage = field(default_factory=Usage)
    stop_reason: str | None = None
    model: str | None = None
    #: the model's reasoning, when it streams it separately (never a source of code)
    thinking: str = ""
    #: what the user should know about this request, one line each: an option the model
    #: could not honour (e.g. ``--thinking`` on a model without it); shown as warnings
    notes: list[str] = field(default_factory=list)

    @property
    def truncated(self) -> bool:
        return self.stop_reason in ("max_tokens", "length")


@dataclass(frozen=True)
class ModelGroup:
    """The models one plugin of a provider offers, for ``%llmscript models`` and doctor.

    Most providers have one unnamed group; the ``llm`` bridge has one per llm plugin,
    and a plugin that failed to load is a group with its error and fix instead of models.
    """

    name: str
    models: tuple[str, ...] = ()
    error: str | None = None
    fix: str = ""


class Provider(ABC):
    """One model vendor or API dialect.

    Subclass it, set the class attributes, implement ``stream``. Raise errors from
    ``llmscript_magic.providers`` (``ProviderError`` and its kin) with one line that
    says how to fix the problem; anything else you raise is shown to the user as
    "Provider <name> failed: ..." (one line, never a traceback).
    """

    #: the prefix users type: ``--model NAME:model``
    name: ClassVar[str]
    #: environment variable holding the API key; None when no key is needed
    key_env_var: ClassVar[str | None] = None
    #: where keys come from instead, for providers without one variable (the llm bridge)
    key_source: ClassVar[str | None] = None
    default_model: ClassVar[str]
    #: model ids this provider answers to when given without ``provider:``
    models: ClassVar[tuple[str, ...]] = ()
    #: bare model names starting with one of these also belong here
    model_prefixes: ClassVar[tuple[str, ...]] = ()

    def __init__(self, api_key: str | None = None, *, timeout: float = 120.0,
                 max_retries: int = 2, base_url: str | None = None) -> None:
        self._api_key = api_key
        self.timeout = timeout
        self.max_retries = max_retries
        #: None lets the vendor SDK read its usual variable (ANTHROPIC_BASE_URL, ...)
        self.base_url = base_url

    @classmethod
    def list_models(cls) -> tuple[str, ...]:
        """The model ids ``%llmscript models`` lists; by default ``cls.models``.

        Override it to ask an SDK or a server; keep it fast and offline if you can.
        """
        return cls.models

    @classmethod
    def model_groups(cls) -> tuple[ModelGroup, ...]:
        """``list_models()`` grouped by the plugin offering them; by default one group."""
        return (ModelGroup("", tuple(cls.list_models())),)

    def client_options(self, key: str | None) -> dict[str, Any]:
        """Keyword arguments every official vendor SDK client takes."""
        options: dict[str, Any] = {"api_key": key, "timeout": self.timeout,
                                   "max_retries": self.max_retries}
        if self.base_url:
            options["base_url"] = self.base_url
        return options

    def __repr__(self) -> str:  # never show the key
        return f"<{type(self).__name__} {self.name!r}>"

    @classmethod
    def key_is_set(cls, api_key: str | None = None) -> bool:
        return cls.key_env_var is None or bool(api_key or os.environ.get(cls.key_env_var))

    def api_key(self) -> str | None:
        """The key to use; raises a how-to-fix error when it is required and missing."""
        if self.key_env_var is None:
            return self._api_key
        key = self._api_key or os.environ.get(self.key_env_var)
        if not key:
            raise MissingKeyError(
                f"No API key for {self.name}: set the {self.key_env_var} environment variable "
                f"(or %config GenerateMagics.api_key), or use --replay to run recorded generations."
            )
        return key

    def secrets(self) -> tuple[str, ...]:
        """Strings that must never appear in a message: the key, wherever it came from."""
        found = [self._api_key]
        if self.key_env_var:
            found.append(os.environ.get(self.key_env_var))
        return tuple(s for s in found if s)

    @abstractmethod
    def stream(self, request: Request, reply: Reply) -> Iterator[str]:
        """Yield text chunks as they arrive; set ``reply.usage`` and ``reply.stop_reason``.

        Write it as a generator: ``close()`` on it is how a generation is cancelled,
        so close the HTTP stream in a ``finally``.
        """


_KEYLIKE = re.compile(r"\b(sk-[A-Za-z]{0,4})[A-Za-z0-9_*\-]{6,}")


def one_line(text: str, *secrets: str | None, limit: int = 300) -> str:
    """An upstream message made safe to show: one line, short, with keys blanked out.

    APIs echo (masked) keys back in 401 bodies, so key-shaped tokens go as well as
    the exact secrets given.
    """
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
    text = _KEYLIKE.sub(r"\1***", text)
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "\u2026"


def __getattr__(name: str) -> Any:
    """Registry names that used to live here; import them from ``llmscript_magic.providers``."""
    if name in ("providers", "register", "resolve_model", "ENTRY_POINT_GROUP"):
        from . import registry

        return getattr(registry, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
