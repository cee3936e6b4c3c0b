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

    from ._pipeline.extract import Extraction, extract_code
    from ._pipeline.generate import Generation, generate
    from ._pipeline.options import Options
    from ._pipeline.spec import Spec, parse_spec
    from ._pipeline.validate import Check, ValidationReport, validate
    from ._sandbox import Limits, RunResult, run
    from .providers import Provider, register

__version__ = "0.2.0"

_LAZY = {
    "._pipeline.generate": ("generate", "Generation"),
    "._pipeline.options": ("Options",),
    "._sandbox": ("run", "Limits", "RunResult"),
    ".providers": ("Provider", "register"),
    "._pipeline.spec": ("Spec", "parse_spec"),
    "._pipeline.extract": ("extract_code", "Extraction"),
    "._pipeline.validate": ("validate", "ValidationReport", "Check"),
}
_HOME = {name: module for module, names in _LAZY.items() for name in names}


def __getattr__(name: str) -> Any:
    if name in _HOME:
        import importlib

        return getattr(importlib.import_module(_HOME[name], __name__), name)
    raise AttributeError(f"module 'llmscript_magic' has no attribute {name!r}")


#: what this release supports; checked where a wrong version would otherwise fail obscurely
SUPPORTED_PYTHON = (3, 10)
SUPPORTED_IPYTHON = (8, 12)


def _too_old(version: str, minimum: tuple[int, int]) -> bool:
    import re

    found = tuple(int(n) for n in re.findall(r"\d+", version)[:2])
    return found < minimum


def load_ipython_extension(ipython: InteractiveShell) -> None:
    import sys

    import IPython

    if sys.version_info[:2] < SUPPORTED_PYTHON or _too_old(IPython.__version__,
                                                           SUPPORTED_IPYTHON):
        from IPython.core.error import UsageError

        raise UsageError(
            f"llmscript-magic {__version__} needs Python >= 3.10 and IPython >= 8.12 (found "
            f"Python {sys.version.split()[0]}, IPython {IPython.__version__}): upgrade them with "
            "`pip install -U ipython` in the kernel's environment.")
    from ._notebook.magics import GenerateMagics, LLMScriptMagics, blank_spec

    ipython.register_magics(GenerateMagics, LLMScriptMagics)
    if blank_spec not in ipython.input_transformers_cleanup:
        ipython.input_transformers_cleanup.append(blank_spec)
    from ._notebook.cells import install

    install(ipython)  # keeps each cell's error for {Err[n]}, --fix and %llmscript explain
    from ._notebook.first_run import first_run_note

    if note := first_run_note(ipython):  # no key, no engine: said now, in one line
        print(note)
    from ._notebook.warmup import start

    start(ipython)  # in a kernel: SDK, client, sandbox and pool prepared in the background


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
