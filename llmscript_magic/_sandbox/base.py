"""The sandbox contract: limits, results, and the interface every backend implements.

Backends live beside this file (``docker``, ``local``) and import only this
module for the contract, so the package's ``__init__`` can pick a backend
without an import cycle.
"""

from __future__ import annotations

import abc
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields
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


@dataclass(frozen=True)
class Value:
    """A variable crossing the sandbox: its name and its encoded bytes, never a pickle.

    ``format`` says how ``data`` decodes (see ``harness/codec.py``): ``frame``,
    ``parquet``, ``npy``, ``json``, ``json-tuple``, ``json-set``, ``json-frozenset``
    or ``bytes``.
    """

    name: str
    format: str
    data: bytes = field(repr=False)


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
    # what the harness reported after the script (it computes these, not the script's stdout)
    values: list[Value] = field(default_factory=list, repr=False)  # the requested outputs
    missing: dict[str, str] = field(default_factory=dict)  # output name -> why it did not come
    # the check's (verdict, why), computed apart from the script; verdict None: it could not
    # be (it calls the script's own functions); the whole None: it did not run
    check: tuple[bool | None, str] | None = None
    isolation: str = ""  # what walled the run in: "gvisor", "container" or "bubblewrap"
    # limit name -> "run" (held for this run alone), "container" (shared with the same
    # kernel's earlier and later runs, one at a time, in one sandbox container) or, for a
    # --session run, "session" (held by the session's process as a whole, across its cells)
    limit_scope: dict[str, str] = field(default_factory=dict)
    # --session: one line on the session this run used (kept, fresh, or ended and why)
    session: str = ""

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    def summary(self) -> dict[str, Any]:
        """Small, JSON-ready view for cell metadata and logs (no file data)."""
        skip = ("stdout", "stderr", "files", "figures", "values")
        out = {f.name: getattr(self, f.name) for f in fields(self) if f.name not in skip}
        out["check"] = list(self.check) if self.check is not None else None
        out["missing"] = dict(self.missing)
        out["values"] = [{"name": v.name, "format": v.format, "size": len(v.data)}
                         for v in self.values]
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
    def run(self, code: str, *, files: Mapping[str, bytes | os.PathLike[str]] | None = None,
            limits: Limits | None = None, inputs: Sequence[Value] = (),
            outputs: Sequence[str] = (), check: str | None = None,
            session: bool = False) -> RunResult:
        """Run code with files placed in its work dir; never raises for the code's faults.

        ``inputs`` are bound as variables in the script's globals before it
        starts; after it ends without failing, the ``outputs`` variables come
        back in ``RunResult.values`` (or ``missing``, with why) and ``check``
        is evaluated over the values it names, in a process apart from the
        script's (``RunResult.check``), so nothing the script does can pass it.
        ``session``: run in this kernel's session process, whose globals and
        files stay for the next ``session`` run (``sessions.py``); a backend
        without sessions refuses it (``ConfigurationError``).
        """

    def warm(self, limits: Limits | None = None) -> None:  # noqa: B027  (optional hook)
        """Start (in the background) what a run with limits needs, so it does not wait."""

    def close(self) -> None:  # noqa: B027  (optional hook, not abstract)
        """Release warm resources (pooled containers); safe to call twice."""
