"""What an untrusted notebook may choose when ``llmscript run`` executes it (``--trust`` lifts it).

The runner (without ``--trust``) starts the kernel with ``LLMSCRIPT_RUN_POLICY``: the
sandbox it requires, the weakest isolation it accepts and the folders that ``--input``
and ``--replay`` may read and ``--files-to``, the audit log and the cache may write. The
notebook session checks every cell's merged options (flags, ``%config`` traits, the
environment) against it before anything is read or run.

The policy is read from the environment the kernel process STARTED with
(``/proc/self/environ``), not from ``os.environ``: ``%env``, ``os.environ.pop`` or
``%config`` in a notebook cell cannot lift it. It binds what the notebook's flags and
settings choose for generated code; the notebook's own code cells run in the kernel
on this machine, as papermill runs them (see the README).
"""

from __future__ import annotations

import json
import os
import sys
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, TypeVar

from .._errors import ConfigurationError
from .options import Options

ENV = "LLMSCRIPT_RUN_POLICY"
OptionsT = TypeVar("OptionsT", bound=Options)
_FIX = "run it with `llmscript run --trust` only if you trust this notebook"

#: ENV as this module first saw it (``llmscript run`` imports it before any cell runs): the
#: fallback where /proc is missing; a reload keeps the first value.
_AT_IMPORT: str | None = globals().get("_AT_IMPORT") or os.environ.get(ENV)


@dataclass(frozen=True)
class Policy:
    sandbox: str = "docker"
    isolation: str = "container"  # the weakest accepted: "gvisor" refuses --isolation container
    image: str = ""  # the only image accepted ('' = the built-in one)
    roots: tuple[str, ...] = ()  # folders --input/--replay may read and --files-to write
    #: the runner's own settings, allowed although outside ``roots`` ('' = the default)
    audit_log: str = ""
    cache_dir: str = ""
    replay: str = ""
    #: ceilings on what one run of generated code may take
    max_memory_mb: int = 512
    max_timeout: float = 120.0
    max_cpus: float = 2.0
    fix: str = ""  # how this kind of run lifts the policy ('' = llmscript run --trust)

    def to_env(self) -> str:
        return json.dumps({"sandbox": self.sandbox, "isolation": self.isolation,
                           "image": self.image, "roots": list(self.roots),
                           "audit_log": self.audit_log, "cache_dir": self.cache_dir,
                           "replay": self.replay, "max_memory_mb": self.max_memory_mb,
                           "max_timeout": self.max_timeout, "max_cpus": self.max_cpus})

    @classmethod
    def from_env(cls, text: str) -> Policy:
        data: dict[str, Any] = json.loads(text)
        return cls(sandbox=str(data.get("sandbox", "docker")),
                   isolation=str(data.get("isolation", "container")),
                   image=str(data.get("image", "")),
                   roots=tuple(str(r) for r in data.get("roots", ())),
                   audit_log=str(data.get("audit_log", "")),
                   cache_dir=str(data.get("cache_dir", "")),
                   replay=str(data.get("replay", "")),
                   max_memory_mb=int(data.get("max_memory_mb", cls.max_memory_mb)),
                   max_timeout=float(data.get("max_timeout", cls.max_timeout)),
                   max_cpus=float(data.get("max_cpus", cls.max_cpus)))


def _initial_environment_value() -> str | None:
    """ENV as the process was started with it (Linux), else as first seen by this module."""
    try:
        raw = Path("/proc/self/environ").read_bytes()
    except OSError:
        return _AT_IMPORT
    prefix = ENV.encode() + b"="
    for item in raw.split(b"\0"):
        if item.startswith(prefix):
            return item[len(prefix):].decode("utf-8", "replace")
    return None


def current() -> Policy | None:
    """The runner's policy for this process, or None (a trusted, interactive kernel).

    Without ``llmscript run``'s policy, a kernel that runs a notebook nobody vouched for
    (papermill, nbconvert, a front end with an untrusted notebook: ``untrusted.py``)
    gets the same policy, with its own way to lift it.
    """
    text = _initial_environment_value()
    if not text:
        return implicit()
    try:
        return Policy.from_env(text)
    except (ValueError, TypeError, AttributeError):
        # a policy we cannot read must not silently mean "no policy"
        return Policy(roots=(os.getcwd(),))


def implicit() -> Policy | None:
    """The untrusted-notebook policy of a kernel not started by ``llmscript run``."""
    from .untrusted import LIFT, engine_isolation, implicit_kind, initial_environ, runner_roots

    kind = implicit_kind()
    if kind is None:
        return None
    env = initial_environ() or {}
    return Policy(isolation=engine_isolation(), roots=runner_roots(env, kind),
                  audit_log=env.get("LLMSCRIPT_AUDIT_LOG", ""),
                  cache_dir=env.get("LLMSCRIPT_CACHE_DIR", ""),
                  replay=env.get("LLMSCRIPT_REPLAY", ""), fix=LIFT[kind])


def _inside(path: Path, roots: tuple[str, ...]) -> bool:
    resolved = path.expanduser().resolve()  # symlinks and ../ resolved before the check
    return any(resolved == Path(r).resolve() or resolved.is_relative_to(Path(r).resolve())
               for r in roots)


def _quarantine_breach(folder: Path, roots: tuple[str, ...]) -> bool:
    """Files saved straight into the run's folder (or one Python imports from)."""
    resolved = folder.expanduser().resolve()
    on_path = {Path(p or os.curdir).resolve() for p in sys.path}
    return resolved in on_path or any(resolved == Path(r).resolve() for r in roots)


def enforce(opts: OptionsT, paths: tuple[str, ...] | list[str] = (),
            policy: Policy | None = None) -> OptionsT:
    """``opts`` within the policy (an ``auto`` isolation raised to the required one).

    ``paths`` are the ``--input`` items that name files (not notebook variables).
    Raises ConfigurationError, one line naming the flag, for anything weaker.
    """
    policy = policy or current()
    if policy is None:
        return opts
    fix = policy.fix or _FIX
    if opts.run and opts.sandbox != policy.sandbox:
        raise ConfigurationError(f"--sandbox {opts.sandbox} is weaker than the {policy.sandbox} "
                                 f"sandbox this run requires: {fix}.")
    isolation = opts.isolation
    if opts.sandbox == "docker" and policy.isolation == "gvisor":
        if isolation == "container":
            raise ConfigurationError("--isolation container is weaker than the gVisor isolation "
                                     f"this run requires: {fix}.")
        isolation = "gvisor"
    if opts.image and opts.image != policy.image:
        raise ConfigurationError(f"--image {opts.image} is not the sandbox image this run "
                                 f"uses: {fix}.")
    for flag, value, ceiling, unit in (("--memory", opts.memory_mb, policy.max_memory_mb, "m"),
                                       ("--timeout", opts.timeout, policy.max_timeout, "s"),
                                       ("--cpus", opts.cpus, policy.max_cpus, "")):
        if value > ceiling:
            raise ConfigurationError(f"{flag} {value:g}{unit} is above the {ceiling:g}{unit} "
                                     f"an untrusted notebook may ask for: {fix}.")
    named = [("--input", p) for p in paths]
    if opts.replay and opts.replay != policy.replay:
        named.append(("--replay", opts.replay))
    if files_to := getattr(opts, "files_to", ""):  # a notebook option (saved files' folder)
        named.append(("--files-to", files_to))
        if _quarantine_breach(Path(files_to), policy.roots):
            raise ConfigurationError(f"--files-to {files_to!r} is the notebook's own folder: "
                                     "files of an untrusted notebook stay in a folder of "
                                     f"their own (the default, llmscript-files/); {fix}.")
    # files the magic itself writes: a notebook must not aim them at e.g. ~/.bashrc
    if opts.audit_log and opts.audit_log != policy.audit_log:
        named.append(("GenerateMagics.audit_log", opts.audit_log))
    if opts.cache_dir and opts.cache_dir != policy.cache_dir:
        named.append(("GenerateMagics.cache_dir", opts.cache_dir))
    for flag, item in named:
        if not _inside(Path(item), policy.roots):
            raise ConfigurationError(f"{flag} {item!r} is outside the notebook's folder: use "
                                     f"a path next to the notebook, or {fix}.")
    return replace(opts, isolation=isolation)


__all__ = ["ENV", "Policy", "current", "enforce"]
