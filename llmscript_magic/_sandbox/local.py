"""Local backend: bubblewrap namespaces on this machine, for hosts without Docker.

Built on bubblewrap (Debian's ``bubblewrap``, the sandbox Flatpak uses): new
user, PID, network, IPC and UTS namespaces; the system (``/usr``) and the
Python environment bound read-only; a private ``/tmp``; no home, no
``/var/run`` (so no Docker socket); an empty environment; ``--die-with-parent``
and ``--new-session``. The script's processes live in the PID namespace, so
nothing outlives the run (the kernel kills them all when it ends). Still
weaker than Docker (the host kernel, no memory cgroup) and labelled so. Where
bubblewrap is missing or cannot start, the backend refuses to run and says
which package to install: it never falls back to a weaker subprocess.
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
from typing import Any

from .._errors import SandboxUnavailableError
from .base import Limits, OutputFile, RunResult, Sandbox, Value
from .files import safe_name
from .harness.runner import changed_files, judge, snapshot, supervise, write_job
from .outcome import build_result, child_env, clean_report, harness_job, values_from

WARNING = ("local sandbox: weaker isolation than Docker (bubblewrap namespaces on your "
           "machine's kernel, no memory cgroup); use it only for code you would run yourself")
INSTALL_HINT = ("bubblewrap is not installed: run `apt-get install bubblewrap` (the local "
                "sandbox needs it) or use --sandbox docker")
PNG = b"\x89PNG\r\n\x1a\n"
MAX_FIGURES = 64
MAX_FILES = 10_000
WORK = "/work"
ENV_ROOT = "/opt/llmscript-python"
UID = 65534


def _system_binds() -> list[str]:
    """/usr read-only, the merged-/usr links, and the few /etc files Python reads."""
    args = ["--ro-bind", "/usr", "/usr"]
    for top in ("/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32"):
        if os.path.islink(top):
            args += ["--symlink", os.readlink(top), top]
        elif os.path.isdir(top):
            args += ["--ro-bind", top, top]
    for etc in ("/etc/ld.so.cache", "/etc/ld.so.conf", "/etc/ld.so.conf.d", "/etc/alternatives",
                "/etc/fonts", "/etc/localtime", "/etc/mime.types", "/etc/matplotlibrc"):
        args += ["--ro-bind-try", etc, etc]
    for prefix in sorted({os.path.realpath(p) for p in (sys.base_prefix, sys.base_exec_prefix)}):
        if not prefix.startswith("/usr") and not prefix.startswith(WORK):
            args += ["--ro-bind", prefix, prefix]  # a Python built outside /usr
    return args


def _python(python: str) -> tuple[list[str], str]:
    """Binds for the Python that runs the script, and its path inside the sandbox.

    A virtualenv is bound read-only at ENV_ROOT (its packages come along; a
    venv's interpreter finds them from its own location), since its real path
    may lie under /work, where the work dir goes.
    """
    exe = Path(os.path.abspath(python))
    if str(exe).startswith("/usr/"):
        return [], str(exe)
    root = exe.parent.parent
    return ["--ro-bind", str(root), ENV_ROOT], f"{ENV_ROOT}/{exe.parent.name}/{exe.name}"


def _bwrap(work: str, binds: Sequence[str], env: Mapping[str, str]) -> list[str]:
    """The bubblewrap command line up to (not including) the program to run."""
    exe = shutil.which("bwrap") or "bwrap"
    args = [exe, "--unshare-user", "--unshare-pid", "--unshare-net", "--unshare-ipc",
            "--unshare-uts", "--unshare-cgroup-try", "--uid", str(UID), "--gid", str(UID),
            "--hostname", "sandbox", "--die-with-parent", "--new-session", "--clearenv",
            "--proc", "/proc", "--dev", "/dev", "--tmpfs", "/tmp", "--bind", work, WORK,
            *_system_binds(), *binds, "--chdir", WORK]  # later mounts go over earlier ones
    for key, value in env.items():
        args += ["--setenv", key, value]
    return [*args, "--"]


@functools.lru_cache(maxsize=1)
def bubblewrap_problem() -> str | None:
    """None when bubblewrap can build the sandbox here; else what to do (one line)."""
    if shutil.which("bwrap") is None:
        return INSTALL_HINT
    with tempfile.TemporaryDirectory(prefix="llmscript-bwrap-") as tmp:
        cmd = [*_bwrap(tmp, [], {"PATH": "/usr/bin"}), "/usr/bin/true"]
        try:
            proc = subprocess.run(cmd, capture_output=True, timeout=20)
        except (OSError, subprocess.TimeoutExpired) as exc:
            return f"bubblewrap does not start ({type(exc).__name__}): use --sandbox docker"
    if proc.returncode != 0:
        why = (proc.stderr.decode("utf-8", "replace").strip().splitlines() or ["?"])[-1][:160]
        return (f"bubblewrap cannot create its namespaces here ({why}): allow unprivileged "
                "user namespaces (sysctl kernel.unprivileged_userns_clone=1) or use "
                "--sandbox docker")
    return None


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
    """Same contract as the Docker sandbox, weaker walls (see WARNING)."""

    backend = "local"
    warning = WARNING
    isolation = "bubblewrap"
    network_isolated = True  # --unshare-net: only a loopback with nothing on it

    def __init__(self, python: str | None = None) -> None:
        problem = bubblewrap_problem()
        if problem is not None:
            raise SandboxUnavailableError(problem)
        self.python = python or sys.executable

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
            env = child_env(limits)  # HOME, TMPDIR, MPLCONFIGDIR: the sandbox's own /tmp
            python_binds, python = _python(self.python)
            env["PATH"] = os.pathsep.join([str(Path(python).parent), "/usr/bin", "/bin"])
            wrapper_dir = str(Path(__file__).parent / "harness")
            before = snapshot(str(work))
            out, err = bytearray(), bytearray()

            def emit(kind: bytes, data: bytes) -> None:
                (out if kind == b"o" else err).extend(data)

            # The job dir at its own path (its paths are in the job), over the private /tmp
            binds = ["--ro-bind", wrapper_dir, "/opt/llmscript/harness",
                     "--bind", str(harness), str(harness)]
            wrapper = [*_bwrap(str(work), [*python_binds, *binds], env), python, "-B", "-I",
                       "/opt/llmscript/harness/wrapper.py"]
            nproc = _user_processes() + limits.pids
            info = supervise([*wrapper, spec, "{fd}"], env=env, cwd=str(work),
                             timeout=limits.timeout,
                             output_bytes=limits.output_bytes, emit=emit,
                             preexec_fn=functools.partial(_limit, limits, nproc))

            def evaluate(path: str, seconds: float) -> dict[str, Any]:
                return supervise([*wrapper, "--verdict", path, "{fd}"], env=env,
                                 cwd=str(work), timeout=seconds,
                                 output_bytes=2**16, emit=lambda kind, data: None,
                                 preexec_fn=functools.partial(_limit, limits, nproc))

            judge(info, check, str(harness), limits.timeout, evaluate)
            figures, values = info.pop("figures"), info.pop("values")
            rc = info["returncode"]
            info["returncode"] = 128 - rc if rc < 0 else rc  # -9 -> 137, as in Docker
            output, cut = _collect(work, before, limits)
            figures = [f for f in figures if f.startswith(PNG)][:MAX_FIGURES]
        report = clean_report(json.dumps(info).encode())  # the wrapper's verdicts, checked
        result = build_result(report, bytes(out), bytes(err), figures, output, limits,
                              time.monotonic() - start, None, oom=False, host_timeout=False,
                              host_capped=False, diag=b"",
                              values=values_from(values, outputs))
        result.backend = "local"
        result.warning = WARNING
        result.isolation = self.isolation
        if cut:
            result.stderr += f"\n[sandbox] {cut}\n"
        return result


def _collect(work: Path, before: dict[str, str], limits: Limits) -> tuple[list[OutputFile], str]:
    """Changed files, bounded in count and total bytes by apparent size (sparse files count).

    Nothing of the script runs any more (its PID namespace is gone), so files
    cannot change under us; symlinks are never followed (``changed_files``).
    Returns the files and, when some were left out, one line saying why.
    """
    budget, used, out, skipped = limits.disk_mb * 2**20, 0, [], 0
    changed = changed_files(str(work), before)
    for rel, _ in changed[:MAX_FILES]:
        path = work / rel
        try:
            size = os.lstat(path).st_size  # apparent size: a sparse file counts in full
        except OSError:
            continue
        if size > limits.file_bytes or used + size > budget:
            skipped += 1
            continue
        with open(path, "rb") as fh:
            data = fh.read(size + 1)
        if len(data) != size:
            skipped += 1
            continue
        used += size
        out.append(OutputFile(name=rel, size=size, data=data))
    skipped += max(0, len(changed) - MAX_FILES)
    cut = ""
    if skipped:
        cut = (f"{skipped} output file(s) not returned: over the {limits.file_bytes}-byte file "
               f"cap, the {limits.disk_mb} MB total or the {MAX_FILES}-file count")
    return out, cut
