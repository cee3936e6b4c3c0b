"""A session: one process whose globals outlive its cells (``--session``), stdlib only.

Forked once by the zygote (``wrapper.py``'s ``_fork_apart``) under a uid of
its own, with the warm imports, it serves its kernel's ``--session`` runs one
after another from its control socket: each message is a job path with the
cell's stdout, stderr and status pipes passed along. A cell runs exactly as a
single run does (the same wrapper functions: files placed, inputs bound, the
script as ``__main__``, outputs and the check's values sent as data), but in
one module whose globals stay: cell 1 reads a large file into ``df``, cell 2
uses ``df``. After a cell the pipes are closed (stdout and stderr go to
/dev/null until the next one, so a thread a cell left writes nowhere) and
``{"exit": code}`` goes back on the socket.

What a session cannot do is give a check its verdict: the runner asks the
zygote (which never ran a session's code) for an evaluator under another uid.
The runner ends the session (kills its uid, removes its files) on a timeout,
an output cap, a crash or a reset; the module dies with the process.
"""

import contextlib
import json
import os
import socket
import sys
import types
from typing import Any


def _cell(job_path: str, module: types.ModuleType, fd: int, hooks: dict[str, Any]) -> int:
    """One cell in module's globals; its exit code (0 = did not fail)."""
    with open(job_path, encoding="utf-8") as fh:
        job = json.load(fh)
    os.set_inheritable(fd, False)
    try:
        hooks["place_files"](job)
    except OSError as err:
        print(f"[sandbox] an input file could not be placed: {err}", file=sys.stderr)
        hooks["send"](fd, hooks["proto"].EXCEPTION, b"InputError")
        return 1
    script = job["script"]
    sys.argv = [script]
    module.__dict__["__file__"] = script
    codec = hooks["codec"]() if job.get("inputs") or job.get("outputs") or job.get("check") \
        else None
    try:
        hooks["bind_inputs"](job, module.__dict__, codec)
    except Exception as err:
        print(f"[sandbox] an input variable could not be loaded: {type(err).__name__}: {err}",
              file=sys.stderr)
        hooks["send"](fd, hooks["proto"].EXCEPTION, b"InputError")
        return 1
    code = hooks["run_script"](script, module, fd)
    with contextlib.suppress(Exception):
        sys.stdout.flush()
        sys.stderr.flush()
    if code == 0:
        room, sent = hooks["value_bytes"], []
        if job.get("outputs"):
            room, sent = hooks["send_outputs"](fd, list(job["outputs"]), module.__dict__,
                                               codec, bool(job.get("parquet")))
        if job.get("check"):
            hooks["send_check_values"](fd, job["check"], module.__dict__, sent, codec, room)
    hooks["figures"](fd)
    plt = sys.modules.get("matplotlib.pyplot")
    if plt is not None:  # sent once: the next cell's figures are its own
        with contextlib.suppress(Exception):
            plt.close("all")
    return code if 0 <= code <= 255 else 1


def _quiet() -> None:
    """stdout and stderr to /dev/null between cells (the cell's pipes must close)."""
    with contextlib.suppress(Exception):
        sys.stdout.flush()
        sys.stderr.flush()
    null = os.open(os.devnull, os.O_WRONLY)
    os.dup2(null, 1)
    os.dup2(null, 2)
    os.close(null)


def serve(ctl_fd: int, hooks: dict[str, Any]) -> None:
    """Serve cells until the control socket closes (the runner ended the session)."""
    import warnings

    sock = socket.socket(fileno=ctl_fd)
    sock.set_inheritable(False)
    hooks["mpl_home"]()
    sys.path.insert(0, os.getcwd())
    warnings.filterwarnings("ignore", message=".*non-interactive.*")
    module = types.ModuleType("__main__")
    module.__dict__.update(__builtins__=__builtins__)
    work = os.open(".", os.O_RDONLY | os.O_DIRECTORY)  # the work dir, for a host to read
    socket.send_fds(sock, [b'{"ready": true}'], [work])  # (the local backend's: see there)
    os.close(work)
    while True:
        try:
            msg, fds, _, _ = socket.recv_fds(sock, 65536, 3)
        except OSError:
            return
        if not msg or len(fds) < 3:
            return
        out, err, fd = fds
        os.dup2(out, 1)
        os.dup2(err, 2)
        os.close(out)
        os.close(err)
        try:
            code = _cell(str(json.loads(msg)["job"]), module, fd, hooks)
        except Exception as exc:  # the harness's own step failed: the cell did
            print(f"[sandbox] the session's cell failed: {type(exc).__name__}: {exc}",
                  file=sys.stderr)
            code = 1
        _quiet()
        os.close(fd)
        try:
            sock.send(json.dumps({"exit": code}).encode())
        except OSError:
            return
