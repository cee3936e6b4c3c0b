"""llmscript-magic: ``%%generate`` turns a plain-words spec into validated Python.

``%load_ext llmscript_magic`` stays light: the SDKs, docker and ipywidgets are
imported only when a generation or run needs them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ._errors import (
    AuthenticationError,
    CancelledError,
    ConfigurationError,
    ExtractionError,
    ImageNotFoundError,
    LLMScriptError,
    MissingKeyError,
    NoCodeError,
    OverloadedError,
    ProviderConnectionError,
    ProviderError,
    ProviderTimeoutError,
    RateLimitError,
    ReplayError,
    SandboxError,
    SandboxUnavailableError,
    TruncatedReplyError,
    UnknownModelError,
)

if TYPE_CHECKING:
    from IPython.core.interactiveshell import InteractiveShell

    from ._extract import Extraction, extract_code
    from ._generate import Generation, Options, generate
    from ._provider import Provider, register
    from ._sandbox import Limits, RunResult, run
    from ._spec import Spec, parse_spec
    from ._validate import Check, ValidationReport, validate

__version__ = "0.1.0"

_LAZY = {
    "generate": "._generate", "Generation": "._generate", "Options": "._generate",
    "run": "._sandbox", "Limits": "._sandbox", "RunResult": "._sandbox",
    "Provider": "._provider", "register": "._provider",
    "Spec": "._spec", "parse_spec": "._spec",
    "extract_code": "._extract", "Extraction": "._extract",
    "validate": "._validate", "ValidationReport": "._validate", "Check": "._validate",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name], __name__), name)
    raise AttributeError(f"module 'llmscript_magic' has no attribute {name!r}")


def load_ipython_extension(ipython: InteractiveShell) -> None:
    from ._magics import GenerateMagics, LLMScriptMagics

    ipython.register_magics(GenerateMagics, LLMScriptMagics)


__all__ = [
    "AuthenticationError",
    "CancelledError",
    "Check",
    "ConfigurationError",
    "Extraction",
    "ExtractionError",
    "Generation",
    "ImageNotFoundError",
    "LLMScriptError",
    "Limits",
    "MissingKeyError",
    "NoCodeError",
    "Options",
    "OverloadedError",
    "Provider",
    "ProviderConnectionError",
    "ProviderError",
    "ProviderTimeoutError",
    "RateLimitError",
    "ReplayError",
    "RunResult",
    "SandboxError",
    "SandboxUnavailableError",
    "Spec",
    "TruncatedReplyError",
    "UnknownModelError",
    "ValidationReport",
    "extract_code",
    "generate",
    "load_ipython_extension",
    "parse_spec",
    "register",
    "run",
    "validate",
]
