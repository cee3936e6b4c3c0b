"""The supervisor library: one run's process from the go-signal to its verdict.

Shared by the container's runner (``runner.py``, which serves a kernel's runs
one after another) and the local backend (``local.py``, on the host, around a
bubblewrap sandbox): ``spawn`` starts a process with a status pipe, ``relay``
enforces the wall clock and the output cap while it relays the output and
reads the wrapper's frames (checked, never trusted: ``parse_status``),
``judge`` gets the check's verdict from a process the script cannot reach, and
``write_job`` writes the wrapper's job. Standard library only. In the sandbox
it is imported by the runner from their folder (see ``runner.py``); the host
imports it from the package.
"""

import contextlib
import hashlib
import json
import os
import select
import signal
import subprocess
import time
from collections.abc import Callable, Sequence
from typing import Any

try:  # the host imports this file from the package
    from . import protocol as proto
except ImportError:  # the runner's folder is on its sys.path (see runner.py)
    import protocol as proto  # type: ignore[no-redef]

HEADER = proto.HEADER
STATUS_CAP = proto.STATUS_CAP  # figures (64 MiB) + values (64 MiB) + verdicts from the wrapper
VALUE_CAP = proto.VALUE_CAP  # the wrapper's VALUE_BYTES plus headers: more is dropped


def parse_status(buf: bytearray, info: dict[str, Any]) -> None:
    """Frames from the wrapper (the script's own process: checked, never trusted)."""
    while len(buf) >= 5:
        size = HEADER.unpack_from(buf, 1)[0]
        if len(buf) < 5 + size:
            return
        kind, payload = bytes(buf[:1]), bytes(buf[5:5 + size])
        del buf[:5 + size]
        if kind == proto.FIGURE:
            info["figures"].append(payload)
        elif kind == proto.EXCEPTION:
            info["exception"] = payload.decode("utf-8", "replace")[:200]
        elif kind in (proto.VALUE, proto.CHECK_VALUE) and \
                info["value_bytes"] + len(payload) <= VALUE_CAP:
            info["value_bytes"] += len(payload)
            info["values" if kind == proto.VALUE else "check_values"].append(payload)
        elif kind in (proto.MISSING, proto.VERDICT):
            try:
                info["missing" if kind == proto.MISSING else "check"] = json.loads(payload)
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
          cleanup: Callable[[], None] | None = None,
          owner_fd: int | None = None, files_fd: int | None = None,
          files_cap: int = 0, kill_on_exit: bool = True) -> dict[str, Any]:
    """Supervise a started process from now on: the wall clock starts at this call.

    A warm interpreter is spawned long before its job, so the clock and the
    output cap count from the go-signal, not from the spawn. ``cleanup`` runs
    once the main process has exited (the container's root runner kills every
    process of the run's uid there, escaped process groups included).
    ``owner_fd`` (the container's stdin) is watched too: its end of file means
    the host process that owns this sandbox died mid-run (see ``owner_gone``).
    ``files_fd`` (the local backend's): a tar of the changed files, kept in
    ``info["tar"]`` up to ``files_cap`` bytes (``info["tar_cut"]`` past it).
    ``kill_on_exit`` False: a session's cell, whose process (the session)
    outlives it; a timeout or the output cap still kills its group.
    """
    assert proc.stdout is not None and proc.stderr is not None
    start = time.monotonic()
    streams = {proc.stdout.fileno(): proto.OUT, proc.stderr.fileno(): proto.ERR,
               status_r: proto.STATUS}
    tar = bytearray()
    if files_fd is not None:
        streams[files_fd] = proto.FILES
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
            if kill_on_exit:
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
        if owner_fd is not None:
            poller.register(owner_fd, select.POLLIN)
        for fd, _ in poller.poll(50):
            if fd == owner_fd:
                if not os.read(fd, 1):
                    owner_gone()
                continue
            data = os.read(fd, 65536)
            if not data:
                del streams[fd]
                continue
            kind = streams[fd]
            if kind == proto.FILES:
                if len(tar) + len(data) > files_cap:
                    info["tar_cut"] = True
                else:
                    tar += data
                continue
            if kind == proto.STATUS:
                status_bytes += len(data)
                if status_bytes <= STATUS_CAP:
                    status_buf += data
                    parse_status(status_buf, info)
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
    if files_fd is not None:
        os.close(files_fd)
        info["tar"] = bytes(tar)
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


def write_job(folder: str, job: dict[str, Any], inputs: list[tuple[str, str, Any]],
              files: Sequence[tuple[str, Any]] = ()) -> Any:
    """The wrapper's JSON job in folder (the harness's own, never the work dir).

    inputs are (name, format, chunks): each value's bytes go to a file of
    their own, which the wrapper reads, binds and deletes. files are (work
    dir name, chunks): the wrapper copies them into the work dir as the run's
    uid. Returns the job's path, and with files, (path, {name: sha256}) of them.
    """
    listed = []
    for i, (name, fmt, chunks) in enumerate(inputs):
        path = os.path.join(folder, f"in-{i}")
        with open(path, "wb") as fh:
            for chunk in chunks:
                fh.write(chunk)
        listed.append({"name": name, "format": fmt, "path": path})
    for item in job.get("mounted_inputs") or []:  # read in place from a read-only bind
        listed.append({"name": str(item["name"]), "format": str(item["format"]),
                       "path": str(item["mount"])})
    placed, before = [], {}
    for i, (name, chunks) in enumerate(files):
        path = os.path.join(folder, f"file-{i}")
        digest = hashlib.sha256()
        with open(path, "wb") as fh:
            for chunk in chunks:
                fh.write(chunk)
                digest.update(chunk)
        placed.append({"name": name, "path": path, "sha256": digest.hexdigest()})
        before[name] = digest.hexdigest()
    script = os.path.join(folder, "script.py")
    links = [{"name": str(x["name"]), "target": str(x["target"])} for x in job.get("links") or []]
    spec = {"script": script, "inputs": listed, "files": placed, "links": links,
            "outputs": [str(n) for n in job.get("outputs") or []],
            "check": job.get("check") or None, "parquet": bool(job.get("parquet"))}
    with open(script, "w", encoding="utf-8") as fh:
        fh.write(job["code"])
    path = os.path.join(folder, "job.json")
    with open(path, "w", encoding="utf-8") as fh:
        json.dump(spec, fh)
    return (path, before) if files or "files" in job else path


def owner_gone() -> None:
    """The host end of stdin closed mid-run: the process that owns this sandbox is gone.

    A kernel SIGKILLed mid-run cannot remove its container; its attach socket
    closes instead, and the engine closes our stdin (StdinOnce). As the
    container's pid 1 we then kill every other process and exit, and the
    engine removes the container (auto-remove): nothing of its runs goes on.
    """
    with contextlib.suppress(OSError):
        if os.getpid() == 1:
            os.kill(-1, signal.SIGKILL)
    os._exit(0)
