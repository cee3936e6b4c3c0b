"""``--session`` in the local backend: one bubblewrap sandbox that outlives its cells.

The session is a process (``wrapper.py --session``, ``harness/session.py``)
in a bubblewrap sandbox of its own, with the same walls as a local run (new
user, PID, network and IPC namespaces, a private tmpfs ``/work`` and ``/tmp``
of the disk limit, no host files but the system's, read-only). Each cell goes
to it over its control socket with fresh output pipes, supervised by
``relay`` (the wall clock, the output cap); a timeout, the output cap or its
death ends it: bubblewrap is killed, and with it the PID namespace, its
tmpfs and everything in them. Stateless local runs are other sandboxes.

What a cell wrote comes back from the session's ``/work``, read through a
descriptor of that folder the session passed when it started: walked with
``os.fwalk`` and opened with ``O_NOFOLLOW`` relative to it, so no link the
cell plants can lead the host elsewhere. The check's evaluator is a fresh
sandbox of its own (as for a stateless run), which the session cannot reach.
"""

from __future__ import annotations

import contextlib
import functools
import io
import json
import os
import resource
import shutil
import signal
import socket
import stat
import subprocess
import tarfile
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from . import sessions
from .base import Limits, RunResult, Value
from .files import outputs_from_tar
from .harness import protocol as proto
from .harness.session_runner import Cell
from .harness.supervisor import judge, relay, write_job
from .local import HARNESS_DIR, LocalSandbox, _evaluator, _python, _result, _user_processes
from .mounts import links, split_files, target
from .outcome import harness_job

START_SECONDS = 30.0


def limit_scope() -> dict[str, str]:
    """Which limits hold per cell and which for the session process as a whole."""
    return {"timeout": "run", "output_bytes": "run", "file_bytes": "run",
            "memory_mb": "session", "pids": "session", "cpus": "session",
            "disk_mb": "session"}


def _limit(limits: Limits, nproc: int) -> None:
    """The session's rlimits (bubblewrap and all it starts): no CPU-seconds cap, since
    the session lives across cells; the wall clock holds per cell."""
    for name, value in ((resource.RLIMIT_DATA, limits.memory_mb * 2**20),
                        (resource.RLIMIT_FSIZE, limits.file_bytes),
                        (resource.RLIMIT_NPROC, nproc), (resource.RLIMIT_CORE, 0),
                        (resource.RLIMIT_NOFILE, 256)):
        resource.setrlimit(name, (value, value))


class LocalSession:
    """A started session sandbox: its bubblewrap process, control socket and work dir."""

    def __init__(self, sandbox: LocalSandbox, limits: Limits,
                 mounted: Mapping[str, str]) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="llmscript-session-"))  # 0700
        self.jobs = self.root / "jobs"
        self.jobs.mkdir()
        mine, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        cmd, self.env = sandbox.session_command(limits, str(self.jobs), theirs.fileno(),
                                                [a for rel, host in mounted.items()
                                                 for a in ("--ro-bind", host, target(rel))])
        self.nproc = _user_processes() + limits.pids
        self.python_binds, self.python = _python(sandbox.python)
        self.work = -1
        try:
            self.proc = subprocess.Popen(
                cmd, env=self.env, cwd=str(self.root), stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, pass_fds=(theirs.fileno(),),
                start_new_session=True, preexec_fn=functools.partial(_limit, limits, self.nproc))
        except BaseException:
            mine.close()
            shutil.rmtree(self.root, ignore_errors=True)
            raise
        finally:
            theirs.close()
        self.sock: socket.socket | None = mine
        self.pid = self.proc.pid  # its process group: what a timeout kills
        mine.settimeout(START_SECONDS)
        try:
            _, fds, _, _ = socket.recv_fds(mine, 256, 1)
        except OSError:
            fds = []
        if not fds:
            self.close()
            from .._errors import SandboxError

            raise SandboxError("The local session could not start (bubblewrap ended): run "
                               "without --session, or check `llmscript doctor`")
        self.work = fds[0]

    def close(self) -> None:
        """Kill the sandbox (its PID namespace and tmpfs go with it) and remove the jobs."""
        with contextlib.suppress(OSError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        with contextlib.suppress(Exception):
            self.proc.wait(5)
        if self.proc.stderr is not None:
            self.proc.stderr.close()
        if self.sock is not None:
            self.sock.close()
            self.sock = None
        if self.work >= 0:
            os.close(self.work)
            self.work = -1
        shutil.rmtree(self.root, ignore_errors=True)

    def stamps(self) -> dict[str, tuple[int, int]]:
        """(size, mtime) of every regular file of the work dir by relative name (links are
        never followed)."""
        out = {}
        for top, _, names, dfd in os.fwalk(".", dir_fd=self.work, follow_symlinks=False):
            for name in names:
                with contextlib.suppress(OSError):
                    st = os.lstat(name, dir_fd=dfd)
                    if stat.S_ISREG(st.st_mode):
                        out[os.path.normpath(os.path.join(top, name))] = (st.st_size,
                                                                          st.st_mtime_ns)
        return out

    def changed_tar(self, before: Mapping[str, tuple[int, int]], placed: Mapping[str, bytes],
                    budget: int) -> tuple[set[str], bytes]:
        """The names of the files this cell made or changed, and a tar (``work/NAME``) of
        those that fit in budget bytes (apparent sizes)."""
        names: set[str] = set()
        buf = io.BytesIO()
        used = 0
        with tarfile.open(fileobj=buf, mode="w") as tar:
            for top, _, files, dfd in os.fwalk(".", dir_fd=self.work, follow_symlinks=False):
                for name in sorted(files):
                    rel = os.path.normpath(os.path.join(top, name))
                    try:
                        fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK,
                                     dir_fd=dfd)
                    except OSError:
                        continue
                    with os.fdopen(fd, "rb") as fh:
                        st = os.fstat(fh.fileno())
                        if not stat.S_ISREG(st.st_mode) or \
                                before.get(rel) == (st.st_size, st.st_mtime_ns):
                            continue
                        data = fh.read(budget - used + 1) if used <= budget else b""
                    if rel in placed and data == placed[rel]:
                        continue  # an input placed again, unchanged
                    names.add(rel)
                    if used + len(data) <= budget and len(data) == st.st_size:
                        info = tarfile.TarInfo("work/" + rel)
                        info.size = len(data)
                        tar.addfile(info, io.BytesIO(data))
                        used += len(data)
        return names, buf.getvalue()

    def cell(self, code: str, files: dict[str, bytes], linked: list[dict[str, str]],
             limits: Limits,
             inputs: Sequence[Value], outputs: Sequence[str],
             check: str | None) -> tuple[RunResult, bool]:
        """One cell in the session: (its result, whether the session lives on)."""
        if self.sock is None or self.proc.poll() is not None:
            raise sessions.SessionLost
        start = time.monotonic()
        folder = Path(tempfile.mkdtemp(dir=self.jobs))
        folder.chmod(0o755)
        job = harness_job(code, inputs, outputs, check)
        job["files"] = [{"name": n, "size": len(d)} for n, d in files.items()]
        job["links"] = linked
        spec, _ = write_job(str(folder), job, [(v.name, v.format, [v.data]) for v in inputs],
                            [(n, [d]) for n, d in files.items()])
        before = self.stamps()
        out, err = bytearray(), bytearray()

        def emit(kind: bytes, data: bytes) -> None:
            (out if kind == proto.OUT else err).extend(data)

        pipes = [os.pipe() for _ in range(3)]
        theirs = [pipes[0][1], pipes[1][1], pipes[2][1]]
        with contextlib.suppress(OSError):  # a session gone reads as its death below
            socket.send_fds(self.sock, [json.dumps({"job": spec}).encode()], theirs)
        for fd in theirs:
            os.close(fd)
        proc: Any = Cell(self, pipes[0][0], pipes[1][0])  # type: ignore[arg-type]
        info = relay(proc, pipes[2][0], timeout=limits.timeout,
                     output_bytes=limits.output_bytes, emit=emit, kill_on_exit=False)
        alive = not (info["timed_out"] or info["capped"] or proc.dead)
        if not alive:  # nothing of it runs on while its files are read
            with contextlib.suppress(OSError):
                os.killpg(self.proc.pid, signal.SIGKILL)
        disk = limits.disk_mb * 2**20
        wanted, tar = self.changed_tar(before, files, disk)
        output = outputs_from_tar([tar], limits, files, wanted)
        evaluate = _evaluator(folder, folder, list(output), files, wanted, self.env,
                              [*self.python_binds, "--ro-bind", HARNESS_DIR,
                               proto.LOCAL_HARNESS], self.python, limits, self.nproc)
        judge(info, check, str(folder), limits.timeout, evaluate)
        result = _result(info, out, err, output, limits, start, outputs)
        shutil.rmtree(folder, ignore_errors=True)
        return result, alive


def run_in_session(sandbox: LocalSandbox, code: str,
                   files: Mapping[str, bytes | os.PathLike[str]] | None, limits: Limits,
                   inputs: Sequence[Value], outputs: Sequence[str],
                   check: str | None) -> RunResult:
    """One cell in this kernel's local session (started with the first one)."""
    placed, mounted = split_files(files, limits.file_bytes)  # large --input files: bound read-only
    key = ("local", sandbox.python)

    def start() -> tuple[Any, Callable[[], None]]:
        live = LocalSession(sandbox, limits, mounted)
        return live, live.close

    def cell(live: Any) -> tuple[RunResult, bool]:
        result, alive = live.cell(code, placed, links(mounted), limits, inputs, outputs, check)
        result.limit_scope = limit_scope()
        return result, alive

    bound = frozenset((target(rel), host, _identity(host)) for rel, host in mounted.items())
    return sessions.run_cell(key, "local/bubblewrap", (limits.container_key(), bound), start,
                             cell)


def _identity(host: str) -> tuple[int, ...]:
    """Which file a bind holds (a file replaced under its name needs a new sandbox)."""
    st = os.stat(host)
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)
