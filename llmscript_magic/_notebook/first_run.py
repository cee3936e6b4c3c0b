"""What ``%load_ext`` says when a first ``%%generate`` could not work: one line, with the fix.

Checked cheaply, with no SDK or docker import (``%load_ext`` stays light): the
provider's key in a trait or the environment, and, when code runs in Docker, that the
engine's socket exists (``DOCKER_HOST``'s ``unix://`` path or the default one). A
remote engine (``tcp://``, ``ssh://``) is not contacted here: the first ``--run``
checks it before asking the model. Nothing is said when all is well, or when a
replay notebook is named (replay needs no key).
"""

from __future__ import annotations

import os
from typing import Any


def missing_key(magics: Any) -> str | None:
    """The no-key part, or None when the default model's provider has its key."""
    from ..providers import resolve_model

    if getattr(magics, "api_key", None) or os.environ.get("LLMSCRIPT_REPLAY"):
        return None
    try:
        cls, _model = resolve_model(getattr(magics, "model", "") or "")
    except Exception:  # an unknown model: the first %%generate says so itself
        return None
    env = getattr(cls, "key_env_var", "") or ""
    if not env or os.environ.get(env):
        return None
    return (f"no API key for {cls.name}: set {env} in the kernel's environment (or %config "
            "GenerateMagics.api_key), or replay a saved notebook with --replay")


def missing_engine(magics: Any) -> str | None:
    """The no-engine part, or None when the sandbox is not Docker or its socket exists."""
    if (getattr(magics, "sandbox", "docker") or "docker") != "docker":
        return None
    # as _sandbox.engine.missing_socket, without importing the sandbox package (~0.1 s)
    host = os.environ.get("DOCKER_HOST", "")
    if host and not host.startswith("unix://"):
        return None  # remote: the first --run checks it, before the request
    path = host.removeprefix("unix://") or "/var/run/docker.sock"
    if os.path.exists(path):
        return None
    from .._sandbox.engine import unreachable_fix

    return f"no Docker engine for --run (nothing at {path}): {unreachable_fix()}"


def first_run_note(shell: Any) -> str | None:
    """The one line ``%load_ext`` prints, or None."""
    magics = shell.magics_manager.registry.get("GenerateMagics")
    if magics is None:
        return None
    parts = [p for p in (missing_key(magics), missing_engine(magics)) if p]
    return "llmscript-magic: " + "; ".join(parts) + "." if parts else None


__all__ = ["first_run_note"]
