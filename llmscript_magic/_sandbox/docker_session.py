"""``--session`` under Docker (gVisor or runc): a container of the session's own.

The session holds one hardened container (the same factory, host config and
runner as the kernel's pooled one) outside the pool, so stateless runs never
share its container, its memory cgroup or its work dir; its runner serves
``--session`` jobs only (``harness/session_runner.py``): the zygote forks the
session process once, under a uid of its own, and each cell runs in it.
Ending the session removes the container: every process, file and variable
of it goes at once. Large ``--input`` files are bound read-only as for a
stateless run (``mounts.py``); a bind is fixed when the container starts, so
a later cell that brings a large file the session lacks starts a fresh one,
and says so (``sessions.acquire``). Values reach it inline.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from . import sessions
from .base import Limits, RunResult, Value
from .engine import engine_id
from .mounts import check_others_read, links, split_files, target
from .outcome import harness_job, harness_source

if TYPE_CHECKING:
    from .docker import DockerSandbox

SESSION_HARNESS = ("session.py", "session_runner.py")


def limit_scope() -> dict[str, str]:
    """Which limits hold per cell and which for the session as a whole."""
    return {
        "timeout": "run", "output_bytes": "run", "file_bytes": "run",
        "memory_mb": "session",  # the session process's address space, all cells together
        "pids": "session",  # RLIMIT_NPROC of the session's uid: what its cells left running
        "cpus": "container", "disk_mb": "session",  # its work dir is kept between cells
    }


def run_in_session(sandbox: DockerSandbox, code: str,
                   files: Mapping[str, bytes | os.PathLike[str]] | None, limits: Limits,
                   inputs: Sequence[Value], outputs: Sequence[str],
                   check: str | None) -> RunResult:
    """One cell in this kernel's session for sandbox's engine, image and isolation."""
    from .docker import FAR, MAX_RUNS, _factory, _identity, sandbox_budget

    key = ("docker", engine_id(sandbox.client), sandbox.image_id, sandbox.runtime,
           sandbox.preimport, sandbox.labels)
    near = engine_id(sandbox.client).startswith(("unix://", "npipe://"))
    placed, mounted = split_files(files, limits.file_bytes, "" if near else FAR)
    check_others_read(mounted)
    binds = {target(rel): host for rel, host in mounted.items()}
    job = harness_job(code, inputs, outputs, check)
    job["session"] = True
    job["links"] = links(mounted)
    job["harness"].update({name: harness_source(name) for name in SESSION_HARNESS})

    budget = sandbox_budget(sandbox.client)

    def start() -> tuple[Any, Callable[[], None]]:
        lease = budget.take()  # a session's container counts too
        try:
            slot = sandbox._take_new(lambda: _factory(
                sandbox.client, sandbox.image, limits, sandbox.runtime,
                preimport=sandbox.preimport, labels=dict(sandbox.labels), binds=binds))
        except BaseException:
            lease.release()
            raise
        slot.lease = lease  # released once the engine has removed the container
        return slot, lambda: slot.discard(now=True)

    def cell(slot: Any) -> tuple[RunResult, bool]:
        started = time.monotonic()
        if not slot.alive():
            raise sessions.SessionLost
        try:
            sandbox._hand_over(slot, job, inputs, placed, limits)
            result, fit = sandbox._collect(slot, placed, limits, started, outputs)
        except (OSError, sandbox._docker_error) as exc:
            raise sandbox._engine_failed(exc) from None
        slot.runs = (slot.runs + 1) % MAX_RUNS  # uids: the session's stays, checks' rotate
        result.isolation = sandbox.isolation
        result.limit_scope = limit_scope()
        if sandbox.engine_warning:
            result.warning = "; ".join(filter(None, [result.warning, sandbox.engine_warning]))
        return result, fit

    label = f"docker/{sandbox.isolation}"
    bound = frozenset((inside, host, _identity(host)) for inside, host in binds.items())
    return sessions.run_cell(key, label, (limits.container_key(), bound), start, cell,
                             others_wait=lambda: budget.waiting() > 0)
