"""Prepare a kernel's first generation in the background, so it is as fast as the next.

Without this, the first ``%%generate --run`` of a kernel pays, while the user waits,
for importing the SDK and docker, building the provider's client, the sandbox image's
module list and the warm pool (about 2 s, against a quarter of a second for the next
one). ``start`` does that on a daemon thread right after ``%load_ext``, with the
settings the kernel has then (traits, no flags): ``%load_ext`` itself stays as light as
before, the user is never blocked, and nothing here fails loudly: whatever goes wrong
is met again by the real generation, which reports it as it always did.

Only in a kernel (terminal IPython and in-process test shells are left alone), and not
when ``LLMSCRIPT_WARMUP=0``.
"""

from __future__ import annotations

import contextlib
import os
import threading
from typing import Any

#: set to 0 to turn the background preparation off
ENV = "LLMSCRIPT_WARMUP"

#: seconds to wait first, so the ``%load_ext`` cell finishes before this competes for the GIL
DELAY = 1.0

#: the SDK client a built-in provider builds in ``stream()``: module, class, base-URL variable
_SDKS = {"anthropic": ("anthropic", "Anthropic", "ANTHROPIC_BASE_URL"),
         "openai": ("openai", "OpenAI", "OPENAI_BASE_URL")}


def start(shell: Any) -> threading.Thread | None:
    """Start preparing in the background (a daemon thread); None when not in a kernel."""
    if getattr(shell, "kernel", None) is None or os.environ.get(ENV, "1").strip() == "0":
        return None
    thread = threading.Timer(DELAY, _quietly, args=(shell,))
    thread.name, thread.daemon = "llmscript-warmup", True
    thread.start()
    return thread


def _quietly(shell: Any) -> None:
    with contextlib.suppress(Exception):  # the real generation reports the same problem
        warm(shell)


def warm(shell: Any) -> None:
    """The slow first-use steps, in the order a generation needs them."""
    import argparse

    from .._pipeline import extract, generate, prompt, validate  # noqa: F401 - imports
    from .config import CellOptions, merge
    from .policy import apply_policy

    magics = shell.magics_manager.registry.get("GenerateMagics")
    if magics is None:
        return
    opts = apply_policy(merge(CellOptions, magics, argparse.Namespace()))
    steps = [*([_view] if opts.widgets else []), _client, generate.warm_sandbox]
    for step in steps:  # one failing (no key, no Docker) does not stop the others
        with contextlib.suppress(Exception):
            step(opts)


def _view(opts: Any) -> None:
    """ipywidgets and the code highlighter, for the first cell's widget."""
    from .._ui import widget  # noqa: F401 - the import is the point
    from .._ui.widget_html import code_html

    code_html("x = 1")  # builds the highlighter's lexer (about 0.2 s the first time)


def _client(opts: Any) -> None:
    """The provider's shared SDK client, built as its ``stream()`` would build it."""
    import importlib

    from ..providers import resolve_model
    from ..providers.clients import shared_client
    from ..providers.registry import provider_instance

    cls, _ = resolve_model(opts.model)
    provider = provider_instance(cls, opts.api_key, timeout=opts.request_timeout,
                                 max_retries=opts.max_retries, base_url=opts.base_url)
    sdk = _SDKS.get(provider.name)
    if sdk is None:
        return
    module, name, base_url_env = sdk
    make = getattr(importlib.import_module(module), name)
    shared_client(provider.name, make, provider.client_options(provider.api_key()),
                  base_url_env)
