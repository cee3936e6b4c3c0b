"""Providers: the public contract a plugin implements, and the registry that finds them.

A plugin needs only what this package exports: subclass ``Provider``, implement
``stream(request, reply)``, raise the errors below with one line that says how to
fix the problem, and register the class under the ``llmscript_magic.providers``
entry point or with ``register()`` (see README, "Write a provider").
"""

from .._errors import (
    AuthenticationError,
    ConfigurationError,
    MissingKeyError,
    OverloadedError,
    ProviderConnectionError,
    ProviderError,
    ProviderTimeoutError,
    RateLimitError,
    UnknownModelError,
)
from .base import Message, ModelGroup, Provider, Reply, Request, Usage, one_line
from .registry import (
    ENTRY_POINT_GROUP,
    LoadFailure,
    load_failures,
    providers,
    register,
    rescan,
    resolve_model,
    unregister,
)

__all__ = [
    "ENTRY_POINT_GROUP",
    "AuthenticationError",
    "ConfigurationError",
    "LoadFailure",
    "Message",
    "MissingKeyError",
    "ModelGroup",
    "OverloadedError",
    "Provider",
    "ProviderConnectionError",
    "ProviderError",
    "ProviderTimeoutError",
    "RateLimitError",
    "Reply",
    "Request",
    "UnknownModelError",
    "Usage",
    "load_failures",
    "one_line",
    "providers",
    "register",
    "rescan",
    "resolve_model",
    "unregister",
]
