"""The sandbox contract: limits, results, and the interface every backend implements.

Backends live beside this file (``docker``, ``local``) and import only this
module for the contract, so the package's ``__init__`` can pick a backend
without an import cycle.
"""

from __future__ import annotations

import abc
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields
from typing import Any, Literal

from .._errors import ConfigurationError

Status = Literal["ok", "error", "timeout", "memory", "output_capped"]
MiB = 2**20


@dataclass(frozen=True)
class Limits:
    """Resource caps for one run; the same numbers mean the same on every backend."""

    timeout: float = 30.0
    memory_mb: int = 256
    cpus: float = 1.0
    pids: int = 128
    output_bytes: int = 4 * MiB  # stdout + stderr together
    file_bytes: int = 32 * MiB  # largest single file the script may write
    disk_mb: int = 64  # size of the work dir (and of /tmp)

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if not isinstance(value, (int, float)) or isinstance(value, bool) or value <= 0:
                raise ConfigurationError(
                    f"Sandbox limit {f.name}={value!r} is invalid: use a positive number"
                )
        if self.memory_mb < 32:
            raise ConfigurationError(
                f"Sandbox limit memory_mb={self.memory_mb} is too small: use at least 32"
            )

    def container_key(self) -> tuple[Any, ...]:
        """The fields baked into a container at creation (the pool is keyed by these)."""
        return (self.memory_mb, self.cpus, self.pids, self.file_bytes, self.disk_mb)


@dataclass
class OutputFile:
    """A file the script wrote (or changed) in its work dir."""

    name: str
    size: int
    data: bytes = field(repr=False)


@dataclass
class RunResult:
    """What a run produced, in the same shape on every backend."""

    status: Status
    exit_code: int | None
    stdout: str
    stderr: str
    duration: float
    truncated: bool = False
    files: list[OutputFile] = field(default_factory=list)
    figures: list[bytes] = field(default_factory=list, repr=False)
    backend: str = "docker"
    image: str | None = None
    reason: str = ""  # one line for the user when status is not "ok"
    warning: str | None = None  # set by weaker backends

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    def summary(self) -> dict[str, Any]:
        """Small, JSON-ready view for cell metadata and logs (no file data)."""
        out = {k: v for k, v in asdict(self).items() if k not in ("stdout", "stderr", "files",
                                                                   "figures")}
        out["duration"] = round(self.duration, 3)
        out["stdout_chars"] = len(self.stdout)
        out["stderr_chars"] = len(self.stderr)
        out["files"] = [{"name": f.name, "size": f.size} for f in self.files]
        out["figures"] = len(self.figures)
        return out


class Sandbox(abc.ABC):
    """Runs one script per call, isolated from the host and from other runs."""

    backend: str = ""
    warning: str | None = None

    @abc.abstractmethod
    def run(self, code: str, *, files: Mapping[str, bytes] | None = None,
            limits: Limits | None = None) -> RunResult:
        """Run code with files placed in its work dir; never raises for the code's faults."""

    def close(self) -> None:  # noqa: B027  (optional hook, not abstract)
        """Release warm resources (pooled containers); safe to call twice."""
