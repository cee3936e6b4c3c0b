"""The provider contract, and the registry that finds providers by entry point.

A provider is tiny on purpose (after simonw/llm): a name, the environment
variable holding its key, its models, and one generator method that yields
text chunks and fills in usage and stop reason on the ``Reply`` it is given.
Built-in providers are registered through the same entry-point group
(``llmscript_magic.providers``) as third-party ones.
"""

from __future__ import annotations

import os
import re
from abc import ABC, abstractmethod
from collections.abc import Generator
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

from .._errors import MissingKeyError, UnknownModelError

ENTRY_POINT_GROUP = "llmscript_magic.providers"


@dataclass(frozen=True)
class Message:
    role: Literal["user", "assistant"]
    content: str


@dataclass(frozen=True)
class Request:
    """Everything a provider needs for one completion; hashable for the cache."""

    model: str
    system: str
    messages: tuple[Message, ...]
    max_tokens: int = 4096
    temperature: float | None = None


@dataclass
class Usage:
    input_tokens: int = 0
    output_tokens: int = 0
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

    @property
    def truncated(self) -> bool:
        return self.stop_reason in ("max_tokens", "length")


class Provider(ABC):
    """One model vendor or API dialect."""

    name: ClassVar[str]
    #: environment variable holding the API key; None when no key is needed
    key_env_var: ClassVar[str | None] = None
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

    @abstractmethod
    def stream(self, request: Request, reply: Reply) -> Generator[str, None, None]:
        """Yield text chunks as they arrive; set ``reply.usage`` and ``reply.stop_reason``."""


_registered: dict[str, type[Provider]] = {}


def register(cls: type[Provider]) -> type[Provider]:
    """Register a provider class by hand (tests, notebooks); entry points need no call."""
    _registered[cls.name] = cls
    return cls


def providers() -> dict[str, type[Provider]]:
    """All providers: entry points first, then ones registered by hand."""
    from importlib.metadata import entry_points

    found: dict[str, type[Provider]] = {}
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        try:
            found[ep.name] = ep.load()
        except ImportError:  # optional dependency (e.g. openai) not installed
            continue
    found.update(_registered)
    return found


def resolve_model(name: str, default_provider: str = "anthropic") -> tuple[type[Provider], str]:
    """``provider:model``, ``provider:`` or a bare model name -> (provider class, model id)."""
    known = providers()
    if ":" in name:
        pname, _, model = name.partition(":")
        if pname not in known:
            raise UnknownModelError(
                f"Unknown provider {pname!r} in --model {name!r}; known providers: "
                f"{', '.join(sorted(known))} (see %llmscript models)."
            )
        cls = known[pname]
        return cls, model or cls.default_model
    if not name:
        default = known.get(default_provider)
        if default is None:
            raise UnknownModelError(f"Default provider {default_provider!r} is not installed.")
        return default, default.default_model
    for cls in known.values():
        if name in cls.models or any(name.startswith(p) for p in cls.model_prefixes):
            return cls, name
    raise UnknownModelError(
        f"Unknown model {name!r}: write it as provider:model (e.g. anthropic:{name}) or pick one "
        f"from %llmscript models."
    )


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
