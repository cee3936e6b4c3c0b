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
from .files import outputs_from_tar
from .harness import protocol as proto
from .harness.supervisor import judge, relay, spawn, supervise, write_job
from .mounts import links, split_files, target
from .outcome import build_result, child_env, clean_report, harness_job, values_from

WARNING = ("local sandbox: weaker isolation than Docker (bubblewrap namespaces on your "
           "machine's kernel, no memory cgroup); use it only for code you would run yourself")
INSTALL_HINT = ("bubblewrap is not installed: run `apt-get install bubblewrap` (the local "
                "sandbox needs it) or use --sandbox docker")
PNG = proto.PNG
MAX_FIGURES = proto.MAX_FIGURES
MAX_FILES = 10_000
WORK = proto.WORK
HARNESS_DIR = str(Path(__file__).parent / "harness")
ENV_ROOT = "/opt/llmscript-python"
UID = proto.SCRIPT_UID


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


def _bwrap(work: str | None, binds: Sequence[str], env: Mapping[str, str],
           disk_bytes: int = 64 * 2**20) -> list[str]:
    """The bubblewrap command line up to (not including) the program to run.

    /tmp, and /work unless a host folder is given for it (read-only: the
    check's evaluator reads what the run left), are tmpfs of disk_bytes each:
    the run's disk limits hold in memory, never on the host's disk.
    """
    exe = shutil.which("bwrap") or "bwrap"
    size = str(int(disk_bytes))
    work_mount = (["--ro-bind", work, WORK] if work is not None
                  else ["--size", size, "--perms", "0755", "--tmpfs", WORK])
    args = [exe, "--unshare-user", "--unshare-pid", "--unshare-net", "--unshare-ipc",
            "--unshare-uts", "--unshare-cgroup-try", "--uid", str(UID), "--gid", str(UID),
            "--hostname", "sandbox", "--die-with-parent", "--new-session", "--clearenv",
            "--proc", "/proc", "--dev", "/dev", "--size", size, "--tmpfs", proto.TMP,
            *work_mount, *_system_binds(), *binds, "--chdir", WORK]  # later mounts go over
    for key, value in env.items():
        args += ["--setenv", key, value]
    return [*args, "--"]


@functools.lru_cache(maxsize=1)
def bubblewrap_problem() -> str | None:
    """None when bubblewrap can build the sandbox here; else what to do (one line)."""
    if shutil.which("bwrap") is None:
        return INSTALL_HINT
    cmd = [*_bwrap(None, [], {"PATH": "/usr/bin"}), "/usr/bin/true"]
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

    def run(self, code: str, *, files: Mapping[str, bytes | os.PathLike[str]] | None = None,
            limits: Limits | None = None, inputs: Sequence[Value] = (),
            outputs: Sequence[str] = (), check: str | None = None,
            session: bool = False) -> RunResult:
        limits = limits or Limits()
        if session:
            from .local_session import run_in_session

            return run_in_session(self, code, files, limits, inputs, outputs, check)
        job = harness_job(code, inputs, outputs, check)
        start = time.monotonic()
        disk = limits.disk_mb * 2**20
        with tempfile.TemporaryDirectory(prefix="llmscript-local-") as tmp:
            root = Path(tmp)
            # large --input files: --ro-bind, not copied
            placed, mounted = split_files(files, limits.file_bytes)
            job["links"] = links(mounted)
            harness = root / "harness"  # the job, its values and files: never the work dir
            harness.mkdir()
            job["files"] = [{"name": n, "size": len(d)} for n, d in placed.items()]
            spec, _ = write_job(str(harness), job,
                                [(v.name, v.format, [v.data]) for v in inputs],
                                [(n, [d]) for n, d in placed.items()])
            env = child_env(limits)  # HOME, TMPDIR, MPLCONFIGDIR: the sandbox's own /tmp
            python_binds, python = _python(self.python)
            env["PATH"] = os.pathsep.join([str(Path(python).parent), "/usr/bin", "/bin"])
            out, err = bytearray(), bytearray()

            def emit(kind: bytes, data: bytes) -> None:
                (out if kind == proto.OUT else err).extend(data)

            # The job dir at its own path (its paths are in the job), over the private /tmp
            binds = ["--ro-bind", HARNESS_DIR, proto.LOCAL_HARNESS,
                     "--ro-bind", str(harness), str(harness)]
            for rel, host in mounted.items():
                binds += ["--ro-bind", host, target(rel)]
            sandboxed = [*_bwrap(None, [*python_binds, *binds], env, disk), python, "-B", "-I"]
            files_r, files_w = os.pipe()
            nproc = _user_processes() + limits.pids
            try:
                proc, status_r = spawn(
                    [*sandboxed, f"{proto.LOCAL_HARNESS}/runner.py", "--collect", spec,
                     str(files_w), str(disk), "--", python, "-B", "-I",
                     f"{proto.LOCAL_HARNESS}/wrapper.py", spec, "{fd}"],
                    env=env, cwd=str(root), pass_fds=(files_w,),
                    preexec_fn=functools.partial(_limit, limits, nproc))
            finally:
                os.close(files_w)
            info = relay(proc, status_r, timeout=limits.timeout,
                         output_bytes=limits.output_bytes, emit=emit, files_fd=files_r,
                         files_cap=disk + 2**20)
            wanted, tar = _changed(info.pop("tar", b""))
            output = outputs_from_tar([tar], limits, placed, wanted)
            if info.pop("tar_cut", False) and not output.cut:
                output.cut = (f"output files cut: more than the {limits.disk_mb} MB the work "
                              "dir holds")
            evaluate = _evaluator(root, harness, output, placed, wanted, env,
                                  [*python_binds, *binds], python, limits, nproc)
            judge(info, check, str(harness), limits.timeout, evaluate)
            result = _result(info, out, err, output, limits, start, outputs)
        result.limit_scope = {name: "run" for name in (
            "timeout", "output_bytes", "file_bytes", "pids", "memory_mb", "cpus", "disk_mb")}
        return result

    def session_command(self, limits: Limits, jobs: str, ctl_fd: int,
                        binds: Sequence[str] = ()) -> tuple[list[str], dict[str, str]]:
        """The bubblewrap command of a ``--session`` process (``local_session.py``), its env.

        Its /work and /tmp are tmpfs of the disk limit that live as long as it does; the
        session's jobs folder is bound read-only at its own path.
        """
        env = child_env(limits)
        python_binds, python = _python(self.python)
        env["PATH"] = os.pathsep.join([str(Path(python).parent), "/usr/bin", "/bin"])
        binds = ["--ro-bind", HARNESS_DIR, proto.LOCAL_HARNESS, "--ro-bind", jobs, jobs,
                 *binds]
        cmd = [*_bwrap(None, [*python_binds, *binds], env, limits.disk_mb * 2**20), python,
               "-B", "-I", f"{proto.LOCAL_HARNESS}/wrapper.py", "--session", str(ctl_fd)]
        return cmd, env


def _evaluator(root: Path, harness: Path, output: list[OutputFile], placed: Mapping[str, bytes],
               wanted: set[str], env: dict[str, str], binds: list[str], python: str,
               limits: Limits, nproc: int) -> Any:
    """``evaluate`` for ``judge``: a sandbox of its own over a copy of what the run left."""
    work = root / "work"  # what the run left, for the check's evaluator to read
    work.mkdir()
    for f in [*output, *(OutputFile(n, len(d), d) for n, d in placed.items()
                         if n in wanted and n not in {o.name for o in output})]:
        (work / f.name).parent.mkdir(parents=True, exist_ok=True)
        (work / f.name).write_bytes(f.data)
    for name, data in placed.items():
        if name not in wanted:  # unchanged inputs: the check may read them too
            (work / name).parent.mkdir(parents=True, exist_ok=True)
            (work / name).write_bytes(data)
    evaluator = [*_bwrap(str(work), [*binds, "--bind", str(harness), str(harness)], env,
                         limits.disk_mb * 2**20),
                 python, "-B", "-I", f"{proto.LOCAL_HARNESS}/wrapper.py"]

    def evaluate(path: str, seconds: float) -> dict[str, Any]:
        return supervise([*evaluator, "--verdict", path, "{fd}"], env=env,
                         cwd=str(root), timeout=seconds,
                         output_bytes=proto.VERDICT_OUTPUT, emit=lambda kind, data: None,
                         preexec_fn=functools.partial(_limit, limits, nproc))

    return evaluate


def _result(info: dict[str, Any], out: bytearray, err: bytearray, output: Any, limits: Limits,
            start: float, outputs: Sequence[str]) -> RunResult:
    """The RunResult of a local run (or session cell) from its relay info, judged."""
    figures, values = info.pop("figures"), info.pop("values")
    rc = info["returncode"]
    info["returncode"] = 128 - rc if rc < 0 else rc  # -9 -> 137, as in Docker
    figures = [f for f in figures if f.startswith(PNG)][:MAX_FIGURES]
    report = clean_report(json.dumps(info).encode())  # the wrapper's verdicts, checked
    result = build_result(report, bytes(out), bytes(err), figures, list(output), limits,
                          time.monotonic() - start, None, oom=False, host_timeout=False,
                          host_capped=False, diag=b"",
                          values=values_from(values, outputs))
    result.backend = "local"
    result.warning = WARNING
    result.isolation = LocalSandbox.isolation
    if output.cut:
        result.stderr += f"\n[sandbox] {output.cut}\n"
    return result


def _changed(sent: bytes) -> tuple[set[str], bytes]:
    """The collector's stream: (names of the changed files, the tar of those that fit)."""
    try:
        size = int.from_bytes(sent[:4], "big")
        names = {str(row[0]) for row in json.loads(sent[4:4 + size])}
    except (ValueError, TypeError, IndexError, RecursionError):
        return set(), b""
    return names, sent[4 + size:]
