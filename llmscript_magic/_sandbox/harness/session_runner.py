"""The container runner's side of ``--session``: one long-lived process, many cells.

Loaded by ``runner.py`` (the container's main process) for a kernel's
session container, which serves ``--session`` runs only. ``Session`` asks
the zygote, once, to fork the session process (``session.py``) under the
session's uid; each cell then goes to that process with fresh output and
status pipes, and the runner supervises it exactly as a single run
(``relay``: the wall clock, the output cap), except that a cell that ends
leaves its process, its globals and its files in place.

Per run: the wall clock and the output cap. Per session (the process as a
whole, with what it started): memory (its address space), processes (its
uid's RLIMIT_NPROC), the work dir. A timeout, the output cap, running out of
memory or the process dying ends the session: every process of its uid is
killed and its files removed, the report says why (``session_ended``, a code
the host words), and the container is not reused. The check's evaluator is
never the session's to give: the zygote, which never ran a session's code,
forks it under the run's own uid (``uid + 1``), as for a single run.
Standard library only.
"""

import contextlib
import functools
import hashlib
import json
import os
import signal
import socket
from collections.abc import Callable
from typing import Any

START_SECONDS = 30.0  # the zygote's imports under gVisor on a loaded machine


def _stamp(st: os.stat_result) -> str:
    return f"{st.st_size}:{st.st_mtime_ns}"


class Cell:
    """A cell in the session process, with the face ``relay`` expects of a Popen.

    ``returncode`` comes from the session's ``{"exit": code}``; a control
    socket that closes instead means the session process is gone (``dead``).
    """

    def __init__(self, session: "Session", out_r: int, err_r: int) -> None:
        assert session.pid is not None
        self.pid = session.pid  # its own process group (setsid): what a timeout kills
        self.session = session
        self.returncode: int | None = None
        self.dead = False
        self.stdout = os.fdopen(out_r, "rb", buffering=0)
        self.stderr = os.fdopen(err_r, "rb", buffering=0)

    def _recv(self, seconds: float | None) -> None:
        sock = self.session.sock
        assert sock is not None
        sock.settimeout(seconds)
        try:
            data = sock.recv(65536)
        except (TimeoutError, BlockingIOError):
            return
        except OSError:
            data = b""
        if not data:
            self.dead = True
            self.returncode = -signal.SIGKILL
            return
        try:
            self.returncode = int(json.loads(data).get("exit", 1))
        except (ValueError, TypeError, AttributeError, RecursionError):
            self.returncode = 1

    def poll(self) -> int | None:
        if self.returncode is None:
            self._recv(0.0)
        return self.returncode

    def wait(self) -> int:
        while self.returncode is None:
            self._recv(None)
        return self.returncode


class Session:
    """The kernel's session in this container: its uid, its process, its cells so far."""

    def __init__(self, rt: Any, zygote: Any, job: dict[str, Any],
                 config: dict[str, Any]) -> None:
        self.rt = rt  # runner.py's module (this container's supervisor functions)
        self.zygote = zygote
        self.uid = int(job.get("uid") or rt.SCRIPT_UID)
        self.env = {**job["env"], "MPLCONFIGDIR": f"/tmp/.mpl-{self.uid}"}
        self.rlimits = {**rt._rlimits(config), **rt._rlimits(job)}
        self.memory = job.get("memory")
        self.sock: socket.socket | None = None
        self.pid: int | None = None
        self.cells = 0
        self.over = False  # ended: this container serves no more cells

    def _start(self) -> bool:
        """Have the zygote fork the session process; False when it cannot."""
        zygote = self.zygote
        if zygote is None or not zygote.wait_ready(START_SECONDS):
            return False
        mine, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        order = {"kind": "session", "uid": self.uid, "env": self.env,
                 "rlimits": self.rlimits, "memory": self.memory}
        try:
            reply = zygote.fork(order, [theirs.fileno()])
        finally:
            theirs.close()
        if not reply or not reply.get("pid"):
            mine.close()
            return False
        mine.settimeout(START_SECONDS)
        try:
            ready = mine.recv(256)
        except OSError:
            ready = b""
        if not ready:
            mine.close()
            return False
        self.sock, self.pid = mine, int(reply["pid"])
        return True

    def _end(self) -> bool:
        """Kill every process of the session's uid and remove its files; True when all went."""
        self.over = True
        if self.sock is not None:
            self.sock.close()
            self.sock = None
        gone = self.rt.kill_uid(self.uid)[1]
        return bool(self.rt.sweep((self.uid,)) and gone)

    def _evaluator(self, twin_uid: int, wrapper: str, env: dict[str, str]
                   ) -> Callable[[str, float], dict[str, Any]]:
        """``evaluate`` for ``judge``: an evaluator the zygote forks (or a fresh one)."""
        rt, zygote = self.rt, self.zygote

        def evaluate(path: str, seconds: float) -> dict[str, Any]:
            if zygote is not None and not zygote.dead:
                job_r, job_w = os.pipe()
                stat_r, stat_w = os.pipe()
                reply = zygote.fork({"kind": "twin", "twin_uid": twin_uid}, [job_r, stat_w])
                os.close(job_r)
                os.close(stat_w)
                try:
                    if reply and reply.get("pid"):
                        asked = rt._ask_twin((job_w, stat_r), path, seconds)
                        if asked is not None:
                            return dict(asked)
                finally:
                    os.close(job_w)
                    os.close(stat_r)
            proc, status_r = rt.spawn(
                ["python3", "-B", "-I", wrapper, "--verdict", path, "{fd}"], env=env, cwd=None,
                preexec_fn=functools.partial(rt._enter_work, self.rlimits, True, twin_uid))
            return dict(rt.relay(proc, status_r, timeout=seconds,
                                 output_bytes=rt.proto.VERDICT_OUTPUT,
                                 emit=lambda kind, data: None, cleanup=lambda: None))

        return evaluate

    def _changed(self, stamps: dict[str, str], placed: dict[str, str]) -> list[list[Any]]:
        """[relpath, size] of the work dir's files this cell made or changed.

        A file is unchanged when its size and mtime are what they were before
        the cell (no hashing of a large file the session keeps), or when it is
        an input placed again with the same bytes.
        """
        out = []
        for rel, path in self.rt._walk(self.rt.proto.WORK):
            st = os.lstat(path)
            if stamps.get(rel) == _stamp(st):
                continue
            if rel in placed:
                with open(path, "rb") as fh:
                    if hashlib.sha256(fh.read()).hexdigest() == placed[rel]:
                        continue
            out.append([rel, st.st_size])
        return sorted(out)

    def _stamps(self, root: str) -> dict[str, str]:
        return {rel: _stamp(os.lstat(path)) for rel, path in self.rt._walk(root)}

    def serve(self, job: dict[str, Any], spec: str, before: dict[str, str], folder: str,
              wrapper: str, emit: Callable[[bytes, bytes], None], owner_fd: int) -> bool:
        """One cell, from the go-signal to the report; True while the session lives on."""
        rt = self.rt
        twin_uid = int(job.get("uid") or rt.SCRIPT_UID) + 1
        check = job.get("check") or None
        timeout = float(job["timeout"])
        if self.over or (self.sock is None and not self._start()):
            emit(rt.proto.ERR, b"[sandbox] the session's process could not start\n")
            self._end()
            emit(rt.proto.REPORT, json.dumps({"returncode": 1, "session_ended": "start"}).encode())
            return False
        try:
            stamps = rt.read_work(self._stamps, rt.proto.WORK, uid=self.uid)
        except (OSError, ValueError):
            stamps = {}
        oom_before = rt._oom_kills()
        pipes = [os.pipe() for _ in range(3)]
        theirs = [pipes[0][1], pipes[1][1], pipes[2][1]]
        assert self.sock is not None
        with contextlib.suppress(OSError):  # a session gone reads as its death below
            socket.send_fds(self.sock, [json.dumps({"job": spec}).encode()], theirs)
        for fd in theirs:
            os.close(fd)
        proc = Cell(self, pipes[0][0], pipes[1][0])
        self.cells += 1
        info = rt.relay(proc, pipes[2][0], timeout=timeout,
                        output_bytes=int(job["output_bytes"]), emit=emit,
                        grace=float(job.get("grace", 1.0)), owner_fd=owner_fd,
                        kill_on_exit=False)
        info["oom"] = rt._oom_kills() > oom_before
        ended = ("timeout" if info["timed_out"] else "capped" if info["capped"]
                 else "memory" if info["oom"] else "crashed" if proc.dead else "")
        if ended:
            rt.kill_uid(self.uid)  # nothing of it goes on during the verdict
        rt.judge(info, check, folder, timeout, self._evaluator(twin_uid, wrapper, job["env"]))
        twin_gone = rt.kill_uid(twin_uid)[1]
        rt.reap()
        for png in info.pop("figures"):
            emit(rt.proto.FIGURE, png)
        for value in info.pop("values"):
            emit(rt.proto.VALUE, value)
        unreadable = False
        try:
            changed = rt.read_work(self._changed, stamps, before, uid=self.uid)
            if changed:
                rt.read_work(rt._pack, changed, int(job.get("disk_bytes") or 2**26), emit,
                             uid=self.uid)
        except (OSError, ValueError):
            changed, unreadable = [], True
        ended = ended or ("files" if unreadable else "")
        info["changed"] = changed
        rt.sweep((twin_uid,))
        clean = twin_gone and not rt._owned((twin_uid,))
        if ended:
            self._end()
        info["left"] = 0
        info["session_ended"] = ended
        info["reusable"] = bool(clean and not self.over)
        emit(rt.proto.REPORT, json.dumps(info).encode())
        return bool(info["reusable"])
