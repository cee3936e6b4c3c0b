"""Run generated code where it cannot hurt the host: the sandbox contract.

Backends: ``docker`` (hardened single-use containers from a warm pool; the
default; ``isolation`` picks gVisor or plain containers), ``local`` (a
bubblewrap sandbox on this machine: weaker, clearly labelled) and ``course``
(a JupyterHub course's service runs it in the class's shared engine).
Importing this module must stay cheap: ``docker`` is imported only on use.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Mapping
from typing import Any

from .._errors import ConfigurationError
from .base import Limits, OutputFile, RunResult, Sandbox
from .image import DEFAULT_IMAGE

__all__ = [
    "DEFAULT_IMAGE",
    "Limits",
    "OutputFile",
    "RunResult",
    "Sandbox",
    "available_modules",
    "get_sandbox",
    "run",
    "shared_sandbox",
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
    """Convenience: one run on a shared sandbox (so the warm pool is reused).

    A file given as a path (``Path``) is bound read-only, not copied (``mounts.py``).
    """
    options: dict[str, Any] = {"isolation": isolation}
    if image is not None:
        if sandbox != "docker":
            raise ConfigurationError("An image only applies to the docker sandbox: drop --image")
        options["image"] = image
    return shared_sandbox(sandbox, **options).run(code, files=files, limits=limits)


_shared: dict[tuple[Any, ...], Sandbox] = {}
_shared_lock = threading.Lock()


def shared_sandbox(kind: str = "docker", **options: Any) -> Sandbox:
    """One sandbox per (kind, options, engine) for the whole process.

    Every generation and ``run()`` reuses it, so the engine client, the image lookup
    and the warm pool are paid for once, not per attempt (and no client is leaked).
    """
    key = (kind, tuple(sorted(options.items())), os.environ.get("DOCKER_HOST"))
    with _shared_lock:
        sandbox = _shared.get(key)
        if sandbox is None:
            sandbox = _shared[key] = get_sandbox(kind, **options)
        return sandbox


def available_modules(image: str | None = None) -> frozenset[str]:
    """Top-level modules the sandbox image can import (cached per image id)."""
    from .docker import DockerSandbox
    from .docker import available_modules as _available

    shared = shared_sandbox("docker", isolation="auto", **({"image": image} if image else {}))
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
    with _shared_lock:
        sandboxes = list(_shared.values())
        _shared.clear()
    for sandbox in sandboxes:
        sandbox.close()
