"""One exception tree for the whole pipeline.

Every message is a single line that says what went wrong and how to fix it;
the magic shows ``str(error)`` and nothing else, so no traceback wall reaches
the user. Errors also subclass the built-in they resemble (``TimeoutError``,
``ConnectionError``, ``ValueError``) so generic handlers keep working.
"""

from __future__ import annotations


class LLMScriptError(Exception):
    """Base class: ``str(err)`` is a one-line, user-facing message."""


# -- configuration -----------------------------------------------------------
class ConfigurationError(LLMScriptError, ValueError):
    """A bad option, model name or setting; fixable by the user."""


class UnknownModelError(ConfigurationError):
    """The model or provider name is not known."""


class MissingKeyError(ConfigurationError):
    """The provider needs an API key and none is set."""


# -- provider ----------------------------------------------------------------
class ProviderError(LLMScriptError):
    """The model provider failed to produce a reply."""


class AuthenticationError(ProviderError):
    """The API key was rejected (HTTP 401/403)."""


class RateLimitError(ProviderError):
    """Too many requests (HTTP 429), still failing after retries."""


class OverloadedError(ProviderError):
    """The provider is overloaded (HTTP 529/503), still failing after retries."""


class ProviderTimeoutError(ProviderError, TimeoutError):
    """The request took longer than the configured timeout."""


class ProviderConnectionError(ProviderError, ConnectionError):
    """The provider could not be reached at all."""


class CancelledError(LLMScriptError):
    """The user stopped the generation."""


# -- reply -------------------------------------------------------------------
class ExtractionError(LLMScriptError):
    """No runnable code could be taken from the reply."""


class NoCodeError(ExtractionError):
    """The reply holds no code (often a refusal or a question back)."""


class TruncatedReplyError(ExtractionError):
    """The reply stopped at max_tokens; its code is incomplete and is never run."""


# -- sandbox -----------------------------------------------------------------
class SandboxError(LLMScriptError):
    """The sandbox could not run the code (not: the code failed)."""


class SandboxUnavailableError(SandboxError):
    """The Docker engine is not reachable."""


class ImageNotFoundError(SandboxError):
    """The sandbox image is not built on this engine."""


# -- reproducibility ---------------------------------------------------------
class ReplayError(LLMScriptError):
    """Replay mode found no recorded generation matching the cell."""


# -- budgets and courses (issue 27) ------------------------------------------------
class BudgetError(LLMScriptError):
    """A request was refused before it was sent: it could overrun a budget."""
