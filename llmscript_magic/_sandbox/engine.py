"""The Docker engine connection, shared by the backend and the image tools.

Kept apart so ``image`` and ``docker`` do not import each other.
"""

from __future__ import annotations

import os
from typing import Any

from .._errors import SandboxUnavailableError


def connect(timeout: int = 60) -> Any:
    """A client for the engine DOCKER_HOST names (or the local socket)."""
    import docker

    try:
        client = docker.from_env(timeout=timeout)
        client.ping()
    except Exception as exc:
        reason = f"{os.environ.get('DOCKER_HOST') or 'unix:///var/run/docker.sock'}: " + _why(exc)
        raise SandboxUnavailableError(
            f"Docker engine not reachable ({reason}): start it with "
            "`bash scripts/start-docker` or use --sandbox local"
        ) from None
    return client


def _why(exc: Exception) -> str:
    """A few words from a long requests/urllib3 error chain."""
    explanation = getattr(exc, "explanation", None)
    if explanation:
        return str(explanation).splitlines()[0][:160]
    text = str(exc)
    for words in ("Connection refused", "No such file or directory", "Permission denied",
                  "timed out", "Name or service not known", "Connection reset"):
        if words.lower() in text.lower():
            return words
    return (text.splitlines() or [type(exc).__name__])[0][:120]
