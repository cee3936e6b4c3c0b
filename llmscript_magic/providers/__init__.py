"""The provider contract a plugin implements, and the registry that finds providers.

A plugin needs only what this module exports: subclass ``Provider``, implement
``stream(request, reply)``, and register it under the ``llmscript_magic.providers``
entry point (see README, "Write a provider").
"""

from .base import (
           Message,
           Provider,
           Reply,
           Request,
           Usage,
           one_line,
           providers,
           register,
           resolve_model,
)

__all__ = ["Message", "Provider", "Reply", "Request", "Usage", "one_line", "providers", "register",
           "resolve_model"]
