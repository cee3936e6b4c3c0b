"""Local backend: a subprocess with rlimits, for machines without Docker.

Weaker than Docker and labelled so: the script runs as the current user and
can read whatever that user can. What it does get: an empty environment, a
fresh temp work dir, caps on CPU time, data memory, file size and processes,
the same wall clock (the whole process group is killed), the same output cap,
and no network where an unprivileged user+net namespace (`unshare -rn`) works.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

from .base import Limits, OutputFile, RunResult, Sandbox, Value
from .files import safe_name
from .harness.runner import changed_files, snapshot, supervise, write_job
from .outcome import build_result, child_env, clean_report, harness_job, values_from

WARNING = ("local sandbox: weaker isolation than Docker (runs as your user, can read your "
           "files); use it only for code you would run yourself")


@functools.lru_cache(maxsize=1)
def _unshare() -> list[str]:
    """["unshare", "-rn", "--"] when a private network namespace works here."""
    exe = shutil.which("unshare")
    if exe is None:
        return []
    try:
        ok = subprocess.run([exe, "-rn", "--", "true"], capture_output=True, timeout=5)
    except (OSError, subprocess.TimeoutExpired):
        return []
    return [exe, "-rn", "--"] if ok.returncode == 0 else []


def _user_processes() -> int:
    uid, count = os.getuid(), 0
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            with contextlib.suppress(OSError):
                count += os.stat(f"/proc/{entry}").st_uid == uid
    return count


def _limit(limits: Limits, nproc: int) -> None:
    """Runs in the child before exec: caps that the kernel then enforces."""
    cpu = int(limits.timeout) + 2
    data = limits.memory_mb * 2**20
    for name, value in ((resource.RLIMIT_CPU, cpu), (resource.RLIMIT_DATA, data),
                        (resource.RLIMIT_FSIZE, limits.file_bytes),
                        (resource.RLIMIT_NPROC, nproc), (resource.RLIMIT_CORE, 0),
                        (resource.RLIMIT_NOFILE, 256)):
        resource.setrlimit(name, (value, value))


class LocalSandbox(Sandbox):
    """Same contract as the Docker sandbox, much weaker walls (see WARNING)."""

    backend = "local"
    warning = WARNING

    def __init__(self, python: str | None = None) -> None:
        self.python = python or sys.executable
        self.network_isolated = bool(_unshare())

    def run(self, code: str, *, files: Mapping[str, bytes] | None = None,
            limits: Limits | None = None, inputs: Sequence[Value] = (),
            outputs: Sequence[str] = (), check: str | None = None) -> RunResult:
        limits = limits or Limits()
        job = harness_job(code, inputs, outputs, check)
        start = time.monotonic()
        with tempfile.TemporaryDirectory(prefix="llmscript-local-") as tmp:
            root = Path(tmp)
            work, home = root / "work", root / "home"
            work.mkdir()
            home.mkdir()
            placed = {safe_name(k): bytes(v) for k, v in (files or {}).items()}
            for name, data in placed.items():
                (work / name).parent.mkdir(parents=True, exist_ok=True)
                (work / name).write_bytes(data)
            harness = root / "harness"  # the wrapper's job and input values: not in work
            harness.mkdir()
            spec = write_job(str(harness), job, [(v.name, v.format, [v.data]) for v in inputs])
            env = child_env(limits)
            env.update(HOME=str(home), TMPDIR=str(home),
                       MPLCONFIGDIR=str(home / ".config" / "matplotlib"),
                       PATH=os.pathsep.join([str(Path(self.python).parent), "/usr/bin", "/bin"]))
            before = snapshot(str(work))
            out, err = bytearray(), bytearray()

            def emit(kind: bytes, data: bytes) -> None:
                (out if kind == b"o" else err).extend(data)

            cmd = [*_unshare(), self.python, "-B", "-I",
                   str(Path(__file__).parent / "harness" / "wrapper.py"), spec, "{fd}"]
            nproc = _user_processes() + limits.pids
            info = supervise(cmd, env=env, cwd=str(work), timeout=limits.timeout,
                             output_bytes=limits.output_bytes, emit=emit,
                             preexec_fn=functools.partial(_limit, limits, nproc))
            figures, values = info.pop("figures"), info.pop("values")
            rc = info["returncode"]
            info["returncode"] = 128 - rc if rc < 0 else rc  # -9 -> 137, as in Docker
            output = []
            for rel, size in changed_files(str(work), before):
                if size <= limits.file_bytes:
                    data = (work / rel).read_bytes()[:limits.file_bytes]
                    output.append(OutputFile(name=rel, size=len(data), data=data))
        report = clean_report(json.dumps(info).encode())  # the wrapper's verdicts, checked
        result = build_result(report, bytes(out), bytes(err), figures, output, limits,
                              time.monotonic() - start, None, oom=False, host_timeout=False,
                              host_capped=False, diag=b"",
                              values=values_from(values, outputs))
        result.backend = "local"
        result.warning = WARNING
        return result
