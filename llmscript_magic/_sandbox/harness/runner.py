"""The container's program: serves one kernel's runs, each under a uid of its own.

In Docker this file is the container's main process (``docker.BOOT`` puts it,
``protocol.py`` and ``supervisor.py`` in ``/tmp/.llmscript``, then runs it with
``WRAPPER MPL_CACHE CONFIG``) for all the runs of one kernel: it starts
the zygote (``wrapper.py --zygote``: the image's heavy libraries imported
once), then serves jobs from stdin (a JSON header, then the input values'
and files' bytes) one after another until the host closes it. Each run is
a process the zygote forks under the run's own uid (``Zygote``, ``Forked``);
the runner has ``relay`` (``supervisor.py``) enforce the wall clock
(SIGTERM, then SIGKILL after the grace), then kills every process of that uid and removes its files
(``kill_uid``, ``sweep``) before the report. Everything it sends the host is
framed (1 type byte, 4-byte length, payload; the kinds are named in
``protocol.py``) on stdout: ``o``/``e`` output
chunks, ``f`` PNG figures, ``v`` values of ``--output`` variables, ``t`` the
changed files as a tar, ``r`` the result (exit, limits, changed files, check
verdict, outputs that cannot come back, whether the container is still fit
for a run). The local backend runs ``collect`` inside bubblewrap (and
imports ``supervisor.py`` on the host). Standard library only: the image has
nothing else that we control.

The engine starts this runner as root with only the SETUID, SETGID and KILL
capabilities: each run (uid ``job["uid"]``) can neither ptrace nor signal
the runner or the zygote, nor open the runner's stdout through
``/proc/1/fd/1`` to forge frames, nor change the harness's files, nor reach
an earlier or later run (another uid, and nothing of it left); the steps
that read what a run closed to others run in a child with its uid
(``read_work``). Its check's evaluator has the next uid (see ``judge``).
Started as a non-root user, the runner and the script share that uid (the
frames it reads are then checked, never trusted).
"""

import contextlib
import functools
import hashlib
import json
import os
import select
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from typing import IO, Any

if not __package__:  # a program in the sandbox (``-I``): its modules lie beside it, where
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # no run may write
try:  # the host imports this file from the package
    from . import protocol as proto
    from .supervisor import judge, parse_status, relay, spawn, write_job
except ImportError:
    import protocol as proto  # type: ignore[no-redef]
    from supervisor import judge, parse_status, relay, spawn, write_job  # type: ignore[no-redef]

HEADER = proto.HEADER


def frame(kind: bytes, payload: bytes) -> bytes:
    return kind + HEADER.pack(len(payload)) + payload


def _oom_kills() -> int:
    """Count of OOM kills in this cgroup (v1 memory.oom_control, v2 memory.events)."""
    for path, key in (("/sys/fs/cgroup/memory/memory.oom_control", "oom_kill"),
                      ("/sys/fs/cgroup/memory.events", "oom_kill")):
        try:
            with open(path) as fh:
                for line in fh:
                    name, _, value = line.partition(" ")
                    if name == key:
                        return int(value)
        except (OSError, ValueError):
            continue
    return 0


def snapshot(root: str) -> dict[str, str]:
    """Size and hash of every regular file, to tell unchanged inputs apart later."""
    out: dict[str, str] = {}
    for rel, path in _walk(root):
        with open(path, "rb") as fh:
            out[rel] = hashlib.sha256(fh.read()).hexdigest()
    return out


def _raise(err: OSError) -> None:
    raise err


def _walk(root: str) -> list[tuple[str, str]]:
    """Regular files under root; a folder that cannot be listed raises (see ``read_work``)."""
    files = []
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False, onerror=_raise):
        dirnames[:] = [d for d in dirnames if not os.path.islink(os.path.join(dirpath, d))]
        for name in filenames:
            path = os.path.join(dirpath, name)
            if os.path.islink(path) or not os.path.isfile(path):
                continue  # symlinks are never followed or returned
            files.append((os.path.relpath(path, root), path))
    return files


def changed_files(root: str, before: dict[str, str]) -> list[list[Any]]:
    """[relpath, size] of files that are new or differ from the inputs."""
    out = []
    for rel, path in _walk(root):
        size = os.lstat(path).st_size
        if rel in before:
            with open(path, "rb") as fh:
                if hashlib.sha256(fh.read()).hexdigest() == before[rel]:
                    continue
        out.append([rel, size])
    return sorted(out)


SCRIPT_UID = proto.SCRIPT_UID  # nobody: the script's uid when the runner is root (no run uid)


def drop_to_script_user(uid: int = SCRIPT_UID) -> None:
    """In a child: become uid, so it can neither ptrace nor signal the runner.

    A no-op unless this process is root (the container's main process when the
    engine starts it so): the local backend already runs as the user.
    """
    if os.getuid() == 0:
        os.setgroups([])
        os.setgid(uid)
        os.setuid(uid)


def _enter_work(rlimits: dict[str, int], enter: bool = True, uid: int = SCRIPT_UID) -> None:
    """preexec for a fresh interpreter: its rlimits, its uid, then its work dir.

    ``rlimits`` (``{"nproc": 128, "data": bytes, "fsize": bytes}``) stand in
    for the caps an engine drops: rootless Podman on cgroups v1 ignores the
    memory, pids and ulimit settings, and gVisor counts RLIMIT_NPROC in its
    own kernel, per uid, so per run. Set while still root, they hold after
    the switch to the run's uid, which may only lower them.
    """
    import resource

    for name, value in rlimits.items():
        which = getattr(resource, f"RLIMIT_{name.upper()}", None)
        if which is not None:
            resource.setrlimit(which, (int(value), int(value)))
    if enter:
        drop_to_script_user(uid)
        os.chdir(proto.WORK)


def as_script_user(fn: Callable[..., Any], *args: Any, uid: int = SCRIPT_UID) -> Any:
    """fn(*args) in a child with uid; its JSON-able result comes back.

    A root runner without DAC capabilities cannot read what a run closed
    to others, nor remove its files from the sticky /tmp, so those steps run
    as the run's uid.
    """
    if os.getuid() != 0:
        return fn(*args)
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover (the child)
        code = 1
        try:
            os.close(read_end)
            drop_to_script_user(uid)
            data = json.dumps(fn(*args)).encode()
            while data:
                data = data[os.write(write_end, data):]
            code = 0
        finally:
            os._exit(code)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as fh:
        data = fh.read()
    _, status = os.waitpid(pid, 0)
    if status != 0:
        raise OSError(f"a step as uid {uid} failed with status {status}")
    return json.loads(data)


def read_work(fn: Callable[..., Any], *args: Any, uid: int = SCRIPT_UID) -> Any:
    """fn(*args) over the work dir, by the runner itself where the script left it readable.

    The script's files are 0644 by default, so the root runner (which has no
    DAC capability) reads them as anyone may, without a fork (under gVisor a
    fork costs about 12 ms). A file or folder the script closed to others is
    read by a child with the run's uid instead. Nothing of the run runs any more.
    """
    try:
        return fn(*args)
    except OSError:
        return as_script_user(_opened, fn, *args, uid=uid)


def _opened(fn: Callable[..., Any], *args: Any) -> Any:
    """fn(*args) after opening the work dir's folders to their owner (the run's uid, here).

    A run may close a folder even to itself (mode 0); it is over, so its
    folders are opened for reading what it left.
    """
    for dirpath, dirnames, _ in os.walk(proto.WORK):
        for name in dirnames:
            path = os.path.join(dirpath, name)
            if not os.path.islink(path):
                with contextlib.suppress(OSError):
                    os.chmod(path, 0o700)
    return fn(*args)


def _copy_tree(src: str, dst: str) -> None:
    """matplotlib's config and font cache, for the script (run as its uid).

    The folder is writable by every uid of the sandbox: the warm interpreter
    imports matplotlib as root (without DAC capabilities) before it becomes
    the script's uid, and matplotlib wants its config folder writable (else it
    warns on the script's stderr and caches in a folder the script cannot use).
    """
    os.makedirs(dst, exist_ok=True)
    os.chmod(dst, 0o755)
    try:
        for name in os.listdir(src):
            with open(os.path.join(src, name), "rb") as fin, \
                    open(os.path.join(dst, name), "wb") as fout:
                fout.write(fin.read())
    except OSError:
        pass


def _read_exact(stream: IO[bytes], size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = stream.read(size - len(data))
        if not chunk:
            raise EOFError
        data += chunk
    return data


def _chunks(stream: IO[bytes], size: int) -> Any:
    while size > 0:
        chunk = _read_exact(stream, min(size, proto.TAR_CHUNK))
        size -= len(chunk)
        yield chunk


def _live_pids(uid: int) -> list[int]:
    """Processes of uid that are not zombies (pid 1 reaps those)."""
    out = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            if os.stat(f"/proc/{entry}").st_uid != uid:
                continue
            with open(f"/proc/{entry}/stat", "rb") as fh:
                state = fh.read().rpartition(b")")[2].split()[0]
        except (OSError, IndexError):
            continue
        if state not in (b"Z", b"X"):
            out.append(int(entry))
    return out


def reap() -> list[int]:
    """Collect zombies: pid 1 inherits a run's orphans. Returns the pids collected."""
    done = []
    with contextlib.suppress(ChildProcessError):
        while (pid := os.waitpid(-1, os.WNOHANG)[0]) != 0:
            done.append(pid)
    return done


def kill_uid(uid: int, *, reaping: bool = True, rounds: int = 500) -> tuple[int, bool]:
    """SIGKILL every process of uid until none is left: (how many were found, whether none is).

    Each run has a uid of its own, so this reaches every process it made,
    whatever process group or session it moved to, and nothing else. The
    root runner holds CAP_KILL for this; the run cannot change its uid.
    """
    seen: set[int] = set()
    for _ in range(rounds):
        pids = _live_pids(uid)
        if not pids:
            return len(seen), True
        seen.update(pids)
        for pid in pids:
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)
        time.sleep(0.002)
        if reaping:
            reap()
    return len(seen), False


def _rm(path: str) -> None:
    """Remove path (a folder with what is in it), as its owner: open it first if it is closed."""
    import stat

    if stat.S_ISDIR(os.lstat(path).st_mode):
        with contextlib.suppress(OSError):
            os.chmod(path, 0o700)
        for name in os.listdir(path):
            _rm(os.path.join(path, name))
        os.rmdir(path)
    else:
        os.unlink(path)


SCRATCH = proto.SCRATCH  # where a run can write (the root is read-only)


def _owned(uids: tuple[int, ...], roots: tuple[str, ...] = SCRATCH) -> list[str]:
    """Top-level entries of the scratch folders that belong to uids."""
    out = []
    for root in roots:
        with contextlib.suppress(OSError):
            for name in os.listdir(root):
                path = os.path.join(root, name)
                with contextlib.suppress(OSError):
                    if os.lstat(path).st_uid in uids:
                        out.append(path)
    return out


def _remove_own(uid: int) -> list[str]:
    """As uid (in a child): remove what it owns in the scratch folders; what stayed."""
    left = []
    for path in _owned((uid,)):
        try:
            _rm(path)
        except OSError:
            left.append(path)
    return left


def sweep(uids: tuple[int, ...]) -> bool:
    """Remove every file the run's uids left in /work, /tmp and /dev/shm; True when all went.

    Those folders are root's and sticky, so the root runner (without DAC
    capabilities) can unlink what lies at their top; the inside of a run's
    own folder needs its uid, in a child. Anything still there afterwards
    makes the container unfit for another run.
    """
    owned = _owned(uids)
    if not owned:  # most runs: one look, no second pass
        return not os.listdir("/work")
    for path in owned:
        with contextlib.suppress(OSError):
            _rm(path)  # files, and folders the run left open to all; the rest below
    for uid in uids:
        if _owned((uid,)):
            with contextlib.suppress(OSError, ValueError):
                as_script_user(_remove_own, uid, uid=uid)
    return not _owned(uids) and not os.listdir(proto.WORK)


class _Frames:
    """A write-only file that sends what is written as ``t`` frames of at most 1 MiB."""

    def __init__(self, emit: Callable[[bytes, bytes], None]) -> None:
        self.emit = emit
        self.buf = bytearray()

    def write(self, data: bytes) -> int:
        self.buf += data
        while len(self.buf) >= proto.TAR_CHUNK:
            self.emit(proto.FILES, bytes(self.buf[:proto.TAR_CHUNK]))
            del self.buf[:proto.TAR_CHUNK]
        return len(data)

    def close(self) -> None:
        if self.buf:
            self.emit(proto.FILES, bytes(self.buf))
            self.buf.clear()


def _pack(changed: list[list[Any]], budget: int, emit: Callable[[bytes, bytes], None]) -> int:
    """Stream the changed files as a tar (``work/NAME`` members) in ``t`` frames.

    Files are taken in order while their apparent sizes fit in budget (the
    work dir's size: a sparse file counts in full); the host says what was
    cut. Every file is opened first, so a file only the run's uid may read
    sends the whole tar from a child with that uid instead (see ``read_work``).
    """
    import tarfile

    names, used = [], 0
    for rel, size in changed:
        if used + int(size) <= budget:
            names.append(str(rel))
            used += int(size)
    for rel in names:
        with open(os.path.join(proto.WORK, rel), "rb"):
            pass
    sink = _Frames(emit)
    with tarfile.open(fileobj=sink, mode="w|") as tar:  # type: ignore[call-overload]
        for rel in names:
            tar.add(os.path.join(proto.WORK, rel), arcname="work/" + rel, recursive=False)
    sink.close()
    return len(names)


def _rlimits(config: dict[str, Any]) -> dict[str, int]:
    raw = config.get("rlimits")
    return {str(k): int(v) for k, v in raw.items()} if isinstance(raw, dict) else {}


class Zygote:
    """The container's warm interpreter, which forks one process per run (``--zygote``)."""

    def __init__(self, wrapper: str, config: dict[str, Any]) -> None:
        import socket

        mine, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        modules = ",".join(str(m) for m in config.get("preimport") or [])
        later = ",".join(str(m) for m in config.get("later") or [])
        try:
            self.proc = subprocess.Popen(
                ["python3", "-B", "-I", wrapper, "--zygote", modules, str(theirs.fileno()),
                 later],
                env=config["env"], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                pass_fds=(theirs.fileno(),), start_new_session=True,
                preexec_fn=functools.partial(_enter_work, _rlimits(config), False))
        finally:
            theirs.close()
        self.sock = mine
        self.ready = False
        self.dead = False

    def wait_ready(self, seconds: float) -> bool:
        if not self.ready and not self.dead:
            got = self.recv(seconds)  # None: still importing; {}: gone
            self.ready = bool(got and got.get("ready"))
            self.dead = self.dead or (got is not None and not self.ready)
        return self.ready and not self.dead

    def recv(self, seconds: float | None) -> dict[str, Any] | None:
        """The zygote's next message; None when none came in time; {} when it is gone."""
        self.sock.settimeout(seconds)
        try:
            data = self.sock.recv(65536)
        except (TimeoutError, BlockingIOError):
            return None
        except OSError:
            data = b""
        if not data:
            self.dead = True
            return {}
        return dict(json.loads(data))

    def fork(self, order: dict[str, Any], fds: list[int]) -> dict[str, Any] | None:
        import socket

        try:
            socket.send_fds(self.sock, [json.dumps(order).encode()], fds)
        except OSError:
            self.dead = True
            return None
        reply = self.recv(10.0)
        if not reply or "pid" not in reply:
            self.dead = True
            return None
        return reply


class Forked:
    """A run forked by the zygote, with the face ``relay`` expects of a Popen."""

    def __init__(self, pid: int, zygote: Zygote, out_r: int, err_r: int) -> None:
        self.pid = pid
        self.zygote = zygote
        self.returncode: int | None = None
        self.stdout = os.fdopen(out_r, "rb", buffering=0)
        self.stderr = os.fdopen(err_r, "rb", buffering=0)

    def poll(self) -> int | None:
        if self.returncode is None:
            got = self.zygote.recv(0.0)
            if got is not None:
                self.returncode = int(got.get("exit", -signal.SIGKILL))
        return self.returncode

    def wait(self) -> int:
        while self.returncode is None:
            got = self.zygote.recv(None)
            if got is not None:
                self.returncode = int(got.get("exit", -signal.SIGKILL))
        return self.returncode


# A zygote still importing after this long is not waited for by a run that uses its
# libraries (others do not wait at all): that run gets a fresh interpreter (the host
# allows the run its time limit plus a few seconds from the hand-over).
READY_SECONDS = 2.5


def _ask_twin(twin: tuple[int, int], path: str, seconds: float) -> dict[str, Any] | None:
    """The forked evaluator's report on the check job at path; None: it is not there.

    What comes back is what ``relay`` gives for a fresh evaluator: ``check``
    from its ``c`` frame, or ``timed_out``, or neither when it died.
    """
    job_w, stat_r = twin
    try:
        os.write(job_w, path.encode() + b"\n")
    except OSError:
        return None  # gone before its job (the memory cap): a fresh evaluator instead
    buf = bytearray()
    info: dict[str, Any] = {"figures": [], "values": [], "check_values": [], "value_bytes": 0}
    deadline = time.monotonic() + seconds
    poller = select.poll()
    poller.register(stat_r, select.POLLIN)
    while "check" not in info:
        left = deadline - time.monotonic()
        if left <= 0:
            return {"timed_out": True}
        if not poller.poll(int(left * 1000) + 1):
            continue
        data = os.read(stat_r, 65536)
        if not data:
            break
        buf += data
        if len(buf) > proto.VERDICT_BYTES:
            break  # no verdict is this long
        parse_status(buf, info)
    return {"check": info.get("check")}


def _read_job(stdin: Any, folder: str) -> tuple[dict[str, Any], str, dict[str, str]] | None:
    """The next job (None at end of input): header, input values' and files' bytes after it."""
    try:
        size = HEADER.unpack(_read_exact(stdin, 4))[0]
    except EOFError:
        return None
    job = json.loads(_read_exact(stdin, size))
    os.makedirs(folder, mode=0o755)
    inputs = [(str(i["name"]), str(i["format"]), _chunks(stdin, int(i["size"])))
              for i in job.get("inputs") or []]
    files = [(str(f["name"]), _chunks(stdin, int(f["size"]))) for f in job.get("files") or []]
    spec, before = write_job(folder, job, inputs, files)
    return job, spec, before


def main() -> None:
    """Container entry point: prepare, then serve runs until the host closes stdin.

    argv: WRAPPER_SOURCE MPL_CACHE [CONFIG_JSON]. CONFIG (``{"env": ...,
    "preimport": [...], "later": [...], "rlimits": {...}}``) starts the zygote (``Zygote``)
    that forks each run; a job whose environment differs, or one that finds
    the zygote not ready or dead, runs in a fresh interpreter instead. Each
    run has its own uid (the job's ``uid``; its check evaluator ``uid + 1``):
    after it, every process of those uids is killed and their files removed
    before the report, and the report says whether the container is still
    fit (``reusable``); the host replaces it when not. A ``session`` job goes to
    the kernel's session process instead (``session_runner.py``, loaded from the
    job's harness files: a session container serves session jobs only).
    """
    wrapper_src, mpl_cache = sys.argv[1], sys.argv[2]
    config = json.loads(sys.argv[3]) if len(sys.argv) > 3 else {}
    tmp = proto.HARNESS_TMP  # the harness's files: runs may read, never change them
    os.makedirs(tmp, mode=0o755, exist_ok=True)
    with contextlib.suppress(OSError):  # ours (the engine copies the image's 0755 up)
        os.chmod(proto.WORK, 0o1777)
    wrapper = os.path.join(tmp, "wrapper.py")
    with open(wrapper, "w") as fh:
        fh.write(wrapper_src)
    _copy_tree(mpl_cache, proto.MPL_SHARED)
    zygote = Zygote(wrapper, config) if isinstance(config.get("env"), dict) else None
    # beside the warm one, an interpreter without the heavy imports for runs that need
    # none (the host says ``lean``): a fork of it shares little, so it is cheap under gVisor
    lean = Zygote(wrapper, {**config, "preimport": [], "later": []}) \
        if zygote is not None and config.get("preimport") else None
    out = sys.stdout.buffer
    stdin: Any = sys.stdin.buffer.raw  # type: ignore[union-attr]  # unbuffered: nothing read ahead of a job

    def emit(kind: bytes, data: bytes) -> None:
        out.write(frame(kind, data))
        out.flush()

    fit = True
    runs = 0
    session: Any = None  # the kernel's --session process, once a job asks for it
    while fit:
        folder = os.path.join(tmp, f"run-{runs}")
        runs += 1
        try:
            got = _read_job(stdin, folder)
        except (EOFError, ValueError):
            got = None
        if got is None:
            break  # the host closed the sandbox
        job, spec, before = got
        for name, source in (job.get("harness") or {}).items():
            # the harness's own modules, by name (the zygote already runs this
            # container's wrapper)
            if name in ("codec.py", "session.py", "session_runner.py"):
                with open(os.path.join(tmp, name), "w", encoding="utf-8") as fh:
                    fh.write(source)
        if job.get("session"):
            session = session or _session_lib(tmp).Session(sys.modules[__name__], zygote,
                                                           job, config)
            fit = session.serve(job, spec, before, folder, wrapper, emit, stdin.fileno())
        else:
            fit = _serve(job, spec, before, folder, _pick(zygote, lean, job), config,
                         wrapper, emit, stdin.fileno())
            fit = fit and (lean is None or (not lean.dead and lean.proc.poll() is None))
        _rm(folder)
    for z in (zygote, lean):
        if z is not None:
            z.sock.close()
    while stdin.read(65536):  # unfit: wait for the host to let go (it removes us)
        pass


def _pick(zygote: Zygote | None, lean: Zygote | None, job: dict[str, Any]) -> Zygote | None:
    """The lean interpreter for a run that imports only the standard library, once it is
    ready; the warm one otherwise."""
    if job.get("lean") and lean is not None and lean.wait_ready(0.05):
        return lean
    return zygote


def _session_lib(folder: str) -> Any:
    """``session_runner.py``, written beside the wrapper from the job (this file runs as
    ``python3 -c SOURCE``, so it hands itself to the session's supervisor)."""
    import importlib.util

    path = os.path.join(folder, "session_runner.py")
    spec = importlib.util.spec_from_file_location("_llmscript_session_runner", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _serve(job: dict[str, Any], spec: str, before: dict[str, str], folder: str,
           zygote: Zygote | None, config: dict[str, Any], wrapper: str,
           emit: Callable[[bytes, bytes], None], owner_fd: int) -> bool:
    """One run, from the go-signal to the report; True when the container is fit for another."""
    uid = int(job.get("uid") or SCRIPT_UID)
    twin_uid = uid + 1 if job.get("uid") else proto.CHECK_UID
    check = job.get("check") or None
    timeout = float(job["timeout"])
    grace = float(job.get("grace", 1.0))
    rlimits = {**_rlimits(config), **_rlimits(job)}
    # matplotlib's config folder of its own (see wrapper's _mpl_home), for interpreters
    # that import it afresh; the zygote's copy already holds its font list
    env = {**job["env"], "MPLCONFIGDIR": proto.MPL_HOME.format(uid=uid)}
    oom_before = _oom_kills()
    proc: Any = None
    twin: tuple[int, int] | None = None
    if zygote is not None and job["env"] == config.get("env") and \
            zygote.wait_ready(READY_SECONDS if job.get("wait_warm") else 0.05):
        pipes = [os.pipe() for _ in range(5 if check else 3)]
        theirs = [pipes[0][1], pipes[1][1], pipes[2][1]]
        if check:
            theirs += [pipes[3][0], pipes[4][1]]
        order = {"job": spec, "uid": uid, "twin_uid": twin_uid if check else None,
                 "env": env, "rlimits": rlimits, "memory": job.get("memory"),
                 "plots": bool(job.get("plots"))}
        reply = zygote.fork(order, theirs)
        for fd in theirs:
            os.close(fd)
        if reply is not None:
            proc = Forked(int(reply["pid"]), zygote, pipes[0][0], pipes[1][0])
            status_r = pipes[2][0]
            twin = (pipes[3][1], pipes[4][0]) if check else None
        else:
            for fd in (pipes[0][0], pipes[1][0], pipes[2][0], *(
                    (pipes[3][1], pipes[4][0]) if check else ())):
                os.close(fd)
    if proc is None:
        proc, status_r = spawn(["python3", "-B", "-I", wrapper, spec, "{fd}"], env=env,
                               cwd=None,
                               preexec_fn=functools.partial(_enter_work, rlimits, True, uid))
    leftovers = [0]

    def reap_run() -> None:
        leftovers[0] += kill_uid(uid)[0]

    info = relay(proc, status_r, timeout=timeout, output_bytes=int(job["output_bytes"]),
                 emit=emit, grace=grace, cleanup=reap_run, owner_fd=owner_fd)
    gone = kill_uid(uid)[1]  # a timeout's kill: nothing of the run goes on during the verdict
    info["oom"] = _oom_kills() > oom_before

    def evaluate(path: str, seconds: float) -> dict[str, Any]:
        if twin is not None and (asked := _ask_twin(twin, path, seconds)) is not None:
            return asked
        proc, status_r = spawn(["python3", "-B", "-I", wrapper, "--verdict", path, "{fd}"],
                               env=job["env"], cwd=None,
                               preexec_fn=functools.partial(_enter_work, rlimits, True,
                                                            twin_uid))
        return relay(proc, status_r, timeout=seconds, output_bytes=proto.VERDICT_OUTPUT,
                     emit=lambda kind, data: None, cleanup=lambda: None)

    judge(info, check, folder, timeout, evaluate)
    gone = kill_uid(twin_uid)[1] and gone
    for fd in twin or ():
        os.close(fd)
    reap()
    for png in info.pop("figures"):
        emit(proto.FIGURE, png)
    for value in info.pop("values"):
        emit(proto.VALUE, value)
    unreadable = False
    try:
        changed = read_work(changed_files, proto.WORK, before, uid=uid)
        if changed:
            read_work(_pack, changed, int(job.get("disk_bytes") or 2**26), emit, uid=uid)
    except (OSError, ValueError):
        changed, unreadable = [], True  # no files rather than no report
    info["changed"] = changed
    clean = sweep((uid, twin_uid))
    alive = zygote is None or (not zygote.dead and zygote.proc.poll() is None)
    info["left"] = leftovers[0]  # processes still running when the script's main one ended
    info["reusable"] = bool(gone and clean and alive and not leftovers[0] and not unreadable and
                            not info["oom"] and not info["timed_out"] and not info["capped"])
    emit(proto.REPORT, json.dumps(info).encode())
    return bool(info["reusable"])


def _write(sink: IO[bytes], data: bytes) -> None:
    sink.write(data)


def collect(argv: list[str]) -> int:
    """``--collect JOB FILES_FD BUDGET -- CMD...``: the local backend's supervisor in the sandbox.

    Runs CMD (the wrapper, which inherits our stdout, stderr and status fd),
    then, once it ended, kills every other process of the sandbox (all of
    them are this uid's, in bubblewrap's PID namespace) and only then streams
    the work dir's changed files, as a tar within BUDGET bytes, to FILES_FD:
    a snapshot nothing of the run can still change. Not dumpable, so the
    script (same uid) can neither trace it nor read its memory.
    """
    import ctypes

    with contextlib.suppress(Exception):
        ctypes.CDLL(None).prctl(4, 0, 0, 0, 0)  # PR_SET_DUMPABLE 0
    sep = argv.index("--")
    job_path, files_fd, budget = argv[0], int(argv[1]), int(argv[2])
    with open(job_path, encoding="utf-8") as fh:
        before = {str(f["name"]): str(f["sha256"]) for f in json.load(fh).get("files") or []}
    code = subprocess.call(argv[sep + 1:], pass_fds=tuple(
        int(a) for a in argv[sep + 1:] if a.isdigit()))
    for _ in range(500):
        try:
            os.kill(-1, signal.SIGKILL)  # every process we may signal but us and the init
        except ProcessLookupError:
            break
        reap()
        time.sleep(0.002)
    with os.fdopen(files_fd, "wb") as sink, contextlib.suppress(OSError):
        changed = _opened(changed_files, proto.WORK, before)  # folders it closed, reopened
        listed = json.dumps(changed).encode()
        sink.write(HEADER.pack(len(listed)) + listed)  # what changed, then the tar of it
        _pack(changed, budget, lambda kind, data: _write(sink, data))
    return code if code >= 0 else 128 - code


if __name__ == "__main__":
    if sys.argv[1:2] == ["--collect"]:
        sys.exit(collect(sys.argv[2:]))
    main()
