"""Which sandbox a run uses, as a value, and the one sandbox a process keeps for each.

Callers (a generation's options, the course service, ``run()``) say *which* sandbox
with a ``SandboxSpec`` instead of a name and loose keywords; ``SHARED`` builds it
once per spec and engine and keeps it, so the engine client, the image lookup and the
warm pool are paid for once, not per attempt, and no client is leaked.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass
from typing import Any

from .base import Sandbox


@dataclass(frozen=True)
class SandboxSpec:
    """Which sandbox: where it runs, how isolated, from which image, labelled how.

    kind: "docker", "local" (bubblewrap) or "course" (the course service's engine).
    isolation (docker): "auto", "gvisor" or "container". image (docker): '' for the
    built-in one. labels (docker): extra container labels, part of the pool's key (the
    course service's ``llmscript.student``, so a container serves one student).
    """

    kind: str = "docker"
    isolation: str = "auto"
    image: str = ""
    labels: tuple[tuple[str, str], ...] = ()

    def build(self) -> Sandbox:
        """A new sandbox for this spec; ``ConfigurationError`` (one line) for a bad one."""
        from . import get_sandbox

        options: dict[str, Any] = {"isolation": self.isolation}
        if self.image:
            options["image"] = self.image
        if self.labels:
            options["labels"] = self.labels
        return get_sandbox(self.kind, **options)


class Sandboxes:
    """The sandboxes built from specs: one per spec and engine, kept until ``close``."""

    def __init__(self) -> None:
        self._held: dict[tuple[SandboxSpec, str | None], Sandbox] = {}
        self._lock = threading.Lock()

    def get(self, spec: SandboxSpec) -> Sandbox:
        """The sandbox for ``spec`` (built on first use) on the engine DOCKER_HOST names."""
        key = (spec, os.environ.get("DOCKER_HOST"))
        with self._lock:
            sandbox = self._held.get(key)
            if sandbox is None:
                sandbox = self._held[key] = spec.build()
            return sandbox

    def close(self) -> None:
        """Close every sandbox held (their warm containers are removed)."""
        with self._lock:
            held = list(self._held.values())
            self._held.clear()
        for sandbox in held:
            sandbox.close()


#: The process's sandboxes: a kernel is one process, and its pools and the engine's
#: budget are per process too, so every session of the kernel shares them.
SHARED = Sandboxes()
