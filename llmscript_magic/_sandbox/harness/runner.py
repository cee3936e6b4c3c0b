"""Supervisor shared by both backends: starts the script, relays capped output.

In Docker this file is the container's main process (``python3 -I -S -c
SOURCE WRAPPER MPL_CACHE CONFIG``): it prepares everything, starts the
script's interpreter ahead (as the script's uid, with the image's heavy
libraries imported; see ``main``), then blocks on stdin for the job (a JSON
header, then the input values' bytes), so a pooled container answers in
milliseconds. No ``timeout`` or ``python3`` is started per run: this
supervisor enforces the wall clock (SIGTERM, then SIGKILL after the grace).
Everything it sends the host is framed (1 type byte, 4-byte length,
payload) on stdout: ``o``/``e`` output chunks, ``f`` PNG figures, ``v``
values of ``--output`` variables, ``r`` the result (exit, limits, changed
files, check verdict, outputs that cannot come back). The local backend
imports ``supervise``/``snapshot``/``changed_files`` directly. Standard
library only: the image has nothing else that we control.

Two uids when the engine starts this runner as root (with only the SETUID,
SETGID and KILL capabilities): the script then runs as ``SCRIPT_UID``, so it
can neither ptrace nor signal the runner, nor open its stdout through
``/proc/1/fd/1`` to forge frames, nor change the harness's files; the steps
that read what the script closed to others in its work dir run in a child
with the script's uid (``read_work``).
Started as a non-root user, the runner and the script share that uid (the
frames it reads are then checked, never trusted). A third uid, ``TWIN_UID``
in ``wrapper.py``, is the check's evaluator's (see ``judge``).
"""

import contextlib
import dataclasses
import functools
import hashlib
import json
import os
import select
import signal
import struct
import subprocess
import sys
import time
from collections.abc import Callable
from typing import IO, Any

HEADER = struct.Struct(">I")
MARK = "\n[... output truncated: more than {} bytes ...]\n"
STATUS_CAP = 136 * 2**20  # figures (64 MiB) + values (64 MiB) + verdicts from the wrapper
VALUE_CAP = 65 * 2**20  # the wrapper's VALUE_BYTES plus headers: more is dropped


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


def _parse_status(buf: bytearray, info: dict[str, Any]) -> None:
    """Frames from the wrapper (the script's own process: checked, never trusted)."""
    while len(buf) >= 5:
        size = HEADER.unpack_from(buf, 1)[0]
        if len(buf) < 5 + size:
            return
        kind, payload = bytes(buf[:1]), bytes(buf[5:5 + size])
        del buf[:5 + size]
        if kind == b"f":
            info["figures"].append(payload)
        elif kind == b"x":
            info["exception"] = payload.decode("utf-8", "replace")[:200]
        elif kind in (b"v", b"k") and info["value_bytes"] + len(payload) <= VALUE_CAP:
            info["value_bytes"] += len(payload)
            info["values" if kind == b"v" else "check_values"].append(payload)
        elif kind in (b"m", b"c"):
            try:
                info["missing" if kind == b"m" else "check"] = json.loads(payload)
            except (ValueError, RecursionError):
                info["tampered"] = True


def spawn(cmd: list[str], *, env: dict[str, str], cwd: str | None,
          preexec_fn: Callable[[], None] | None = None, stdin: Any = subprocess.DEVNULL,
          pass_fds: tuple[int, ...] = ()) -> tuple[subprocess.Popen[bytes], int]:
    """Start cmd in its own process group with a status pipe; (process, status read end).

    cmd may hold "{fd}" where the status pipe's number goes.
    """
    status_r, status_w = os.pipe()
    cmd = [str(status_w) if part == "{fd}" else part for part in cmd]
    try:
        proc = subprocess.Popen(
            cmd, env=env, cwd=cwd, stdin=stdin, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, pass_fds=(status_w, *pass_fds), start_new_session=True,
            preexec_fn=preexec_fn,
        )
    except BaseException:
        os.close(status_r)
        raise
    finally:
        os.close(status_w)
    return proc, status_r


def supervise(cmd: list[str], *, env: dict[str, str], cwd: str | None, timeout: float,
              output_bytes: int, emit: Callable[[bytes, bytes], None], grace: float = 1.0,
              preexec_fn: Callable[[], None] | None = None) -> dict[str, Any]:
    """Run cmd in its own process group; relay output via emit(kind, data).

    The group is killed at timeout (+grace for SIGTERM-ignoring code), when the
    output passes output_bytes, and after the main process exits (so nothing
    is left behind). cmd may hold "{fd}" where the status pipe's number goes.
    """
    proc, status_r = spawn(cmd, env=env, cwd=cwd, preexec_fn=preexec_fn)
    return relay(proc, status_r, timeout=timeout, output_bytes=output_bytes, emit=emit,
                 grace=grace)


def relay(proc: "subprocess.Popen[bytes]", status_r: int, *, timeout: float,
          output_bytes: int, emit: Callable[[bytes, bytes], None], grace: float = 1.0,
          cleanup: Callable[[], None] | None = None) -> dict[str, Any]:
    """Supervise a started process from now on: the wall clock starts at this call.

    A warm interpreter is spawned long before its job, so the clock and the
    output cap count from the go-signal, not from the spawn. ``cleanup`` runs
    once the main process has exited (the container's root runner kills every
    process of the sandbox there, escaped process groups included).
    """
    assert proc.stdout is not None and proc.stderr is not None
    start = time.monotonic()
    streams = {proc.stdout.fileno(): b"o", proc.stderr.fileno(): b"e", status_r: b"s"}
    status_buf = bytearray()
    info: dict[str, Any] = {"capped": False, "timed_out": False, "exception": None,
                            "figures": [], "values": [], "check_values": [], "value_bytes": 0}
    sent = 0
    status_bytes = 0
    killed_at: float | None = None
    exited_at: float | None = None

    def kill(sig: int = signal.SIGKILL) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, sig)

    while streams:
        now = time.monotonic()
        if proc.poll() is not None and exited_at is None:
            exited_at = now
            kill()  # leftovers in the group go with the script
            if cleanup is not None:
                cleanup()
        if exited_at is not None and now - exited_at > 0.3:
            break  # something that left the group still holds a pipe
        if exited_at is None and now - start > timeout and killed_at is None:
            info["timed_out"] = True
            killed_at = now
            kill(signal.SIGTERM)
        if killed_at is not None and now - killed_at > grace:
            kill()
        # poll, not select: gVisor with our seccomp profile refuses select() (EPERM)
        poller = select.poll()
        for fd in streams:
            poller.register(fd, select.POLLIN)
        for fd, _ in poller.poll(50):
            data = os.read(fd, 65536)
            if not data:
                del streams[fd]
                continue
            kind = streams[fd]
            if kind == b"s":
                status_bytes += len(data)
                if status_bytes <= STATUS_CAP:
                    status_buf += data
                    _parse_status(status_buf, info)
                continue
            if info["capped"]:
                continue
            room = output_bytes - sent
            if len(data) > room:
                data = data[:room]
                info["capped"] = True
                kill()
            if data:
                sent += len(data)
                emit(kind, data)
    proc.wait()
    os.close(status_r)
    proc.stdout.close()
    proc.stderr.close()
    info.update(returncode=proc.returncode, elapsed=time.monotonic() - start)
    del info["value_bytes"]
    return info


def verdict_job(folder: str, check: str, payloads: list[bytes]) -> str:
    """The check evaluator's job in folder: the check, and each value in a file of its own.

    payloads are the script's ``v`` and ``k`` frames (a JSON header line, then
    the data), checked here, never trusted: the first frame for a name wins.
    The files go in a new folder of their own: folder may be one the script
    could write in (the local backend's), and a name it planted there (a
    symlink to a host file) must not be opened for writing.
    """
    import tempfile

    folder = tempfile.mkdtemp(prefix="verdict-", dir=folder)
    os.chmod(folder, 0o755)  # for the evaluator's uid (its own, or the script's)
    values: list[dict[str, str]] = []
    for i, payload in enumerate(payloads):
        head, sep, data = payload.partition(b"\n")
        try:
            meta = json.loads(head) if sep and len(head) < 1024 else None
        except (ValueError, RecursionError):
            continue
        if not isinstance(meta, dict) or not isinstance(meta.get("name"), str) or \
                any(v["name"] == meta["name"] for v in values):
            continue
        item = {"name": meta["name"]}
        for key in ("opaque", "module"):
            if isinstance(meta.get(key), str):
                item[key] = meta[key][:200]
                break
        else:
            if not isinstance(meta.get("format"), str):
                continue
            item.update(format=meta["format"], path=os.path.join(folder, f"check-{i}"))
            with open(item["path"], "wb") as fh:
                fh.write(data)
        values.append(item)
    path = os.path.join(folder, "verdict.json")
    with open(path, "w", encoding="utf-8") as fh:
        json.dump({"check": check, "values": values}, fh)
    return path


def judge(info: dict[str, Any], check: str | None, folder: str, timeout: float,
          evaluate: Callable[[str, float], dict[str, Any]]) -> None:
    """Put the evaluator's verdict in info, in place of anything the script's process sent.

    ``evaluate(job_path, seconds)`` has ``wrapper.verdict`` judge the job in a
    process the script cannot reach (the evaluator forked before the script,
    or a fresh one once every process of the script is gone) and returns its
    relay info. Only a clean exit gets a verdict. ``[None, why]`` (from the
    evaluator only): it cannot be evaluated apart from the script, which fails
    the check too.
    """
    info.pop("check", None)  # written by the script's process: never a verdict
    payloads = info["values"] + info.pop("check_values")
    if not check or info["returncode"] != 0 or info["timed_out"] or info["capped"]:
        return
    budget = max(2.0, timeout - info["elapsed"])
    evaluated = evaluate(verdict_job(folder, check, payloads), budget)
    if evaluated.get("check") is not None:
        info["check"] = evaluated["check"]  # clean_report checks its types
    elif evaluated.get("timed_out"):
        info["check"] = [False, f"the check did not finish within {budget:.1f} s"]
    else:  # killed (out of memory?): a failed check, never one that passes unseen
        info["check"] = [False, "its evaluator ended without a verdict (out of memory?)"]


SCRIPT_UID = 65534  # nobody: the script's uid when the runner starts as root


def drop_to_script_user() -> None:
    """In a child: become the script's uid, so it can neither ptrace nor signal the runner.

    A no-op unless this process is root (the container's main process when the
    engine starts it so): the local backend already runs as the user.
    """
    if os.getuid() == 0:
        os.setgroups([])
        os.setgid(SCRIPT_UID)
        os.setuid(SCRIPT_UID)


def _enter_work(rlimits: dict[str, int], enter: bool = True) -> None:
    """preexec for the script: its rlimits, its uid, then its work dir (its own).

    ``enter=False`` sets the rlimits only: a warm interpreter that forks the
    check's evaluator drops to the script's uid itself, after the fork.

    ``rlimits`` (``{"nproc": 128, "data": bytes, "fsize": bytes}``) stand in
    for the caps an engine drops: rootless Podman on cgroups v1 ignores the
    memory, pids and ulimit settings, so the runner (root in the container's
    user namespace) sets them on the script's process itself. Set while still
    root, they hold after the switch to the script's uid, which may only lower them.
    """
    import resource

    for name, value in rlimits.items():
        which = getattr(resource, f"RLIMIT_{name.upper()}", None)
        if which is not None:
            resource.setrlimit(which, (int(value), int(value)))
    if enter:
        drop_to_script_user()
        os.chdir("/work")


def as_script_user(fn: Callable[..., Any], *args: Any) -> Any:
    """fn(*args) in a child with the script's uid; its JSON-able result comes back.

    A root runner without DAC capabilities cannot read what the script closed
    to others or make files the script may write, so those steps run as the script.
    """
    if os.getuid() != 0:
        return fn(*args)
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover (the child)
        code = 1
        try:
            os.close(read_end)
            drop_to_script_user()
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
        raise OSError(f"a step as uid {SCRIPT_UID} failed with status {status}")
    return json.loads(data)


def read_work(fn: Callable[..., Any], *args: Any) -> Any:
    """fn(*args) over the work dir, by the runner itself where the script left it readable.

    The work dir is 0755 and the script's files 0644 by default, so the root
    runner (which has no DAC capability) reads them as anyone may, without a
    fork: under gVisor a fork of this interpreter costs about 12 ms, twice a
    run. A file or folder the script closed to others is read by a child with
    the script's uid instead. Nothing of the script runs any more by then.
    """
    try:
        return fn(*args)
    except OSError:
        return as_script_user(fn, *args)


def _copy_tree(src: str, dst: str) -> None:
    """matplotlib's config and font cache, for the script (run as its uid).

    The folder is writable by every uid of the sandbox: the warm interpreter
    imports matplotlib as root (without DAC capabilities) before it becomes
    the script's uid, and matplotlib wants its config folder writable (else it
    warns on the script's stderr and caches in a folder the script cannot use).
    """
    os.makedirs(dst, exist_ok=True)
    os.chmod(dst, 0o777)
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


def write_job(folder: str, job: dict[str, Any], inputs: list[tuple[str, str, Any]]) -> str:
    """The wrapper's JSON job in folder (the harness's own, never the work dir).

    inputs are (name, format, chunks): each value's bytes go to a file of
    their own, which the wrapper reads, binds and deletes.
    """
    listed = []
    for i, (name, fmt, chunks) in enumerate(inputs):
        path = os.path.join(folder, f"in-{i}")
        with open(path, "wb") as fh:
            for chunk in chunks:
                fh.write(chunk)
        listed.append({"name": name, "format": fmt, "path": path})
    script = os.path.join(folder, "script.py")
    spec = {"script": script, "inputs": listed,
            "outputs": [str(n) for n in job.get("outputs") or []],
            "check": job.get("check") or None, "parquet": bool(job.get("parquet"))}
    with open(script, "w", encoding="utf-8") as fh:
        fh.write(job["code"])
    path = os.path.join(folder, "job.json")
    with open(path, "w", encoding="utf-8") as fh:
        json.dump(spec, fh)
    return path


def _chunks(stream: IO[bytes], size: int) -> Any:
    while size > 0:
        chunk = _read_exact(stream, min(size, 2**20))
        size -= len(chunk)
        yield chunk


def _kill_the_rest() -> None:
    """As the container's root pid 1: SIGKILL every other process in the sandbox.

    kill(-1) reaches every process of the PID namespace but pid 1 itself, so a
    script's double-forked, setsid children cannot keep running (or keep
    changing files) while the report is made. A no-op elsewhere: the local
    backend's PID namespace ends with the script.
    """
    if os.getpid() == 1 and os.getuid() == 0:
        with contextlib.suppress(OSError):
            os.kill(-1, signal.SIGKILL)


def _rlimits(config: dict[str, Any]) -> dict[str, int]:
    raw = config.get("rlimits")
    return {str(k): int(v) for k, v in raw.items()} if isinstance(raw, dict) else {}


@dataclasses.dataclass
class _Warm:
    """A warm interpreter, and the check's evaluator it forked (see ``_start_warm``)."""

    proc: Any
    status_r: int  # its frames
    go_w: int  # the go-signal: the job's path
    twin_w: int | None = None  # the evaluator's job path
    twin_r: int | None = None  # the evaluator's frames


def _start_warm(wrapper: str, config: dict[str, Any]) -> _Warm | None:
    """Start the script's interpreter now, before the job.

    It imports ``config["preimport"]`` and then blocks on its stdin (the go
    pipe) until the job's path arrives, so the job pays for neither an exec
    nor those imports. Started as root by a root runner, it stays root until
    the job comes, forks the check's evaluator with those imports if the job
    has a check (``wrapper.py``'s ``_start_twin``: uid 65533, its own session,
    so the script can neither signal, trace nor read it), then becomes the
    script's uid before anything of the job is decoded. None when there is
    nothing to start it with.
    """
    env = config.get("env")
    if not isinstance(env, dict):
        return None
    modules = ",".join(str(m) for m in config.get("preimport") or [])
    cmd = ["python3", "-B", "-I", wrapper, "--warm", modules, "{fd}"]
    go_r, go_w = os.pipe()
    mine: list[int] = [go_w]
    theirs: list[int] = [go_r]
    twin = os.getuid() == 0
    if twin:
        job_r, job_w = os.pipe()
        stat_r, stat_w = os.pipe()
        mine += [job_w, stat_r]
        theirs += [job_r, stat_w]
        cmd += [str(job_r), str(stat_w)]
    try:
        proc, status_r = spawn(cmd, env=env, cwd=None, stdin=go_r, pass_fds=tuple(theirs[1:]),
                               preexec_fn=functools.partial(_enter_work, _rlimits(config),
                                                            not twin))
    except OSError:
        for fd in mine:
            os.close(fd)
        return None
    finally:
        for fd in theirs:
            os.close(fd)
    return _Warm(proc, status_r, go_w, *(mine[1:] if twin else ()))


READY = frame(b"w", b"")
# A warm interpreter still importing after this long is given up for a fresh one: the
# host allows the run its time limit plus a few seconds from the hand-over.
READY_SECONDS = 1.5


def _wait_ready(warm: _Warm, seconds: float = READY_SECONDS) -> bool:
    """Wait until the warm interpreter has imported what it was asked to (its ``w`` frame).

    False when it died (e.g. the memory cap took it while importing) or
    wrote anything else first: then the job gets a fresh interpreter.
    """
    got = b""
    deadline = time.monotonic() + seconds
    poller = select.poll()
    poller.register(warm.status_r, select.POLLIN)
    while len(got) < len(READY):
        left = deadline - time.monotonic()
        if left <= 0 or not poller.poll(int(left * 1000)):
            return False
        data = os.read(warm.status_r, len(READY) - len(got))
        if not data:
            return False
        got += data
    return got == READY and warm.proc.poll() is None


def _ask_twin(warm: _Warm, path: str, seconds: float) -> dict[str, Any] | None:
    """The forked evaluator's report on the check job at path; None: it is not there.

    What comes back is what ``relay`` gives for a fresh evaluator: ``check``
    from its ``c`` frame, or ``timed_out``, or neither when it died.
    """
    if warm.twin_w is None or warm.twin_r is None:
        return None
    try:
        os.write(warm.twin_w, path.encode() + b"\n")
    except OSError:
        return None  # gone before its job (the memory cap): a fresh evaluator instead
    buf = bytearray()
    info: dict[str, Any] = {"figures": [], "values": [], "check_values": [], "value_bytes": 0}
    deadline = time.monotonic() + seconds
    poller = select.poll()
    poller.register(warm.twin_r, select.POLLIN)
    while "check" not in info:
        left = deadline - time.monotonic()
        if left <= 0:
            return {"timed_out": True}
        if not poller.poll(int(left * 1000) + 1):
            continue
        data = os.read(warm.twin_r, 65536)
        if not data:
            break
        buf += data
        if len(buf) > 2**20:
            break  # no verdict is this long
        _parse_status(buf, info)
    return {"check": info.get("check")}


def _discard(warm: _Warm | None) -> None:
    """Kill a warm interpreter (and, by closing its pipes, its evaluator) and close its fds."""
    if warm is None:
        return
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(warm.proc.pid, signal.SIGKILL)
    warm.proc.wait()
    for fd in (warm.status_r, warm.go_w, warm.twin_w, warm.twin_r):
        if fd is not None:
            with contextlib.suppress(OSError):
                os.close(fd)
    for stream in (warm.proc.stdout, warm.proc.stderr):
        if stream is not None:
            stream.close()


def main() -> None:
    """Container entry point: prepare, wait for the job, run once, report, wait for EOF.

    argv: WRAPPER_SOURCE MPL_CACHE [CONFIG_JSON]. CONFIG (``{"env": ...,
    "preimport": [...], "rlimits": {...}}``) asks for a warm interpreter started
    before the job (see ``_start_warm``) and the rlimits of ``_enter_work``; a
    job whose environment differs from it, or one that finds it dead (e.g.
    killed by the memory cap while importing), runs in a fresh interpreter
    instead. One job per container either way.
    """
    wrapper_src, mpl_cache = sys.argv[1], sys.argv[2]
    config = json.loads(sys.argv[3]) if len(sys.argv) > 3 else {}
    tmp = "/tmp/.llmscript"  # the harness's files: the script may read, never change them
    os.makedirs(tmp, mode=0o755, exist_ok=True)
    wrapper = os.path.join(tmp, "wrapper.py")
    with open(wrapper, "w") as fh:
        fh.write(wrapper_src)
    as_script_user(_copy_tree, mpl_cache, "/tmp/.config/matplotlib")  # the script's to write
    warm = _start_warm(wrapper, config)
    out = sys.stdout.buffer
    stdin = sys.stdin.buffer
    try:
        job = json.loads(_read_exact(stdin, HEADER.unpack(_read_exact(stdin, 4))[0]))
        for name, source in (job.get("harness") or {}).items():
            if name == "codec.py":  # the harness's own module, by name (the warm
                with open(os.path.join(tmp, name), "w", encoding="utf-8") as fh:
                    fh.write(source)  # interpreter already runs this container's wrapper)
        inputs = [(str(i["name"]), str(i["format"]), _chunks(stdin, int(i["size"])))
                  for i in job.get("inputs") or []]
        spec = write_job(tmp, job, inputs)
    except (EOFError, ValueError):
        _discard(warm)
        return  # the pool was shut down before this container was used
    before = read_work(snapshot, "/work")
    oom_before = _oom_kills()
    timeout = float(job["timeout"])
    grace = float(job.get("grace", 1.0))

    def emit(kind: bytes, data: bytes) -> None:
        out.write(frame(kind, data))
        out.flush()

    if warm is not None and (job["env"] != config.get("env") or not _wait_ready(warm)):
        _discard(warm)
        warm = None
    if warm is not None:
        proc, status_r = warm.proc, warm.status_r
        with contextlib.suppress(OSError):  # died just now: the relay reports how
            os.write(warm.go_w, spec.encode() + b"\n")  # the go-signal: the job's path
        os.close(warm.go_w)
    else:
        proc, status_r = spawn(["python3", "-B", "-I", wrapper, spec, "{fd}"], env=job["env"],
                               cwd=None,
                               preexec_fn=functools.partial(_enter_work, _rlimits(config)))
    # With a forked evaluator the script's leftovers are killed after the verdict: the
    # root runner's kill(-1) would take the evaluator too, and they cannot reach it.
    twin = warm is not None and warm.twin_w is not None and bool(job.get("check"))
    info = relay(proc, status_r, timeout=timeout, output_bytes=int(job["output_bytes"]),
                 emit=emit, grace=grace, cleanup=None if twin else _kill_the_rest)
    info["oom"] = _oom_kills() > oom_before

    def evaluate(path: str, seconds: float) -> dict[str, Any]:
        if twin and warm is not None and (asked := _ask_twin(warm, path, seconds)) is not None:
            return asked
        _kill_the_rest()  # a fresh evaluator has the script's uid: nothing of it may remain
        proc, status_r = spawn(["python3", "-B", "-I", wrapper, "--verdict", path, "{fd}"],
                               env=job["env"], cwd=None,
                               preexec_fn=functools.partial(_enter_work, _rlimits(config)))
        return relay(proc, status_r, timeout=seconds, output_bytes=2**16,
                     emit=lambda kind, data: None, cleanup=_kill_the_rest)

    judge(info, job.get("check"), tmp, timeout, evaluate)
    _kill_the_rest()  # the evaluator and anything the script left, before its files are read
    for fd in (warm.twin_w, warm.twin_r) if warm is not None else ():
        if fd is not None:
            os.close(fd)
    for png in info.pop("figures"):
        emit(b"f", png)
    for value in info.pop("values"):
        emit(b"v", value)
    info["changed"] = read_work(changed_files, "/work", before)
    emit(b"r", json.dumps(info).encode())
    while stdin.read(65536):  # hold the work volume until the host has the files
        pass


if __name__ == "__main__":
    main()
