"""Run generated code where it cannot hurt the host: the sandbox contract.

Backends: ``docker`` (a hardened container per kernel, each run a fresh process
forked in it under a uid of its own; the default; ``isolation`` picks gVisor or
plain containers), ``local`` (a
bubblewrap sandbox on this machine: weaker, clearly labelled) and ``course``
(a JupyterHub course's service runs it in the class's shared engine). Callers
say which with a ``SandboxSpec``; ``SHARED`` keeps one sandbox per spec.
Importing this module must stay cheap: ``docker`` is imported only on use.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from .._errors import ConfigurationError
from .base import Limits, OutputFile, RunResult, Sandbox
from .image import DEFAULT_IMAGE
from .spec import SHARED, Sandboxes, SandboxSpec

__all__ = [
    "DEFAULT_IMAGE",
    "SHARED",
    "Limits",
    "OutputFile",
    "RunResult",
    "Sandbox",
    "SandboxSpec",
    "Sandboxes",
    "available_modules",
    "get_sandbox",
    "run",
    "shutdown",
]

ISOLATIONS = ("auto", "gvisor", "container")


def get_sandbox(kind: str = "docker", **options: Any) -> Sandbox:
    """A sandbox by name: "docker" (options: image, pool_size, isolation, labels), "local",
    or "course" (the course service's shared engine, ``course_client.py``).

    isolation: "auto" (gVisor where the engine has runsc, plain containers
    otherwise), "gvisor" (an error where it is missing) or "container".
    """
    isolation = options.get("isolation", "auto")
    if isolation not in ISOLATIONS:
        raise ConfigurationError(f"Unknown isolation {isolation!r}: use auto, gvisor or container")
    if kind == "docker":
        from .docker import DockerSandbox

        return DockerSandbox(**options)
    if kind == "local":
        from .local import LocalSandbox

        if options.pop("isolation", "auto") != "auto":
            raise ConfigurationError(
                "--isolation applies to the docker sandbox only: drop it or use --sandbox docker")
        return LocalSandbox(**options)
    if kind == "course":
        from .course_client import CourseSandbox

        return CourseSandbox(**options)
    raise ConfigurationError(f"Unknown sandbox {kind!r}: use 'docker', 'local' or 'course'")


def run(code: str, *, sandbox: str = "docker", limits: Limits | None = None,
        files: Mapping[str, bytes | os.PathLike[str]] | None = None, image: str | None = None,
        isolation: str = "auto") -> RunResult:
    """Convenience: one run on the process's sandbox for these options (``SHARED``,
    so the warm pool is reused).

    A file given as a path (``Path``) is bound read-only, not copied (``mounts.py``).
    """
    if image is not None and sandbox != "docker":
        raise ConfigurationError("An image only applies to the docker sandbox: drop --image")
    spec = SandboxSpec(sandbox, isolation, image or "")
    return SHARED.get(spec).run(code, files=files, limits=limits)


def available_modules(image: str | None = None) -> frozenset[str]:
    """Top-level modules the sandbox image can import (cached per image id)."""
    from .docker import DockerSandbox
    from .docker import available_modules as _available

    shared = SHARED.get(SandboxSpec(image=image or ""))
    assert isinstance(shared, DockerSandbox)
    return _available(image or DEFAULT_IMAGE, shared)


def shutdown() -> None:
    """Remove every pooled container now (also runs at interpreter exit)."""
    import sys

    live = sys.modules.get(__name__ + ".sessions")
    if live is not None:
        live.close_all()
    pool = sys.modules.get(__name__ + ".pool")
    if pool is not None:
        pool.shutdown_all()
    SHARED.close()
